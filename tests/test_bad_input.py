"""Hostile and broken inputs through the real CLI (``semcodec.cli.main``, in-process).

Every case must end in either a clean one-line error (``semcodec: error: <file>: <problem>``,
exit 2) or a valid output; in every case the input file is byte-identical afterwards and the
output folder holds no partial or temporary file.  All inputs are generated here.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from semcodec import cli
from semcodec.container import SmcFile as Container
from semcodec.events import Note, Score, Track
from smc_bytes import build, split

SR = 44100


# --- helpers -------------------------------------------------------------------------------

def _sha(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _main(capsys, *args: str) -> tuple[int, list[str], str]:
    cli.STATE.verbose, cli.STATE.quiet = 0, False
    with pytest.raises(SystemExit) as exc:
        cli.main(list(args))
    out = capsys.readouterr()
    code = exc.value.code if isinstance(exc.value.code, int) else 1
    return code, out.err.strip().splitlines(), out.out


def _check(capsys, args: list[str], inp: Path, out_dir: Path, out: Path | None) -> int:
    """Run the CLI; assert a clean error or a valid output, an unchanged input, no debris."""
    before = _sha(inp)
    listing = sorted(p.name for p in out_dir.iterdir())
    code, err, _ = _main(capsys, *args)
    assert _sha(inp) == before, f"{inp} was modified"
    assert not any("Traceback" in line for line in err), err
    after = sorted(p.name for p in out_dir.iterdir())
    if code == 0 and out is None:  # a command that writes no file (info)
        assert after == listing
    elif code == 0:
        assert out.is_file() and out.stat().st_size > 0
        assert [n for n in after if n not in listing] == [out.name]
        _assert_valid(out)
    else:
        assert code == 2, (code, err)
        assert len(err) == 1 and err[0].startswith("semcodec: error: "), err
        assert "internal error" not in err[0], err
        assert after == listing, f"debris left: {set(after) - set(listing)}"
    return code


def _assert_valid(path: Path) -> None:
    if path.suffix == ".smc":
        Container.load(path)
    elif path.suffix == ".mid":
        assert path.read_bytes()[:4] == b"MThd"
    else:
        info = sf.info(path)
        assert info.frames > 0 and info.channels == 1
        data, _ = sf.read(path, dtype="float32")
        assert np.all(np.isfinite(data))


def _small_smc() -> bytes:
    notes = (Note(0.05, 0.4, 60, 100), Note(0.5, 0.95, 64, 90))
    c = Container(duration=1.0, sample_rate=8000, n_samples=8000, loudness_lufs=-20.0,
                  score=Score(tracks=(Track("lead", 0, False, notes),)))
    return c.to_bytes()


def _rebuild(header: dict | bytes, chunks: list[tuple[bytes, bytes]], *, major: int = 1,
             minor: int = 0) -> bytes:
    """A file with correct CRCs around any header (dict or raw bytes) and chunk payloads."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return build(raw, chunks, major=major, minor=minor)


def _parts(data: bytes) -> tuple[dict, list[tuple[bytes, bytes]]]:
    header, chunks = split(data)
    return json.loads(header), chunks


@pytest.fixture()
def dirs(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    return tmp_path / "in", tmp_path / "out"


# --- .smc inputs (decode and test) -----------------------------------------------------------

def test_truncated_at_every_byte(dirs, capsys):
    src, out = dirs
    data = _small_smc()
    paths = []
    for k in range(len(data)):
        p = src / f"t{k:04d}.smc"
        p.write_bytes(data[:k])
        paths.append(p)
    # `semcodec test` on all of them at once: one line per file, exit 2
    code, err, stdout = _main(capsys, "test", *map(str, paths))
    assert code == 2 and stdout == ""
    assert len(err) == len(paths)
    for p, line in zip(paths, err):
        assert line.startswith(f"{p}: ") and "Traceback" not in line
    for p in paths:
        _check(capsys, ["decode", str(p), str(out / "x.wav"), "--engine", "fluidsynth"], p, out,
               None)
    # the whole file is fine
    whole = src / "whole.smc"
    whole.write_bytes(data)
    assert _main(capsys, "test", str(whole))[0] == 0
    assert _check(capsys, ["decode", str(whole), str(out / "w.wav"), "--engine", "fluidsynth"],
                  whole, out, out / "w.wav") == 0


def test_random_bit_flips(dirs, capsys):
    src, out = dirs
    data = _small_smc()
    rng = random.Random(1234)
    for i in range(150):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(buf))
            buf[pos] ^= 1 << rng.randrange(8)
        p = src / f"f{i:03d}.smc"
        p.write_bytes(bytes(buf))
        code, err, _ = _main(capsys, "test", str(p))
        assert code in (0, 2) and len(err) == (code == 2)
        dst = out / f"f{i:03d}.wav"
        _check(capsys, ["decode", str(p), str(dst), "--engine", "fluidsynth"], p, out, dst)


