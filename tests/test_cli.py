"""The command line through click's CliRunner, in tmp_path."""

from __future__ import annotations

import json

import music21
import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

import semcodec
from semcodec import __version__
from semcodec.cli import cli


@pytest.fixture()
def runner():
    return CliRunner()


def run(runner, *args, input=None):
    return runner.invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


def test_version(runner):
    r = run(runner, "--version")
    assert r.exit_code == 0 and __version__ in r.output


def test_usage_error_exits_1(runner):
    r = run(runner, "encode", "--no-such-option", "x.wav")
    assert r.exit_code == 1 and "usage error" in r.output


def test_encode_info_test_decode_export(runner, encoded_chorale, tmp_path):
    wav, _, _ = encoded_chorale
    smc = tmp_path / "c.smc"
    r = run(runner, "encode", "--no-timbre", wav, smc)
    assert r.exit_code == 0, r.output
    assert smc.exists()

    r = run(runner, "info", smc)
    assert r.exit_code == 0 and "kbps" in r.output and "SCOR" in r.output and "track1" in r.output
    assert "parts" in r.output and "oneshots" in r.output
    r = run(runner, "info", "--json", smc)
    info = json.loads(r.stdout)
    assert info["bitrate_kbps"] <= 1.0 and info["tracks"][0]["notes"] > 10
    assert info["sample_rate"] == 44100
    # what each part costs, adding up to the file
    assert sum(p["bytes"] for p in info["parts"].values()) == info["bytes"]
    assert info["parts"]["score"]["bytes"] > 0 and info["parts"]["score"]["kbps"] > 0

    # one bitrate target; --max-kbps is its old name
    for flag, kbps in (("--kbps", 0.3), ("--max-kbps", 0.3)):
        low = tmp_path / f"low{flag}.smc"
        r = run(runner, "encode", "--no-timbre", flag, kbps, wav, low)
        assert r.exit_code == 0, r.output
        c = semcodec.load(low)
        assert not [s for s in c.samples if s.key is None]  # no room for an excerpt

    r = run(runner, "test", smc)
    assert r.exit_code == 0 and "ok" in r.output

    out = tmp_path / "c.flac"
    r = run(runner, "decode", "--engine", "fluidsynth", smc, out)
    assert r.exit_code == 0, r.output
    assert sf.info(out).frames == sf.info(wav).frames

    r = run(runner, "export", smc, "--midi", tmp_path / "c.mid", "--musicxml", tmp_path / "c.musicxml")
    assert r.exit_code == 0, r.output
    parsed = music21.converter.parse(str(tmp_path / "c.musicxml"))
    assert len(parsed.flatten().notes) > 10


def test_refuses_to_overwrite_without_force(runner, short_wav, tmp_path):
    out = tmp_path / "o.smc"
    out.write_bytes(b"keep me")
    r = run(runner, "encode", "--no-timbre", short_wav, out)
    assert r.exit_code == 2 and "already exists" in r.output
    assert out.read_bytes() == b"keep me"
    r = run(runner, "encode", "--no-timbre", "-f", short_wav, out)
    assert r.exit_code == 0 and out.read_bytes()[:4] != b"keep"


def test_default_output_name(runner, short_wav):
    r = run(runner, "encode", "--no-timbre", short_wav)
    assert r.exit_code == 0
    assert short_wav.with_suffix(".smc").exists()


def test_stdin_to_stdout(runner, short_wav, tmp_path):
    r = runner.invoke(cli, ["encode", "--no-timbre", "-q", "-", "-"], input=short_wav.read_bytes())
    assert r.exit_code == 0
    smc = r.stdout_bytes
    assert smc[:4] == b"\x89SMC"
    r = runner.invoke(cli, ["decode", "--engine", "fluidsynth", "-q", "-", "-"], input=smc)
    assert r.exit_code == 0
    (tmp_path / "o.wav").write_bytes(r.stdout_bytes)
    assert sf.info(tmp_path / "o.wav").frames == sf.info(short_wav).frames


@pytest.mark.parametrize("content,needle", [
    (b"", "empty"),
    (b"this is not audio at all" * 10, "not a readable audio file"),
])
def test_bad_audio_inputs(runner, tmp_path, content, needle):
    src = tmp_path / "in.wav"
    src.write_bytes(content)
    out = tmp_path / "out.smc"
    r = run(runner, "encode", src, out)
    assert r.exit_code == 2
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and str(src) in lines[0] and needle in lines[0]
    assert "Traceback" not in r.output
    assert not out.exists() and list(tmp_path.iterdir()) == [src]


