"""Instrument tracks from a mixed recording: notes grouped by how they sound.

Each transcribed note gets a small feature vector measured from the audio around it
(:func:`note_features`):

* harmonic profile: levels of harmonics 2..8 relative to the fundamental (dB), shortly after
  the onset, where the note dominates its own harmonics best;
* attack: how much louder the note's harmonics are in the first 60 ms than 60-200 ms later;
* decay: slope of the note's harmonic level over its length (dB/s);
* noisiness: energy between the harmonics relative to energy on them;
* register: MIDI pitch, and the note's length (log s);
* spectrum: the spectral centroid (over f0) and flatness of the note's head, two of the
  classifier's features (:data:`SPECTRUM_FEATURES`);
* instrument family: the log probabilities of the 14 pitched General MIDI families that the
  instrument classifier (:mod:`semcodec.instrument`) gives the note, when its weights exist.

:func:`assign_tracks` first asks whether the notes can be more than one instrument at all
(:func:`ensemble_share`: notes sounding together an octave or more apart that started at
different times, the later struck alone on its side — a band's bass under its chords and
melody; one instrument's chords start together, its strums re-strike low and high strings
together while the last chord rings, and a monophonic line never overlaps itself).  If so,
it clusters the notes with a diagonal Gaussian mixture (number of tracks chosen by BIC for
``"auto"``, clusters too small or too alike merged), then smooths the assignment with
*continuity*: a note leans towards the track of the notes around it in time and pitch.
Everything is deterministic (fixed seeds, no wall-clock dependence).

Pure functions of numpy arrays and :class:`~semcodec.events.Note` lists; scikit-learn's
``GaussianMixture`` is imported lazily.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from semcodec.constants import ANALYSIS_SAMPLE_RATE, MAX_TRACKS
from semcodec.events import Note
from semcodec.synth import dsp

log = logging.getLogger(__name__)

#: Analysis rate, FFT size and hop of the feature STFT.
SR = ANALYSIS_SAMPLE_RATE
N_FFT = 2048
HOP = 256
#: Harmonics measured per note (the fundamental included).
N_HARMONICS = 8
#: The most tracks ``"auto"`` considers.
MAX_AUTO_TRACKS = 6
#: A cluster with fewer notes than this (or this share of all notes) is merged into another.
MIN_TRACK_NOTES = 12
MIN_TRACK_SHARE = 0.08
#: Clusters whose timbre features (register left out) lie closer than this, in pooled
#: standard deviations, are one instrument playing in two registers: merged.
MERGE_DISTANCE = 0.9
#: ... and clusters whose measured timbre alone (the classifier's families left out) lies
#: closer than this are one sound too: the classifier's families drift with register on an
#: instrument it does not know.
SAME_SOUND_DISTANCE = 0.4
#: Continuity: notes within this time (s) and pitch distance (semitones) pull each other.
CONTINUITY_S = 1.5
CONTINUITY_SEMITONES = 9.0
CONTINUITY_WEIGHT = 0.6
#: ... and, in stereo, notes whose pans differ by much more than this do not.
CONTINUITY_PAN = 0.2

FEATURE_NAMES = tuple(
    [f"h{k}_db" for k in range(2, N_HARMONICS + 1)]
    + ["attack_db", "decay_db_s", "noisiness_db", "pitch", "log_duration"]
)
#: Columns that describe timbre (everything but register and length).
TIMBRE_COLUMNS = tuple(range(len(FEATURE_NAMES) - 2))
#: Weight of each column in the clustering (after standardisation).
FEATURE_WEIGHTS = np.array([0.6] * (N_HARMONICS - 1) + [1.0, 0.8, 0.8, 3.0, 0.5])
#: A stereo input adds each note's pan as a column of this weight (after standardisation),
#: counted as timbre (two tracks at different positions are not merged as alike), but only
#: when the notes' pans spread by more than PAN_MIN_SPREAD (standard deviation): a mix with
#: everything in the middle gains nothing from it.  Chosen with ``python
#: scripts/eval_separate.py --stereo`` (Slakh stems placed at spread pans; auto purity
#: 0.26 / 0.46 from the downmix -> 0.63 / 0.89 in stereo at 5.0, 0.40 / 0.89 at 3.0); at
#: 3.0 two lines of one instrument in one register, left and right, were split by register.
PAN_WEIGHT = 5.0
PAN_MIN_SPREAD = 0.05
#: Weight of the classifier's family log probabilities (each of the 14 pitched families one
#: column, standardised; counted as timbre).
FAMILY_WEIGHT = 2.0
#: Columns of the classifier's features (:func:`semcodec.instrument.note_features`) added to
#: the clustering as measured timbre, each of weight SPECTRUM_WEIGHT (after standardisation):
#: the spectral centroid over f0 and the flatness of the note's head, which set a distorted
#: guitar apart from a clean one in one register (measured even without the classifier's
#: weights).  With FAMILY_WEIGHT 1.5 -> 2.0 and GMM_INITS 2 -> 5 chosen on the eval mixes
#: and the rendered ensembles (``python scripts/eval_separate.py`` / ``--rendered``); the
#: neighbouring weights 1.75-2.5 gave purity 0.55-0.62 / 0.69-0.77 on the two Slakh mixes
#: (0.43 / 0.74 before) and 0.71-0.79 mean on the rendered ensembles (0.56 before).
SPECTRUM_FEATURES = ("centroid_oct", "flatness")
SPECTRUM_WEIGHT = 2.0
#: Random starts of each Gaussian mixture fit (the best kept): fewer leave the split
#: dependent on one start's luck.  A stereo split (positions in the features) keeps the 2
#: that PAN_WEIGHT was chosen with (5 took the ``--stereo`` Track00001 purity 0.63 -> 0.52).
GMM_INITS = 5
STEREO_GMM_INITS = 2
#: The ensemble gate (:func:`ensemble_share`): two notes sound together when they overlap
#: by at least ENSEMBLE_OVERLAP_S (s), started more than ENSEMBLE_ONSET_GAP_S (s) apart and
#: lie at least ENSEMBLE_INTERVAL semitones apart; a note counts when it sounds so against
#: another and its own onset attacks no note on that partner's side of it (at least
#: ENSEMBLE_SIDE_INTERVAL semitones away, within ENSEMBLE_ONSET_GAP_S): one instrument's
#: strum or chord re-attacks its low and high strings together while the last chord still
#: rings, a band's melody moves over a held bass alone.  ``"auto"`` splits only when at least
#: ENSEMBLE_MIN_SHARE of the notes count.  Measured (``python scripts/eval_separate.py
#: --stems`` and ``--rendered``; transcribed notes): the two Slakh mixes 0.11 / 0.23, the
#: rendered brass, strings, mixed chorales, trio and band 0.11-0.25; the 8 Slakh solo stems
#: 0.00-0.03 (a strummed, ringing steel guitar 0.03: 0.40 without the side test), singing,
#: trumpet 0.00, the rendered solos 0.00-0.04 (ragtime piano, a flute's ghost notes; the harp
#: prelude 0.04: 0.21 without it).  The rendered wind chorale (its voices start together)
#: stays out: 0.03.
ENSEMBLE_OVERLAP_S = 0.2
ENSEMBLE_ONSET_GAP_S = 0.08
ENSEMBLE_INTERVAL = 12
ENSEMBLE_SIDE_INTERVAL = 5
ENSEMBLE_MIN_SHARE = 0.07


@dataclass(frozen=True)
class Assignment:
    """Result of :func:`assign_tracks`: ``labels[i]`` is the track of note ``i`` (0-based,
    tracks ordered by mean pitch, low to high); ``n_tracks``; ``bic`` per tried count."""

    labels: np.ndarray
    n_tracks: int
    bic: dict[int, float]
    #: The instrument classifier's GM family (0..15) per track; -1 where it was not asked
    #: (no weights, or a single track: the encoder classifies every track later anyway).
    families: tuple[int, ...] = ()


def _spectrogram(audio: np.ndarray, sr: int) -> np.ndarray:
    """Magnitude STFT (frames, bins) of mono ``audio`` resampled to :data:`SR`."""
    x = dsp.resample(np.asarray(audio, np.float32), sr, SR)
    x = np.pad(x, (N_FFT // 2, N_FFT // 2))  # frame t is centred on t * HOP / SR seconds
    if x.shape[0] < N_FFT:
        x = np.pad(x, (0, N_FFT - x.shape[0]))
    n_frames = 1 + (x.shape[0] - N_FFT) // HOP
    win = np.hanning(N_FFT).astype(np.float32)
    out = np.empty((n_frames, N_FFT // 2 + 1), np.float32)
    step = 256  # frames per FFT batch: bounded memory on long inputs
    for s in range(0, n_frames, step):
        idx = np.arange(s, min(n_frames, s + step))[:, None] * HOP + np.arange(N_FFT)[None, :]
        out[s:s + idx.shape[0]] = np.abs(dsp.rfft_rows(x[idx] * win))
    return out


#: Long inputs: note features are measured on blocks of this many seconds of audio (the notes
#: whose onsets fall in the block), each with FEATURE_TAIL_S s more for the notes' tails, so
#: that the spectrograms, and memory, stay bounded (a 60-min input would need ~1.3 GB each).
FEATURE_BLOCK_S = 60.0
FEATURE_TAIL_S = 10.0


def blockwise(fn: Callable[[np.ndarray, int, list[Note]], np.ndarray], audio: np.ndarray,
              sr: int, notes: list[Note] | tuple[Note, ...]) -> np.ndarray:
    """``fn(audio, sr, notes)`` (one row per note) computed on blocks of
    :data:`FEATURE_BLOCK_S` s of mono ``audio`` (plus :data:`FEATURE_TAIL_S`), each block's
    notes shifted to its start; one call when the input is short."""
    notes = list(notes)
    if not notes or audio.shape[0] <= (FEATURE_BLOCK_S + FEATURE_TAIL_S) * sr:
        return fn(audio, sr, notes)
    block = np.maximum(0, np.array([n.onset for n in notes]) // FEATURE_BLOCK_S).astype(int)
    out: np.ndarray | None = None
    for b in np.unique(block):
        idx = np.nonzero(block == b)[0]
        t0 = float(b) * FEATURE_BLOCK_S
        s0 = int(t0 * sr)
        s1 = min(audio.shape[0], int((t0 + FEATURE_BLOCK_S + FEATURE_TAIL_S) * sr))
        rows = fn(audio[s0:s1], sr, [replace(notes[i], onset=notes[i].onset - t0,
                                             offset=notes[i].offset - t0) for i in idx])
        if out is None:
            out = np.zeros((len(notes), rows.shape[1]), rows.dtype)
        out[idx] = rows
    assert out is not None
    return out


def note_features(audio: np.ndarray, sr: int, notes: list[Note] | tuple[Note, ...]) -> np.ndarray:
    """Feature matrix ``(len(notes), len(FEATURE_NAMES))`` of the notes in mono ``audio``
    (measured block by block on long inputs: :func:`blockwise`)."""
    return blockwise(_note_features, audio, sr, notes)


def _note_features(audio: np.ndarray, sr: int, notes: list[Note]) -> np.ndarray:
    notes = list(notes)
    feats = np.zeros((len(notes), len(FEATURE_NAMES)), np.float64)
    if not notes:
        return feats
    spec = _spectrogram(audio, sr)
    n_frames, n_bins = spec.shape
    fps = SR / HOP
    bin_hz = SR / N_FFT
    eps = 1e-7
    for i, n in enumerate(notes):
        f0 = 440.0 * 2.0 ** ((n.pitch - 69) / 12.0)
        a = min(n_frames - 1, max(0, int(round((n.onset + 0.02) * fps))))
        dur = max(n.offset - n.onset, 0.02)
        half = 0.5 * N_FFT / SR  # frames whose window ends before the note does
        b = min(n_frames, max(a + 1, int(round((n.onset + min(dur - half, 0.5)) * fps))))
        e = min(n_frames, max(a + 1, int(round((n.offset - half) * fps))))
        ks = np.arange(1, N_HARMONICS + 1)
        centre = ks * f0 / bin_hz
        lo = np.clip(np.floor(centre * 0.97).astype(int), 0, n_bins - 1)
        hi = np.clip(np.ceil(centre * 1.03).astype(int) + 1, 1, n_bins)
        # per-harmonic peak magnitude in each frame of the note
        harm = np.stack([spec[a:e, lo[k]:max(hi[k], lo[k] + 1)].max(axis=1)
                         for k in range(N_HARMONICS)], axis=1)  # (frames, H)
        valid = centre < n_bins - 1
        head = harm[: max(1, b - a)]
        prof = 20.0 * np.log10(head.mean(axis=0) + eps)
        rel = np.where(valid, prof - prof[0], -60.0)[1:]
        feats[i, : N_HARMONICS - 1] = np.clip(rel, -60.0, 20.0)
        level = 20.0 * np.log10(harm[:, valid].sum(axis=1) + eps)
        n_att = max(1, int(round(0.06 * fps)))
        att = level[:n_att].mean()
        later = level[n_att:max(n_att + 1, int(round(0.2 * fps)))]
        feats[i, N_HARMONICS - 1] = float(att - later.mean()) if later.size else 0.0
        if level.shape[0] >= 3:
            t = np.arange(level.shape[0]) / fps
            slope = float(np.polyfit(t, level, 1)[0])
        else:
            slope = 0.0
        feats[i, N_HARMONICS] = float(np.clip(slope, -200.0, 100.0))
        # noisiness: energy between harmonics vs on them, first 0.5 s, up to the 8th harmonic
        top = int(min(n_bins - 1, math.ceil(centre[valid][-1] * 1.03) + 1)) if valid.any() else 1
        band = spec[a:b, max(1, int(0.5 * f0 / bin_hz)):top]
        on = float((head[:, valid] ** 2).sum())
        total = float((band ** 2).sum())
        feats[i, N_HARMONICS + 1] = 10.0 * math.log10(max(total - on, eps) / max(on, eps))
        feats[i, N_HARMONICS + 2] = float(n.pitch)
        feats[i, N_HARMONICS + 3] = math.log(dur)
    return feats


#: note_pans works on blocks of this many seconds of audio (plus each block's last notes'
#: heads): memory stays bounded on long inputs.
PAN_BLOCK_S = 60.0
#: Seconds from a note's onset that its pan is measured over.
PAN_HEAD_S = 0.5


def note_pans(audio: np.ndarray, side: np.ndarray, sr: int,
              notes: list[Note] | tuple[Note, ...]) -> np.ndarray:
    """Stereo position (-1 left .. 1 right) of each note, ``(len(notes),)``.

    ``audio`` is the downmix ``(left + right) / 2``, ``side`` = ``(left - right) / 2`` (float32
    ``(n,)`` at ``sr`` Hz).  Compares the two channels' magnitudes at the note's harmonics over
    its first ``PAN_HEAD_S`` (see :mod:`semcodec.stereo` for the pan law).
    """
    notes = list(notes)
    out = np.zeros(len(notes))
    if not notes:
        return out
    mid = np.asarray(audio, np.float32)
    side = np.asarray(side, np.float32)
    fps = SR / HOP
    bin_hz = SR / N_FFT
    onsets = np.array([n.onset for n in notes])
    duration = mid.shape[0] / sr
    for b0 in np.arange(0.0, max(duration, 1e-9), PAN_BLOCK_S):
        idx = np.nonzero((onsets >= b0) & (onsets < b0 + PAN_BLOCK_S))[0]
        if idx.size == 0:
            continue
        s0 = int(b0 * sr)
        s1 = min(mid.shape[0], int((b0 + PAN_BLOCK_S + PAN_HEAD_S + 0.1) * sr))
        spec_l = _spectrogram(mid[s0:s1] + side[s0:s1], sr)
        spec_r = _spectrogram(mid[s0:s1] - side[s0:s1], sr)
        n_frames, n_bins = spec_l.shape
        t0 = s0 / sr
        for i in idx:
            n = notes[i]
            f0 = 440.0 * 2.0 ** ((n.pitch - 69) / 12.0)
            a = min(n_frames - 1, max(0, int(round((n.onset - t0 + 0.02) * fps))))
            head = min(n.offset - n.onset, PAN_HEAD_S)
            b = min(n_frames, max(a + 1, int(round((n.onset - t0 + head) * fps))))
            centre = np.arange(1, N_HARMONICS + 1) * f0 / bin_hz
            centre = centre[centre < n_bins - 1]
            lo = np.clip(np.floor(centre * 0.97).astype(int), 0, n_bins - 1)
            hi = np.clip(np.ceil(centre * 1.03).astype(int) + 1, 1, n_bins)
            a_l = sum(float(spec_l[a:b, b0:b1].sum()) for b0, b1 in zip(lo, hi))
            a_r = sum(float(spec_r[a:b, b0:b1].sum()) for b0, b1 in zip(lo, hi))
            out[i] = 0.0 if a_l + a_r <= 1e-9 else (a_r - a_l) / (a_l + a_r)
    return out


def _standardise(x: np.ndarray) -> np.ndarray:
    mu = x.mean(axis=0)
    sd = x.std(axis=0)
    sd[sd < 1e-6] = 1.0
    return (x - mu) / sd


def _continuity(notes: list[Note], post: np.ndarray, pans: np.ndarray | None = None) -> np.ndarray:
    """Blend each note's track posteriors with those of its neighbours in time and pitch (and
    stereo position, when ``pans`` are given)."""
    on = np.array([n.onset for n in notes])
    pitch = np.array([n.pitch for n in notes], np.float64)
    order = np.argsort(on, kind="stable")
    out = post.copy()
    j0 = 0
    for ii, i in enumerate(order):
        while on[order[j0]] < on[i] - CONTINUITY_S:
            j0 += 1
        j1 = ii
        while j1 + 1 < len(order) and on[order[j1 + 1]] <= on[i] + CONTINUITY_S:
            j1 += 1
        nb = order[j0:j1 + 1]
        nb = nb[nb != i]
        if nb.size == 0:
            continue
        w = (np.exp(-np.abs(on[nb] - on[i]) / (CONTINUITY_S / 2))
             * np.exp(-np.abs(pitch[nb] - pitch[i]) / (CONTINUITY_SEMITONES / 2)))
        if pans is not None:
            w = w * np.exp(-np.abs(pans[nb] - pans[i]) / CONTINUITY_PAN)
        if w.sum() <= 1e-9:
            continue
        neigh = (w[:, None] * post[nb]).sum(axis=0) / w.sum()
        out[i] = (1.0 - CONTINUITY_WEIGHT) * post[i] + CONTINUITY_WEIGHT * neigh
    return out


def _merge_small_and_alike(x: np.ndarray, labels: np.ndarray, k: int,
                           timbre_columns: list[int], measured_columns: list[int]) -> np.ndarray:
    """Merge clusters that are too small, or too alike, into their nearest one.

    Two clusters are alike when their means over ``timbre_columns`` of ``x`` (measured timbre,
    position and the classifier's families) lie within :data:`MERGE_DISTANCE`, or those over
    ``measured_columns`` alone (no families) within :data:`SAME_SOUND_DISTANCE` (RMS of
    standardised, weighted columns)."""
    labels = labels.copy()
    n = labels.shape[0]

    def rms(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.sqrt(np.mean((a - b) ** 2)))

    while True:
        ids = [c for c in range(k) if np.any(labels == c)]
        if len(ids) <= 1:
            break
        means = {c: x[labels == c].mean(axis=0) for c in ids}
        sizes = {c: int(np.sum(labels == c)) for c in ids}
        small = [c for c in ids if sizes[c] < max(MIN_TRACK_NOTES, MIN_TRACK_SHARE * n)]
        if small:
            c = min(small, key=lambda c: sizes[c])
            other = min((d for d in ids if d != c),
                        key=lambda d: float(np.sum((means[c] - means[d]) ** 2)))
            labels[labels == c] = other
            continue
        best = None
        for ai, a in enumerate(ids):
            for b in ids[ai + 1:]:
                d = min(rms(means[a][timbre_columns], means[b][timbre_columns]) / MERGE_DISTANCE,
                        rms(means[a][measured_columns], means[b][measured_columns])
                        / SAME_SOUND_DISTANCE)
                if best is None or d < best[0]:
                    best = (d, a, b)
        if best is not None and best[0] < 1.0:
            labels[labels == best[2]] = best[1]
            continue
        break
    return labels


def ensemble_share(notes: list[Note] | tuple[Note, ...]) -> float:
    """Share of ``notes`` (0..1) that sound against an independent part: each counts when a
    note at least :data:`ENSEMBLE_INTERVAL` semitones away, started more than
    :data:`ENSEMBLE_ONSET_GAP_S` seconds apart, overlaps it by :data:`ENSEMBLE_OVERLAP_S` s or
    more, and the note's own onset attacks nothing on that partner's side of it (no note
    :data:`ENSEMBLE_SIDE_INTERVAL` semitones or more below, for a partner below; above, for
    one above) within :data:`ENSEMBLE_ONSET_GAP_S`.  What two instruments playing at once
    leave in a transcription, and one instrument's ringing chords (struck low and high
    together) do not."""
    notes = sorted(notes, key=lambda n: n.onset)
    if len(notes) < 2:
        return 0.0
    on = np.array([n.onset for n in notes])
    off = np.array([n.offset for n in notes])
    pitch = np.array([n.pitch for n in notes])
    longest = float((off - on).max())
    hit = np.zeros(len(notes), bool)
    for i in range(len(notes)):
        j0 = int(np.searchsorted(on, on[i] - longest))
        j1 = int(np.searchsorted(on, off[i]))
        j = np.arange(j0, j1)
        j = j[j != i]
        overlap = np.minimum(off[j], off[i]) - np.maximum(on[j], on[i])
        gap = np.abs(on[j] - on[i])
        partner = (overlap >= ENSEMBLE_OVERLAP_S) & (gap > ENSEMBLE_ONSET_GAP_S)
        below = partner & (pitch[j] <= pitch[i] - ENSEMBLE_INTERVAL)
        above = partner & (pitch[j] >= pitch[i] + ENSEMBLE_INTERVAL)
        attacked = j[gap <= ENSEMBLE_ONSET_GAP_S]  # notes struck with this one
        hit[i] = bool((below.any() and not np.any(
            pitch[attacked] <= pitch[i] - ENSEMBLE_SIDE_INTERVAL))
            or (above.any() and not np.any(pitch[attacked] >= pitch[i] + ENSEMBLE_SIDE_INTERVAL)))
    return float(hit.mean())


def _family_log_proba(audio: np.ndarray, sr: int,
                      notes: list[Note]) -> tuple[np.ndarray, np.ndarray | None]:
    """(:func:`note_features` of ``notes`` with the :data:`SPECTRUM_FEATURES` columns after
    them, ``(n, len(FEATURE_NAMES) + len(SPECTRUM_FEATURES))``; the classifier's per-note
    program log probabilities ``(n, 112)`` or None without its weights) from one feature
    pass."""
    from semcodec import instrument  # noqa: PLC0415 - the classifier imports this module

    feats = instrument.note_features(audio, sr, notes)
    names = instrument.feature_names()
    ours = feats[:, [names.index(f) for f in FEATURE_NAMES + SPECTRUM_FEATURES]]
    if not instrument.weights_available():
        return ours, None
    try:
        logp = instrument.classify_features(feats)
    except Exception as exc:  # noqa: BLE001 - the split works without the classifier
        log.warning("instrument classifier not used for the track split: %s", exc)
        return ours, None
    return ours, logp


def _family_columns(logp: np.ndarray) -> np.ndarray:
    """Standardised, weighted family log probabilities ``(n, 14)`` of program log
    probabilities ``logp`` ``(n, 112)``."""
    from semcodec.instrument import note_family_log_proba  # noqa: PLC0415

    return _standardise(note_family_log_proba(logp)) * FAMILY_WEIGHT


def _track_families(logp: np.ndarray | None, labels: np.ndarray, k: int,
                    pitches: np.ndarray) -> tuple[int, ...]:
    """The classifier's family of each of the ``k`` tracks (-1 each without ``logp``)."""
    if logp is None:
        return (-1,) * k
    from semcodec.instrument import guess_from_log_proba  # noqa: PLC0415

    return tuple(guess_from_log_proba(logp[labels == c], pitches[labels == c]).family
                 for c in range(k))