def _smc_case(name: str) -> bytes:
    data = _small_smc()
    header, chunks = _parts(data)
    hlen = struct.unpack_from("<I", data, 6)[0]
    if name == "header length 0xFFFFFFFF":
        return data[:6] + struct.pack("<I", 0xFFFFFFFF) + data[10:]
    if name == "header length past the end":
        return data[:6] + struct.pack("<I", len(data)) + data[10:]
    if name == "chunk length 0xFFFFFFFF":
        pos = 10 + hlen + 4
        return data[:pos + 4] + struct.pack("<I", 0xFFFFFFFF) + data[pos + 8:]
    if name == "chunk length 16 MiB, short file":
        pos = 10 + hlen + 4
        return data[:pos + 4] + struct.pack("<I", 16 * 1024 * 1024) + data[pos + 8:]
    if name == "n_samples 10**18 (CRC ok)":
        return _rebuild({**header, "n_samples": 10**18, "duration": 10**18 / 8000}, chunks)
    if name == "sample rate 10**9 (CRC ok)":
        return _rebuild({**header, "sample_rate": 10**9}, chunks)
    if name == "notes count 10**12 (CRC ok)":
        tracks = [dict(header["tracks"][0], notes=10**12)]
        return _rebuild({**header, "tracks": tracks}, chunks)
    if name == "70 tracks declared (CRC ok)":
        return _rebuild({**header, "tracks": [header["tracks"][0]] * 70}, chunks)
    if name == "SCOR payload of varints 2**63 (CRC ok)":
        return _rebuild(header, [(b"SCOR", b"\x00" + b"\xff" * 9 + b"\x7f" + b"\xff" * 200)])
    if name == "huge JSON header (70 kB)":
        return _rebuild({**header, "comment": "x" * 70_000}, chunks)
    if name == "large JSON header (60 kB, under the cap)":
        return _rebuild({**header, "comment": "x" * 60_000}, chunks)
    if name == "deeply nested JSON header":
        return _rebuild(b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}", chunks)
    if name == "nested JSON at the depth cap":
        return _rebuild({**header, "deep": [[[[[[1]]]]]]}, chunks)
    if name == "JSON header that is a list":
        return _rebuild(b"[1,2,3]", chunks)
    if name == "JSON header with NaN":
        text = json.dumps({**header, "loudness_lufs": -20.5})
        assert '"loudness_lufs": -20.5' in text
        return _rebuild(text.replace('"loudness_lufs": -20.5', '"loudness_lufs": NaN').encode(),
                        chunks)
    if name == "header not UTF-8":
        return _rebuild(b'{"format":"\xff\xfe"}', chunks)
    if name == "wrong magic":
        return b"\x89PNG" + data[4:]
    if name == "future major version 2.0":
        return _rebuild(header, chunks, major=2)
    if name == "future minor version 1.7":
        return _rebuild(header, chunks, minor=7)
    if name == "trailing garbage":
        return data + b"\x00garbage"
    if name == "no END chunk":
        return data[:-12]
    if name == "duplicate SCOR chunk":
        return _rebuild(header, chunks + chunks)
    if name == "unknown chunk type (skipped)":
        return _rebuild(header, chunks + [(b"ZZZZ", b"hello")])
    if name == "a WAV file named .smc":
        import io

        buf = io.BytesIO()
        sf.write(buf, np.zeros(800, np.float32), 8000, format="WAV")
        return buf.getvalue()
    if name == "empty file":
        return b""
    raise KeyError(name)


