"""The format-level container class, :class:`SmcFile`: everything a ``.smc`` file holds, its
serialization and parsing, plus per-track size accounting.  The API's
:class:`semcodec.Container` subclasses it with exports and decoding."""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Self

from semcodec.constants import MAX_DURATION_S, MAX_HEADER_BYTES, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from semcodec.container.beat_chunk import _decode_tempo_map, _encode_tempo_map
from semcodec.container.chunks import (
    _decode_sample_keys,
    _decode_samples,
    _decode_texts,
    _decode_timbres,
    _encode_sample_keys,
    _encode_samples,
    _encode_texts,
    _encode_timbres,
)
from semcodec.container import resd
from semcodec.container.framing import _as_bytes, _chunk, _parse_chunks, _parse_preamble
from semcodec.container.header import _str_field, _track_object, _validate_header
from semcodec.container.primitives import _exact_duration, _fail, _is_int, _is_num, _round_float
from semcodec.container.compression import score_budget
from semcodec.container.score_chunk import _budget_fail, _decode_score, _encode_score
from semcodec.container.spec import (
    _KNOWN_CHUNKS,
    _PREAMBLE,
    _RESERVED_KEYS,
    _U32,
    CHUNK_END,
    CHUNK_RESIDUAL,
    CHUNK_RESIDUAL_SEGMENTS,
    CHUNK_SAMPLE_KEYS,
    CHUNK_SAMPLES,
    CHUNK_SCORE,
    CHUNK_TAGS,
    CHUNK_TEMPO_MAP,
    CHUNK_TIMBRE,
    FORMAT_MAJOR,
    FORMAT_MINOR,
    FORMAT_MINOR_NEURAL_MODEL,
    FORMAT_MINOR_PAN,
    FORMAT_MINOR_RENDER,
    FORMAT_MINOR_RESIDUAL,
    FORMAT_MINOR_RESIDUAL_SEGMENTS,
    FORMAT_MINOR_SAMPLE_KEYS,
    FORMAT_MINOR_SYNTH_LOUDNESS,
    FORMAT_MINOR_TEMPO_MAP,
    MAGIC,
    MAX_NEURAL_MODEL_CHARS,
    SYNTH_LUFS_DECIMALS,
    SYNTH_LUFS_RANGE,
)
from semcodec.container.strictjson import _dump_json, _parse_json
from semcodec.errors import ContainerError, InputError
from semcodec.events import Sample, Score, Timbre, Track
from semcodec.io import atomic_write_bytes


#: Above this many notes + bend points, :func:`track_sizes` shares the SCOR chunk among the
#: tracks by their notes + bend points instead of compressing each track again (LZMA at its
#: slowest preset would take seconds on a large score).
EXACT_TRACK_SIZES_MAX_OBJECTS = 20_000


def track_sizes(c: "SmcFile", score_bytes: int | None = None) -> list[dict[str, int]]:
    """Bytes each track costs: ``[{"score": .., "timbre": .., "samples": .., "total": ..}]``.

    ``score`` is the track's notes coded (and compressed) alone, so the tracks' score bytes add
    up to about the SCOR chunk (compression shares a little across tracks); ``timbre`` and
    ``samples`` are the track's exact shares of the TIMB and SAMP chunks.  When the score has
    more than :data:`EXACT_TRACK_SIZES_MAX_OBJECTS` notes + bend points and ``score_bytes``
    (the SCOR payload's size) is given, ``score`` is that size shared by notes + bend points.
    """
    duration = _exact_duration(c.n_samples, c.sample_rate)
    weights = [sum(1 + len(n.bends) for n in t.notes) for t in c.score.tracks]
    out = []
    for i, t in enumerate(c.score.tracks):
        if score_bytes is not None and sum(weights) > EXACT_TRACK_SIZES_MAX_OBJECTS:
            score = int(round(score_bytes * weights[i] / max(1, sum(weights))))
        else:
            score = len(_encode_score(Score(tracks=(replace(t, program=t.program),)), duration))
        tb = [replace(x, track=0) for x in c.timbres if x.track == i]
        timbre = len(_encode_timbres(tuple(tb), 1)) - 1 if tb else 0
        samples = sum(len(_encode_samples((replace(s, track=0),), 1, duration)) - 1
                      for s in c.samples if s.track == i)
        out.append({"score": score, "timbre": timbre, "samples": samples,
                    "total": score + timbre + samples})
    return out


