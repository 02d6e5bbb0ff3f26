"""Compression of the SCOR and TAGS payloads: a codec byte, then raw, raw DEFLATE or raw LZMA2
data; decompression is bounded by ``MAX_DECOMPRESSED_BYTES`` and by the expansion budget
(:func:`expansion_limit`), the score's notes + bend points by :func:`score_budget`."""

from __future__ import annotations

import lzma
import zlib

from semcodec.constants import (
    EXPANSION_FLOOR_BYTES,
    MAX_EXPANSION_RATIO,
    SCORE_OBJECTS_FLOOR,
    SCORE_OBJECTS_PER_BYTE,
)
from semcodec.container.primitives import _fail
from semcodec.container.spec import (
    CODEC_DEFLATE,
    CODEC_LZMA2,
    CODEC_NONE,
    LZMA2_DICT_SIZE,
    MAX_DECOMPRESSED_BYTES,
)

_LZMA_DECODE_FILTERS = [{"id": lzma.FILTER_LZMA2, "dict_size": LZMA2_DICT_SIZE}]
_LZMA_ENCODE_FILTERS = [
    {"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": LZMA2_DICT_SIZE}
]


def expansion_limit(compressed_bytes: int) -> int:
    """Most bytes a compressed payload of ``compressed_bytes`` (codec byte excluded) may
    expand to: max(EXPANSION_FLOOR_BYTES, MAX_EXPANSION_RATIO x compressed_bytes), at most
    MAX_DECOMPRESSED_BYTES (docs/FORMAT.md, "Budgets")."""
    return min(MAX_DECOMPRESSED_BYTES,
               max(EXPANSION_FLOOR_BYTES, MAX_EXPANSION_RATIO * compressed_bytes))


def score_budget(payload_bytes: int) -> int:
    """Most notes + pitch-bend points a SCOR payload of ``payload_bytes`` may hold:
    max(SCORE_OBJECTS_FLOOR, SCORE_OBJECTS_PER_BYTE x payload_bytes).  An uncompressed payload
    always fits (a note takes at least 5 bytes, a bend point 2)."""
    return max(SCORE_OBJECTS_FLOOR, int(SCORE_OBJECTS_PER_BYTE * payload_bytes))


def _compress_smallest(raw: bytes, n_objects: int = 0) -> bytes:
    """codec byte + payload, the smallest of the three codecs (ties: the lower codec) among
    those a reader's budgets accept: expansion within :func:`expansion_limit`, ``n_objects``
    (notes + bend points) within :func:`score_budget`.  Uncompressed always qualifies."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    candidates = [
        bytes([CODEC_NONE]) + raw,
        bytes([CODEC_DEFLATE]) + deflater.compress(raw) + deflater.flush(),
        bytes([CODEC_LZMA2])
        + lzma.compress(raw, format=lzma.FORMAT_RAW, filters=_LZMA_ENCODE_FILTERS),
    ]
    ok = [c for i, c in enumerate(candidates)
          if i == 0 or (len(raw) <= expansion_limit(len(c) - 1)
                        and n_objects <= score_budget(len(c)))]
    return min(ok, key=len)  # min() keeps the first of equal lengths


def _decompress(payload: bytes, what: str, cap: int = MAX_DECOMPRESSED_BYTES) -> bytes:
    """The stream of a SCOR/TAGS payload; at most :func:`expansion_limit` bytes and ``cap``."""
    if not payload:
        raise _fail(f"{what}: empty payload (no codec byte)")
    codec, data = payload[0], payload[1:]
    if codec == CODEC_NONE:
        if len(data) > cap:
            raise _fail(f"{what}: more than {cap} bytes")
        return bytes(data)
    limit = min(cap, expansion_limit(len(data)))
    try:
        if codec == CODEC_DEFLATE:
            inflater = zlib.decompressobj(-15)
            out = inflater.decompress(data, limit + 1)
            if len(out) > limit:
                raise _fail(f"{what}: decompresses to more than {limit} bytes "
                            f"({len(data)} compressed bytes; see the budgets of the format)")
            if not inflater.eof:
                raise _fail(f"{what}: truncated DEFLATE stream")
            if inflater.unused_data or inflater.unconsumed_tail:
                raise _fail(f"{what}: data after the end of the DEFLATE stream")
            return out
        if codec == CODEC_LZMA2:
            decoder = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=_LZMA_DECODE_FILTERS)
            out = decoder.decompress(data, limit + 1)
            if len(out) > limit:
                raise _fail(f"{what}: decompresses to more than {limit} bytes "
                            f"({len(data)} compressed bytes; see the budgets of the format)")
            if not decoder.eof:
                raise _fail(f"{what}: truncated LZMA2 stream")
            if decoder.unused_data:
                raise _fail(f"{what}: data after the end of the LZMA2 stream")
            return out
    except (zlib.error, lzma.LZMAError, MemoryError) as exc:
        raise _fail(f"{what}: corrupt compressed data ({exc})") from None
    raise _fail(f"{what}: unknown compression codec {codec}")
