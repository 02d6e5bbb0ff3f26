"""semcodec.audio: canonical Ogg/Opus bytes for samples."""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf

from semcodec.audio import MINIMAL_OPUS_TAGS, canonical_ogg


def _opus(seconds: float, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    x = (0.2 * rng.standard_normal(int(24000 * seconds))).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, 24000, format="OGG", subtype="OPUS", compression_level=1.0)
    return buf.getvalue()


def _pages(data: bytes) -> list[bytes]:
    pages, pos = [], 0
    while pos < len(data):
        assert data[pos:pos + 4] == b"OggS"
        n = data[pos + 26]
        size = 27 + n + sum(data[pos + 27:pos + 27 + n])
        pages.append(data[pos:pos + size])
        pos += size
    return pages


def test_canonical_ogg_is_small_valid_and_decodes_to_the_same_audio():
    raw = _opus(0.4)
    small = canonical_ogg(raw)
    assert len(small) < len(raw) - 500  # libsndfile's padded comment header is gone
    pages = _pages(small)
    assert pages[1][27 + 1:] == MINIMAL_OPUS_TAGS
    for page in pages:  # every page CRC is right (the CRC field counts as zero)
        crc = struct.unpack_from("<I", page, 22)[0]
        blank = page[:22] + b"\0\0\0\0" + page[26:]
        assert crc == _ogg_crc(blank)
    a, sr_a = sf.read(io.BytesIO(raw), dtype="float32")
    b, sr_b = sf.read(io.BytesIO(small), dtype="float32")
    assert sr_a == sr_b and np.array_equal(a, b)
    assert canonical_ogg(_opus(0.4)) == small  # same audio, same bytes (serial number fixed)


def test_canonical_ogg_leaves_other_data_alone():
    for data in (b"", b"not ogg", b"OggS" + bytes(30), _opus(0.2)[:60]):
        assert canonical_ogg(data) == data


def _ogg_crc(page: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, no reflection, zero init), computed bit by bit."""
    crc = 0
    for byte in page:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
    return crc


# --- issue 13: inputs named by their real problem, bounded stdin, opus/mp3 output -------------

import os  # noqa: E402
import builtins  # noqa: E402

import pytest  # noqa: E402

from semcodec import audio as audio_mod  # noqa: E402
from semcodec.audio import output_format, read_audio, read_bounded, write_audio  # noqa: E402
from semcodec.errors import InputError  # noqa: E402


def _tone(sr: int = 22050, seconds: float = 0.3) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_float_samples_far_out_of_range_are_named(tmp_path):
    p = tmp_path / "hot.wav"
    sf.write(p, np.array([1e30, -1e30] * 2000, np.float32), 22050, subtype="FLOAT")
    with pytest.raises(InputError, match="input samples out of range"):
        read_audio(p)
    mild = tmp_path / "mild.wav"  # a float file a little over full scale is still audio
    sf.write(mild, _tone() * 4, 22050, subtype="FLOAT")
    assert read_audio(mild).n_samples == _tone().shape[0]
    with pytest.raises(InputError, match="out of range"):
        audio_mod.from_array(np.full(100, 1e30, np.float32), 22050)


def test_fifo_is_not_an_empty_file(tmp_path):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="named pipe") as err:
        read_audio(fifo)  # must not block either
    assert "empty file" not in str(err.value).replace(str(fifo), "")


def test_permission_denied_is_named(tmp_path, monkeypatch):
    p = tmp_path / "locked.wav"
    sf.write(p, _tone(), 22050)
    p.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make open() answer as for a normal user
        real_open = builtins.open

        def refuse(file, mode="r", *a, **k):
            if os.fspath(file) == str(p):
                raise PermissionError(13, "Permission denied", str(p))
            return real_open(file, mode, *a, **k)

        monkeypatch.setattr(audio_mod, "open", refuse, raising=False)
    with pytest.raises(InputError, match="permission denied") as err:
        read_audio(p)
    assert "not a readable audio file" not in str(err.value)


def test_au_header_claiming_2_gb_is_named_truncated(tmp_path):
    p = tmp_path / "big.au"
    p.write_bytes(struct.pack(">4sIIIII", b".snd", 24, 0x7FFFFFF0, 3, 44100, 1) + bytes(1000))
    with pytest.raises(InputError, match="truncated or corrupt AU file.*2147483632 bytes"):
        read_audio(p)
    with pytest.raises(InputError, match="truncated or corrupt AU"):
        audio_mod.read_audio_bytes(p.read_bytes(), "<stdin>")


def test_stdin_is_bounded():
    class Endless(io.RawIOBase):  # /dev/zero
        def readinto(self, b):
            b[:] = bytes(len(b))
            return len(b)

    with pytest.raises(InputError, match="more than 1 MiB of audio on stdin"):
        read_bounded(Endless(), 1 << 20, "<stdin>", "audio")
    assert read_bounded(io.BytesIO(b"x" * 1000), 1000, "<stdin>", "audio") == b"x" * 1000


@pytest.mark.parametrize("ext", [".opus", ".mp3"])
def test_opus_and_mp3_output_by_extension(tmp_path, ext):
    if ext not in audio_mod.output_formats():
        assert ext == ".mp3" and "MPEG_LAYER_III" not in sf.available_subtypes("MP3")
        pytest.skip("this libsndfile writes no MP3")
    sr = 44100  # Opus does not take 44.1 kHz: written at 48 kHz
    x = np.stack([_tone(sr, 0.5), _tone(sr, 0.5) * 0.5], axis=1)
    p = tmp_path / f"o{ext}"
    write_audio(p, x, sr)
    info = sf.info(p)
    assert info.channels == 2
    assert info.samplerate == (48000 if ext == ".opus" else 44100)
    back, rate = sf.read(p, dtype="float32")
    assert abs(back.shape[0] / rate - 0.5) < 0.06
    assert np.sqrt(np.mean(back[:, 0] ** 2)) > 0.1  # the tone came through
    assert output_format("x" + ext) == audio_mod.output_formats()[ext]
