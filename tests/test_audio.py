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
