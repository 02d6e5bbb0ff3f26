"""The ``.smc`` container, format version 1 (byte-level specification: docs/FORMAT.md).

A file is: magic, version, a compact JSON header protected by a CRC32, then CRC-protected
chunks (``SCOR`` score, ``TIMB`` timbres, ``SAMP`` audio samples, ``TAGS`` long texts) and a
final ``END`` chunk.  The reader treats every byte as hostile: every length is capped by a
constant and by the bytes that remain, decompression is bounded, the JSON header is
depth-checked before it is parsed, and every decoded value is range-checked.  Any problem
raises :class:`~semcodec.errors.ContainerError` and nothing else.

This module imports only the standard library and semcodec's stdlib-only modules.
"""

from __future__ import annotations

import json
import lzma
import math
import os
import re
import struct
import tempfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from semcodec.constants import (
    BEND_MAX_SEMITONES,
    BEND_TICK_S,
    BEND_UNITS_PER_SEMITONE,
    GM_PROGRAM_MAX,
    GM_PROGRAM_MIN,
    MAX_BEND_POINTS,
    MAX_CHANNELS,
    MAX_CHUNK_BYTES,
    MAX_CHUNKS,
    MAX_CODEC_NAME_BYTES,
    MAX_DURATION_S,
    MAX_EMBEDDING_DIM,
    MAX_HEADER_BYTES,
    MAX_HEADER_DEPTH,
    MAX_NAME_CHARS,
    MAX_NOTES,
    MAX_ROOM_PARAMS,
    MAX_SAMPLE_RATE,
    MAX_SAMPLES,
    MAX_TAG_KEY_CHARS,
    MAX_TAG_VALUE_CHARS,
    MAX_TIMBRES,
    MAX_TRACKS,
    MIDI_MAX,
    MIDI_MIN,
    MIN_SAMPLE_RATE,
    SCORE_TICK_S,
    VELOCITY_MAX,
    VELOCITY_MIN,
)
from semcodec.errors import ContainerError, InputError, OutputError
from semcodec.events import BendPoint, Note, Sample, Score, Timbre, Track

__all__ = [
    "FORMAT_MAJOR",
    "FORMAT_MINOR",
    "MAGIC",
    "CHUNK_SCORE",
    "CHUNK_TIMBRE",
    "CHUNK_SAMPLES",
    "CHUNK_TAGS",
    "CHUNK_SAMPLE_KEYS",
    "CHUNK_END",
    "ChunkInfo",
    "Container",
    "dumps",
    "loads",
    "chunk_table",
    "header_dict",
    "atomic_write_bytes",
]

FORMAT_MAJOR = 1
FORMAT_MINOR = 0
MAGIC = b"\x89SMC"

CHUNK_SCORE = b"SCOR"
CHUNK_TIMBRE = b"TIMB"
CHUNK_SAMPLES = b"SAMP"
CHUNK_TAGS = b"TAGS"
CHUNK_SAMPLE_KEYS = b"SKEY"
CHUNK_END = b"END\x00"
_KNOWN_CHUNKS = (CHUNK_SCORE, CHUNK_TIMBRE, CHUNK_SAMPLES, CHUNK_TAGS, CHUNK_SAMPLE_KEYS)
#: Minor version written when a file uses a 1.1 feature (the SKEY chunk); 1.0 otherwise.
FORMAT_MINOR_SAMPLE_KEYS = 1
#: Minor version written when a track has a stereo position or an engine preference ("pan",
#: "engine" in its header object).
FORMAT_MINOR_PAN = 2
#: Engines a track may name as preferred (others, from newer writers, are read as none).
TRACK_ENGINES = ("fluidsynth",)
#: Bound on a track's engine gain (dB).
MAX_ENGINE_GAIN_DB = 100.0
#: Decimals a track's pan is stored with.
PAN_DECIMALS = 2

#: Compression codecs of the SCOR and TAGS payloads (first payload byte).
CODEC_NONE = 0
CODEC_DEFLATE = 1
CODEC_LZMA2 = 2
#: Most bytes a compressed payload may expand to.
MAX_DECOMPRESSED_BYTES = 4 * MAX_CHUNK_BYTES
#: Dictionary size of the raw LZMA2 stream (writers must not use a larger one).
LZMA2_DICT_SIZE = 1 << 20

#: Slack after the clip's end that note offsets, bend points and samples may reach (s).
END_SLACK_S = 1.0
#: Bend values are clamped to +/- this many 1/BEND_UNITS_PER_SEMITONE units.
MAX_BEND_UNITS = int(round(BEND_MAX_SEMITONES * BEND_UNITS_PER_SEMITONE))
#: Tempo range accepted in the header (BPM).
MIN_TEMPO_BPM = 1.0
MAX_TEMPO_BPM = 1000.0
#: Loudness range accepted in the header (LUFS).
MIN_LOUDNESS_LUFS = -200.0
MAX_LOUDNESS_LUFS = 30.0
_TIME_SIG_DENOMINATORS = (1, 2, 4, 8, 16, 32, 64)
_MAX_TIME_SIG_NUMERATOR = 64

_PREAMBLE = struct.Struct("<4sBBI")  # magic, major, minor, header length
_CHUNK_HEAD = struct.Struct("<4sI")  # type, payload length
_U32 = struct.Struct("<I")
_F16 = struct.Struct("<e")

_RESERVED_KEYS = (
    "format",
    "duration",
    "n_samples",
    "sample_rate",
    "channels",
    "loudness_lufs",
    "tempo_bpm",
    "time_signature",
    "key",
    "tracks",
    "encoder",
    "tags",
)
_REQUIRED_KEYS = ("format", "duration", "n_samples", "sample_rate", "channels", "tracks")


