"""Drum one-shots: for every drum key used, one short Opus sample cut from its cleanest hit,
for the neural engine's sampler; and :func:`encode_drums`, detection and one-shots over one
analysis."""

from __future__ import annotations

import io
import logging

import numpy as np

from semcodec.audio import canonical_ogg
from semcodec.constants import MIDI_MAX, MIDI_MIN, VELOCITY_MAX
from semcodec.drums.common import (
    CLOSED_HAT,
    CRASH,
    HIGH_TOM,
    KICK,
    LOW_TOM,
    MID_TOM,
    OPEN_HAT,
    RIDE,
    SNARE,
    _check,
)
from semcodec.drums.detection import FPS, _analyse, _Analysis, _detect, _to_notes
from semcodec.events import Note, Sample, Track
from semcodec.synth import dsp

log = logging.getLogger(__name__)

# --- one-shots ------------------------------------------------------------------------------
ONESHOT_SR = 24000
#: Longest one-shot of each key (s); the cut also ends where the hit has decayed by
#: ONESHOT_DECAY_DB or where the next hit starts.
ONESHOT_MAX_S = {KICK: 0.3, SNARE: 0.3, CLOSED_HAT: 0.2, OPEN_HAT: 0.5, LOW_TOM: 0.45,
                 MID_TOM: 0.45, HIGH_TOM: 0.4, CRASH: 0.5, RIDE: 0.5}
ONESHOT_DEFAULT_S = 0.35
ONESHOT_MIN_S = 0.05
ONESHOT_PRE_S = 0.005
ONESHOT_FADE_S = 0.02
ONESHOT_DECAY_DB = -40.0



#: libsndfile's Opus compression level for one-shots (0 = best, 1 = smallest).  At 1.0 Opus
#: codes only up to ~6 kHz, and hi-hats and cymbals lose what makes them drums (on the bench's
#: drum clips the neural engine's mel distance went from 0.24 to 1.05-1.30 and the drum
#: detector found nothing in its output); at 0.7 a one-shot is 1-1.8 kB but keeps its highs.
ONESHOT_COMPRESSION = 0.7


def _encode_opus(seg: np.ndarray) -> bytes:
    import soundfile as sf  # noqa: PLC0415

    buf = io.BytesIO()
    sf.write(buf, np.clip(seg, -1.0, 1.0), ONESHOT_SR, format="OGG", subtype="OPUS",
             compression_level=ONESHOT_COMPRESSION)
    return canonical_ogg(buf.getvalue())


def _choose_shots(audio: np.ndarray, sr: int, hits: list[Note],
                  an: _Analysis | None) -> list[tuple[int, float, float, int]]:
    """(key, start s, duration s, number of hits) of the cleanest hit of every key used."""
    if an is None:
        an = _analyse(audio, sr)
    n_frames = an.n_frames
    duration = audio.shape[0] / sr
    all_on = np.sort(np.array([h.onset for h in hits], np.float64))
    uniq = np.unique(np.round(all_on, 6))
    env = an.S.sum(axis=0)
    def next3(x: np.ndarray) -> np.ndarray:  # x[t] + x[t+1] + x[t+2]
        c = np.concatenate([[0.0], np.cumsum(x)])
        idx = np.arange(x.shape[0])
        return c[np.minimum(idx + 3, x.shape[0])] - c[idx]

    p_att, h_att = next3(an.P.sum(axis=0)), next3(an.H.sum(axis=0))
    by_key: dict[int, list[Note]] = {}
    for h in hits:
        by_key.setdefault(int(h.pitch), []).append(h)
    out = []
    for key in sorted(by_key):
        notes = by_key[key]
        max_s = ONESHOT_MAX_S.get(key, ONESHOT_DEFAULT_S)
        on = np.array([h.onset for h in notes], np.float64)
        vel = np.array([h.velocity for h in notes], np.float64)
        t = np.rint(on * FPS).astype(np.int64)
        ok = (t >= 0) & (t < n_frames)
        if not ok.any():
            continue
        on, vel, t = on[ok], vel[ok], t[ok]
        nxt = np.searchsorted(uniq, on + 0.02, side="right")
        gap = np.where(nxt < uniq.shape[0], uniq[np.minimum(nxt, uniq.shape[0] - 1)] - on,
                       duration - on)
        length = np.minimum(np.minimum(max_s, gap - 0.01), duration - on)
        same = np.sort(on)
        around = (np.searchsorted(all_on, on + 0.02) - np.searchsorted(all_on, on - 0.02)
                  - (np.searchsorted(same, on + 0.02) - np.searchsorted(same, on - 0.02)))
        purity = 10.0 * np.log10((p_att[t] + 1e-30) / (p_att[t] + h_att[t] + 1e-30))
        value = (10.0 * vel / VELOCITY_MAX + 10.0 * np.minimum(length / max_s, 1.0) - 8.0 * around
                 + purity)
        value[length < ONESHOT_MIN_S] = -np.inf
        if not np.isfinite(value).any():
            continue
        j = int(np.argmax(value))  # ties: the earliest hit
        tj, length_j = int(t[j]), float(length[j])
        # end where the hit has decayed by ONESHOT_DECAY_DB (whole-signal band power)
        seg_env = env[tj:min(n_frames, tj + int(length_j * FPS) + 1)]
        if seg_env.size > 2:
            top = int(np.argmax(seg_env))
            below = np.nonzero(seg_env[top:] < seg_env[top] * 10 ** (ONESHOT_DECAY_DB / 10))[0]
            if below.size:
                length_j = max(ONESHOT_MIN_S, min(length_j, (top + int(below[0]) + 1) / FPS))
        start = max(0.0, tj / FPS - ONESHOT_PRE_S)
        out.append((key, start, length_j + ONESHOT_PRE_S, len(notes)))
    return out


