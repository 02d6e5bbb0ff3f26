"""The BEAT chunk (format 1.3): the tempo map, i.e. beat times, first downbeat and meter.

Payload (docs/FORMAT.md section 6b)::

    u8       numerator        1..64
    u8       denominator      1, 2, 4, ..., 64
    uvarint  downbeat         index of the first bar's first beat, < beats per bar
    uvarint  count            number of beats, 2..MAX_BEATS
    uvarint  first            time of the first beat, ms
    uvarint  gap              ms from the first beat to the second
    count - 2 zvarints        change of the gap from the previous one (ms)

Every gap must lie in ``MIN_BEAT_GAP_MS..MAX_BEAT_GAP_MS``; the last beat must be within the
clip plus END_SLACK_S.  No bytes may be left over.
"""

from __future__ import annotations

from semcodec.container.primitives import _end_limit_ms, _fail, _is_int, _Reader, _uvarint, _zigzag
from semcodec.container.spec import (
    _MAX_TIME_SIG_NUMERATOR,
    _TIME_SIG_DENOMINATORS,
    MAX_BEAT_GAP_MS,
    MAX_BEATS,
    MIN_BEAT_GAP_MS,
)
from semcodec.events import TempoMap


def _encode_tempo_map(tm: TempoMap, duration: float) -> bytes:
    num, den = tm.time_signature
    if not (_is_int(num) and 1 <= num <= _MAX_TIME_SIG_NUMERATOR and den in _TIME_SIG_DENOMINATORS):
        raise _fail(f"tempo map: time signature {num}/{den} cannot be stored")
    ms = [int(round(float(t) * 1000.0)) for t in tm.beats]
    if not 2 <= len(ms) <= MAX_BEATS:
        raise _fail(f"tempo map: {len(ms)} beats outside 2..{MAX_BEATS}")
    if not _is_int(tm.downbeat) or not 0 <= tm.downbeat < tm.beats_per_bar:
        raise _fail(f"tempo map: downbeat {tm.downbeat!r} outside 0..{tm.beats_per_bar - 1}")
    gaps = [b - a for a, b in zip(ms, ms[1:])]
    if ms[0] < 0 or ms[-1] > _end_limit_ms(duration) or \
            not all(MIN_BEAT_GAP_MS <= g <= MAX_BEAT_GAP_MS for g in gaps):
        raise _fail("tempo map: beats must be increasing, "
                    f"{MIN_BEAT_GAP_MS}..{MAX_BEAT_GAP_MS} ms apart, within the clip")
    out = bytearray([num, den])
    out += _uvarint(tm.downbeat) + _uvarint(len(ms)) + _uvarint(ms[0]) + _uvarint(gaps[0])
    for a, b in zip(gaps, gaps[1:]):
        out += _uvarint(_zigzag(b - a))
    return bytes(out)


def _decode_tempo_map(payload: bytes, duration: float) -> TempoMap:
    r = _Reader(payload, "BEAT chunk")
    num, den = r.u8(), r.u8()
    if not 1 <= num <= _MAX_TIME_SIG_NUMERATOR or den not in _TIME_SIG_DENOMINATORS:
        raise _fail(f"BEAT chunk: time signature {num}/{den} not allowed")
    downbeat, count = r.uvarint(), r.uvarint()
    if not 2 <= count <= MAX_BEATS:
        raise _fail(f"BEAT chunk: {count} beats outside 2..{MAX_BEATS}")
    if count > r.remaining() + 2:  # every beat after the second takes at least a byte
        raise _fail(f"BEAT chunk: {count} beats in {len(payload)} bytes")
    t, gap = r.uvarint(), r.uvarint()
    limit = _end_limit_ms(duration)
    times = [t]
    for k in range(count - 1):
        if k:
            gap += r.zvarint()
        if not MIN_BEAT_GAP_MS <= gap <= MAX_BEAT_GAP_MS:
            raise _fail(f"BEAT chunk: beat {k + 1} is {gap} ms after the previous one "
                        f"(allowed {MIN_BEAT_GAP_MS}..{MAX_BEAT_GAP_MS})")
        t += gap
        if t > limit:
            raise _fail(f"BEAT chunk: beat {k + 1} at {t} ms is past the end ({limit} ms)")
        times.append(t)
    r.finish()
    if times[0] > limit:
        raise _fail(f"BEAT chunk: first beat at {times[0]} ms is past the end ({limit} ms)")
    tm = TempoMap(beats=tuple(x / 1000.0 for x in times), downbeat=downbeat,
                  time_signature=(num, den))
    if downbeat >= tm.beats_per_bar:
        raise _fail(f"BEAT chunk: downbeat {downbeat} not below {tm.beats_per_bar} beats per bar")
    return tm