class ChunkInfo(NamedTuple):
    """One record of a file: ``type`` (``"HEAD"`` for the preamble + JSON header + CRC, else
    the 4-byte chunk type as text with trailing NULs stripped, e.g. ``"END"``), ``offset`` of
    the record's first byte and ``length`` of the whole record (framing and CRC included), so
    the lengths of a file's records add up to the file size."""

    type: str
    offset: int
    length: int


# ------------------------------------------------------------------------------------------
# primitive encoding
# ------------------------------------------------------------------------------------------


def _fail(message: str) -> ContainerError:
    return ContainerError(message)


def _uvarint(value: int) -> bytes:
    """LEB128 encoding of an unsigned integer < 2**64."""
    if value < 0 or value >= 1 << 64:
        raise _fail(f"cannot encode {value} as an unsigned varint")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _zigzag(value: int) -> int:
    return value * 2 if value >= 0 else -value * 2 - 1


def _unzigzag(value: int) -> int:
    return (value >> 1) ^ -(value & 1)


class _Reader:
    """Bounds-checked cursor over a payload; every read raises ContainerError past the end."""

    __slots__ = ("buf", "pos", "end", "what")

    def __init__(self, buf: bytes, what: str) -> None:
        self.buf = buf
        self.pos = 0
        self.end = len(buf)
        self.what = what

    def remaining(self) -> int:
        return self.end - self.pos

    def need(self, n: int) -> None:
        if n < 0 or n > self.end - self.pos:
            raise _fail(f"{self.what}: truncated (needs {n} bytes, {self.end - self.pos} left)")

    def uvarint(self) -> int:
        buf, pos, end = self.buf, self.pos, self.end
        result = 0
        shift = 0
        for i in range(10):
            if pos >= end:
                raise _fail(f"{self.what}: truncated varint")
            byte = buf[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if byte == 0 and i > 0:
                    raise _fail(f"{self.what}: overlong varint")
                if result >= 1 << 64:
                    raise _fail(f"{self.what}: varint exceeds 64 bits")
                self.pos = pos
                return result
            shift += 7
        raise _fail(f"{self.what}: varint longer than 10 bytes")

    def zvarint(self) -> int:
        return _unzigzag(self.uvarint())

    def uvarints(self, n: int) -> list[int]:
        """``n`` uvarints; single-byte values (the common case) take a fast path."""
        buf, end = self.buf, self.end
        out = []
        append = out.append
        for _ in range(n):
            pos = self.pos
            if pos < end and buf[pos] < 0x80:
                append(buf[pos])
                self.pos = pos + 1
            else:
                append(self.uvarint())
        return out

    def zvarints(self, n: int) -> list[int]:
        return [(u >> 1) ^ -(u & 1) for u in self.uvarints(n)]

    def u8(self) -> int:
        self.need(1)
        self.pos += 1
        return self.buf[self.pos - 1]

    def u32(self) -> int:
        self.need(4)
        (value,) = _U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return value

    def f16(self) -> float:
        self.need(2)
        (value,) = _F16.unpack_from(self.buf, self.pos)
        self.pos += 2
        if not math.isfinite(value):
            raise _fail(f"{self.what}: non-finite float16")
        return value

    def take(self, n: int) -> bytes:
        self.need(n)
        self.pos += n
        return bytes(self.buf[self.pos - n : self.pos])

    def finish(self) -> None:
        if self.pos != self.end:
            raise _fail(f"{self.what}: {self.end - self.pos} unexpected bytes at the end")


def _f16(value: float, what: str) -> bytes:
    try:
        value = float(value)
        if not math.isfinite(value):
            raise ValueError
        return _F16.pack(value)
    except (OverflowError, ValueError, TypeError, struct.error):
        raise _fail(f"{what}: {value!r} is not representable as a finite float16") from None


# ------------------------------------------------------------------------------------------
# compression
# ------------------------------------------------------------------------------------------

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


# ------------------------------------------------------------------------------------------
# JSON
# ------------------------------------------------------------------------------------------

_BRACKETS = re.compile(r"[\[\]{}]")


def _json_depth_ok(text: str, limit: int) -> bool:
    """True when no array/object nests deeper than ``limit``; no recursion, linear time.

    Escapes are removed first so that the quotes left toggle string state exactly as a JSON
    parser would (up to the first syntax error, after which a parser stops anyway)."""
    text = text.replace("\\\\", "").replace('\\"', "")
    depth = 0
    for i, part in enumerate(text.split('"')):
        if i % 2:  # inside a string
            continue
        for match in _BRACKETS.finditer(part):
            if match.group() in "[{":
                depth += 1
                if depth > limit:
                    return False
            else:
                depth -= 1
    return True


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"non-finite number {text}")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _check_strings(obj: Any) -> None:
    """Reject strings that cannot be written back as UTF-8 (lone surrogates from \\ud800)."""
    if isinstance(obj, str):
        obj.encode("utf-8")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            key.encode("utf-8")
            _check_strings(value)
    elif isinstance(obj, list):
        for value in obj:
            _check_strings(value)


def _parse_json(raw: bytes, what: str) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(f"{what}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not _json_depth_ok(text, MAX_HEADER_DEPTH):
        raise _fail(f"{what}: JSON nested deeper than {MAX_HEADER_DEPTH} levels")
    try:
        obj = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=_finite_float,
            parse_constant=_reject_constant,
        )
        _check_strings(obj)
    except (ValueError, RecursionError, UnicodeEncodeError) as exc:
        raise _fail(f"{what}: invalid JSON ({exc})") from None
    return obj