#: The parts ``part_sizes`` reports, in the order ``semcodec info`` lists them.
PARTS = ("header", "score", "timbres", "samples", "oneshots", "residual", "texts")


def part_sizes(c: "SmcFile", data: bytes) -> dict[str, int]:
    """Bytes each part of the file ``data`` (the serialization of ``c``) costs, adding up to
    ``len(data)``: ``header`` (preamble, JSON header less the tracks' "render" objects, header
    CRC, END chunk and any unknown chunk), ``score`` (SCOR), ``timbres`` (TIMB plus the
    "render" objects: spectral corrections, rooms), ``samples`` (the pitched excerpts' share of
    SAMP), ``oneshots`` (the drum one-shots' share of SAMP, and SKEY), ``residual`` (RESD
    or RESS, the residual layer) and ``texts`` (TAGS)."""
    from semcodec.container.framing import chunk_table  # noqa: PLC0415

    out = dict.fromkeys(PARTS, 0)
    renders = 0
    for t in c.score.tracks:
        if t.render is not None:
            obj = _track_object(t)
            if "render" in obj:
                renders += len(_dump_json({"render": obj["render"]}, "render")) - 1  # ,"render":{..}
    duration = _exact_duration(c.n_samples, c.sample_rate)
    per = [len(_encode_samples((replace(s, track=0),), 1, duration)) - 1 for s in c.samples]
    pitched = sum(n for n, s in zip(per, c.samples) if s.key is None)
    keyed = sum(n for n, s in zip(per, c.samples) if s.key is not None)
    for ch in chunk_table(data):
        if ch.type == "SCOR":
            out["score"] += ch.length
        elif ch.type == "TIMB":
            out["timbres"] += ch.length
        elif ch.type == "SAMP":
            framing = ch.length - pitched - keyed  # chunk head, CRC and the sample count
            if pitched:
                out["samples"] += pitched + framing
                out["oneshots"] += keyed
            else:
                out["oneshots"] += keyed + framing
        elif ch.type == "SKEY":
            out["oneshots"] += ch.length
        elif ch.type in ("RESD", "RESS"):
            out["residual"] += ch.length
        elif ch.type == "TAGS":
            out["texts"] += ch.length
        else:
            out["header"] += ch.length
    renders = min(renders, out["header"])
    out["header"] -= renders
    out["timbres"] += renders
    return out