def test_zero_samples_and_bad_rate(runner, tmp_path):
    empty = tmp_path / "zero.wav"
    sf.write(empty, np.zeros((0,), np.float32), 44100)
    r = run(runner, "encode", empty, tmp_path / "a.smc")
    assert r.exit_code == 2 and "no audio samples" in r.output
    low = tmp_path / "low.wav"
    sf.write(low, np.zeros(100, np.float32), 1000)
    r = run(runner, "encode", low, tmp_path / "b.smc")
    assert r.exit_code == 2 and "sample rate" in r.output
    assert not (tmp_path / "a.smc").exists() and not (tmp_path / "b.smc").exists()


def test_corrupt_and_future_smc(runner, short_wav, tmp_path):
    smc = tmp_path / "s.smc"
    assert run(runner, "encode", "--no-timbre", short_wav, smc).exit_code == 0
    data = smc.read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    bad = tmp_path / "flipped.smc"
    bad.write_bytes(bytes(flipped))
    r = run(runner, "decode", bad, tmp_path / "x.wav")
    assert r.exit_code == 2 and str(bad) in r.output and not (tmp_path / "x.wav").exists()
    r = run(runner, "test", bad)
    assert r.exit_code == 2
    trunc = tmp_path / "trunc.smc"
    trunc.write_bytes(data[:-5])
    assert run(runner, "test", trunc).exit_code == 2
    future = bytearray(data)
    future[4] = 2
    fut = tmp_path / "future.smc"
    fut.write_bytes(bytes(future))
    r = run(runner, "info", fut)
    assert r.exit_code == 2 and "version" in r.output


def test_unsupported_output_extension(runner, encoded_chorale, tmp_path):
    _, smc, _ = encoded_chorale
    r = run(runner, "decode", smc, tmp_path / "x.aiff")
    assert r.exit_code == 1 and ".aiff" in r.output


def test_decode_edits(runner, encoded_chorale, tmp_path):
    _, smc, _ = encoded_chorale
    base = tmp_path / "base.wav"
    assert run(runner, "decode", "--engine", "fluidsynth", smc, base).exit_code == 0
    up = tmp_path / "up.wav"
    r = run(runner, "decode", "--engine", "fluidsynth", "--transpose", "12", "--program", "1=73",
            "--tempo", "1.5", smc, up)
    assert r.exit_code == 0, r.output
    assert abs(sf.info(up).frames - sf.info(base).frames / 1.5) <= 1
    r = run(runner, "decode", "--program", "9=1", smc, tmp_path / "z.wav")
    assert r.exit_code == 1 and "no track 9" in r.output


def _stem_files(tmp_path):
    from conftest import tone

    sr = 44100
    low = np.zeros(sr * 6, np.float32)
    high = np.zeros(sr * 6, np.float32)
    for i in range(10):
        a = int((0.1 + i * 0.55) * sr)
        x = tone(40 + (i % 5), 0.5)
        low[a:a + x.shape[0]] += x
        y = tone(72 + (i % 7), 0.4, harmonics=3)
        high[a:a + y.shape[0]] += y
    paths = {}
    for name, sig in (("bass", low), ("lead vocals", high)):
        paths[name] = tmp_path / f"{name.replace(' ', '_')}.wav"
        sf.write(paths[name], sig, sr)
    return paths