def _dump_json(obj: Any, what: str) -> bytes:
    try:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        raw = text.encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError, RecursionError) as exc:
        raise _fail(f"{what}: cannot be stored as JSON ({exc})") from None
    if not _json_depth_ok(text, MAX_HEADER_DEPTH):
        raise _fail(f"{what}: JSON nested deeper than {MAX_HEADER_DEPTH} levels")
    return raw


# ------------------------------------------------------------------------------------------
# header validation (shared by reader and writer)
# ------------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_num(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(
        value
    )


def _int_field(h: dict, key: str, lo: int, hi: int) -> int:
    value = h.get(key)
    if not _is_int(value) or not lo <= value <= hi:
        raise _fail(f"header: {key!r} must be an integer in {lo}..{hi}, got {value!r}")
    return value


def _str_field(value: Any, what: str, max_chars: int, min_chars: int = 0) -> str:
    if not isinstance(value, str) or not min_chars <= len(value) <= max_chars:
        raise _fail(f"{what} must be a string of {min_chars}..{max_chars} characters, got {value!r}")
    return value


def _str_map(value: Any, what: str, max_value_chars: int | None) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _fail(f"{what} must be an object of strings")
    for key, item in value.items():
        _str_field(key, f"{what} key", MAX_TAG_KEY_CHARS, 1)
        if not isinstance(item, str):
            raise _fail(f"{what}[{key!r}] must be a string")
        if max_value_chars is not None and len(item) > max_value_chars:
            raise _fail(f"{what}[{key!r}] is longer than {max_value_chars} characters")
    return dict(value)


def _track_object(t: Track) -> dict[str, Any]:
    """A track's header object; "pan" (format 1.2) only when the track is off centre, "engine"
    and "engine_gain_db" (1.2) only when it names one."""
    obj: dict[str, Any] = {"name": t.name, "program": t.program, "drum": t.is_drum,
                           "notes": len(t.notes)}
    pan = _round_float(float(t.pan), PAN_DECIMALS)
    if pan != 0.0:
        if not -1.0 <= pan <= 1.0:
            raise _fail(f"track {t.name!r}: pan {t.pan!r} outside -1..1")
        obj["pan"] = pan
    if t.engine:
        if t.engine not in TRACK_ENGINES:
            raise _fail(f"track {t.name!r}: unknown engine {t.engine!r} (known: {TRACK_ENGINES})")
        obj["engine"] = t.engine
        obj["engine_gain_db"] = _round_float(float(t.engine_gain_db), 2)
    return obj


class _Header(NamedTuple):
    duration: float
    n_samples: int
    sample_rate: int
    channels: int
    loudness_lufs: float | None
    tempo_bpm: float
    time_signature: tuple[int, int]
    key: str
    # name, program, drum, n_notes, pan, engine, engine_gain_db
    tracks: tuple[tuple[str, int, bool, int, float, str, float], ...]
    encoder: str
    tags: dict[str, str]
    extra: dict[str, Any]


def _validate_header(h: Any) -> _Header:
    if not isinstance(h, dict):
        raise _fail("header: must be a JSON object")
    for key in _REQUIRED_KEYS:
        if key not in h:
            raise _fail(f"header: missing required field {key!r}")
    if h["format"] != "smc":
        raise _fail(f"header: 'format' must be \"smc\", got {h['format']!r}")
    sample_rate = _int_field(h, "sample_rate", MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)
    channels = _int_field(h, "channels", 1, MAX_CHANNELS)
    max_n = int(MAX_DURATION_S * sample_rate)
    n_samples = _int_field(h, "n_samples", 0, max_n)
    duration = h["duration"]
    if not _is_num(duration) or not 0.0 <= duration <= MAX_DURATION_S:
        raise _fail(f"header: 'duration' must be a number in 0..{MAX_DURATION_S:g}, got {duration!r}")
    if abs(n_samples - duration * sample_rate) > 1.0:
        raise _fail(
            f"header: 'n_samples' {n_samples} disagrees with duration {duration} s "
            f"at {sample_rate} Hz"
        )
    loudness = h.get("loudness_lufs")
    if loudness is not None and (
        not _is_num(loudness) or not MIN_LOUDNESS_LUFS <= loudness <= MAX_LOUDNESS_LUFS
    ):
        raise _fail(f"header: 'loudness_lufs' must be null or a number in "
                    f"{MIN_LOUDNESS_LUFS:g}..{MAX_LOUDNESS_LUFS:g}, got {loudness!r}")
    tempo = h.get("tempo_bpm", 120.0)
    if not _is_num(tempo) or not MIN_TEMPO_BPM <= tempo <= MAX_TEMPO_BPM:
        raise _fail(f"header: 'tempo_bpm' must be a number in "
                    f"{MIN_TEMPO_BPM:g}..{MAX_TEMPO_BPM:g}, got {tempo!r}")
    ts = h.get("time_signature", [4, 4])
    if (
        not isinstance(ts, list)
        or len(ts) != 2
        or not all(_is_int(v) for v in ts)
        or not 1 <= ts[0] <= _MAX_TIME_SIG_NUMERATOR
        or ts[1] not in _TIME_SIG_DENOMINATORS
    ):
        raise _fail(f"header: 'time_signature' must be [numerator, power-of-2 denominator], got {ts!r}")
    key = _str_field(h.get("key", "C major"), "header: 'key'", MAX_TAG_KEY_CHARS)
    raw_tracks = h["tracks"]
    if not isinstance(raw_tracks, list) or len(raw_tracks) > MAX_TRACKS:
        raise _fail(f"header: 'tracks' must be a list of at most {MAX_TRACKS} objects")
    tracks = []
    total_notes = 0
    for i, t in enumerate(raw_tracks):
        if not isinstance(t, dict):
            raise _fail(f"header: track {i} must be an object")
        for k in ("name", "program", "drum", "notes"):
            if k not in t:
                raise _fail(f"header: track {i} lacks {k!r}")
        name = _str_field(t["name"], f"header: track {i} 'name'", MAX_NAME_CHARS)
        program = _int_field(t, "program", GM_PROGRAM_MIN, GM_PROGRAM_MAX)
        if not isinstance(t["drum"], bool):
            raise _fail(f"header: track {i} 'drum' must be true or false")
        n_notes = _int_field(t, "notes", 0, MAX_NOTES)
        total_notes += n_notes
        if total_notes > MAX_NOTES:
            raise _fail(f"header: more than {MAX_NOTES} notes")
        pan = t.get("pan", 0.0)
        if not _is_num(pan) or not -1.0 <= pan <= 1.0:
            raise _fail(f"header: track {i} 'pan' must be a number in -1..1, got {pan!r}")
        engine = _str_field(t.get("engine", ""), f"header: track {i} 'engine'", MAX_NAME_CHARS)
        engine_gain = t.get("engine_gain_db", 0.0)
        if not _is_num(engine_gain) or abs(engine_gain) > MAX_ENGINE_GAIN_DB:
            raise _fail(f"header: track {i} 'engine_gain_db' must be a number in "
                        f"-{MAX_ENGINE_GAIN_DB:g}..{MAX_ENGINE_GAIN_DB:g}, got {engine_gain!r}")
        if engine not in TRACK_ENGINES:
            engine, engine_gain = "", 0.0  # an engine this reader does not know: none
        tracks.append((name, program, t["drum"], n_notes, float(pan), engine, float(engine_gain)))
    encoder = _str_field(h.get("encoder", ""), "header: 'encoder'", MAX_NAME_CHARS)
    tags = _str_map(h.get("tags", {}), "header: 'tags'", MAX_TAG_VALUE_CHARS)
    extra = {k: v for k, v in h.items() if k not in _RESERVED_KEYS}
    return _Header(
        duration=float(duration),
        n_samples=n_samples,
        sample_rate=sample_rate,
        channels=channels,
        loudness_lufs=None if loudness is None else float(loudness),
        tempo_bpm=float(tempo),
        time_signature=(ts[0], ts[1]),
        key=key,
        tracks=tuple(tracks),
        encoder=encoder,
        tags=tags,
        extra=extra,
    )