@dataclass
class SmcFile:
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
    #: The residual payload (:mod:`semcodec.container.resd`), b"" for none: the whole-grid
    #: layout (format 1.5, chunk RESD) or the segmented one (format 1.7, chunk RESS, for long
    #: files: see :func:`semcodec.container.resd.is_segmented`).
    residual: bytes = b""
    #: The neural model the timbres were fitted to (format 1.6: 12 hex of its weights' sha256;
    #: "" = none named, i.e. the legacy model, see :mod:`semcodec.synth.weights`).
    neural_model: str = ""
    #: The integrated loudness (LUFS) of the default decode's mix before its loudness gain
    #: (format 1.8; None: not stored, the decoder measures it), see
    #: :func:`semcodec.decoder.decode`.  Stored only within SYNTH_LUFS_RANGE.
    synth_lufs: float | None = None

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
        if self.neural_model:
            h["neural_model"] = _str_field(self.neural_model, "neural_model", MAX_NEURAL_MODEL_CHARS,
                                           min_chars=1)
        synth = self.synth_lufs
        if synth is not None and _is_num(synth) and loud is not None and (
                SYNTH_LUFS_RANGE[0] <= synth <= SYNTH_LUFS_RANGE[1]):
            h["synth_lufs"] = _round_float(synth, SYNTH_LUFS_DECIMALS)
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
        rendered = any("render" in t for t in h["tracks"])
        tempo_map = self.score.tempo_map
        segmented = bool(self.residual) and resd.is_segmented(self.residual)
        if self.residual:
            resd.decode(bytes(self.residual), duration)  # raises ContainerError if invalid
        minor = (FORMAT_MINOR_SYNTH_LOUDNESS if "synth_lufs" in h
                 else FORMAT_MINOR_RESIDUAL_SEGMENTS if segmented
                 else FORMAT_MINOR_NEURAL_MODEL if self.neural_model
                 else FORMAT_MINOR_RESIDUAL if self.residual else FORMAT_MINOR_RENDER if rendered
                 else FORMAT_MINOR_TEMPO_MAP if tempo_map is not None else FORMAT_MINOR_PAN if panned
                 else FORMAT_MINOR_SAMPLE_KEYS if keyed else FORMAT_MINOR)
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
        if tempo_map is not None:
            parts.append(_chunk(CHUNK_TEMPO_MAP, _encode_tempo_map(tempo_map, duration)))
        if self.residual:
            parts.append(_chunk(CHUNK_RESIDUAL_SEGMENTS if segmented else CHUNK_RESIDUAL,
                                bytes(self.residual)))
        parts.append(_chunk(CHUNK_END, b""))
        return b"".join(parts)

    # --- reading --------------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, data: bytes, *, check_residual: bool = True) -> Self:
        """Parse ``.smc`` bytes; raises ContainerError on any problem.

        ``check_residual=False``: of a segmented residual (RESS) only the index is checked
        here; each segment's range code is checked when a decoder reaches it (a player that
        starts at once: :func:`semcodec.residual.stream_envelope`)."""
        try:
            return cls._from_bytes(_as_bytes(data), check_residual)
        except ContainerError:
            raise
        except (RecursionError, MemoryError) as exc:  # pragma: no cover - defensive
            raise _fail(f"file too complex to read ({type(exc).__name__})") from None

    @classmethod
    def _from_bytes(cls, data: bytes, check_residual: bool = True) -> Self:
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
        budget = score_budget(len(seen[CHUNK_SCORE]))
        if sum(th.n_notes for th in hdr.tracks) > budget:  # before any decompression
            raise _budget_fail(budget, len(seen[CHUNK_SCORE]))
        note_lists = _decode_score(seen[CHUNK_SCORE], duration)
        if len(note_lists) != len(hdr.tracks):
            raise _fail(f"header lists {len(hdr.tracks)} tracks, SCOR chunk holds {len(note_lists)}")
        tracks = []
        for i, (th, notes) in enumerate(zip(hdr.tracks, note_lists)):
            if len(notes) != th.n_notes:
                raise _fail(f"track {i}: header says {th.n_notes} notes, SCOR chunk holds "
                            f"{len(notes)}")
            tracks.append(Track(name=th.name, program=th.program, is_drum=th.drum, notes=notes,
                                pan=th.pan, engine=th.engine, engine_gain_db=th.engine_gain_db,
                                render=th.render))
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
        tempo_map = (_decode_tempo_map(seen[CHUNK_TEMPO_MAP], duration)
                     if CHUNK_TEMPO_MAP in seen else None)
        residual = b""
        if CHUNK_RESIDUAL in seen and CHUNK_RESIDUAL_SEGMENTS in seen:
            raise _fail("both a RESD and a RESS chunk")
        if CHUNK_RESIDUAL in seen:
            residual = bytes(seen[CHUNK_RESIDUAL])
            if resd.is_segmented(residual):
                raise _fail("RESD: the segmented layout belongs in a RESS chunk")
            resd.decode(residual, duration)  # every rule of the chunk, checked now
        elif CHUNK_RESIDUAL_SEGMENTS in seen:
            residual = bytes(seen[CHUNK_RESIDUAL_SEGMENTS])
            resd.segment_index(residual, duration)  # raises unless segmented and consistent
            if check_residual:
                resd.decode(residual, duration)  # every segment's range code
        score = Score(
            tracks=tuple(tracks),
            tempo_bpm=hdr.tempo_bpm,
            time_signature=hdr.time_signature,
            key=hdr.key,
            tempo_map=tempo_map,
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
            residual=residual,
            neural_model=hdr.neural_model,
            synth_lufs=hdr.synth_lufs,
        )

    # --- files ----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically to ``path`` (temp file in the same folder, fsync, rename)."""
        atomic_write_bytes(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Self:
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
        return bitrate_kbps(len(self.to_bytes()), self.duration)


def bitrate_kbps(n_bytes: int, duration_s: float) -> float:
    """``n_bytes`` over ``duration_s`` seconds of audio, in kbit/s (0 without audio)."""
    return n_bytes * 8 / duration_s / 1000.0 if duration_s > 0 else 0.0


def dumps(c: SmcFile) -> bytes:
    """Serialize a container (same as ``c.to_bytes()``)."""
    return c.to_bytes()


def loads(data: bytes) -> SmcFile:
    """Parse ``.smc`` bytes (same as ``SmcFile.from_bytes``)."""
    return SmcFile.from_bytes(data)