def test_stems_encode_to_named_tracks_and_decode_to_stem_files(runner, tmp_path):
    paths = _stem_files(tmp_path)
    smc = tmp_path / "band.smc"
    lyr = tmp_path / "lyrics.txt"
    lyr.write_text("Twin-kle twin-kle lit-tle star\nhow I won-der\n", encoding="utf-8")
    r = run(runner, "encode", "--no-timbre", "--stem", f"bass={paths['bass']}",
            "--stem", f"lead vocals={paths['lead vocals']}", "--lyrics", lyr, smc)
    assert r.exit_code == 0, r.output
    info = json.loads(run(runner, "info", "--json", smc).output)
    assert [t["name"] for t in info["tracks"]] == ["bass", "lead vocals"]
    assert all(t["notes"] > 0 for t in info["tracks"])
    assert info["tracks"][1]["program"] == 52  # a voice stem starts from Choir Aahs
    assert "lyrics" in info["texts"]
    per_track = sum(t["bytes"]["total"] for t in info["tracks"])
    assert 0 < per_track <= info["bytes"]
    # decode: the mix plus one file per track, which add up to the mix (the pure synthesis:
    # the residual, when the file has one, is in the mix only)
    out, stems = tmp_path / "mix.wav", tmp_path / "stems"
    r = run(runner, "decode", "--engine", "fluidsynth", "--no-residual", smc, out,
            "--stems", stems)
    assert r.exit_code == 0, r.output
    files = sorted(p.name for p in stems.iterdir())
    assert files == ["01-bass.wav", "02-lead_vocals.wav"]
    mix, _ = sf.read(out, dtype="float32")
    parts = [sf.read(stems / f, dtype="float32")[0] for f in files]
    assert all(p.shape == mix.shape and np.abs(p).max() > 0.01 for p in parts)
    assert np.abs(parts[0] + parts[1] - mix).max() < 0.02
    # stems are not overwritten without -f
    r = run(runner, "decode", "--engine", "fluidsynth", smc, tmp_path / "m2.wav", "--stems", stems)
    assert r.exit_code == 2 and "already exists" in r.output
    # MusicXML carries the lyrics on the voice part
    xml = tmp_path / "s.musicxml"
    assert run(runner, "export", smc, "--musicxml", xml).exit_code == 0
    parsed = music21.converter.parse(str(xml))
    # the voice is the last part (the bass, program 0 without timbre fitting, is written on a
    # piano's grand staff: two music21 parts)
    words = [ly.text for n in parsed.parts[-1].flatten().notes for ly in n.lyrics]
    assert "<work-title>band</work-title>" in xml.read_text()  # no title tag: the file's name
    assert words[:3] == ["Twin", "kle", "twin"]
    assert not any(n.lyrics for n in parsed.parts[0].flatten().notes)


def test_stem_usage_errors(runner, tmp_path):
    paths = _stem_files(tmp_path)
    out = tmp_path / "x.smc"
    r = run(runner, "encode", "--stem", "bass", out)
    assert r.exit_code == 1 and "NAME=FILE" in r.output
    r = run(runner, "encode", "--stem", f"a={paths['bass']}", "--stem", f"a={paths['bass']}", out)
    assert r.exit_code == 1 and "differ" in r.output
    r = run(runner, "encode", "--stem", f"a={paths['bass']}", paths["bass"], out)
    assert r.exit_code == 1 and "exactly one argument" in r.output
    r = run(runner, "encode", "--stem", f"a={tmp_path / 'missing.wav'}", out)
    assert r.exit_code == 2 and "missing.wav" in r.output
    r = run(runner, "encode", "--tracks", "many", paths["bass"], out)
    assert r.exit_code == 1 and "--tracks" in r.output
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00bad")
    r = run(runner, "encode", "--lyrics", bad, paths["bass"], out)
    assert r.exit_code == 2 and "bad.txt" in r.output and "UTF-8" in r.output
    assert not out.exists()


def _small_smc(tmp_path):
    from semcodec.events import Note, Score, Track
    from semcodec.api import Container

    notes = [Note(0.1 + 0.3 * k, 0.35 + 0.3 * k, 60 + k % 5, 90) for k in range(8)]
    c = Container(duration=3.0, sample_rate=22050, channels=1, n_samples=66150,
                  loudness_lufs=-20.0, score=Score(tracks=(Track("t").with_notes(notes),)))
    smc = tmp_path / "s.smc"
    c.save(smc)
    return smc


def test_decode_to_stdout_streams_the_same_wav(runner, tmp_path):
    smc = _small_smc(tmp_path)
    out = tmp_path / "s.wav"
    assert run(runner, "decode", "-q", "--engine", "neural", smc, out).exit_code == 0
    r = runner.invoke(cli, ["decode", "-q", "--engine", "neural", str(smc), "-"])
    assert r.exit_code == 0
    assert r.stdout_bytes == out.read_bytes()


def test_play_pipes_wav_to_the_player(runner, tmp_path):
    import sys

    smc = _small_smc(tmp_path)
    got = tmp_path / "played.wav"
    player = (f"{sys.executable} -c \"import sys; open({str(got)!r}, 'wb')"
              ".write(sys.stdin.buffer.read())\"")
    r = run(runner, "play", "--engine", "neural", "--player", player, smc)
    assert r.exit_code == 0, r.output
    ref = tmp_path / "ref.wav"
    run(runner, "decode", "-q", "--engine", "neural", smc, ref)
    assert got.read_bytes() == ref.read_bytes()
    # a player that fails: one clean line, exit status 2
    r = run(runner, "play", "--engine", "neural", "--player", f"{sys.executable} -c \"import sys; "
            "sys.stderr.write('no audio device\\n'); sys.exit(3)\"", smc)
    assert r.exit_code == 2 and "no audio device" in r.output and "Traceback" not in r.output