def _exact_duration(n_samples: int, sample_rate: int) -> float:
    return n_samples / sample_rate


def _end_limit_ticks(duration: float) -> int:
    """Largest note end (in score ticks) a file of this duration may hold."""
    return int(math.floor((duration + END_SLACK_S) / SCORE_TICK_S + 1e-6))


def _bend_ok(onset_ticks: int, bend_ticks: int, duration: float) -> bool:
    return onset_ticks * SCORE_TICK_S + bend_ticks * BEND_TICK_S <= duration + END_SLACK_S + 1e-9


def _end_limit_ms(duration: float) -> int:
    return int(math.floor((duration + END_SLACK_S) * 1000.0 + 1e-6))


# ------------------------------------------------------------------------------------------
# SCOR chunk
# ------------------------------------------------------------------------------------------


def _round_tick(value: float, quantum: float, what: str) -> int:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(f"{what}: {value!r} is not a finite number")
    return int(round(value / quantum))


def _encode_score(score: Score, duration: float) -> bytes:
    limit = _end_limit_ticks(duration)
    out = bytearray(_uvarint(len(score.tracks)))
    total_notes = 0
    total_bends = 0
    for ti, track in enumerate(score.tracks):
        what = f"track {ti}"
        rows = []
        for note in track.notes:
            on = _round_tick(note.onset, SCORE_TICK_S, f"{what} onset")
            off = _round_tick(note.offset, SCORE_TICK_S, f"{what} offset")
            if on < 0:
                raise _fail(f"{what}: note onset {note.onset} s is negative")
            dur = max(1, off - on)
            if on + dur > limit:
                raise _fail(
                    f"{what}: note ends at {(on + dur) * SCORE_TICK_S:.3f} s, more than "
                    f"{END_SLACK_S:g} s after the clip's end ({duration:.3f} s)"
                )
            if not _is_int(note.pitch) or not MIDI_MIN <= note.pitch <= MIDI_MAX:
                raise _fail(f"{what}: pitch {note.pitch!r} outside {MIDI_MIN}..{MIDI_MAX}")
            if not _is_int(note.velocity) or not VELOCITY_MIN <= note.velocity <= VELOCITY_MAX:
                raise _fail(f"{what}: velocity {note.velocity!r} outside {VELOCITY_MIN}..{VELOCITY_MAX}")
            bends = []
            for bp in sorted(note.bends, key=lambda b: b.time):
                bt = max(0, _round_tick(bp.time, BEND_TICK_S, f"{what} bend time"))
                if not _bend_ok(on, bt, duration):
                    raise _fail(f"{what}: pitch bend point after the clip's end")
                if not isinstance(bp.semitones, (int, float)) or not math.isfinite(bp.semitones):
                    raise _fail(f"{what}: bend {bp.semitones!r} is not a finite number")
                units = int(round(bp.semitones * BEND_UNITS_PER_SEMITONE))
                bends.append((bt, max(-MAX_BEND_UNITS, min(MAX_BEND_UNITS, units))))
            rows.append((on, note.pitch, dur, note.velocity, bends))
        rows.sort(key=lambda r: (r[0], r[1]))
        total_notes += len(rows)
        total_bends += sum(len(r[4]) for r in rows)
        if total_notes > MAX_NOTES:
            raise _fail(f"more than {MAX_NOTES} notes")
        if total_bends > MAX_BEND_POINTS:
            raise _fail(f"more than {MAX_BEND_POINTS} pitch-bend points")
        out += _uvarint(len(rows))
        prev = 0
        for on, *_ in rows:
            out += _uvarint(on - prev)
            prev = on
        for row in rows:
            out += _uvarint(row[2])
        prev = 60
        for row in rows:
            out += _uvarint(_zigzag(row[1] - prev))
            prev = row[1]
        prev = 64
        for row in rows:
            out += _uvarint(_zigzag(row[3] - prev))
            prev = row[3]
        for row in rows:
            out += _uvarint(len(row[4]))
        for row in rows:
            prev = 0
            for bt, _ in row[4]:
                out += _uvarint(bt - prev)
                prev = bt
        for row in rows:
            prev = 0
            for _, units in row[4]:
                out += _uvarint(_zigzag(units - prev))
                prev = units
    raw = bytes(out)
    if len(raw) > MAX_DECOMPRESSED_BYTES:
        raise _fail("score is too large for one SCOR chunk")
    return _compress_smallest(raw)