def _one_track(notes: list[Note], logp: np.ndarray | None = None) -> Assignment:
    n = len(notes)
    labels = np.zeros(n, np.int64)
    pitches = np.array([x.pitch for x in notes])
    return Assignment(labels, 1 if n else 0, {},
                      _track_families(logp, labels, 1, pitches) if n else ())


def _one_openmp_thread() -> contextlib.AbstractContextManager:
    """scikit-learn's OpenMP loops (the k-means that starts each mixture) on one thread: on a
    few thousand notes the threads only wait on one another (a 5-min mix, 1850 notes, on a
    busy 2-core machine: 4.5-6.8 s of CPU for the split -> 2.0 s, the same tracks and BIC)."""
    try:
        from threadpoolctl import threadpool_limits  # noqa: PLC0415 - scikit-learn's dependency
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="openmp")


def assign_tracks(audio: np.ndarray, sr: int, notes: list[Note] | tuple[Note, ...],
                  n_tracks: int | None = None, side: np.ndarray | None = None,
                  seed: int = 0) -> Assignment:
    """Group ``notes`` (transcribed from mono ``audio`` at ``sr`` Hz) into instrument tracks.

    ``n_tracks`` None = automatic: one track unless :func:`ensemble_share` reaches
    :data:`ENSEMBLE_MIN_SHARE` (or a stereo input's notes spread in position), else
    1..:data:`MAX_AUTO_TRACKS` by BIC, then small or alike clusters merged; a number = exactly
    that many tracks when there are enough notes.  ``side`` (``(left - right) / 2`` of a stereo
    input, ``audio`` being the downmix) adds each note's stereo position to its features; when
    the positions spread, they take the place of the classifier's families (a surer cue, and
    the one PAN_WEIGHT was chosen with).
    """
    notes = list(notes)
    n = len(notes)
    if n_tracks is not None and not 1 <= n_tracks <= MAX_TRACKS:
        raise ValueError(f"n_tracks must be 1..{MAX_TRACKS}, got {n_tracks}")
    if n == 0 or n_tracks == 1 or n < 2 * MIN_TRACK_NOTES:
        return _one_track(notes)
    pans = None
    if side is not None:
        pans = note_pans(audio, side, sr, notes)
        pans = pans if float(np.std(pans)) > PAN_MIN_SPREAD else None
    share = ensemble_share(notes)
    if n_tracks is None and share < ENSEMBLE_MIN_SHARE and pans is None:
        # (notes at spread stereo positions are several sources whatever they play)
        log.info("one instrument: %.2f of the notes sound against another (< %.2f)", share,
                 ENSEMBLE_MIN_SHARE)
        return _one_track(notes)
    from semcodec.background import prefetch  # noqa: PLC0415

    # scikit-learn (~0.2-0.5 s to import, a mix only: a solo never gets here) is imported
    # while the notes' features are measured
    prefetch("sklearn.mixture")
    feats, logp = _family_log_proba(audio, sr, notes)
    from sklearn.mixture import GaussianMixture  # noqa: PLC0415 - encode only
    if pans is None:
        x = _standardise(feats) * np.concatenate(
            [FEATURE_WEIGHTS, np.full(len(SPECTRUM_FEATURES), SPECTRUM_WEIGHT)])
    else:  # position in place of the spectrum and the families (PAN_WEIGHT's setting)
        x = np.concatenate([_standardise(feats[:, :len(FEATURE_NAMES)]) * FEATURE_WEIGHTS,
                            _standardise(pans[:, None]) * PAN_WEIGHT], axis=1)
    measured = list(TIMBRE_COLUMNS) + list(range(len(FEATURE_NAMES), x.shape[1]))
    n_measured = x.shape[1]
    if logp is not None and pans is None:
        x = np.concatenate([x, _family_columns(logp)], axis=1)
    timbre = measured + list(range(n_measured, x.shape[1]))  # pitch and length left out
    counts = [n_tracks] if n_tracks else list(range(1, MAX_AUTO_TRACKS + 1))
    counts = [k for k in counts if k <= max(1, n // 4)] or [1]
    bic: dict[int, float] = {}
    models = {}
    with _one_openmp_thread():
        for k in counts:
            gm = GaussianMixture(k, covariance_type="diag", random_state=seed,
                                 n_init=GMM_INITS if pans is None else STEREO_GMM_INITS,
                                 reg_covar=1e-3, max_iter=200)
            gm.fit(x)
            bic[k] = float(gm.bic(x))
            models[k] = gm
    k = min(bic, key=lambda j: bic[j])
    post = models[k].predict_proba(x)
    labels = np.argmax(_continuity(notes, post, pans), axis=1)
    if n_tracks is None:
        labels = _merge_small_and_alike(x, labels, k, timbre, measured)
    # renumber by mean pitch (low to high); empty clusters vanish
    ids = sorted(set(labels.tolist()), key=lambda c: np.mean([notes[i].pitch for i in
                                                               np.nonzero(labels == c)[0]]))
    remap = {c: j for j, c in enumerate(ids)}
    labels = np.array([remap[c] for c in labels.tolist()], np.int64)
    families = _track_families(logp, labels, len(ids), np.array([x.pitch for x in notes]))
    log.info("tracks from the mix: %d (BIC %s; ensemble share %.2f; families %s)", len(ids),
             {k: round(v, 1) for k, v in bic.items()}, share, families)
    return Assignment(labels, len(ids), bic, families)
