"""Framing: the preamble (magic, version, header length, header CRC) and the CRC-protected
chunk records up to the END chunk."""

from __future__ import annotations

import zlib
from typing import Any, NamedTuple

from semcodec.constants import MAX_CHUNK_BYTES, MAX_CHUNKS, MAX_HEADER_BYTES
from semcodec.container.header import _validate_header
from semcodec.container.primitives import _fail
from semcodec.container.spec import _CHUNK_HEAD, _PREAMBLE, _U32, CHUNK_END, FORMAT_MAJOR, MAGIC
from semcodec.container.strictjson import _parse_json


class ChunkInfo(NamedTuple):
    """One record of a file: ``type`` (``"HEAD"`` for the preamble + JSON header + CRC, else
    the 4-byte chunk type as text with trailing NULs stripped, e.g. ``"END"``), ``offset`` of
    the record's first byte and ``length`` of the whole record (framing and CRC included), so
    the lengths of a file's records add up to the file size."""

    type: str
    offset: int
    length: int


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise _fail(f"expected bytes, got {type(data).__name__}")


def _parse_preamble(data: bytes) -> tuple[bytes, int]:
    """Check magic, version, header length and header CRC; return (JSON bytes, end offset)."""
    if len(data) < 4 or data[:4] != MAGIC:
        raise _fail("not a .smc file (bad magic bytes)")
    if len(data) < 6:
        raise _fail("truncated file (no format version)")
    major, minor = data[4], data[5]
    if major != FORMAT_MAJOR:
        raise _fail(
            f"unsupported format version {major}.{minor} "
            f"(this semcodec reads {FORMAT_MAJOR}.x)"
        )
    if len(data) < _PREAMBLE.size:
        raise _fail("truncated file (no header length)")
    hlen = _U32.unpack_from(data, 6)[0]
    if hlen > MAX_HEADER_BYTES:
        raise _fail(f"header length {hlen} exceeds the cap of {MAX_HEADER_BYTES} bytes")
    end = _PREAMBLE.size + hlen
    if end + 4 > len(data):
        raise _fail(f"truncated file (header of {hlen} bytes, {len(data) - _PREAMBLE.size} left)")
    (crc,) = _U32.unpack_from(data, end)
    if zlib.crc32(data[:end]) != crc:
        raise _fail("header CRC mismatch (file is corrupt)")
    return data[_PREAMBLE.size : end], end + 4


def _parse_chunks(data: bytes, pos: int) -> list[tuple[bytes, int, bytes]]:
    """Walk the chunks after the header: list of (type, record offset, payload), END excluded."""
    chunks: list[tuple[bytes, int, bytes]] = []
    count = 0
    while True:
        if count >= MAX_CHUNKS:
            raise _fail(f"more than {MAX_CHUNKS} chunks")
        count += 1
        if pos + _CHUNK_HEAD.size > len(data):
            raise _fail(f"truncated file (no END chunk; chunk header at offset {pos} cut short)")
        ctype, length = _CHUNK_HEAD.unpack_from(data, pos)
        if length > MAX_CHUNK_BYTES:
            raise _fail(f"chunk {ctype!r} at offset {pos}: length {length} exceeds the cap "
                        f"of {MAX_CHUNK_BYTES} bytes")
        body_end = pos + _CHUNK_HEAD.size + length
        if body_end + 4 > len(data):
            raise _fail(f"truncated file (chunk {ctype!r} at offset {pos} claims {length} bytes, "
                        f"{max(0, len(data) - pos - _CHUNK_HEAD.size - 4)} left)")
        (crc,) = _U32.unpack_from(data, body_end)
        if zlib.crc32(data[pos:body_end]) != crc:
            raise _fail(f"chunk {ctype!r} at offset {pos}: CRC mismatch (file is corrupt)")
        if ctype == CHUNK_END:
            if length != 0:
                raise _fail("END chunk must be empty")
            if body_end + 4 != len(data):
                raise _fail(f"{len(data) - body_end - 4} trailing bytes after the END chunk")
            return chunks
        chunks.append((ctype, pos, data[pos + _CHUNK_HEAD.size : body_end]))
        pos = body_end + 4


def _chunk(ctype: bytes, payload: bytes) -> bytes:
    if len(payload) > MAX_CHUNK_BYTES:
        raise _fail(f"chunk {ctype!r} of {len(payload)} bytes exceeds the cap of {MAX_CHUNK_BYTES}")
    head = _CHUNK_HEAD.pack(ctype, len(payload))
    return head + payload + _U32.pack(zlib.crc32(payload, zlib.crc32(head)))


def chunk_table(data: bytes) -> list[ChunkInfo]:
    """The records of a file (header as ``"HEAD"``, then every chunk incl. END), checking the
    framing and all CRCs; raises ContainerError if the file is malformed."""
    data = _as_bytes(data)
    _, pos = _parse_preamble(data)
    table = [ChunkInfo("HEAD", 0, pos)]
    chunks = _parse_chunks(data, pos)
    for ctype, offset, payload in chunks:
        name = ctype.decode("ascii", "backslashreplace").rstrip("\x00")
        table.append(ChunkInfo(name, offset, _CHUNK_HEAD.size + len(payload) + 4))
    table.append(ChunkInfo("END", len(data) - 12, 12))
    return table


def header_dict(data: bytes) -> dict:
    """The parsed and validated JSON header (the chunks are not read)."""
    raw, _ = _parse_preamble(_as_bytes(data))
    h = _parse_json(raw, "header")
    _validate_header(h)
    return h