def _decode_score(payload: bytes, duration: float) -> list[tuple[Note, ...]]:
    raw = _decompress(payload, "SCOR chunk")
    r = _Reader(raw, "SCOR chunk")
    n_tracks = r.uvarint()
    if n_tracks > MAX_TRACKS:
        raise _fail(f"SCOR chunk: {n_tracks} tracks (at most {MAX_TRACKS})")
    limit = _end_limit_ticks(duration)
    total_notes = 0
    total_bends = 0
    tracks: list[tuple[Note, ...]] = []
    for ti in range(n_tracks):
        n = r.uvarint()
        total_notes += n
        if total_notes > MAX_NOTES:
            raise _fail(f"SCOR chunk: more than {MAX_NOTES} notes")
        if 5 * n > r.remaining():  # each note needs at least 5 one-byte varints
            raise _fail(f"SCOR chunk: track {ti} claims {n} notes, more than the data holds")
        onsets = []
        acc = 0
        for delta in r.uvarints(n):
            acc += delta
            if acc > limit:
                raise _fail(f"SCOR chunk: track {ti} has a note after the clip's end")
            onsets.append(acc)
        durs = r.uvarints(n)
        for on, dur in zip(onsets, durs):
            if dur < 1 or on + dur > limit:
                raise _fail(f"SCOR chunk: track {ti} has a note of invalid length")
        pitches = []
        acc = 60
        for delta in r.zvarints(n):
            acc += delta
            if not MIDI_MIN <= acc <= MIDI_MAX:
                raise _fail(f"SCOR chunk: track {ti} has pitch {acc} outside {MIDI_MIN}..{MIDI_MAX}")
            pitches.append(acc)
        vels = []
        acc = 64
        for delta in r.zvarints(n):
            acc += delta
            if not VELOCITY_MIN <= acc <= VELOCITY_MAX:
                raise _fail(f"SCOR chunk: track {ti} has velocity {acc} outside "
                            f"{VELOCITY_MIN}..{VELOCITY_MAX}")
            vels.append(acc)
        counts = r.uvarints(n)
        n_bends = 0
        for c in counts:
            n_bends += c
            if total_bends + n_bends > MAX_BEND_POINTS:
                raise _fail(f"SCOR chunk: more than {MAX_BEND_POINTS} pitch-bend points")
        total_bends += n_bends
        if 2 * n_bends > r.remaining():
            raise _fail(f"SCOR chunk: track {ti} claims {n_bends} bend points, more than the data holds")
        bend_times: list[list[int]] = []
        for on, c in zip(onsets, counts):
            acc = 0
            times = []
            for _ in range(c):
                acc += r.uvarint()
                if not _bend_ok(on, acc, duration):
                    raise _fail(f"SCOR chunk: track {ti} has a bend point after the clip's end")
                times.append(acc)
            bend_times.append(times)
        notes = []
        for i in range(n):
            acc = 0
            bends = []
            for bt in bend_times[i]:
                acc += r.zvarint()
                if not -MAX_BEND_UNITS <= acc <= MAX_BEND_UNITS:
                    raise _fail(f"SCOR chunk: track {ti} has a bend beyond "
                                f"{BEND_MAX_SEMITONES:g} semitones")
                bends.append(BendPoint(bt * BEND_TICK_S, acc / BEND_UNITS_PER_SEMITONE))
            notes.append(
                Note(
                    onset=onsets[i] * SCORE_TICK_S,
                    offset=(onsets[i] + durs[i]) * SCORE_TICK_S,
                    pitch=pitches[i],
                    velocity=vels[i],
                    bends=tuple(bends),
                )
            )
        tracks.append(tuple(notes))
    r.finish()
    return tracks


# ------------------------------------------------------------------------------------------
# TIMB, SAMP, TAGS chunks
# ------------------------------------------------------------------------------------------


def _check_track_index(track: Any, n_tracks: int, what: str) -> int:
    if not _is_int(track) or not 0 <= track < n_tracks:
        raise _fail(f"{what}: track index {track!r} outside 0..{n_tracks - 1}")
    return track


