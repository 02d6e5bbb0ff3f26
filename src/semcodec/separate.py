"""Instrument tracks from a mixed recording: notes grouped by how they sound.

Each transcribed note gets a small feature vector measured from the audio around it
(:func:`note_features`):

* harmonic profile: levels of harmonics 2..8 relative to the fundamental (dB), shortly after
  the onset, where the note dominates its own harmonics best;
* attack: how much louder the note's harmonics are in the first 60 ms than 60-200 ms later;
* decay: slope of the note's harmonic level over its length (dB/s);
* noisiness: energy between the harmonics relative to energy on them;
* register: MIDI pitch, and the note's length (log s).

:func:`assign_tracks` clusters the notes with a diagonal Gaussian mixture (number of tracks
chosen by BIC for ``"auto"``, clusters too small or too alike merged), then smooths the
assignment with *continuity*: a note leans towards the track of the notes around it in time
and pitch.  Everything is deterministic (fixed seeds, no wall-clock dependence).

Pure functions of numpy arrays and :class:`~semcodec.events.Note` lists; scikit-learn's
``GaussianMixture`` is imported lazily.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Assignment:
    """Result of :func:`assign_tracks`: ``labels[i]`` is the track of note ``i`` (0-based,
    tracks ordered by mean pitch, low to high); ``n_tracks``; ``bic`` per tried count."""

    labels: np.ndarray
    n_tracks: int
    bic: dict[int, float]


#: note_features measures the notes in groups whose frames span at most this many STFT frames
#: (~48 s; a longer note gets a group of its own): the magnitudes of one group only are held
#: (~50 MB), not the whole input's (~1.3 GB an hour).
FEATURE_BLOCK_FRAMES = 4096


def _analysis_signal(audio: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
    """(mono ``audio`` resampled to :data:`SR` and padded for centred frames, its number of
    STFT frames): frame t is centred on t * HOP / SR seconds."""
    x = dsp.resample(np.asarray(audio, np.float32), sr, SR)
    x = np.pad(x, (N_FFT // 2, N_FFT // 2))
    if x.shape[0] < N_FFT:
        x = np.pad(x, (0, N_FFT - x.shape[0]))
    return x, 1 + (x.shape[0] - N_FFT) // HOP


def _frames_mag(x: np.ndarray, f0: int, f1: int) -> np.ndarray:
    """Magnitude STFT frames ``f0 .. f1-1`` ``(f1 - f0, N_FFT // 2 + 1)`` float32 of the
    signal of :func:`_analysis_signal`."""
    win = np.hanning(N_FFT).astype(np.float32)
    out = np.empty((max(0, f1 - f0), N_FFT // 2 + 1), np.float32)
    step = 256  # frames per FFT batch: bounded memory on long inputs
    for s in range(f0, f1, step):
        idx = np.arange(s, min(f1, s + step))[:, None] * HOP + np.arange(N_FFT)[None, :]
        out[s - f0:s - f0 + idx.shape[0]] = np.abs(dsp.rfft_rows(x[idx] * win))
    return out


def _spectrogram(audio: np.ndarray, sr: int) -> np.ndarray:
    """Magnitude STFT (frames, bins) of mono ``audio`` resampled to :data:`SR`."""
    x, n_frames = _analysis_signal(audio, sr)
    return _frames_mag(x, 0, n_frames)


def _note_frames(n: Note, n_frames: int) -> tuple[int, int, int]:
    """(a, b, e): the note's first frame, the end of its head (the first 0.5 s) and of its
    body, frames of whose windows end before the note does."""
    fps = SR / HOP
    a = min(n_frames - 1, max(0, int(round((n.onset + 0.02) * fps))))
    dur = max(n.offset - n.onset, 0.02)
    half = 0.5 * N_FFT / SR
    b = min(n_frames, max(a + 1, int(round((n.onset + min(dur - half, 0.5)) * fps))))
    e = min(n_frames, max(a + 1, int(round((n.offset - half) * fps))))
    return a, b, e


def note_features(audio: np.ndarray, sr: int, notes: list[Note] | tuple[Note, ...]) -> np.ndarray:
    """Feature matrix ``(len(notes), len(FEATURE_NAMES))`` of the notes in mono ``audio``.

    The STFT is taken group by group of notes (in onset order, each group's frames within
    :data:`FEATURE_BLOCK_FRAMES`): the same magnitudes as one whole-input spectrogram."""
    notes = list(notes)
    feats = np.zeros((len(notes), len(FEATURE_NAMES)), np.float64)
    if not notes:
        return feats
    x, n_frames = _analysis_signal(audio, sr)
    spans = [_note_frames(n, n_frames) for n in notes]
    order = sorted(range(len(notes)), key=lambda i: spans[i][0])
    k = 0
    while k < len(order):
        lo = spans[order[k]][0]
        hi = max(spans[order[k]][1:])
        j = k + 1
        while j < len(order) and max(hi, *spans[order[j]][1:]) - lo <= FEATURE_BLOCK_FRAMES:
            hi = max(hi, *spans[order[j]][1:])
            j += 1
        spec = _frames_mag(x, lo, hi)
        for i in order[k:j]:
            a, b, e = spans[i]
            feats[i] = _note_row(spec, a - lo, b - lo, e - lo, notes[i])
        k = j
    return feats


def _note_row(spec: np.ndarray, a: int, b: int, e: int, n: Note) -> np.ndarray:
    """The features of note ``n`` whose frames ``a`` (onset), ``b`` (end of head), ``e``
    (end) index the magnitude frames ``spec``."""
    row = np.zeros(len(FEATURE_NAMES), np.float64)
    n_bins = spec.shape[1]
    fps = SR / HOP
    bin_hz = SR / N_FFT
    eps = 1e-7
    f0 = 440.0 * 2.0 ** ((n.pitch - 69) / 12.0)
    dur = max(n.offset - n.onset, 0.02)
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
    row[: N_HARMONICS - 1] = np.clip(rel, -60.0, 20.0)
    level = 20.0 * np.log10(harm[:, valid].sum(axis=1) + eps)
    n_att = max(1, int(round(0.06 * fps)))
    att = level[:n_att].mean()
    later = level[n_att:max(n_att + 1, int(round(0.2 * fps)))]
    row[N_HARMONICS - 1] = float(att - later.mean()) if later.size else 0.0
    if level.shape[0] >= 3:
        t = np.arange(level.shape[0]) / fps
        slope = float(np.polyfit(t, level, 1)[0])
    else:
        slope = 0.0
    row[N_HARMONICS] = float(np.clip(slope, -200.0, 100.0))
    # noisiness: energy between harmonics vs on them, first 0.5 s, up to the 8th harmonic
    top = int(min(n_bins - 1, math.ceil(centre[valid][-1] * 1.03) + 1)) if valid.any() else 1
    band = spec[a:b, max(1, int(0.5 * f0 / bin_hz)):top]
    on = float((head[:, valid] ** 2).sum())
    total = float((band ** 2).sum())
    row[N_HARMONICS + 1] = 10.0 * math.log10(max(total - on, eps) / max(on, eps))
    row[N_HARMONICS + 2] = float(n.pitch)
    row[N_HARMONICS + 3] = math.log(dur)
    return row


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


def _merge_small_and_alike(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Merge clusters that are too small, or too alike in timbre, into their nearest one."""
    labels = labels.copy()
    n = labels.shape[0]
    timbre = x[:, list(TIMBRE_COLUMNS) + list(range(len(FEATURE_NAMES), x.shape[1]))]
    while True:
        ids = [c for c in range(k) if np.any(labels == c)]
        if len(ids) <= 1:
            break
        means = {c: x[labels == c].mean(axis=0) for c in ids}
        tmeans = {c: timbre[labels == c].mean(axis=0) for c in ids}
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
                d = float(np.sqrt(np.mean((tmeans[a] - tmeans[b]) ** 2)))
                if best is None or d < best[0]:
                    best = (d, a, b)
        if best is not None and best[0] < MERGE_DISTANCE:
            labels[labels == best[2]] = best[1]
            continue
        break
    return labels


def assign_tracks(audio: np.ndarray, sr: int, notes: list[Note] | tuple[Note, ...],
                  n_tracks: int | None = None, side: np.ndarray | None = None) -> Assignment:
    """Group ``notes`` (transcribed from mono ``audio`` at ``sr`` Hz) into instrument tracks.

    ``n_tracks`` None = automatic (1..:data:`MAX_AUTO_TRACKS` by BIC, then small or alike
    clusters merged); a number = exactly that many tracks when there are enough notes.
    ``side`` (``(left - right) / 2`` of a stereo input, ``audio`` being the downmix) adds each
    note's stereo position to its features.
    """
    notes = list(notes)
    n = len(notes)
    if n_tracks is not None and not 1 <= n_tracks <= MAX_TRACKS:
        raise ValueError(f"n_tracks must be 1..{MAX_TRACKS}, got {n_tracks}")
    if n == 0 or n_tracks == 1 or n < 2 * MIN_TRACK_NOTES:
        return Assignment(np.zeros(n, np.int64), 1 if n else 0, {})
    from sklearn.mixture import GaussianMixture  # noqa: PLC0415 - ~0.5 s import, encode only

    x = _standardise(note_features(audio, sr, notes)) * FEATURE_WEIGHTS
    pans = None
    if side is not None:
        pans = note_pans(audio, side, sr, notes)
        if float(np.std(pans)) > PAN_MIN_SPREAD:
            x = np.concatenate([x, _standardise(pans[:, None]) * PAN_WEIGHT], axis=1)
        else:
            pans = None
    counts = [n_tracks] if n_tracks else list(range(1, MAX_AUTO_TRACKS + 1))
    counts = [k for k in counts if k <= max(1, n // 4)] or [1]
    bic: dict[int, float] = {}
    models = {}
    for k in counts:
        gm = GaussianMixture(k, covariance_type="diag", random_state=0, n_init=2,
                             reg_covar=1e-3, max_iter=200)
        gm.fit(x)
        bic[k] = float(gm.bic(x))
        models[k] = gm
    k = min(bic, key=lambda j: bic[j])
    post = models[k].predict_proba(x)
    labels = np.argmax(_continuity(notes, post, pans), axis=1)
    if n_tracks is None:
        labels = _merge_small_and_alike(x, labels, k)
    # renumber by mean pitch (low to high); empty clusters vanish
    ids = sorted(set(labels.tolist()), key=lambda c: np.mean([notes[i].pitch for i in
                                                               np.nonzero(labels == c)[0]]))
    remap = {c: j for j, c in enumerate(ids)}
    labels = np.array([remap[c] for c in labels.tolist()], np.int64)
    log.info("tracks from the mix: %d (BIC %s)", len(ids),
             {k: round(v, 1) for k, v in bic.items()})
    return Assignment(labels, len(ids), bic)
