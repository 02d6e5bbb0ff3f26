"""Tempo, beats, downbeats and meter from the audio (the encoder's tempo map).

:func:`analyze` takes mono audio and returns a :class:`semcodec.events.TempoMap`: the beat
times (s), the index of the first downbeat and the meter (2/4, 3/4, 4/4 or 6/8).  Steps:

1. an onset-strength envelope (spectral flux of a log-mel spectrogram, as librosa's
   ``onset_strength``, at 11025 Hz, hop 128 = 86 frames/s) and a chroma, from one STFT;
2. the tempo from the envelope's autocorrelation at the beat lag and its bar multiples,
   with a log-normal prior around 100 BPM (:func:`estimate_tempo`);
3. the beats by dynamic programming at that tempo (:func:`track_beats`, Ellis' algorithm as
   in librosa's ``beat_track``, in numpy: librosa's numba kernels take seconds to compile);
4. compound time (6/8, 12/8) when the onsets inside a beat fall on its thirds rather than on
   its quarters and half; the bar length (2, 3 or 4 beats) from the harmony changes: the
   contrast of the beat-to-beat chroma change on each candidate downbeat grid; the downbeat
   from those plus the low band's onsets (kick drum, bass notes).

Encoding only (decoding never imports this module).  About 0.2-0.3 s per 30 s of audio
(scripts/beat_eval.py measures it).
"""

from __future__ import annotations

import logging
from typing import Iterator

import numpy as np

from semcodec.events import TempoMap

log = logging.getLogger(__name__)

_SR = 11025
_HOP = 128
_NFFT = 1024
_FPS = _SR / _HOP
#: Centre of the tempo prior (BPM) and its width (octaves, standard deviation).
PRIOR_BPM = 100.0
PRIOR_OCTAVES = 0.6
MIN_BPM, MAX_BPM = 40.0, 220.0
#: Upper edge (Hz) of the low band whose onsets (kick drum, bass notes) mark downbeats.
LOW_HZ = 150.0
#: Weight of the low band's accents against the harmony changes in choosing the downbeat.
LOW_WEIGHT = 1.0
#: The flux of a centred 93 ms window peaks before the attack: beats are moved this much
#: later (s; measured on synthetic plucks, where beats came out 26-29 ms early).
ONSET_LAG = 0.027


#: STFT frames per block of :func:`_power_blocks` (~48 s): an hour's whole power spectrogram
#: would take ~2.5 GB.
_BLOCK_FRAMES = 4096


def _power_blocks(y: np.ndarray) -> Iterator[np.ndarray]:
    """The power spectrogram ``(1 + _NFFT // 2, frames)`` of ``y`` at ``_SR`` in blocks of
    _BLOCK_FRAMES frames: ``librosa.stft(y, center=True)`` (zero-padded ends) cut in pieces."""
    from semcodec import filterbanks  # noqa: PLC0415

    half = _NFFT // 2
    n_frames = 1 + len(y) // _HOP
    for f0 in range(0, n_frames, _BLOCK_FRAMES):
        f1 = min(n_frames, f0 + _BLOCK_FRAMES)
        # samples f0 * _HOP - half .. (f1 - 1) * _HOP + half of y, zeros beyond its ends (no
        # padded copy of the whole signal: an hour's is 160 MB)
        a, b = f0 * _HOP - half, (f1 - 1) * _HOP + half
        seg = np.zeros(b - a, y.dtype)
        seg[max(0, -a):max(0, -a) + max(0, min(b, len(y)) - max(a, 0))] = y[max(a, 0):min(b, len(y))]
        yield np.abs(filterbanks.stft(seg, _NFFT, _HOP)) ** 2