def _encode_timbres(timbres: tuple[Timbre, ...], n_tracks: int) -> bytes:
    if len(timbres) > MAX_TIMBRES:
        raise _fail(f"more than {MAX_TIMBRES} timbres")
    out = bytearray(_uvarint(len(timbres)))
    for i, t in enumerate(timbres):
        what = f"timbre {i}"
        out += _uvarint(_check_track_index(t.track, n_tracks, what))
        if len(t.embedding) > MAX_EMBEDDING_DIM:
            raise _fail(f"{what}: embedding longer than {MAX_EMBEDDING_DIM}")
        out += _uvarint(len(t.embedding))
        for v in t.embedding:
            out += _f16(v, what)
        out += _f16(t.gain_db, what)
        if len(t.room) > MAX_ROOM_PARAMS:
            raise _fail(f"{what}: more than {MAX_ROOM_PARAMS} room values")
        out += _uvarint(len(t.room))
        for v in t.room:
            out += _f16(v, what)
    return bytes(out)


def _decode_timbres(payload: bytes, n_tracks: int) -> tuple[Timbre, ...]:
    r = _Reader(payload, "TIMB chunk")
    n = r.uvarint()
    if n > MAX_TIMBRES:
        raise _fail(f"TIMB chunk: {n} timbres (at most {MAX_TIMBRES})")
    out = []
    for i in range(n):
        track = _check_track_index(r.uvarint(), n_tracks, f"TIMB chunk: timbre {i}")
        dim = r.uvarint()
        if dim > MAX_EMBEDDING_DIM:
            raise _fail(f"TIMB chunk: embedding of {dim} values (at most {MAX_EMBEDDING_DIM})")
        r.need(2 * dim)
        embedding = tuple(r.f16() for _ in range(dim))
        gain = r.f16()
        n_room = r.uvarint()
        if n_room > MAX_ROOM_PARAMS:
            raise _fail(f"TIMB chunk: {n_room} room values (at most {MAX_ROOM_PARAMS})")
        r.need(2 * n_room)
        room = tuple(r.f16() for _ in range(n_room))
        out.append(Timbre(track=track, embedding=embedding, gain_db=gain, room=room))
    r.finish()
    return tuple(out)


def _codec_name_ok(name: bytes) -> bool:
    return 1 <= len(name) <= MAX_CODEC_NAME_BYTES and all(0x21 <= b <= 0x7E for b in name)


def _encode_samples(samples: tuple[Sample, ...], n_tracks: int, duration: float) -> bytes:
    if len(samples) > MAX_SAMPLES:
        raise _fail(f"more than {MAX_SAMPLES} samples")
    limit = _end_limit_ms(duration)
    out = bytearray(_uvarint(len(samples)))
    for i, s in enumerate(samples):
        what = f"sample {i}"
        out += _uvarint(_check_track_index(s.track, n_tracks, what))
        start = _round_tick(s.start, 0.001, f"{what} start")
        length = _round_tick(s.duration, 0.001, f"{what} duration")
        if start < 0 or length < 0 or start + length > limit:
            raise _fail(f"{what}: span {s.start}+{s.duration} s outside the clip")
        if not _is_int(s.sample_rate) or not MIN_SAMPLE_RATE <= s.sample_rate <= MAX_SAMPLE_RATE:
            raise _fail(f"{what}: sample rate {s.sample_rate!r} outside "
                        f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}")
        try:
            codec = s.codec.encode("ascii")
        except (UnicodeEncodeError, AttributeError):
            codec = b""
        if not _codec_name_ok(codec):
            raise _fail(f"{what}: codec name {s.codec!r} must be 1..{MAX_CODEC_NAME_BYTES} "
                        "printable ASCII characters")
        data = bytes(s.data)
        out += _U32.pack(start) + _U32.pack(length) + _U32.pack(s.sample_rate)
        out += bytes([len(codec)]) + codec + _U32.pack(len(data)) + data
    return bytes(out)


def _decode_samples(payload: bytes, n_tracks: int, duration: float) -> tuple[Sample, ...]:
    r = _Reader(payload, "SAMP chunk")
    n = r.uvarint()
    if n > MAX_SAMPLES:
        raise _fail(f"SAMP chunk: {n} samples (at most {MAX_SAMPLES})")
    limit = _end_limit_ms(duration)
    out = []
    for i in range(n):
        what = f"SAMP chunk: sample {i}"
        track = _check_track_index(r.uvarint(), n_tracks, what)
        start, length, rate = r.u32(), r.u32(), r.u32()
        if start + length > limit:
            raise _fail(f"{what}: span outside the clip")
        if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
            raise _fail(f"{what}: sample rate {rate} outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}")
        codec = r.take(r.u8())
        if not _codec_name_ok(codec):
            raise _fail(f"{what}: invalid codec name {codec!r}")
        data = r.take(r.u32())
        out.append(
            Sample(
                track=track,
                start=start / 1000.0,
                duration=length / 1000.0,
                sample_rate=rate,
                codec=codec.decode("ascii"),
                data=data,
            )
        )
    r.finish()
    return tuple(out)


def _encode_sample_keys(samples: tuple[Sample, ...]) -> bytes:
    keyed = [(i, s.key) for i, s in enumerate(samples) if s.key is not None]
    out = bytearray(_uvarint(len(keyed)))
    for i, key in keyed:
        if not _is_int(key) or not MIDI_MIN <= key <= MIDI_MAX:
            raise _fail(f"sample {i}: key {key!r} outside {MIDI_MIN}..{MIDI_MAX}")
        out += _uvarint(i) + bytes([key])
    return bytes(out)