SMC_CASES = [
    "header length 0xFFFFFFFF", "header length past the end", "chunk length 0xFFFFFFFF",
    "chunk length 16 MiB, short file", "n_samples 10**18 (CRC ok)", "sample rate 10**9 (CRC ok)",
    "notes count 10**12 (CRC ok)", "70 tracks declared (CRC ok)",
    "SCOR payload of varints 2**63 (CRC ok)", "huge JSON header (70 kB)",
    "large JSON header (60 kB, under the cap)", "deeply nested JSON header",
    "nested JSON at the depth cap", "JSON header that is a list", "JSON header with NaN",
    "header not UTF-8", "wrong magic", "future major version 2.0", "future minor version 1.7",
    "trailing garbage", "no END chunk", "duplicate SCOR chunk", "unknown chunk type (skipped)",
    "a WAV file named .smc", "empty file",
]


@pytest.mark.parametrize("case", SMC_CASES)
def test_bad_smc(case, dirs, capsys):
    src, out = dirs
    p = src / "in.smc"
    p.write_bytes(_smc_case(case))
    code, err, _ = _main(capsys, "test", str(p))
    assert code in (0, 2) and (code == 0 or (len(err) == 1 and err[0].startswith(f"{p}: ")))
    for cmd in (["decode", str(p), str(out / "o.wav"), "--engine", "fluidsynth"],
                ["info", str(p)], ["export", str(p), "--midi", str(out / "o.mid")]):
        dst = out / "o.wav" if cmd[0] == "decode" else out / "o.mid" if cmd[0] == "export" else None
        got = _check(capsys, cmd, p, out, dst)
        if got == 0 and dst is not None:
            dst.unlink()
    if case in ("header length 0xFFFFFFFF", "wrong magic", "future major version 2.0",
                "huge JSON header (70 kB)", "deeply nested JSON header", "empty file",
                "n_samples 10**18 (CRC ok)", "a WAV file named .smc"):
        assert code == 2


# --- audio inputs (encode) ---------------------------------------------------------------------

def _wav_header(sr: int, channels: int, n_frames: int, bits: int = 16) -> bytes:
    """A canonical PCM WAV header written by hand (for rates libsndfile refuses to write)."""
    block = channels * bits // 8
    data_len = n_frames * block
    return (b"RIFF" + struct.pack("<I", 36 + data_len) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sr, sr * block, block, bits)
            + b"data" + struct.pack("<I", data_len))


def _audio_case(name: str, path: Path) -> None:
    t = np.arange(int(0.4 * SR)) / SR
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    if name == "text file named .wav":
        path.write_text("hello, this is not audio\n" * 50)
    elif name == "empty file":
        path.write_bytes(b"")
    elif name == "zero samples":
        sf.write(path, np.zeros(0, np.float32), SR, subtype="PCM_16")
    elif name == "NaN samples (float WAV)":
        bad = tone.copy()
        bad[1000] = np.nan
        sf.write(path, bad, SR, subtype="FLOAT")
    elif name == "inf samples (float WAV)":
        bad = tone.copy()
        bad[-1] = np.inf
        sf.write(path, bad, SR, subtype="FLOAT")
    elif name == "sample rate 1 Hz":
        pcm = (tone[:400] * 32767).astype("<i2").tobytes()
        path.write_bytes(_wav_header(1, 1, 400) + pcm)
    elif name == "sample rate 400 kHz":
        sf.write(path, np.tile(tone, 2), 400_000, subtype="PCM_16")
    elif name == "32 channels":
        sf.write(path, np.tile(tone[:, None], (1, 32)) / 2, SR, subtype="PCM_16")
    elif name == "65 channels":
        pcm = np.zeros((100, 65), "<i2").tobytes()
        path.write_bytes(_wav_header(SR, 65, 100) + pcm)
    elif name == "WAV header claims more data than present":
        pcm = (tone * 32767).astype("<i2").tobytes()
        path.write_bytes(_wav_header(SR, 1, len(tone) * 10) + pcm)
    elif name == "WAV cut in the header":
        path.write_bytes(_wav_header(SR, 1, 100)[:30])
    elif name == "random bytes named .flac":
        path.write_bytes(random.Random(7).randbytes(5000))
    elif name == "FLAC with flipped bytes":
        import io

        buf = io.BytesIO()
        sf.write(buf, tone, SR, format="FLAC")
        data = bytearray(buf.getvalue())
        for i in range(200, len(data), 97):
            data[i] ^= 0x55
        path.write_bytes(bytes(data))
    elif name == "an .smc file named .wav":
        path.write_bytes(_small_smc())
    else:
        raise KeyError(name)