def test_play_without_any_output_is_a_clean_error(runner, tmp_path, monkeypatch):
    import builtins

    smc = _small_smc(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))  # no player on PATH
    real_import = builtins.__import__

    def no_sounddevice(name, *a, **k):
        if name == "sounddevice":
            raise ImportError("no sounddevice")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_sounddevice)
    r = run(runner, "play", smc)
    assert r.exit_code == 2 and "no audio output" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_device_cuda_without_cuda_is_one_clean_line(runner, tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    smc = _small_smc(tmp_path)
    r = run(runner, "decode", "--engine", "neural", "--device", "cuda", smc, tmp_path / "o.wav")
    assert r.exit_code == 2 and "cuda" in r.output.lower()
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "o.wav").exists()


# --- issue 13 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["o.wav", "o.FLAC", "o.mp3"])
def test_encode_refuses_an_audio_output_name(runner, short_wav, tmp_path, name):
    out = tmp_path / name
    r = run(runner, "encode", "--no-timbre", short_wav, out)
    assert r.exit_code == 1
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and name in lines[0] and "encode writes a .smc container" in lines[0]
    assert not out.exists()


def test_export_writes_mid_and_musicxml_beside_the_input(runner, encoded_chorale, tmp_path):
    import shutil

    _, smc, _ = encoded_chorale
    x = tmp_path / "x.smc"
    shutil.copy(smc, x)
    r = run(runner, "export", x)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "x.mid").read_bytes()[:4] == b"MThd"
    assert len(music21.converter.parse(str(tmp_path / "x.musicxml")).flatten().notes) > 10
    r = run(runner, "export", x)  # outputs exist now: refused without -f
    assert r.exit_code == 2 and "already exists" in r.output
    r = run(runner, "export", "-", input=x.read_bytes())
    assert r.exit_code == 1 and "stdin needs --midi" in r.output


