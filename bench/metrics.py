"""Benchmark metrics: pure functions, no I/O.

Every definition used in docs/BENCHMARKS.md lives here, so the numbers in the report mean
exactly what these docstrings say.

Conventions
-----------
* Audio is a 1-D float numpy array (mono) at ``SR`` = 44 100 Hz unless stated otherwise.
* A note list is a sequence of ``(onset_s, offset_s, midi_pitch)`` triples.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

#: Sample rate at which every audio metric is computed (Hz).
SR = 44100
#: STFT sizes of the multi-resolution mel distance; hop is n_fft / 4 for each.
MEL_N_FFTS = (1024, 2048, 4096)
#: Mel bands of the mel distance.
MEL_N_MELS = 128
#: Floor applied to mel magnitudes before log10.
MEL_FLOOR = 1e-5
#: Hop of the chroma similarity (samples).
CHROMA_HOP = 2048
#: Frame length of the RMS used to select non-silent reference frames (samples).
CHROMA_RMS_FRAME = 4096
#: A frame counts when the reference RMS exceeds this fraction of its median RMS.
CHROMA_RMS_REL = 0.1
#: Onset tolerance of the note F1 (s).
ONSET_TOLERANCE_S = 0.05

Note = tuple[float, float, int]


def bitrate_kbps(n_bytes: int, duration_s: float) -> float:
    """Bitrate of a compressed file in kbit/s: ``n_bytes * 8 / duration_s / 1000``.

    ``n_bytes`` is the size of the file a user would store (container overhead included).
    """
    if duration_s <= 0:
        raise ValueError("duration must be positive")
    return n_bytes * 8.0 / duration_s / 1000.0


def realtime_factor(duration_s: float, wall_s: float) -> float | None:
    """Speed as a multiple of real time: clip duration / wall-clock seconds (higher is faster).

    Returns None when the wall time is not positive (not measured).
    """
    if wall_s is None or wall_s <= 0:
        return None
    return duration_s / wall_s


def median(values: Iterable[float | None]) -> float | None:
    """Median of the values that are not None (the mean of the middle two for an even count);
    None when there are none."""
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    mid = len(v) // 2
    return float(v[mid]) if len(v) % 2 else float((v[mid - 1] + v[mid]) / 2.0)


def run_summary(runs: Sequence[dict], duration_s: float) -> dict:
    """Summary of repeated runs of one command, each ``{"wall_s", "cpu_s", "rss_mb"}``:
    median wall and CPU seconds, the largest peak RSS (MiB), ×RT of the median wall
    (:func:`realtime_factor`) and the number of runs."""
    wall = median(r.get("wall_s") for r in runs)
    rss = [r["rss_mb"] for r in runs if r.get("rss_mb") is not None]
    return dict(wall_s=wall, cpu_s=median(r.get("cpu_s") for r in runs),
                rss_mb=max(rss) if rss else None, x_rt=realtime_factor(duration_s, wall),
                n=len(runs))


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Median over rounds of ``a[i] / b[i]`` (two commands timed in turns): how many times
    slower ``a`` is, robust to the machine's speed drifting between rounds.  Rounds where
    either value is missing or ``b`` is not positive are skipped; None when none is left."""
    return median(x / y for x, y in zip(a, b) if x is not None and y is not None and y > 0)