def _decode_sample_keys(payload: bytes, n_samples: int) -> dict[int, int]:
    r = _Reader(payload, "SKEY chunk")
    n = r.uvarint()
    if n > n_samples:
        raise _fail(f"SKEY chunk: {n} keys for {n_samples} samples")
    keys: dict[int, int] = {}
    last = -1
    for _ in range(n):
        i, key = r.uvarint(), r.u8()
        if not last < i < n_samples:
            raise _fail(f"SKEY chunk: sample index {i} out of order or beyond {n_samples - 1}")
        if key > MIDI_MAX:
            raise _fail(f"SKEY chunk: key {key} outside {MIDI_MIN}..{MIDI_MAX}")
        keys[i] = key
        last = i
    r.finish()
    return keys


def _encode_texts(texts: dict[str, str]) -> bytes:
    _str_map(texts, "texts", None)
    return _compress_smallest(_dump_json(texts, "texts"))


def _decode_texts(payload: bytes) -> dict[str, str]:
    raw = _decompress(payload, "TAGS chunk")
    return _str_map(_parse_json(raw, "TAGS chunk"), "TAGS chunk", None)


# ------------------------------------------------------------------------------------------
# framing
# ------------------------------------------------------------------------------------------


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
    chunks = []
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


def track_sizes(c: "Container") -> list[dict[str, int]]:
    """Bytes each track costs: ``[{"score": .., "timbre": .., "samples": .., "total": ..}]``.

    ``score`` is the track's notes coded (and compressed) alone, so the tracks' score bytes add
    up to about the SCOR chunk (compression shares a little across tracks); ``timbre`` and
    ``samples`` are the track's exact shares of the TIMB and SAMP chunks.
    """
    duration = _exact_duration(c.n_samples, c.sample_rate)
    out = []
    for i, t in enumerate(c.score.tracks):
        score = len(_encode_score(Score(tracks=(replace(t, program=t.program),)), duration))
        tb = [replace(x, track=0) for x in c.timbres if x.track == i]
        timbre = len(_encode_timbres(tuple(tb), 1)) - 1 if tb else 0
        samples = sum(len(_encode_samples((replace(s, track=0),), 1, duration)) - 1
                      for s in c.samples if s.track == i)
        out.append({"score": score, "timbre": timbre, "samples": samples,
                    "total": score + timbre + samples})
    return out


def header_dict(data: bytes) -> dict:
    """The parsed and validated JSON header (the chunks are not read)."""
    raw, _ = _parse_preamble(_as_bytes(data))
    h = _parse_json(raw, "header")
    _validate_header(h)
    return h


# ------------------------------------------------------------------------------------------
# the container
# ------------------------------------------------------------------------------------------


def _round_float(value: float, ndigits: int) -> float | int:
    rounded = round(float(value), ndigits)
    return int(rounded) if rounded.is_integer() and abs(rounded) < 1e15 else rounded