def drum_oneshots(audio: np.ndarray, sr: int, hits: list[Note] | tuple[Note, ...], *,
                  max_bytes: int | None = None, _an: _Analysis | None = None) -> list[Sample]:
    """One Opus one-shot (at most 0.5 s, mono, 24 kHz) per drum key used in ``hits``.

    ``audio`` is mono float32 ``(n,)`` at ``sr`` Hz, ``hits`` are drum notes (``pitch`` = GM
    key), e.g. from :func:`detect_drums`.  Each one-shot is cut from the key's cleanest hit:
    loud, far from the next hit, not shared with hits of other keys, little harmonic energy
    (other instruments) at its attack; it ends where the hit has decayed by 40 dB, before the
    next hit, or at the key's length cap (0.2 s for a closed hi-hat .. 0.5 s for cymbals).
    Returns ``Sample(track=0, start, duration, 24000, "opus", data, key=GM key)`` sorted by key
    (the caller renumbers ``track``).  With ``max_bytes``, the keys with the fewest hits are
    dropped first until the coded one-shots fit.
    """
    x = _check(audio, sr)
    hits = [h for h in hits if MIDI_MIN <= int(h.pitch) <= MIDI_MAX]
    if not hits or x.shape[0] == 0:
        return []
    chosen = _choose_shots(x, int(sr), hits, _an)
    samples = []
    for key, start, dur, count in chosen:
        seg = x[int(round(start * sr)):int(round((start + dur) * sr))]
        seg = dsp.resample(seg, int(sr), ONESHOT_SR)
        if seg.shape[0] < 16:
            continue
        nf = min(int(ONESHOT_FADE_S * ONESHOT_SR), seg.shape[0] // 2)
        seg = seg.copy()
        seg[:int(0.001 * ONESHOT_SR)] *= np.linspace(0, 1, int(0.001 * ONESHOT_SR), dtype=np.float32)
        seg[-nf:] *= np.linspace(1.0, 0.0, nf, dtype=np.float32)
        data = _encode_opus(seg)
        samples.append((count, key, Sample(track=0, start=float(round(start, 6)),
                                           duration=float(seg.shape[0] / ONESHOT_SR),
                                           sample_rate=ONESHOT_SR, codec="opus", data=data,
                                           key=int(key))))
    if max_bytes is not None:
        # drop the least-used keys (ties: the larger one-shot) until the rest fits
        order = sorted(samples, key=lambda s: (s[0], -len(s[2].data), s[1]))
        total = sum(len(s[2].data) for s in samples)
        dropped = set()
        for count, key, smp in order:
            if total <= max_bytes:
                break
            dropped.add(key)
            total -= len(smp.data)
        if dropped:
            log.info("drum one-shots over %d bytes: dropped keys %s", max_bytes, sorted(dropped))
        samples = [s for s in samples if s[1] not in dropped]
    return [s[2] for s in sorted(samples, key=lambda s: s[1])]


def encode_drums(audio: np.ndarray, sr: int, *,
                 max_bytes: int | None = None) -> tuple[Track | None, tuple[Sample, ...]]:
    """The drum track of mono float32 ``audio`` at ``sr`` Hz and its one-shots.

    Returns ``(Track(name="drums", program=0, is_drum=True, notes=...), one-shots)``, or
    ``(None, ())`` when the audio has no drums.  ``max_bytes`` caps the one-shots' total size
    (see :func:`drum_oneshots`; 0 keeps none).  One analysis serves both steps.
    """
    x = _check(audio, sr)
    if x.shape[0] < sr * 0.05 or not np.any(x):
        return None, ()
    an = _analyse(x, int(sr))
    notes = _to_notes(_detect(an))
    if not notes:
        return None, ()
    track = Track(name="drums", program=0, is_drum=True).with_notes(notes)
    shots = () if max_bytes == 0 else tuple(drum_oneshots(x, int(sr), notes, max_bytes=max_bytes,
                                                          _an=an))
    return track, shots