def pad_to_same_length(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad the shorter of two 1-D signals at the end so both have the same length."""
    a = np.asarray(a, dtype=np.float32).reshape(-1)
    b = np.asarray(b, dtype=np.float32).reshape(-1)
    n = max(len(a), len(b))
    return np.pad(a, (0, n - len(a))), np.pad(b, (0, n - len(b)))


def log_mel_spectrograms(x: np.ndarray, sr: int = SR) -> list[np.ndarray]:
    """``log10(max(mel, 1e-5))`` of ``x`` at each n_fft of MEL_N_FFTS (see :func:`mel_distance`)."""
    import librosa

    out = []
    for n_fft in MEL_N_FFTS:
        m = librosa.feature.melspectrogram(y=x, sr=sr, n_fft=n_fft, hop_length=n_fft // 4,
                                           n_mels=MEL_N_MELS, power=1.0)
        out.append(np.log10(np.maximum(m, MEL_FLOOR)))
    return out


def _ref_feature(cache: dict | None, kind: str, x: np.ndarray, fn):
    """``fn(x)``, memoised in ``cache`` by (kind, len(x)) when a cache dict is given.

    The cache is only valid for one reference signal (the benchmark keeps one per clip).
    """
    if cache is None:
        return fn(x)
    key = (kind, len(x))
    if key not in cache:
        cache[key] = fn(x)
    return cache[key]


def mel_distance(ref: np.ndarray, est: np.ndarray, sr: int = SR, ref_cache: dict | None = None) -> float:
    """Multi-resolution log-mel distance (lower is better; 0 for identical signals).

    Both signals are mono at ``sr`` (44.1 kHz in the benchmark) and zero-padded to the same
    length.  For each n_fft in 1024, 2048 and 4096 (hop n_fft/4, Hann window, centred frames)
    a 128-band mel *magnitude* spectrogram is computed with
    ``librosa.feature.melspectrogram(..., power=1.0)``; the score of that resolution is the
    mean over all bins and frames of ``|log10(max(M_ref, 1e-5)) - log10(max(M_est, 1e-5))|``.
    The result is the mean of the three resolutions' scores.

    ``ref_cache``: optional dict reused across calls with the *same* ``ref`` (speed only).
    """
    x, y = pad_to_same_length(ref, est)
    if len(x) == 0:
        raise ValueError("empty signals")
    lx = _ref_feature(ref_cache, "mel", x, lambda v: log_mel_spectrograms(v, sr))
    ly = log_mel_spectrograms(y, sr)
    return float(np.mean([np.mean(np.abs(a - b)) for a, b in zip(lx, ly)]))


def _chroma(x: np.ndarray, sr: int) -> np.ndarray:
    import warnings

    import librosa

    with warnings.catch_warnings():  # tuning estimation on (near-)silent input
        warnings.simplefilter("ignore", UserWarning)
        return librosa.feature.chroma_cqt(y=x, sr=sr, hop_length=CHROMA_HOP)


def _rms(x: np.ndarray) -> np.ndarray:
    import librosa

    return librosa.feature.rms(y=x, frame_length=CHROMA_RMS_FRAME, hop_length=CHROMA_HOP)[0]


def chroma_similarity(ref: np.ndarray, est: np.ndarray, sr: int = SR,
                      ref_cache: dict | None = None) -> float | None:
    """Mean per-frame cosine similarity of CQT chroma (higher is better; 1 for identical).

    Both signals are zero-padded to the same length.  Chroma is
    ``librosa.feature.chroma_cqt(y, sr, hop_length=2048)`` of each signal.  The reference's
    RMS is ``librosa.feature.rms(y=ref, frame_length=4096, hop_length=2048)`` (centred, so
    its frames line up with the chroma frames); only frames whose reference RMS exceeds
    0.1 x the median reference RMS are averaged.  A frame where either chroma vector is all
    zeros has similarity 0.  Returns None when the reference is entirely silent.

    ``ref_cache``: optional dict reused across calls with the *same* ``ref`` (speed only).
    """
    x, y = pad_to_same_length(ref, est)
    rms = _ref_feature(ref_cache, "rms", x, _rms)
    if not np.any(rms > 0):
        return None
    med = float(np.median(rms))
    cx = _ref_feature(ref_cache, "chroma", x, lambda v: _chroma(v, sr))
    cy = _chroma(y, sr)
    n = min(cx.shape[1], cy.shape[1], len(rms))
    cx, cy, rms = cx[:, :n], cy[:, :n], rms[:n]
    mask = rms > CHROMA_RMS_REL * med
    if not np.any(mask):
        return None
    return float(np.mean(cosine_per_frame(cx, cy)[mask]))


def cosine_per_frame(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching columns of two (features x frames) arrays.

    A column pair where either vector has zero norm scores 0.
    """
    na = np.linalg.norm(a, axis=0)
    nb = np.linalg.norm(b, axis=0)
    dot = np.sum(a * b, axis=0)
    out = np.zeros_like(dot, dtype=np.float64)
    ok = (na > 0) & (nb > 0)
    out[ok] = dot[ok] / (na[ok] * nb[ok])
    return out


def _notes_to_arrays(notes: Iterable[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """(intervals [n, 2] s, pitches [n] Hz) for mir_eval; zero-length notes get 1 ms."""
    rows = [(float(n[0]), float(n[1]), float(n[2])) for n in notes]
    if not rows:
        return np.zeros((0, 2)), np.zeros(0)
    arr = np.array(rows, dtype=np.float64)
    on = arr[:, 0]
    off = np.maximum(arr[:, 1], on + 1e-3)
    hz = 440.0 * 2.0 ** ((arr[:, 2] - 69.0) / 12.0)
    return np.stack([on, off], axis=1), hz


def note_prf(ref: Iterable[Sequence[float]], est: Iterable[Sequence[float]],
             onset_tolerance: float = ONSET_TOLERANCE_S) -> tuple[float, float, float] | None:
    """Onset-only note precision, recall and F1 of ``est`` against ``ref``.

    ``mir_eval.transcription.precision_recall_f1_overlap`` with ``onset_tolerance=0.05`` s,
    ``offset_ratio=None`` (offsets ignored) and the default pitch tolerance of 50 cents;
    pitches are MIDI numbers converted to Hz.  Returns None when the reference is empty
    (undefined); an empty estimate against a non-empty reference scores 0.
    """
    import mir_eval

    ri, rp = _notes_to_arrays(ref)
    ei, ep = _notes_to_arrays(est)
    if len(rp) == 0:
        return None
    if len(ep) == 0:
        return 0.0, 0.0, 0.0
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ri, rp, ei, ep, onset_tolerance=onset_tolerance, offset_ratio=None)
    return float(p), float(r), float(f)


def note_f1(ref: Iterable[Sequence[float]], est: Iterable[Sequence[float]],
            onset_tolerance: float = ONSET_TOLERANCE_S) -> float | None:
    """Onset-only note F1 (see :func:`note_prf`); None when the reference is empty."""
    prf = note_prf(ref, est, onset_tolerance)
    return None if prf is None else prf[2]


def mean_or_none(values: Iterable[float | None]) -> float | None:
    """Mean of the values that are not None (and finite); None when there are none."""
    v = [float(x) for x in values if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else None


# --- drums ---------------------------------------------------------------------------------

#: Onset tolerance of the drum-onset F1 (s).
DRUM_TOLERANCE_S = 0.05
#: The classes the drum-onset F1 matches within: General MIDI drum keys of each.
DRUM_METRIC_CLASSES = {
    "kick": (35, 36),
    "snare": (37, 38, 39, 40),  # side stick, snares, hand clap
    "hihat": (42, 44, 46),  # closed, pedal, open
    "toms": (41, 43, 45, 47, 48, 50),
    "cymbals": (49, 51, 52, 53, 55, 57, 59),  # crash, ride, china, bell, splash
}
_DRUM_KEY_CLASS = {k: c for c, keys in DRUM_METRIC_CLASSES.items() for k in keys}


def drum_class(key: int) -> str:
    """The metric class of GM drum ``key`` (``"other:<key>"`` for a key of no class)."""
    return _DRUM_KEY_CLASS.get(int(key), f"other:{int(key)}")


def drum_onset_prf(ref: Iterable[Sequence[float]], est: Iterable[Sequence[float]],
                   tol: float = DRUM_TOLERANCE_S) -> tuple[float, float, float] | None:
    """Class-aware drum-onset precision, recall and F1 of ``est`` against ``ref``.

    Both are sequences of ``(onset_s, offset_s, gm_key)`` (offsets are ignored).  Keys are
    mapped to the classes of DRUM_METRIC_CLASSES (kick; snare; hi-hat = closed + pedal + open;
    toms; cymbals = crash + ride + china + splash; any other key is a class of its own).
    Within each class, hits are matched one-to-one (maximum bipartite matching,
    ``mir_eval.util.match_events``) when their onsets differ by at most ``tol`` seconds.
    Counts are summed over the classes: precision = matched / estimated, recall = matched /
    reference, F1 their harmonic mean.  Returns None when the reference is empty (undefined);
    an empty estimate against a non-empty reference scores 0.
    """
    import mir_eval

    def by_class(hits) -> dict[str, np.ndarray]:
        out: dict[str, list[float]] = {}
        for h in hits:
            out.setdefault(drum_class(int(h[2])), []).append(float(h[0]))
        return {c: np.sort(np.asarray(v, np.float64)) for c, v in out.items()}

    r, e = by_class(ref), by_class(est)
    n_ref = sum(len(v) for v in r.values())
    n_est = sum(len(v) for v in e.values())
    if n_ref == 0:
        return None
    if n_est == 0:
        return 0.0, 0.0, 0.0
    matched = 0
    for c, on_ref in r.items():
        on_est = e.get(c)
        if on_est is not None and len(on_est):
            matched += len(mir_eval.util.match_events(on_ref, on_est, tol))
    p, rec = matched / n_est, matched / n_ref
    f = 0.0 if matched == 0 else 2 * p * rec / (p + rec)
    return float(p), float(rec), float(f)


def drum_onset_f1(ref: Iterable[Sequence[float]], est: Iterable[Sequence[float]],
                  tol: float = DRUM_TOLERANCE_S) -> float | None:
    """Class-aware drum-onset F1 (see :func:`drum_onset_prf`); None when the reference is empty."""
    prf = drum_onset_prf(ref, est, tol)
    return None if prf is None else prf[2]
