"""The SCOR chunk: every track's notes as delta-coded varint columns (onsets, durations,
pitches, velocities, bend counts, bend times, bend values), compressed."""

from __future__ import annotations

import math

from semcodec.constants import (
    BEND_MAX_SEMITONES,
    BEND_TICK_S,
    BEND_UNITS_PER_SEMITONE,
    MAX_BEND_POINTS,
    MAX_NOTES,
    MAX_TRACKS,
    MIDI_MAX,
    MIDI_MIN,
    SCORE_TICK_S,
    VELOCITY_MAX,
    VELOCITY_MIN,
)
from semcodec.constants import SCORE_OBJECTS_FLOOR, SCORE_OBJECTS_PER_BYTE
from semcodec.container.compression import _compress_smallest, _decompress, score_budget
from semcodec.container.primitives import (
    _bend_ok,
    _end_limit_ticks,
    _fail,
    _is_int,
    _Reader,
    _round_tick,
    _uvarint,
    _zigzag,
)
from semcodec.container.spec import END_SLACK_S, MAX_BEND_UNITS, MAX_DECOMPRESSED_BYTES
from semcodec.events import BendPoint, Note, Score


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
    return _compress_smallest(raw, total_notes + total_bends)


def _budget_fail(budget: int, payload_bytes: int):
    """The error of a score over its budget of notes + bend points (:func:`score_budget`)."""
    return _fail(f"SCOR chunk: more than {budget} notes and bend points for its {payload_bytes} "
                 f"bytes (budget: {SCORE_OBJECTS_PER_BYTE:g} per byte, at least "
                 f"{SCORE_OBJECTS_FLOOR})")


def _decode_score(payload: bytes, duration: float) -> list[tuple[Note, ...]]:
    budget = score_budget(len(payload))
    raw = _decompress(payload, "SCOR chunk")
    r = _Reader(raw, "SCOR chunk")
    n_tracks = r.uvarint()
    if n_tracks > MAX_TRACKS:
        raise _fail(f"SCOR chunk: {n_tracks} tracks (at most {MAX_TRACKS})")
    total_notes = 0
    total_bends = 0
    tracks: list[tuple[Note, ...]] = []
    for ti in range(n_tracks):
        n = r.uvarint()
        total_notes += n
        if total_notes > MAX_NOTES:
            raise _fail(f"SCOR chunk: more than {MAX_NOTES} notes")
        if total_notes + total_bends > budget:
            raise _budget_fail(budget, len(payload))
        if 5 * n > r.remaining():  # each note needs at least 5 one-byte varints
            raise _fail(f"SCOR chunk: track {ti} claims {n} notes, more than the data holds")
        bends_left = min(MAX_BEND_POINTS - total_bends, budget - total_notes - total_bends)
        notes, n_bends = _decode_track(r, ti, n, duration, bends_left)
        total_bends += n_bends
        tracks.append(notes)
    r.finish()
    return tracks


def _decode_track(r: _Reader, ti: int, n: int, duration: float,
                  bends_left: int) -> tuple[tuple[Note, ...], int]:
    """Track ``ti``'s ``n`` notes from the SCOR columns at ``r``, and its number of bend
    points (at most ``bends_left``: what MAX_BEND_POINTS and the score budget leave)."""
    limit = _end_limit_ticks(duration)
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
        if n_bends > bends_left:  # checked before any bend point is read
            raise _fail(f"SCOR chunk: more pitch-bend points than allowed (at most "
                        f"{MAX_BEND_POINTS}, and within the notes + bend points budget)")
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
    return tuple(notes), n_bends
