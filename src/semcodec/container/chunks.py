"""The TIMB (timbres), SAMP (audio samples), SKEY (sample keys) and TAGS (long texts) chunks."""

from __future__ import annotations

from typing import Any

from semcodec.constants import (
    MAX_CODEC_NAME_BYTES,
    MAX_EMBEDDING_DIM,
    MAX_ROOM_PARAMS,
    MAX_SAMPLE_RATE,
    MAX_SAMPLES,
    MAX_TEXT_BYTES,
    MAX_TIMBRE_GAIN_DB,
    MAX_TIMBRES,
    MIDI_MAX,
    MIDI_MIN,
    MIN_SAMPLE_RATE,
)
from semcodec.container.compression import _compress_smallest, _decompress
from semcodec.container.header import _str_map
from semcodec.container.primitives import (
    _end_limit_ms,
    _f16,
    _fail,
    _is_int,
    _Reader,
    _round_tick,
    _uvarint,
)
from semcodec.container.spec import _U32
from semcodec.container.strictjson import _dump_json, _parse_json
from semcodec.events import Sample, Timbre


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
        if not isinstance(t.gain_db, (int, float)) or not abs(t.gain_db) <= MAX_TIMBRE_GAIN_DB:
            raise _fail(f"{what}: gain {t.gain_db!r} dB outside -{MAX_TIMBRE_GAIN_DB:g}.."
                        f"{MAX_TIMBRE_GAIN_DB:g}")
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
        if abs(gain) > MAX_TIMBRE_GAIN_DB:
            raise _fail(f"TIMB chunk: timbre {i} gain {gain:g} dB outside "
                        f"-{MAX_TIMBRE_GAIN_DB:g}..{MAX_TIMBRE_GAIN_DB:g}")
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
    raw = _dump_json(texts, "texts")
    if len(raw) > MAX_TEXT_BYTES:
        raise _fail(f"texts of {len(raw)} bytes exceed the cap of {MAX_TEXT_BYTES}")
    return _compress_smallest(raw)


def _decode_texts(payload: bytes) -> dict[str, str]:
    raw = _decompress(payload, "TAGS chunk", cap=MAX_TEXT_BYTES)
    return _str_map(_parse_json(raw, "TAGS chunk"), "TAGS chunk", None)
