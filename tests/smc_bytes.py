"""Byte-level helpers for tests that craft .smc files: split a valid file, rebuild with CRCs."""

from __future__ import annotations

import struct
import zlib

from semcodec.container import CHUNK_END, FORMAT_MAJOR, FORMAT_MINOR, MAGIC, chunk_table


def split(data: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """(header JSON, [(type, payload), ...] without END) of a valid file."""
    hlen = struct.unpack_from("<I", data, 6)[0]
    chunks = []
    for info in chunk_table(data)[1:]:
        ctype = data[info.offset : info.offset + 4]
        if ctype != CHUNK_END:
            chunks.append((ctype, data[info.offset + 8 : info.offset + info.length - 4]))
    return data[10 : 10 + hlen], chunks


def build(header: bytes, chunks, *, major=FORMAT_MAJOR, minor=FORMAT_MINOR, end=True) -> bytes:
    """A file with correct CRCs around arbitrary header bytes and chunk payloads."""
    pre = MAGIC + bytes([major, minor]) + struct.pack("<I", len(header)) + header
    out = pre + struct.pack("<I", zlib.crc32(pre))
    for ctype, payload in list(chunks) + ([(CHUNK_END, b"")] if end else []):
        rec = ctype + struct.pack("<I", len(payload)) + payload
        out += rec + struct.pack("<I", zlib.crc32(rec))
    return out
