"""Small legal-looking files that cost a naive decoder minutes or gigabytes, or that break its
output (issue 13, items 1-4 and 6-9).  Each file is built by :mod:`hostile_files`; the CLI runs
in a subprocess with a time limit, and its peak memory is measured where that is cheap.

Each case must end in a one-line error with exit status 2, or a valid output, within the
budgets of docs/ROBUSTNESS.md ("Budgets").
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf

import hostile_files as hf
from semcodec.audio import MAX_SAMPLE_AUDIO_S, read_sample
from semcodec.errors import ContainerError
from semcodec.events import Sample

#: Budget of `test` and `info` on any file up to 1 MB (s, MB of peak RSS).
TIME_BUDGET_S = 5.0
RSS_BUDGET_MB = 500

_RUN = (
    "import resource, sys\n"
    "def report():\n"
    "    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "    open(sys.argv[1], 'w').write(str(kb))\n"
    "import atexit; atexit.register(report)\n"
    "from semcodec.cli import main\n"
    "main(sys.argv[2:])\n"
)


def semcodec(tmp_path: Path, *args: str, timeout: float = 60.0, preexec=None,
             stdout=None) -> tuple[int, list[str], float, float, str]:
    """Run the CLI in a subprocess: (exit status, stderr lines, wall s, peak RSS MB, stdout)."""
    rss_file = tmp_path / ".rss"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", _RUN, str(rss_file), *args], cwd=tmp_path,
                       stdout=stdout if stdout is not None else subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout, preexec_fn=preexec)
    wall = time.perf_counter() - t0
    rss = int(rss_file.read_text()) / 1024 if rss_file.is_file() else 0.0
    rss_file.unlink(missing_ok=True)
    out = r.stdout.decode("utf-8", "replace") if r.stdout is not None else ""
    return r.returncode, r.stderr.decode("utf-8", "replace").splitlines(), wall, rss, out


def assert_one_line_error(code: int, err: list[str], *words: str, prefix: str = "semcodec: error: "
                          ) -> None:
    assert code == 2, (code, err)
    assert len(err) == 1 and err[0].startswith(prefix), err
    assert "internal error" not in err[0] and "Traceback" not in err[0], err
    for w in words:
        assert w in err[0], err


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


# --- 1, 2: score and lyrics that expand far beyond the file --------------------------------

def test_score_bomb_is_refused_quickly_by_test_and_info(tmp_path):
    data = hf.score_bomb()
    assert len(data) < 4000
    write(tmp_path, "bomb.smc", data)
    for cmd in (["test", "bomb.smc"], ["info", "--json", "bomb.smc"], ["info", "bomb.smc"],
                ["export", "bomb.smc", "--midi", "b.mid"]):
        code, err, wall, rss, _ = semcodec(tmp_path, *cmd, timeout=60)
        assert_one_line_error(code, err, "bomb.smc", "SCOR",
                              prefix="bomb.smc: " if cmd[0] == "test" else "semcodec: error: ")
        assert wall < TIME_BUDGET_S and rss < RSS_BUDGET_MB, (cmd, wall, rss)
    assert not (tmp_path / "b.mid").exists()


def test_lyrics_bomb_is_refused_quickly(tmp_path):
    data = hf.lyrics_bomb()
    assert len(data) < 12_000
    write(tmp_path, "lyr.smc", data)
    for cmd in (["info", "lyr.smc"], ["export", "lyr.smc", "--musicxml", "l.musicxml"]):
        code, err, wall, rss, _ = semcodec(tmp_path, *cmd, timeout=60)
        assert_one_line_error(code, err, "lyr.smc", "TAGS")
        assert wall < TIME_BUDGET_S + 5 and rss < RSS_BUDGET_MB, (cmd, wall, rss)


def test_dense_score_within_budget_still_loads(tmp_path):
    """Files at the budgets' edges load: 200 000 short notes (5 bytes each, uncompressed, ~1 MB)
    within the time and memory budget of `test`."""
    n = 200_000
    rows = [(i // 4, 1, 40 + i % 40, 90, []) for i in range(n)]
    hdr = hf.header(duration=n / 4 * 0.005 + 1, tracks=[hf.track(n)])
    data = hf.build(hdr, [(hf.CHUNK_SCORE, b"\x00" + hf.score_stream([rows]))])
    assert len(data) < 1_100_000
    write(tmp_path, "dense.smc", data)
    code, err, wall, rss, out = semcodec(tmp_path, "test", "dense.smc", timeout=60)
    assert code == 0, err
    assert out.strip() == "dense.smc: ok"
    assert wall < TIME_BUDGET_S and rss < RSS_BUDGET_MB, (wall, rss)
    code, err, wall, rss, out = semcodec(tmp_path, "info", "--json", "dense.smc", timeout=60)
    assert code == 0, err
    info = json.loads(out)
    assert info["tracks"][0]["notes"] == n
    assert abs(info["tracks"][0]["bytes"]["score"] - (len(data) - len(hdr) - 14 - 24)) < 10
    assert wall < TIME_BUDGET_S and rss < RSS_BUDGET_MB, (wall, rss)


def test_writer_stores_what_the_reader_budgets_accept():
    """A stream that compresses beyond the expansion budget is stored uncompressed, so every
    file the writer makes loads; ordinary streams keep the smallest codec."""
    from semcodec.container.compression import _compress_smallest, _decompress, expansion_limit

    flat = bytes(2 << 20)  # 2 MiB of zeros: DEFLATE/LZMA shrink it ~1000x
    payload = _compress_smallest(flat)
    assert payload[0] == 0 and _decompress(payload, "x") == flat
    assert expansion_limit(len(payload) - 1) >= len(flat) or payload[0] == 0
    text = ("la la la " * 20000).encode()
    payload = _compress_smallest(text)
    assert payload[0] != 0 and len(payload) < len(text) // 20  # still compressed
    assert _decompress(payload, "x") == text


# --- 3: a drum one-shot whose audio declares an absurd rate --------------------------------

def _opus(seconds: float, rate: int = 24000, channels: int = 1) -> bytes:
    import io

    buf = io.BytesIO()
    t = np.arange(int(seconds * rate)) / rate
    y = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    sf.write(buf, np.repeat(y[:, None], channels, axis=1), rate, format="OGG", subtype="OPUS")
    return buf.getvalue()


@pytest.mark.parametrize("payload,message", [
    (hf.wav_bytes(1, 1000), "not opus"),
    (hf.wav_bytes(2**31 - 1, 1000), "not opus"),
    (b"OggS" + bytes(60), "cannot be decoded"),
    (_opus(3.0), "longer than its declared"),
])
def test_read_sample_checks_before_decoding(payload, message):
    smp = Sample(track=0, start=0.0, duration=0.3, sample_rate=24000, codec="opus",
                 data=payload, key=36)
    t0 = time.perf_counter()
    with pytest.raises(ContainerError, match=message):
        read_sample(smp)
    assert time.perf_counter() - t0 < 1.0


def test_read_sample_accepts_real_samples_and_caps_length():
    good = Sample(0, 0.0, 0.3, 24000, "opus", _opus(0.3), key=36)
    data, rate = read_sample(good)
    assert rate == 24000 and data.shape[1] == 1 and abs(data.shape[0] - 7200) < 100
    # a sample declaring an hour still decodes to at most MAX_SAMPLE_AUDIO_S
    long = Sample(0, 0.0, 3600.0, 24000, "opus", _opus(MAX_SAMPLE_AUDIO_S + 2), key=None)
    with pytest.raises(ContainerError, match="longer than"):
        read_sample(long)
    with pytest.raises(ContainerError, match="codec"):
        read_sample(Sample(0, 0.0, 0.3, 24000, "wav", hf.wav_bytes(24000, 100)))


def test_drum_track_with_hostile_oneshot_is_skipped_quickly():
    from semcodec.container import loads
    from semcodec.synth.neural import _decode_oneshot

    for rate in (1, 2**31 - 1):
        c = loads(hf.oneshot_file(hf.wav_bytes(rate, 20_000)))
        t0 = time.perf_counter()
        assert _decode_oneshot(c.samples[0], 44100) is None
        assert time.perf_counter() - t0 < 1.0


# --- 4: a tiny file declaring a day of audio -----------------------------------------------

def test_tiny_file_declaring_a_day_is_refused_in_one_line(tmp_path):
    write(tmp_path, "day.smc", hf.long_declared_file(86400.0, 8000))
    code, err, wall, _, _ = semcodec(tmp_path, "decode", "day.smc", "out.wav",
                                     "--engine", "fluidsynth", timeout=60)
    assert_one_line_error(code, err, "day.smc", "--max-duration")
    assert wall < 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["day.smc"]


def test_max_duration_option_lifts_and_sets_the_cap(tmp_path):
    write(tmp_path, "m.smc", hf.long_declared_file(20.0, 8000))
    code, err, _, _, _ = semcodec(tmp_path, "decode", "m.smc", "a.wav", "--engine", "fluidsynth",
                                  "--max-duration", "10")
    assert_one_line_error(code, err, "m.smc", "20 s", "--max-duration")
    code, err, _, _, _ = semcodec(tmp_path, "decode", "m.smc", "b.wav", "--engine", "fluidsynth",
                                  "--max-duration", "30")
    assert code == 0, err
    assert sf.info(str(tmp_path / "b.wav")).frames == 20 * 8000


# --- 6, 7: values the reader accepts must not break the engines and exporters ---------------

def test_timbre_gain_out_of_range_is_refused(tmp_path):
    write(tmp_path, "g.smc", hf.timbre_gain_file(65504.0))
    code, err, _, _, _ = semcodec(tmp_path, "test", "g.smc")
    assert_one_line_error(code, err, "g.smc", "gain", prefix="g.smc: ")
    write(tmp_path, "ok.smc", hf.timbre_gain_file(-12.5))
    code, err, _, _, _ = semcodec(tmp_path, "test", "ok.smc")
    assert code == 0, err


@pytest.mark.parametrize("fields", [
    {"tempo_bpm": 1.0}, {"tempo_bpm": 1.5}, {"tempo_bpm": 1000},
    {"time_signature": [64, 1]}, {"time_signature": [64, 64]},
    {"track_name": "ü€😀\x00\x1b" * 40}, {"key": "\x1b" * 64},
])
def test_exporters_accept_every_value_the_reader_accepts(tmp_path, fields):
    write(tmp_path, "e.smc", hf.edge_header_file(**dict(fields)))
    code, err, _, _, _ = semcodec(tmp_path, "export", "e.smc", "--midi", "e.mid",
                                  "--musicxml", "e.musicxml", "-q")
    assert code == 0, err
    mid = mido.MidiFile(str(tmp_path / "e.mid"))
    assert sum(1 for tr in mid.tracks for m in tr if m.type == "note_on" and m.velocity) == 2
    assert (tmp_path / "e.musicxml").read_text(encoding="utf-8").count("<note") >= 2


def test_musicxml_of_a_day_long_score_is_refused_in_one_line(tmp_path):
    rows = [(0, 100, 60, 100, []), (int(86000 / 0.005), 100, 64, 100, [])]
    hdr = hf.header(duration=86400.0, tracks=[hf.track(2)])
    write(tmp_path, "d.smc", hf.build(hdr, [(hf.CHUNK_SCORE, b"\x00" + hf.score_stream([rows]))]))
    code, err, wall, _, _ = semcodec(tmp_path, "export", "d.smc", "--musicxml", "d.musicxml")
    assert_one_line_error(code, err, "too long for MusicXML")
    assert wall < 10
    code, err, _, _, _ = semcodec(tmp_path, "export", "d.smc", "--midi", "d.mid")
    assert code == 0, err
    assert abs(mido.MidiFile(str(tmp_path / "d.mid")).length - 86000.5) < 1.0


# --- 8: control characters never reach the terminal ----------------------------------------

def _has_control(text: str) -> bool:
    return any(ord(ch) < 32 and ch not in "\n" or 0x7F <= ord(ch) <= 0x9F or ch == "\u202e"
               for ch in text)


def test_info_escapes_control_characters(tmp_path):
    write(tmp_path, "esc.smc", hf.escapes_file())
    code, err, _, _, out = semcodec(tmp_path, "info", "esc.smc")
    assert code == 0, err
    assert not _has_control(out), repr(out)
    assert "\\x1b[2J" in out and "\\u202e" in out  # shown, escaped
    code, err, _, _, out = semcodec(tmp_path, "info", "--json", "esc.smc")
    assert code == 0, err
    assert not _has_control(out)
    info = json.loads(out)
    assert info["encoder"] == "enc" + hf.NASTY  # the JSON value itself is exact
    # an error message quoting a hostile path is escaped too
    code, err, _, _, out = semcodec(tmp_path, "info", "no\x1b]0;x\x07such.smc")
    assert code == 2 and not any(_has_control(line) for line in err), err


# --- 9: a full disk while decoding ---------------------------------------------------------

def _small_fsize():
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


@pytest.mark.parametrize("out", ["x.wav", "x.flac", "-"])
def test_disk_full_during_decode_is_one_line(tmp_path, out):
    write(tmp_path, "ten.smc", hf.long_declared_file(10.0, 44100))
    if out == "-":
        with open(tmp_path / "stdout.wav", "wb") as fh:
            code, err, _, _, _ = semcodec(tmp_path, "decode", "ten.smc", "-", "--engine",
                                          "fluidsynth", preexec=_small_fsize, stdout=fh)
        assert_one_line_error(code, err, "<stdout>", "too large")
    else:
        code, err, _, _, _ = semcodec(tmp_path, "decode", "ten.smc", out, "--engine",
                                      "fluidsynth", preexec=_small_fsize)
        assert_one_line_error(code, err, out, "too large")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ten.smc"]  # no temp file left
