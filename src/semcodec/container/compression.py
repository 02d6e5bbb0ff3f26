"""Compression of the SCOR and TAGS payloads: a codec byte, then raw, raw DEFLATE or raw LZMA2
data; decompression is bounded by ``MAX_DECOMPRESSED_BYTES``."""

from __future__ import annotations

import lzma
import zlib

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


def _compress_smallest(raw: bytes) -> bytes:
    """codec byte + payload, the smallest of the three codecs (ties: the lower codec)."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    candidates = [
        bytes([CODEC_NONE]) + raw,
        bytes([CODEC_DEFLATE]) + deflater.compress(raw) + deflater.flush(),
        bytes([CODEC_LZMA2])
        + lzma.compress(raw, format=lzma.FORMAT_RAW, filters=_LZMA_ENCODE_FILTERS),
    ]
    return min(candidates, key=len)  # min() keeps the first of equal lengths


def _decompress(payload: bytes, what: str) -> bytes:
    if not payload:
        raise _fail(f"{what}: empty payload (no codec byte)")
    codec, data = payload[0], payload[1:]
    if codec == CODEC_NONE:
        return bytes(data)
    limit = MAX_DECOMPRESSED_BYTES
    try:
        if codec == CODEC_DEFLATE:
            inflater = zlib.decompressobj(-15)
            out = inflater.decompress(data, limit + 1)
            if len(out) > limit:
                raise _fail(f"{what}: decompresses to more than {limit} bytes")
            if not inflater.eof:
                raise _fail(f"{what}: truncated DEFLATE stream")
            if inflater.unused_data or inflater.unconsumed_tail:
                raise _fail(f"{what}: data after the end of the DEFLATE stream")
            return out
        if codec == CODEC_LZMA2:
            decoder = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=_LZMA_DECODE_FILTERS)
            out = decoder.decompress(data, limit + 1)
            if len(out) > limit:
                raise _fail(f"{what}: decompresses to more than {limit} bytes")
            if not decoder.eof:
                raise _fail(f"{what}: truncated LZMA2 stream")
            if decoder.unused_data:
                raise _fail(f"{what}: data after the end of the LZMA2 stream")
            return out
    except (zlib.error, lzma.LZMAError, MemoryError) as exc:
        raise _fail(f"{what}: corrupt compressed data ({exc})") from None
    raise _fail(f"{what}: unknown compression codec {codec}")