def test_summary_counts_wall_clock_since_process_start(tmp_path):
    import subprocess
    import sys

    code = ("import time; time.sleep(1.2)\n"
            "from semcodec.cli import _since_process_start, _timing\n"
            "print(_since_process_start()); print(_timing(10.0))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.splitlines()
    assert float(out[0]) >= 1.2  # the sleep before the import is counted
    assert out[1].endswith("x real time") and "s wall clock" in out[1]


def test_encode_summary_says_wall_clock(runner, short_wav, tmp_path):
    r = run(runner, "encode", "--no-timbre", short_wav, tmp_path / "o.smc")
    assert r.exit_code == 0 and "s wall clock" in r.output and "x real time" in r.output


def test_read_only_output_folder_fails_before_encoding(runner, short_wav, tmp_path, monkeypatch):
    import os
    import tempfile

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: answer as a read-only folder would
        real = tempfile.mkstemp

        def mkstemp(*a, dir=None, **k):
            if dir is not None and os.fspath(dir) == str(ro):
                raise PermissionError(13, "Permission denied")
            return real(*a, dir=dir, **k)

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    from semcodec import api

    def must_not_run(*a, **k):
        raise AssertionError("encoded before checking the output folder")

    monkeypatch.setattr(api, "encode", must_not_run)
    r = run(runner, "encode", "--no-timbre", short_wav, ro / "o.smc")
    assert r.exit_code == 2 and "cannot write into" in r.output and "Permission denied" in r.output
    assert list(ro.iterdir()) == []


def test_stdin_is_bounded_for_encode_and_decode(runner, monkeypatch):
    from semcodec import constants

    monkeypatch.setattr(constants, "MAX_STDIN_AUDIO_BYTES", 1 << 20)
    monkeypatch.setattr(constants, "MAX_STDIN_SMC_BYTES", 1 << 20)
    zeros = bytes((1 << 20) + 1)
    r = runner.invoke(cli, ["encode", "-", "-"], input=zeros)
    assert r.exit_code == 2 and "more than 1 MiB of audio on stdin" in r.output
    r = runner.invoke(cli, ["decode", "-", "-"], input=zeros)
    assert r.exit_code == 2 and "more than 1 MiB of .smc data on stdin" in r.output


def test_decode_to_opus_by_extension(runner, encoded_chorale, tmp_path):
    _, smc, _ = encoded_chorale
    out = tmp_path / "c.opus"
    r = run(runner, "decode", "--engine", "fluidsynth", smc, out)
    assert r.exit_code == 0, r.output
    assert sf.info(out).samplerate == 48000 and "at 48000 Hz" in r.output


def test_make_install_puts_the_cli_on_a_path(tmp_path):
    # issue 13 item 16: after make demo the user must find the command
    import shutil
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    venv_cli = root / ".venv" / "bin" / "semcodec"
    if shutil.which("make") is None or not venv_cli.exists():
        pytest.skip("needs make and the project's .venv")
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert ".venv/bin/semcodec" in readme and "make install" in readme
    bindir = tmp_path / "bin"
    # -o: take the installed venv as up to date (no reinstall from here)
    cmd = ["make", "-s", "-C", str(root), "-o", ".venv/.semcodec-installed",
           f"BINDIR={bindir}"]
    r = subprocess.run([*cmd, "install"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    link = bindir / "semcodec"
    assert link.is_symlink() and link.resolve() == venv_cli.resolve()
    v = subprocess.run([str(link), "--version"], capture_output=True, text=True, timeout=60)
    assert v.returncode == 0 and "semcodec" in v.stdout
    r = subprocess.run([*cmd, "uninstall"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not link.exists()
    link.write_text("someone else's file")  # never overwritten
    r = subprocess.run([*cmd, "install"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and link.read_text() == "someone else's file"


def test_smc_commands_refuse_a_fifo(runner, tmp_path):
    import os

    fifo = tmp_path / "x.smc"
    os.mkfifo(fifo)
    for cmd in (["decode", fifo, tmp_path / "o.wav"], ["info", fifo], ["test", fifo]):
        r = run(runner, *cmd)  # must not block waiting for a writer
        assert r.exit_code == 2 and "named pipe" in r.output, r.output


def test_info_names_the_neural_model_and_whether_it_is_installed(runner, tmp_path):
    import dataclasses

    from semcodec.synth.weights import LEGACY_NEURAL_MODEL, current_model

    smc = _small_smc(tmp_path)
    c = semcodec.load(smc)
    cases = {"": (LEGACY_NEURAL_MODEL, True), current_model(): (current_model(), True),
             "0123456789ab": ("0123456789ab", False)}
    for key, (model, installed) in cases.items():
        f = tmp_path / f"m{key or 'legacy'}.smc"
        dataclasses.replace(c, neural_model=key).save(f)
        info = json.loads(run(runner, "info", "--json", f).stdout)
        assert info["neural_model"] == {"id": model, "named_in_file": bool(key),
                                        "installed": installed}
        text = run(runner, "info", f).output
        assert f"fitted to model {model}" in text
        assert ("not installed" in text) is not installed and ("legacy" in text) is (not key)


def test_the_process_ends_at_once_after_a_success_with_its_output_flushed(tmp_path):
    """As the process's command (``main()``), a success ends with ``os._exit`` once stdout and
    stderr are flushed: a decode piped to stdout arrives whole; atexit handlers do not run (the
    interpreter's teardown is skipped); an error exits as before."""
    import subprocess
    import sys

    smc = _small_smc(tmp_path)
    wav = tmp_path / "s.wav"
    code = ("import atexit, sys; atexit.register(lambda: print('TEARDOWN', file=sys.stderr))\n"
            "from semcodec.cli import main; main()")
    ok = subprocess.run([sys.executable, "-c", code, "decode", "-q", "--engine", "neural",
                         str(smc), "-"], capture_output=True, check=False, timeout=120)
    assert ok.returncode == 0 and b"TEARDOWN" not in ok.stderr
    r = subprocess.run([sys.executable, "-c", code, "decode", "-q", "--engine", "neural",
                        str(smc), str(wav)], capture_output=True, check=False, timeout=120)
    assert r.returncode == 0 and ok.stdout == wav.read_bytes()
    bad = subprocess.run([sys.executable, "-c", code, "decode", str(tmp_path / "none.smc"),
                          str(tmp_path / "x.wav")], capture_output=True, check=False,
                         timeout=120)
    assert bad.returncode == 2 and b"TEARDOWN" in bad.stderr and b"none.smc" in bad.stderr