def _flux(mel_pow: list[np.ndarray], low_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean spectral flux over all mel bands, over the ``low_rows`` bands), each ``(T,)``, of
    the mel power blocks ``mel_pow`` (``(n_mels, frames)`` each, in time order; they are
    overwritten): ``librosa.power_to_db(ref=np.max, top_db=80)`` of the joined spectrogram,
    its positive first difference along time, the same numbers made block by block (no
    whole-length copies: an hour's mel spectrogram is 80 MB, and each step made another)."""
    from semcodec import filterbanks  # noqa: PLC0415

    ref = max(b.max() for b in mel_pow)
    for k, b in enumerate(mel_pow):
        mel_pow[k] = filterbanks.power_to_db(b, ref=ref)
    floor = max(b.max() for b in mel_pow) - 80.0
    env, low, prev = [], [], None
    for b in mel_pow:
        b = np.maximum(b, floor)
        first = b[:, :1] if prev is None else prev[:, -1:]
        flux = np.maximum(0.0, np.diff(b, axis=1, prepend=first))
        prev = b
        env.append(flux.mean(axis=0))
        low.append(flux[low_rows].mean(axis=0))
    return np.concatenate(env), np.concatenate(low)


def _features(audio: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(onset envelope (T,), low-band onset envelope (T,): kick and bass, chroma (12, T)) at
    ``_FPS`` frames/s."""
    import soxr  # noqa: PLC0415

    from semcodec import filterbanks  # noqa: PLC0415

    y = np.asarray(audio, dtype=np.float32)
    if sr != _SR:
        y = soxr.resample(y, sr, _SR, quality="LQ").astype(np.float32, copy=False)
    mel_fb = filterbanks.mel(sr=_SR, n_fft=_NFFT, n_mels=64, fmax=_SR / 2)
    # chroma without librosa's tuning estimate (its numba kernels cost seconds to compile)
    chroma_fb = filterbanks.chroma(sr=_SR, n_fft=_NFFT, tuning=0.0)
    mel_pow, chroma_pow = [], []
    for spec in _power_blocks(y):
        mel_pow.append(mel_fb @ spec)
        chroma_pow.append(chroma_fb @ spec)
    env, low = _flux(mel_pow, filterbanks.mel_frequencies(n_mels=64, fmax=_SR / 2) < LOW_HZ)
    chroma = np.concatenate(chroma_pow, axis=1)
    chroma /= chroma.max(axis=0, keepdims=True) + 1e-12
    return env.astype(np.float64), low.astype(np.float64), chroma


def _autocorr(env: np.ndarray) -> np.ndarray:
    x = env - env.mean()
    size = 1 << int(np.ceil(np.log2(2 * x.size)))
    spec = np.fft.rfft(x, size)
    ac = np.fft.irfft(spec * np.conj(spec), size)[: x.size]
    return ac / ac[0] if ac[0] > 0 else ac


def _peak(ac: np.ndarray, lag: float) -> float:
    """The autocorrelation's maximum within +-3 % of ``lag`` frames (0 outside the range)."""
    lo, hi = int(lag * 0.97), int(np.ceil(lag * 1.03)) + 1
    if lo < 1 or hi >= ac.size:
        return 0.0
    return float(ac[lo:hi].max())


def estimate_tempo(env: np.ndarray) -> float:
    """The beat tempo (BPM) of an onset envelope at ``_FPS`` frames/s.

    Every lag L between ``MIN_BPM`` and ``MAX_BPM`` is scored by the envelope's
    autocorrelation at L plus 0.3 x that at 2L and at 4L (a beat is grouped in bars; this
    favours the level that the bars repeat) times a log-normal prior (centre ``PRIOR_BPM``,
    ``PRIOR_OCTAVES`` wide); the best lag is refined to its autocorrelation peak.  The
    weights and prior were chosen on scripts/beat_eval.py's clips.
    """
    ac = _autocorr(env)
    best, best_s = 120.0, -np.inf
    for lag in range(int(60 * _FPS / MAX_BPM), int(60 * _FPS / MIN_BPM) + 1):
        if 3 * lag >= ac.size:
            break
        bpm = 60.0 * _FPS / lag
        s = _peak(ac, lag) + 0.3 * _peak(ac, 2 * lag) + 0.3 * _peak(ac, 4 * lag)
        s = max(s, 0.0) * np.exp(-0.5 * (np.log2(bpm / PRIOR_BPM) / PRIOR_OCTAVES) ** 2)
        if s > best_s:
            best, best_s = bpm, s
    return _refine(ac, best)


def _refine(ac: np.ndarray, bpm: float) -> float:
    """``bpm`` moved to the autocorrelation peak nearest its lag (parabolic interpolation),
    using the longest multiple of the lag that fits for precision."""
    k = max(1, min(8, int((ac.size - 2) / (60.0 * _FPS / bpm) / 2)))
    lag = k * 60.0 * _FPS / bpm
    lo, hi = int(lag * 0.98), int(np.ceil(lag * 1.02)) + 1
    i = lo + int(np.argmax(ac[lo:hi]))
    if 0 < i < ac.size - 1:
        a, b, c = ac[i - 1], ac[i], ac[i + 1]
        den = a - 2 * b + c
        peak = i + (0.5 * (a - c) / den if den < 0 else 0.0)
    else:
        peak = float(i)
    return float(60.0 * _FPS * k / peak)


def track_beats(env: np.ndarray, bpm: float, tightness: float = 400.0) -> np.ndarray:
    """Beat frames by dynamic programming (Ellis 2007, as librosa's ``beat_track``): every
    frame's best score is its onset strength plus the best predecessor's score, penalized by
    ``tightness`` x (log of the gap over the beat period)^2; backtracked from the last strong
    beat.  Returns increasing frame indices; weak beats at the ends are trimmed."""
    period = 60.0 * _FPS / bpm
    sd = env.std()
    norm = env / sd if sd > 0 else env
    width = max(1, int(round(period / 32)))
    win = np.exp(-0.5 * (np.arange(-2 * width, 2 * width + 1) / width) ** 2)
    local = np.convolve(norm, win, mode="same")
    n = local.size
    lags = np.arange(int(round(2 * period)), int(round(period / 2)) - 1, -1)  # j = i - lag
    penalty = -tightness * np.log(lags / period) ** 2
    cum = np.zeros(n)
    back = np.full(n, -1)
    first = True
    for i in range(n):
        j = i - lags
        ok = j >= 0
        if not ok.any():
            cum[i] = local[i]
            continue
        cand = cum[j[ok]] + penalty[ok]
        k = int(np.argmax(cand))
        if first and local[i] < 0.01 * local.max():
            cum[i] = local[i]
            continue
        first = False
        cum[i] = local[i] + cand[k]
        back[i] = j[ok][k]
    # the last beat: the last local maximum of cum above half the median of the maxima
    peaks = np.nonzero((cum[1:-1] > cum[:-2]) & (cum[1:-1] >= cum[2:]))[0] + 1
    if peaks.size == 0:
        return np.zeros(0, dtype=int)
    good = peaks[cum[peaks] >= 0.5 * np.median(cum[peaks])]
    i = int(good[-1])
    found = []
    while i >= 0:
        found.append(i)
        i = int(back[i])
    beats = np.array(found[::-1], dtype=int)
    # trim beats at the ends that fall on (almost) nothing
    strength = local[beats]
    thr = 0.5 * np.sqrt(np.mean(strength ** 2))
    keep = np.nonzero(strength >= thr)[0]
    if keep.size == 0:
        return np.zeros(0, dtype=int)
    return beats[keep[0]: keep[-1] + 1]


def _beat_max(x: np.ndarray, frames: np.ndarray, width: int = 3) -> np.ndarray:
    """The maximum of ``x`` within +-``width`` frames of every beat frame."""
    return np.array([x[max(0, f - width): f + width + 1].max() for f in frames])


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / sd if sd > 1e-9 else np.zeros_like(x)


def _harmony_change(chroma: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """1 - cosine similarity of the mean chroma of the beat before and after each beat."""
    bounds = np.concatenate([[0], frames, [chroma.shape[1]]])
    seg = np.stack([chroma[:, a:max(b, a + 1)].mean(axis=1)
                    for a, b in zip(bounds[:-1], bounds[1:])], axis=1)  # (12, n+1)
    seg /= np.linalg.norm(seg, axis=0, keepdims=True) + 1e-9
    return 1.0 - (seg[:, :-1] * seg[:, 1:]).sum(axis=0)  # one per beat


def _bar_scores(accent: np.ndarray) -> dict[tuple[int, int], float]:
    """{(beats per bar, phase): contrast of the accents on that bar grid's downbeats}."""
    out = {}
    n = accent.size
    for m in (2, 3, 4):
        if n < 2 * m:
            continue
        idx = np.arange(n)
        for p in range(m):
            on = accent[idx % m == p]
            off = accent[idx % m != p]
            out[(m, p)] = float(on.mean() - off.mean())
    return out


def _compound(env: np.ndarray, frames: np.ndarray) -> float:
    """How much more onset energy falls on the beats' thirds than on their quarters and
    half, in -1..1 (> ``COMPOUND`` : the beat divides in three, compound time)."""
    thirds, others = [], []
    for a, b in zip(frames[:-1], frames[1:]):
        d = int(b - a)
        if d < 6:
            continue
        w = max(1, d // 24)

        def at(pos: float, a: int = int(a), d: int = d, w: int = w) -> float:
            c = int(round(a + pos * d))
            return float(env[max(0, c - w): c + w + 1].max())
        thirds.append(0.5 * (at(1 / 3) + at(2 / 3)))
        others.append((at(0.25) + at(0.5) + at(0.75)) / 3.0)
    if not thirds:
        return 0.0
    t, o = float(np.mean(thirds)), float(np.mean(others))
    return (t - o) / (t + o + 1e-9)


#: :func:`_compound` above this: compound time (6/8, 12/8).
COMPOUND = 0.085
#: A bar of 3 beats when its best downbeat contrast beats those of 2 and 4 by this factor.
TRIPLE_MARGIN = 1.2
#: A bar of 4 rather than 2 when its contrast is above this fraction of 2's (simple time;
#: 4/4 is far more common than 2/4) or of 2's (compound time: 6/8 more common than 12/8).
FOUR_SIMPLE, FOUR_COMPOUND = 0.6, 1.2


def analyze(audio: np.ndarray, sr: int) -> TempoMap | None:
    """The tempo map of mono ``audio`` (float, (n,)) at ``sr`` Hz; ``None`` when fewer than
    8 beats are found (silence, a few notes)."""
    if audio.size < sr:  # under a second
        return None
    env, low, chroma = _features(audio, sr)
    if not np.any(env > 0):
        return None
    bpm = estimate_tempo(env)
    frames = track_beats(env, bpm)
    if frames.size < 8:
        return None
    # bar lines are where the harmony changes: the contrast of the beat-synchronous chroma
    # change on every candidate downbeat grid (onset and bass accents measured worse)
    scores = _bar_scores(_zscore(_harmony_change(chroma, frames)))
    compound = _compound(env, frames) > COMPOUND
    if not scores:
        return None

    def best(m: int) -> tuple[float, int]:
        return max((scores[(m, p)], p) for p in range(m) if (m, p) in scores)
    (s2, p2), (s3, p3), (s4, p4) = best(2), best(3), best(4)
    if not compound and s3 > TRIPLE_MARGIN * max(s2, s4):
        m, phase = 3, p3
    elif s4 > (FOUR_COMPOUND if compound else FOUR_SIMPLE) * s2:
        m, phase = 4, p4
    else:
        m, phase = 2, p2
    # the downbeat: harmony changes, plus the kick and bass onsets (bar starts)
    lows = _bar_scores(_zscore(_beat_max(low, frames)))
    phase = max(range(m), key=lambda p: scores.get((m, p), -np.inf)
                + LOW_WEIGHT * lows.get((m, p), 0.0))
    ts = (3 * m, 8) if compound else (m, 4)
    times = frames * (_HOP / _SR) + ONSET_LAG
    log.debug("beats: %.1f BPM, %d beats, meter %d/%d", bpm, frames.size, ts[0], ts[1])
    return TempoMap(beats=tuple(round(float(t), 3) for t in times), downbeat=int(phase),
                    time_signature=ts)