AUDIO_CASES = {  # name: (file name, must be a clean error)
    "text file named .wav": ("in.wav", True),
    "empty file": ("in.wav", True),
    "zero samples": ("in.wav", True),
    "NaN samples (float WAV)": ("in.wav", True),
    "inf samples (float WAV)": ("in.wav", True),
    "sample rate 1 Hz": ("in.wav", True),
    "sample rate 400 kHz": ("in.wav", True),
    "32 channels": ("in.wav", False),
    "65 channels": ("in.wav", True),
    "WAV header claims more data than present": ("in.wav", False),
    "WAV cut in the header": ("in.wav", True),
    "random bytes named .flac": ("in.flac", True),
    "FLAC with flipped bytes": ("in.flac", False),
    "an .smc file named .wav": ("in.wav", True),
}


@pytest.mark.parametrize("case", list(AUDIO_CASES))
def test_bad_audio(case, dirs, capsys):
    src, out = dirs
    name, must_fail = AUDIO_CASES[case]
    p = src / name
    _audio_case(case, p)
    dst = out / "o.smc"
    code = _check(capsys, ["encode", str(p), str(dst), "--no-timbre", "--no-samples"], p, out, dst)
    if must_fail:
        assert code == 2
    if case == "32 channels":  # downmixed, and the original channel count is recorded
        assert code == 0 and Container.load(dst).channels == 32


def test_missing_and_directory_inputs(dirs, capsys):
    src, out = dirs
    for cmd in ("encode", "decode", "info", "test"):
        for p in (src / "nope.wav", src):
            outs = {"encode": [str(out / "o.smc")], "decode": [str(out / "o.wav")]}
            args = [cmd, str(p), *outs.get(cmd, [])]
            code, err, _ = _main(capsys, *args)
            assert code in (1, 2) and len(err) == 1, (cmd, p, err)
            assert err[0].startswith(("semcodec: error: ", f"{p}: ")), err
    assert list(out.iterdir()) == []


def test_loudness_meter_agrees_with_pyloudnorm():
    """The block-wise BS.1770 meter (memory-lean for long inputs) matches pyloudnorm."""
    import warnings

    import pyloudnorm

    from semcodec.synth import dsp

    rng = np.random.default_rng(3)
    for sr in (8000, 44100, 48000):
        t = np.arange(int(5.3 * sr)) / sr
        x = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 0.5 * t))).astype(np.float32)
        x[: sr] *= 0.001  # a quiet second: exercises the relative gate
        noise = (0.05 * rng.standard_normal(int(2.2 * sr))).astype(np.float32)
        short = (0.2 * rng.standard_normal(int(0.2 * sr))).astype(np.float32)
        for sig in (x, noise, short):
            padded = np.pad(sig, (0, max(0, int(0.4 * sr) + 1 - sig.size))).astype(np.float64)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = pyloudnorm.Meter(sr).integrated_loudness(padded)
            assert dsp.integrated_loudness(sig, sr) == pytest.approx(ref, abs=0.05)
    assert dsp.integrated_loudness(np.zeros(44100, np.float32), 44100) is None
    assert dsp.integrated_loudness((1e-6 * rng.standard_normal(44100)).astype(np.float32),
                                   44100) is None
