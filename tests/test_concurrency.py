"""Concurrent writers and interrupts: never a corrupt mix, a partial file or a temp file.

* two processes writing the same path at once leave one complete, valid file (the atomic
  writers ``io.atomic_write_bytes`` and ``audio.write_audio``, and the real CLI);
* SIGINT while ``semcodec encode`` / ``decode`` / ``batch encode`` works: exit 130, the line
  ``semcodec: interrupted``, no output, no temporary file, no worker process left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import SR, tone
from semcodec.container import SmcFile as Container
from semcodec.events import Note, Score, Track

CLI = [sys.executable, "-m", "semcodec"]


def _debris(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or
                  p.name.endswith(".tmp"))


# --- two writers, one path ------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys, numpy as np
    from semcodec.io import atomic_write_bytes
    from semcodec.audio import write_audio
    path, kind, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if kind == "bytes":
        data = bytes([tag]) * (1 << 20)
        for _ in range(n):
            atomic_write_bytes(path, data)
    else:
        audio = np.full(200_000, 0.25 if tag == 1 else -0.5, np.float32)
        for _ in range(n):
            write_audio(path, audio, 44100)
""")


@pytest.mark.parametrize("kind", ["bytes", "audio"])
def test_two_writers_same_path(tmp_path, kind):
    target = tmp_path / ("out.bin" if kind == "bytes" else "out.wav")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(target), kind, str(tag), "40"])
             for tag in (1, 2)]
    seen = set()
    while any(p.poll() is None for p in procs):
        if target.exists():  # every read sees one whole version, never a mix
            if kind == "bytes":
                data = target.read_bytes()
                assert len(data) == 1 << 20 and data in (b"\x01" * (1 << 20), b"\x02" * (1 << 20))
                seen.add(data[0])
            else:
                audio, sr = sf.read(target, dtype="float32")
                assert sr == 44100 and audio.shape == (200_000,)
                assert np.all(audio == audio[0]) and audio[0] in (0.25, -0.5)
                seen.add(float(audio[0]))
        time.sleep(0.005)
    assert [p.returncode for p in procs] == [0, 0]
    assert seen  # the reader did catch the file while both wrote
    assert _debris(tmp_path) == []


@pytest.fixture(scope="module")
def long_smc(tmp_path_factory) -> Path:
    """A 90-s score (no audio needed): decoding it keeps fluidsynth busy for a few seconds."""
    notes = tuple(Note(0.25 * i, 0.25 * i + 0.5, 48 + (i * 7) % 36, 90) for i in range(355))
    c = Container(duration=90.0, sample_rate=44100, n_samples=90 * 44100, loudness_lufs=-18.0,
                  score=Score(tracks=(Track("piano", 0, False, notes),)))
    path = tmp_path_factory.mktemp("long") / "long.smc"
    c.save(path)
    return path


def test_two_cli_decodes_same_output(tmp_path, long_smc):
    short = tmp_path / "short.smc"
    c = Container.load(long_smc)
    Container(duration=3.0, sample_rate=22050, n_samples=3 * 22050, loudness_lufs=-18.0,
              score=Score(tracks=(Track("p", 0, False, c.score.tracks[0].notes[:10]),))).save(short)
    out = tmp_path / "out" / "same.wav"
    out.parent.mkdir()
    procs = [subprocess.Popen([*CLI, "decode", "-f", "-q", str(short), str(out), "--engine",
                               "fluidsynth", "--transpose", str(t)]) for t in (0, 5)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    audio, sr = sf.read(out, dtype="float32")
    assert sr == 22050 and audio.shape == (3 * 22050,) and np.abs(audio).max() > 0.01
    assert _debris(out.parent) == []


# --- interrupts ---------------------------------------------------------------------------------

def _wait_until_working(proc: subprocess.Popen, marker: str, timeout: float = 90) -> None:
    """Wait until ``proc`` (or one of its children) has mapped the library ``marker``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        assert proc.poll() is None, "finished before it could be interrupted"
        for pid in [proc.pid, *_children(proc.pid)]:
            try:
                if marker in Path(f"/proc/{pid}/maps").read_text():
                    time.sleep(0.5)
                    return
            except OSError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"{marker} never loaded")


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            out += [int(x) for x in text.split()]
    except OSError:
        pass
    return out


def _assert_interrupted(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.decode().strip().splitlines()[-1] == "semcodec: interrupted"
    assert "Traceback" not in err.decode()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_sigint_during_encode(tmp_path):
    src = tmp_path / "in.wav"
    sf.write(src, np.concatenate([tone(48 + (i * 5) % 24, 0.5) for i in range(60)]), SR)
    before = src.read_bytes()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen([*CLI, "encode", str(src), str(out_dir / "o.smc"), "--no-timbre"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    _wait_until_working(proc, "onnxruntime")
    proc.send_signal(signal.SIGINT)
    _assert_interrupted(proc)
    assert list(out_dir.iterdir()) == []
    assert src.read_bytes() == before


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_sigint_during_decode(tmp_path, long_smc):
    before = long_smc.read_bytes()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen([*CLI, "decode", str(long_smc), str(out_dir / "o.flac"), "--engine",
                             "fluidsynth"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    _wait_until_working(proc, "libfluidsynth")
    proc.send_signal(signal.SIGINT)
    _assert_interrupted(proc)
    assert list(out_dir.iterdir()) == []
    assert long_smc.read_bytes() == before


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_ctrl_c_during_batch(tmp_path, long_smc):
    """Ctrl-C (SIGINT to the whole process group) during a batch decode on 2 workers."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for name in ("a.smc", "b.smc", "sub/c.smc"):
        (src / name).write_bytes(long_smc.read_bytes())
    dst = tmp_path / "dst"
    proc = subprocess.Popen([*CLI, "batch", "decode", str(src), str(dst), "-j", "2",
                             "--engine", "fluidsynth"], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, start_new_session=True)
    _wait_until_working(proc, "libfluidsynth")
    workers = _children(proc.pid)
    assert workers
    os.killpg(proc.pid, signal.SIGINT)
    _assert_interrupted(proc)
    for pid in workers:  # the pool is gone with its parent
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"worker {pid} still alive")
    leftovers = [p for p in dst.rglob("*") if p.is_file()] if dst.exists() else []
    assert not [p for p in leftovers if p.name.startswith(".") or p.suffix == ".tmp"]
    for p in leftovers:  # whatever was finished is complete
        assert sf.info(p).frames == 90 * 44100