@dataclass
class Container:
    """Everything a ``.smc`` file holds; see docs/FORMAT.md for the encoding."""

    duration: float
    sample_rate: int
    channels: int = 1
    n_samples: int = 0
    loudness_lufs: float | None = None
    score: Score = field(default_factory=Score)
    timbres: tuple[Timbre, ...] = ()
    samples: tuple[Sample, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    encoder: str = ""
    extra: dict = field(default_factory=dict)

    # --- writing --------------------------------------------------------------------------

    def _header(self) -> dict[str, Any]:
        sr = self.sample_rate
        if not _is_int(sr) or not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
            raise _fail(f"sample rate {sr!r} outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}")
        if not _is_num(self.duration) or not 0.0 <= self.duration <= MAX_DURATION_S:
            raise _fail(f"duration {self.duration!r} outside 0..{MAX_DURATION_S:g} s")
        n = self.n_samples
        if _is_int(n) and n == 0 and self.duration > 0:
            n = int(round(self.duration * sr))
        if not _is_int(n) or abs(n - self.duration * sr) > 1.0:
            raise _fail(f"n_samples {n!r} disagrees with duration {self.duration} s at {sr} Hz")
        loud = self.loudness_lufs
        h: dict[str, Any] = {
            "format": "smc",
            "duration": _round_float(n / sr, 6),
            "n_samples": n,
            "sample_rate": sr,
            "channels": self.channels,
            "loudness_lufs": None if loud is None else _round_float(loud, 2),
            "tempo_bpm": _round_float(self.score.tempo_bpm, 2),
            "time_signature": list(self.score.time_signature),
            "key": self.score.key,
            "tracks": [_track_object(t) for t in self.score.tracks],
        }
        if self.encoder:
            h["encoder"] = self.encoder
        if self.tags:
            h["tags"] = dict(self.tags)
        for key, value in self.extra.items():
            if not isinstance(key, str) or key in _RESERVED_KEYS:
                raise _fail(f"extra header field {key!r} is reserved or not a string")
            h[key] = value
        return h

    def to_bytes(self) -> bytes:
        """Serialize to ``.smc`` bytes; raises ContainerError if a value cannot be stored."""
        try:
            h = self._header()
            header_json = _dump_json(h, "header")
            hdr = _validate_header(_parse_json(header_json, "header"))
        except (TypeError, ValueError, AttributeError, OverflowError) as exc:
            if isinstance(exc, ContainerError):
                raise
            raise _fail(f"cannot store container: {exc}") from None
        if len(header_json) > MAX_HEADER_BYTES:
            raise _fail(f"header of {len(header_json)} bytes exceeds the cap of {MAX_HEADER_BYTES}")
        duration = _exact_duration(hdr.n_samples, hdr.sample_rate)
        n_tracks = len(self.score.tracks)
        keyed = any(s.key is not None for s in self.samples)
        panned = any("pan" in t or "engine" in t for t in h["tracks"])
        minor = (FORMAT_MINOR_PAN if panned else FORMAT_MINOR_SAMPLE_KEYS if keyed
                 else FORMAT_MINOR)
        pre = _PREAMBLE.pack(MAGIC, FORMAT_MAJOR, minor, len(header_json)) + header_json
        parts = [pre, _U32.pack(zlib.crc32(pre))]
        parts.append(_chunk(CHUNK_SCORE, _encode_score(self.score, duration)))
        if self.timbres:
            parts.append(_chunk(CHUNK_TIMBRE, _encode_timbres(tuple(self.timbres), n_tracks)))
        if self.samples:
            parts.append(
                _chunk(CHUNK_SAMPLES, _encode_samples(tuple(self.samples), n_tracks, duration))
            )
        if keyed:
            parts.append(_chunk(CHUNK_SAMPLE_KEYS, _encode_sample_keys(tuple(self.samples))))
        if self.texts:
            parts.append(_chunk(CHUNK_TAGS, _encode_texts(self.texts)))
        parts.append(_chunk(CHUNK_END, b""))
        return b"".join(parts)

    # --- reading --------------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, data: bytes) -> "Container":
        """Parse ``.smc`` bytes; raises ContainerError on any problem."""
        try:
            return cls._from_bytes(_as_bytes(data))
        except ContainerError:
            raise
        except (RecursionError, MemoryError) as exc:  # pragma: no cover - defensive
            raise _fail(f"file too complex to read ({type(exc).__name__})") from None

    @classmethod
    def _from_bytes(cls, data: bytes) -> "Container":
        raw_header, pos = _parse_preamble(data)
        hdr = _validate_header(_parse_json(raw_header, "header"))
        chunks = _parse_chunks(data, pos)
        seen: dict[bytes, bytes] = {}
        for ctype, offset, payload in chunks:
            if ctype in _KNOWN_CHUNKS:
                if ctype in seen:
                    raise _fail(f"duplicate {ctype.decode()} chunk at offset {offset}")
                seen[ctype] = payload
            # unknown chunk types are skipped (their CRC was checked)
        if CHUNK_SCORE not in seen:
            raise _fail("missing SCOR chunk")
        duration = _exact_duration(hdr.n_samples, hdr.sample_rate)
        note_lists = _decode_score(seen[CHUNK_SCORE], duration)
        if len(note_lists) != len(hdr.tracks):
            raise _fail(f"header lists {len(hdr.tracks)} tracks, SCOR chunk holds {len(note_lists)}")
        tracks = []
        for i, ((name, program, drum, n_notes, pan, engine, engine_gain), notes) in enumerate(
                zip(hdr.tracks, note_lists)):
            if len(notes) != n_notes:
                raise _fail(f"track {i}: header says {n_notes} notes, SCOR chunk holds {len(notes)}")
            tracks.append(Track(name=name, program=program, is_drum=drum, notes=notes, pan=pan,
                                engine=engine, engine_gain_db=engine_gain))
        n_tracks = len(tracks)
        timbres = _decode_timbres(seen[CHUNK_TIMBRE], n_tracks) if CHUNK_TIMBRE in seen else ()
        samples = (
            _decode_samples(seen[CHUNK_SAMPLES], n_tracks, duration)
            if CHUNK_SAMPLES in seen
            else ()
        )
        if CHUNK_SAMPLE_KEYS in seen:
            keys = _decode_sample_keys(seen[CHUNK_SAMPLE_KEYS], len(samples))
            samples = tuple(replace(s, key=keys.get(i)) for i, s in enumerate(samples))
        texts = _decode_texts(seen[CHUNK_TAGS]) if CHUNK_TAGS in seen else {}
        score = Score(
            tracks=tuple(tracks),
            tempo_bpm=hdr.tempo_bpm,
            time_signature=hdr.time_signature,
            key=hdr.key,
        )
        return cls(
            duration=duration,
            sample_rate=hdr.sample_rate,
            channels=hdr.channels,
            n_samples=hdr.n_samples,
            loudness_lufs=hdr.loudness_lufs,
            score=score,
            timbres=timbres,
            samples=samples,
            tags=hdr.tags,
            texts=texts,
            encoder=hdr.encoder,
            extra=hdr.extra,
        )

    # --- files ----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically to ``path`` (temp file in the same folder, fsync, rename)."""
        atomic_write_bytes(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Container":
        """Read a ``.smc`` file: InputError if unreadable, ContainerError if malformed."""
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise InputError(f"{path}: is a directory") from None
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
        try:
            return cls.from_bytes(data)
        except ContainerError as exc:
            raise ContainerError(f"{path}: {exc}") from None

    @property
    def bitrate_kbps(self) -> float:
        """Size of the serialized container in kbit per second of the original."""
        if not self.duration:
            return 0.0
        return len(self.to_bytes()) * 8 / self.duration / 1000.0


def dumps(c: Container) -> bytes:
    """Serialize a container (same as ``c.to_bytes()``)."""
    return c.to_bytes()


def loads(data: bytes) -> Container:
    """Parse ``.smc`` bytes (same as ``Container.from_bytes``)."""
    return Container.from_bytes(data)


# ------------------------------------------------------------------------------------------
# atomic file writing
# ------------------------------------------------------------------------------------------


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def fsync_directory(folder: str | os.PathLike) -> None:
    """Make a rename in ``folder`` durable (fsync the directory); a no-op where unsupported."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder is written,
    fsynced and renamed over ``path``.  On any failure the temporary file is removed and an
    existing ``path`` is left untouched; OS errors become :class:`OutputError`."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    tmp_name = None
    try:
        try:
            mode = os.stat(target).st_mode & 0o7777
        except OSError:
            mode = _default_mode()
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, target)
        tmp_name = None
        fsync_directory(folder)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
