"""Drum transcription and drum one-shots: audio -> General MIDI drum hits -> a drum track.

The detector is hand-designed (no trained model, nothing downloaded); every threshold is a
named constant below.  For mono audio at any rate it

1. resamples to ``ANALYSIS_SR`` and splits the STFT magnitude into harmonic and percussive
   parts by median filtering (HPSS, Fitzgerald 2010: a median across ``HPSS_KERNEL`` frames
   against a median across ``HPSS_KERNEL`` bins, soft Wiener masks; the same algorithm as
   ``librosa.decompose.hpss``, done with numpy so that 30 s take a fraction of a second);
2. sums the power of each part into 17 half-octave bands (30 Hz .. 16 kHz) and finds onsets in
   the percussive part: a log-spectral flux, peak-picked over the full band and separately over
   the low / mid / high regions, so that a soft hi-hat after a loud hit is not lost;
3. explains the attack spectrum of every onset (its rise above the pre-onset level) as a
   non-negative mix of four spectral templates -- kick, drum (snare or tom), metal (hi-hat or
   ride) and crash -- with an Itakura-Saito NMF over the recording's onsets whose templates
   start from hand-made shapes and adapt to the recording.  Several templates can be active at
   one onset (kick + hi-hat is the common case): each is judged on its own;
4. decides that the recording has drums at all only on strong evidence: enough confident
   hits of the metal template (hi-hat, ride or cymbal: every kit plays them), where
   *confident* means loud, well fitted, percussive at the attack (much more than the harmonic
   part grows) and without a harmonic tail, some of them at onsets where no note starts at all.
   Guitars, pianos, slap basses and kalimbas produce percussive attacks too, but not these;
5. names each accepted hit from its decay: a drum hit whose low band rings while its 2-9 kHz
   band dies is a tom (the snare's wires do the opposite), toms are ordered by pitch; a metal
   hit that sustains is an open hi-hat, the others are closed hi-hats or a ride (clustered by
   decay within the recording); the crash template with a long tail is a crash.

:func:`drum_oneshots` then cuts, for every drum key used, one short Opus one-shot from its
cleanest hit, for the neural engine's sampler (:func:`semcodec.synth.dsp.play_oneshots`).

Times are seconds, audio is mono float32 ``(n,)`` at ``sr`` Hz, velocities are MIDI 1..127.
Everything is deterministic: the same input gives the same hits and bytes.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass

import numpy as np

from semcodec.audio import canonical_ogg
from semcodec.events import Note, Sample, Track
from semcodec.synth import dsp

log = logging.getLogger(__name__)

#: The drum classes the detector reports, in order, with their General MIDI drum keys.
GM_DRUM_CLASSES: dict[str, int] = {
    "kick": 36,
    "snare": 38,
    "closed_hat": 42,
    "open_hat": 46,
    "low_tom": 45,
    "mid_tom": 47,
    "high_tom": 50,
    "crash": 49,
    "ride": 51,
}
KICK, SNARE, CLOSED_HAT, OPEN_HAT = 36, 38, 42, 46
LOW_TOM, MID_TOM, HIGH_TOM, CRASH, RIDE = 45, 47, 50, 49, 51

# --- analysis -----------------------------------------------------------------------------
#: Rate (Hz), FFT size and hop (samples) of the analysis: 32 ms windows, 100 frames/s.
ANALYSIS_SR = 32000
N_FFT = 1024
HOP = 320
FPS = ANALYSIS_SR / HOP
#: HPSS median filter lengths: frames (harmonic, across time) and bins (percussive).
HPSS_KERNEL = 17
#: Band edges (Hz): 17 half-octave bands from 30 Hz to 16 kHz.
BAND_EDGES_HZ = (30, 60, 90, 130, 180, 250, 350, 500, 700, 1000, 1400, 2000, 2800, 4000,
                 5600, 8000, 11300, 16000)
#: Length of a drum note in the score (s); the sampler and the GM kit play their whole sound.
NOTE_S = 0.1

# --- onsets -------------------------------------------------------------------------------
#: Floor of the log band powers, relative to the loudest band/frame (dB).
FLUX_FLOOR_DB = -50.0
#: A band counts as rising when it exceeds the max of the previous FLUX_LAG frames by more
#: than FLUX_BIAS_DB (cymbal tails flicker by a few dB).
FLUX_LAG = 3
FLUX_BIAS_DB = 4.0
#: Peak picking: local maximum over +-PEAK_WAIT frames and DELTA above the mean of +-PEAK_AVG.
PEAK_WAIT = 3
PEAK_AVG = 10
PEAK_DELTA_FULL = 10.0
PEAK_DELTA_REGION = 6.0
#: Band index ranges of the low / mid / high onset regions (30-250 Hz, 250 Hz-2.8 kHz, above).
REGIONS = ((0, 5), (5, 11), (11, 17))

# --- decomposition --------------------------------------------------------------------------
#: Template shapes (dB per band) of the components kick, drum (snare/tom), metal (hi-hat/ride)
#: and crash: broad hand-made shapes; the NMF adapts them to the recording.
TEMPLATES_DB = (
    (-10, -4, 0, -6, -11, -16, -20, -23, -25, -25, -22, -19, -18, -20, -25, -34, -45),
    (-20, -16, -9, -5, 0, -1, -7, -8, -10, -10, -10, -11, -10, -10, -11, -17, -30),
    (-45, -40, -35, -32, -28, -24, -22, -20, -18, -17, -15, -11, -6, -3, -2, 0, 0),
    (-50, -45, -38, -33, -28, -18, -14, -4, -2, 0, -5, -7, -8, -9, -11, -14, -20),
)
K_, D_, M_, C_ = 0, 1, 2, 3
NMF_ITER = 60
NMF_ADAPT_FROM = 10
#: Each template update is blended back towards its hand-made shape by this fraction.
NMF_PRIOR = 0.3
REFIT_ITER = 30

# --- decisions ------------------------------------------------------------------------------
#: A component is a candidate at an onset when dropping it worsens the fit by this many dB
#: (log-spectral distance) and it is within CAND_RANGE_DB of its loudest onset.
CAND_NEC_DB = {K_: 1.5, D_: 1.5, M_: 0.7}
CAND_RANGE_DB = -30.0
#: A confident hit: within STRONG_DB of the loudest, fit within CONF_FIT_DB, ...
STRONG_DB = -15.0
CONF_FIT_DB = 5.0
#: Drums are present with at least VOTE_MIN_HITS confident hits (and VOTE_MIN_FRACTION of the
#: candidates) of the metal component (hi-hat, ride, cymbals: every kit plays them), of which
#: VOTE_MIN_HITS also at onsets whose harmonic part grows by at most ALONE_HR_DB re. their
#: percussive rise (a kalimba's or a plucked string's click comes with a tone).  Kick- and
#: snare-like hits alone never suffice: slap bass and strummed guitars make them.
VOTE_MIN_HITS = 4
VOTE_MIN_FRACTION = 0.3
ALONE_HR_DB = -3.0
#: Accepting hits once drums are present.
ACCEPT_FIT_DB = 6.0
SURE_RANGE_DB = -10.0
SURE_NEC_DB = 2.0
#: Kick shape: the rise below 130 Hz is at least the rise at 180-500 Hz minus KICK_MID_DB, which
#: is at least KICK_BROAD_DB (negative) re. the former.
KICK_MID_DB = 3.0
KICK_BROAD_DB = -30.0
#: Toms: low band (90-500 Hz) decays slower than the 2-9 kHz band by TOM_LOHI_DB over 40 ms.
TOM_LOHI_DB = 5.0
TOM_HI_DECAY_DB = -10.0
TOM_NEC_DB = 3.0
TOM_RANGE_DB = -20.0
TOM_FIT_DB = 9.0
#: Metal hits: decay of the >5 kHz band over 100 ms (dB) above which a hit is open / slow.
OPEN_DECAY_DB = -6.5
#: Closed hi-hat vs ride: a cluster of metal hits decaying slower than this is a ride.
RIDE_DECAY_DB = -13.0
#: Velocity of a component's loudest hit; a hit L dB softer gets VELOCITY_TOP * 10**(L/40)
#: (the sampler plays (velocity/127)**2, so 40 log10 keeps the level ratio).
VELOCITY_TOP = 112

# --- percussion suppression (for the pitched tracks) ----------------------------------------

#: Window of the suppression's STFT (s; rounded to a power of two of samples, 2048 at 44.1 and
#: 48 kHz) and its hop (a quarter window).
SUPPRESS_WINDOW_S = 0.046
#: Median lengths (frames across time, bins across frequency) of the suppression's HPSS.
SUPPRESS_KERNEL = 31
#: Only what is this much (amplitude ratio) more percussive than harmonic is taken out: a wide
#: margin removes drum hits but leaves the attacks of pianos and guitars.  Measured with
#: basic-pitch on the bench's band clip (chorale + rock beat): note F1 0.725 -> 0.797 (margin
#: 1, a plain HPSS, gave 0.785 there but cost 0.08 on a drum-free Slakh mix).
SUPPRESS_MARGIN = 2.0
#: Frames per block: memory stays bounded on long inputs.
SUPPRESS_BLOCK = 4096


def suppress_percussion(audio: np.ndarray, sr: int) -> np.ndarray:
    """``audio`` without its strongly percussive part: the pitched instruments of a band.

    ``audio`` is mono float32 ``(n,)`` at ``sr`` Hz; returns float32 ``(n,)`` at ``sr`` Hz.
    HPSS by median filtering (as ``librosa.decompose.hpss`` with ``margin``); the percussive
    part, with a margin of ``SUPPRESS_MARGIN``, is removed with a soft mask and the rest is
    resynthesised by weighted overlap-add.  The encoder transcribes and fits the pitched tracks
    on this, so that drum hits neither become short spurious notes nor colour the timbres.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    x = _check(audio, sr)
    n = x.shape[0]
    if n == 0:
        return x.copy()
    nfft = 1 << max(6, int(round(math.log2(SUPPRESS_WINDOW_S * sr))))
    hop = nfft // 4
    pad = nfft // 2
    xp = np.pad(x, (pad, pad + nfft))
    frames_all = sliding_window_view(xp, nfft)[::hop]
    n_frames = min(frames_all.shape[0], (n + 2 * pad - nfft) // hop + 2)
    win = np.hanning(nfft + 1)[:-1].astype(np.float32)
    out = np.zeros(xp.shape[0], np.float32)
    ctx = SUPPRESS_KERNEL // 2
    m2 = SUPPRESS_MARGIN ** 2
    for f0 in range(0, n_frames, SUPPRESS_BLOCK):
        f1 = min(n_frames, f0 + SUPPRESS_BLOCK)
        g0, g1 = max(0, f0 - ctx), min(n_frames, f1 + ctx)
        spec = np.fft.rfft(frames_all[g0:g1] * win, axis=1).T.astype(np.complex64)
        mag = np.abs(spec)
        harm = _median_filter(mag, SUPPRESS_KERNEL, axis=1, mode="symmetric")
        perc = _median_filter(mag, SUPPRESS_KERNEL, axis=0, mode="symmetric")
        hh, pp = m2 * harm * harm, perc * perc
        den = hh + pp
        keep = np.where(den > 0, hh / np.where(den > 0, den, 1.0), 1.0)
        sl = slice(f0 - g0, f1 - g0)
        y = np.fft.irfft((spec[:, sl] * keep[:, sl]).T, n=nfft, axis=1).astype(np.float32) * win
        for i, f in enumerate(range(f0, f1)):
            out[f * hop:f * hop + nfft] += y[i]
    # divide by the overlap-added squared window, computed per block (no full-length array):
    # sample p lies in frames p // hop - k, k = 0..3, where those exist
    w2 = win * win
    step = 1 << 20
    for s0 in range(pad, pad + n, step):
        p = np.arange(s0, min(pad + n, s0 + step))
        norm = np.zeros(p.shape[0], np.float32)
        for k in range(nfft // hop):
            f = p // hop - k
            ok = (f >= 0) & (f < n_frames)
            norm += np.where(ok, w2[np.clip(p - f * hop, 0, nfft - 1)], 0.0).astype(np.float32)
        out[p[0]:p[-1] + 1] /= np.maximum(norm, 1e-3)
    return out[pad:pad + n]


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


@dataclass
class _Analysis:
    """Band powers (bands x frames, float64) of the percussive, harmonic and whole signal."""

    P: np.ndarray
    H: np.ndarray
    S: np.ndarray
    n_frames: int


def _band_matrix() -> np.ndarray:
    f = np.fft.rfftfreq(N_FFT, 1.0 / ANALYSIS_SR)
    edges = np.asarray(BAND_EDGES_HZ, np.float64)
    B = np.zeros((len(edges) - 1, f.shape[0]), np.float32)
    for i in range(len(edges) - 1):
        B[i, (f >= edges[i]) & (f < edges[i + 1])] = 1.0
    return B


_CENTRES = np.sqrt(np.asarray(BAND_EDGES_HZ[:-1], float) * np.asarray(BAND_EDGES_HZ[1:], float))
#: Band groups of the decay measurements.
_LO = (_CENTRES >= 90) & (_CENTRES < 500)
_HI = (_CENTRES >= 2000) & (_CENTRES < 9000)
_VH = _CENTRES >= 5000
_PITCH = (_CENTRES >= 60) & (_CENTRES <= 700)


def _median_filter(x: np.ndarray, k: int, axis: int, mode: str = "edge") -> np.ndarray:
    """Running median of length ``k`` (odd) along ``axis`` of 2-D ``x``.

    ``mode`` is numpy's padding at the ends: "edge" repeats the end values, "symmetric" mirrors
    them (scipy.ndimage's and so librosa's "reflect").
    """
    from numpy.lib.stride_tricks import sliding_window_view

    h = k // 2
    xt = x if axis == 1 else x.T
    xp = np.pad(xt, ((0, 0), (h, h)), mode=mode)
    out = np.empty(xt.shape, dtype=x.dtype)
    step = max(1, (1 << 21) // max(1, xt.shape[1] * k))  # rows per block: ~8 MB of windows
    for s in range(0, xt.shape[0], step):
        w = sliding_window_view(xp[s:s + step], k, axis=1)
        out[s:s + step] = np.partition(w, h, axis=-1)[..., h]
    return out if axis == 1 else np.ascontiguousarray(out.T)


#: A top band whose 99th-percentile power is this far below the strongest band's is empty.
EMPTY_BAND_DB = -80.0
#: Frames analysed per block (60 s): memory stays bounded on long inputs.
BLOCK_FRAMES = 6000
#: Extra input read around a block for the resampler (s).
RESAMPLE_MARGIN_S = 0.05


def _analyse(audio: np.ndarray, sr: int) -> _Analysis:
    """HPSS of ``audio`` (mono, ``sr`` Hz) and its band powers at 100 frames/s.

    Works in blocks of BLOCK_FRAMES frames with HPSS_KERNEL // 2 frames of context on each side,
    so the result does not depend on the blocking and memory is a few tens of MB at any length.
    Frame ``i`` is centred at ``i * HOP / ANALYSIS_SR`` s (the signal is zero-padded at the ends).
    """
    from numpy.lib.stride_tricks import sliding_window_view

    sr = int(sr)
    n_in = audio.shape[0]
    duration = n_in / sr
    n = 1 + int(round(duration * ANALYSIS_SR)) // HOP
    nyq = min(sr, ANALYSIS_SR) / 2.0
    # only the bands the input can fill: a band starting above 90 % of its Nyquist is dropped
    nb = int(sum(1 for lo in BAND_EDGES_HZ[:-1] if lo < 0.9 * nyq))
    B = _band_matrix()[:nb]
    win = np.hanning(N_FFT + 1)[:-1].astype(np.float32)
    ctx = HPSS_KERNEL // 2
    P = np.empty((nb, n))
    H = np.empty((nb, n))
    S = np.empty((nb, n))
    for f0 in range(0, n, BLOCK_FRAMES):
        f1 = min(n, f0 + BLOCK_FRAMES)
        g0, g1 = max(0, f0 - ctx), min(n, f1 + ctx)
        t_a = (g0 * HOP - N_FFT // 2) / ANALYSIS_SR - RESAMPLE_MARGIN_S
        t_b = ((g1 - 1) * HOP + N_FFT // 2) / ANALYSIS_SR + RESAMPLE_MARGIN_S
        s0 = max(0, int(math.floor(t_a * sr)))
        s1 = min(n_in, int(math.ceil(t_b * sr)) + 1)
        xb = dsp.resample(np.asarray(audio[s0:s1], np.float32), sr, ANALYSIS_SR)
        xb = np.nan_to_num(xb, nan=0.0, posinf=0.0, neginf=0.0)
        # analysis sample of the first frame's first sample, relative to xb's start
        k0 = int(round((g0 * HOP - N_FFT // 2) - s0 / sr * ANALYSIS_SR))
        need = k0 + (g1 - g0 - 1) * HOP + N_FFT
        left = max(0, -k0)
        xb = np.pad(xb, (left, max(0, need - xb.shape[0]) + 1))
        frames = sliding_window_view(xb[k0 + left:], N_FFT)[::HOP][:g1 - g0]
        mag = np.empty((N_FFT // 2 + 1, g1 - g0), np.float32)
        for s in range(0, g1 - g0, 512):
            mag[:, s:s + 512] = np.abs(np.fft.rfft(frames[s:s + 512] * win, axis=1)).T
        harm = _median_filter(mag, HPSS_KERNEL, axis=1)
        perc = _median_filter(mag, HPSS_KERNEL, axis=0)
        hp, pp = harm * harm, perc * perc
        mask = pp / (hp + pp + 1e-20)
        keep = slice(f0 - g0, f0 - g0 + (f1 - f0))
        power = (mag * mag)[:, keep]
        mask = mask[:, keep]
        P[:, f0:f1] = B @ (power * (mask * mask))
        H[:, f0:f1] = B @ (power * ((1.0 - mask) ** 2))
        S[:, f0:f1] = B @ power
    # a band-limited signal (a low-bitrate codec, an old recording) leaves its top bands empty:
    # drop those too, so that the templates are not asked to explain silence
    if S.shape[1] and S.shape[0] > 7:
        top = np.percentile(S, 99, axis=1)
        while S.shape[0] > 7 and top[S.shape[0] - 1] < top.max() * 10.0 ** (EMPTY_BAND_DB / 10.0):
            P, H, S = P[:-1], H[:-1], S[:-1]
    floor = max(float(S.max()) if S.size else 0.0, 1e-20) * 1e-10  # no empty band (IS-NMF)
    return _Analysis(P=P + floor, H=H + floor, S=S + floor, n_frames=n)


def _flux(P: np.ndarray) -> np.ndarray:
    """Per band and frame: dB rise above the max of the previous FLUX_LAG frames, minus bias."""
    ref = float(P.max()) if P.size else 0.0
    L = 10.0 * np.log10(P + max(ref, 1e-30) * 10.0 ** (FLUX_FLOOR_DB / 10.0))
    prev = np.full_like(L, -np.inf)
    for lag in range(1, FLUX_LAG + 1):
        shifted = np.concatenate([np.repeat(L[:, :1], lag, axis=1), L[:, :-lag]], axis=1)
        prev = np.maximum(prev, shifted)
    return np.maximum(L - prev - FLUX_BIAS_DB, 0.0)


def _peaks(o: np.ndarray, delta: float) -> np.ndarray:
    """Frames that are local maxima of ``o`` and exceed its running mean by ``delta``."""
    from numpy.lib.stride_tricks import sliding_window_view

    if o.shape[0] == 0:
        return np.zeros(0, np.int64)
    mean = sliding_window_view(np.pad(o, (PEAK_AVG, PEAK_AVG), mode="edge"),
                               2 * PEAK_AVG + 1).mean(axis=1)
    mx = sliding_window_view(np.pad(o, (PEAK_WAIT, PEAK_WAIT)), 2 * PEAK_WAIT + 1).max(axis=1)
    cand = np.nonzero((o >= mx) & (o >= mean + delta))[0]
    out, last = [], -(10 ** 9)
    for c in cand:
        if c - last >= PEAK_WAIT:
            out.append(int(c))
            last = c
    return np.asarray(out, np.int64)


def _onsets(P: np.ndarray) -> np.ndarray:
    """Onset frames: peaks of the full-band flux and of each region's flux, merged."""
    D = _flux(P)
    cands = list(_peaks(D.sum(axis=0), PEAK_DELTA_FULL))
    for a, b in REGIONS:
        if a < min(b, D.shape[0]):
            cands += list(_peaks(D[a:b].sum(axis=0), PEAK_DELTA_REGION))
    out: list[int] = []
    for p in sorted(set(cands)):
        if not out or p - out[-1] >= PEAK_WAIT:
            out.append(p)
    return np.asarray(out, np.int64)


def _templates(n_bands: int) -> np.ndarray:
    W = 10.0 ** (np.asarray(TEMPLATES_DB, np.float64).T[:n_bands] / 10.0)
    return W / W.sum(axis=0)


def _is_update(V, b, W, H, n_iter, mask=None):
    """Itakura-Saito multiplicative updates of the activations ``H`` (model ``b + W H``)."""
    H = H.copy() if mask is None else H * mask
    for _ in range(n_iter):
        L = b + W @ H + 1e-30
        H *= (W.T @ (V / (L * L))) / (W.T @ (1.0 / L) + 1e-30)
    return H


def _decompose(V: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IS-NMF of the attack spectra ``V`` (bands x onsets) over background ``b``; adaptive W."""
    W0 = _templates(V.shape[0])
    W = W0.copy()
    H = np.full((W.shape[1], V.shape[1]), float(np.mean(V)) / W.shape[1] + 1e-30)
    for it in range(NMF_ITER):
        L = b + W @ H + 1e-30
        H *= (W.T @ (V / (L * L))) / (W.T @ (1.0 / L) + 1e-30)
        if it >= NMF_ADAPT_FROM:
            L = b + W @ H + 1e-30
            W *= ((V / (L * L)) @ H.T) / ((1.0 / L) @ H.T + 1e-30)
            s = W.sum(axis=0)
            dead = ~(s > 1e-30)
            W[:, dead] = W0[:, dead]
            s[dead] = 1.0
            W /= s
            H *= s[:, None]
            W = (1.0 - NMF_PRIOR) * W + NMF_PRIOR * W0
    return W, H


def _lsd(V: np.ndarray, L: np.ndarray) -> np.ndarray:
    """Log-spectral distance (dB, RMS over bands) of each column."""
    d = 10.0 * np.log10((V + 1e-30) / (L + 1e-30))
    return np.sqrt(np.mean(d * d, axis=0))


@dataclass
class _Events:
    frames: np.ndarray  # onset frames
    W: np.ndarray  # bands x 4 templates (columns sum to 1)
    H: np.ndarray  # 4 x onsets activations
    nec: np.ndarray  # 4 x onsets: dB the fit worsens without the component
    fit: np.ndarray  # onsets: log-spectral distance of the full fit (dB)
    lvl: np.ndarray  # 4 x onsets: activation re. the component's largest (dB)
    ph: np.ndarray  # 4 x onsets: component attack vs harmonic growth at the attack (dB)
    hr: np.ndarray  # 4 x onsets: harmonic growth 30-100 ms after vs component attack (dB)
    dec4: np.ndarray  # 4 x onsets: decay of the component's bands 40 ms after the peak (dB)
    prom: np.ndarray  # 4 x onsets: attack vs the median level of the component's bands (dB)
    rise: np.ndarray  # bands x onsets: percussive rise above the pre-onset level (dB)
    hr_all: np.ndarray  # onsets: harmonic growth after vs percussive rise, all bands (dB)


def _events(an: _Analysis) -> _Events | None:
    """Onsets of ``an`` with their decomposition and features (None without onsets)."""
    P, Hh, S, n = an.P, an.H, an.S, an.n_frames
    frames = _onsets(P)
    if frames.shape[0] == 0:
        return None
    nb = P.shape[0]
    E = frames.shape[0]
    V = np.empty((nb, E))
    b = np.zeros((nb, E))
    Hv = np.empty((nb, E))
    Hbf = np.zeros((nb, E))
    Ha = np.empty((nb, E))
    for i, t in enumerate(frames):
        V[:, i] = P[:, t:t + 3].max(axis=1)
        if t > 0:
            b[:, i] = P[:, max(t - 3, 0):t].mean(axis=1)
            Hbf[:, i] = Hh[:, max(t - 5, 0):max(t - 1, 1)].mean(axis=1)
        Hv[:, i] = Hh[:, t:t + 3].max(axis=1)
        a = min(t + 3, n - 1)
        Ha[:, i] = Hh[:, a:max(a + 1, t + 10)].mean(axis=1)
    W, H = _decompose(V, b)
    L = b + W @ H
    fit = _lsd(V, L)
    K = W.shape[1]
    nec = np.empty((K, E))
    for k in range(K):
        m = np.ones_like(H)
        m[k] = 0.0
        Hk = _is_update(V, b, W, H, REFIT_ITER, mask=m)
        nec[k] = _lsd(V, b + W @ Hk) - fit
    lvl = 10.0 * np.log10(H / (H.max(axis=1, keepdims=True) + 1e-300) + 1e-12)
    dH = np.maximum(Ha - Hbf, 0.0)
    dHv = np.maximum(Hv - Hbf, 0.0)
    ph = np.empty((K, E))
    hr = np.empty((K, E))
    dec4 = np.empty((K, E))
    prom = np.empty((K, E))
    nxt = np.append(frames[1:], n)
    for k in range(K):
        w = W[:, k]
        own = w @ (W[:, k:k + 1] * H[k:k + 1]) + 1e-30
        ph[k] = 10.0 * np.log10(own / (w @ dHv + 1e-3 * own))
        hr[k] = 10.0 * np.log10((w @ dH + 1e-30) / own)
        env = w @ S
        prom[k] = 10.0 * np.log10(own / (float(np.median(env)) + 1e-30))
        for i, t in enumerate(frames):
            dec4[k, i] = _decay(env, int(t), int(nxt[i]), 4, scale=False)
    rise = 10.0 * np.log10(np.maximum(V - b, 1e-30))
    hr_all = 10.0 * np.log10((dH.sum(axis=0) + 1e-30) / (np.maximum(V - b, 0.0).sum(axis=0) + 1e-30))
    return _Events(frames, W, H, nec, fit, lvl, ph, hr, dec4, prom, rise, hr_all)


def _decay(env: np.ndarray, t: int, nxt: int, j: int, scale: bool = True) -> float:
    """dB change of ``env`` from its peak (frames t..t+2, above the pre-onset level) to ``j``
    frames later, stopping before the next onset ``nxt``; ``scale`` extrapolates a shortened
    span to ``j`` frames.  NaN when there is no room at all."""
    n = env.shape[0]
    bef = float(env[max(t - 3, 0):t].mean()) if t > 0 else 0.0
    tp = t + int(np.argmax(env[t:t + 3]))
    peak = max(float(env[tp]) - bef, 1e-30)
    jj = min(tp + j, nxt - 1, n - 1)
    if jj <= tp:
        return float("nan")
    d = 10.0 * math.log10(max(float(env[jj]) - bef, 1e-4 * peak) / peak)
    return d * j / (jj - tp) if scale else d


def _metal_labels(v: np.ndarray) -> np.ndarray:
    """Closed hi-hat (42) or ride (51) for each metal hit from its decay ``v`` (dB / 100 ms).

    Within a recording a kit's hi-hat decays alike from hit to hit, as does its ride: the decays
    are split at their widest gap (at least 5 dB, at least 3 hits and 15 % on each side) when
    the two sides get different names, and each side is named by its median."""
    def name(med: float) -> int:
        return RIDE if med > RIDE_DECAY_DB else CLOSED_HAT

    out = np.full(v.shape[0], CLOSED_HAT, np.int64)
    if v.shape[0] == 0:
        return out
    if v.shape[0] >= 6:
        s = np.sort(v)
        m = max(3, int(0.15 * v.shape[0]))
        best = None
        for i in range(m, v.shape[0] - m + 1):
            gap = s[i] - s[i - 1]
            if gap >= 5.0 and (best is None or gap > best[0]):
                best = (gap, s[i])
        if best is not None:
            lo, hi = v < best[1], v >= best[1]
            la, lb = name(float(np.median(v[lo]))), name(float(np.median(v[hi])))
            if la != lb:
                out[lo] = la
                out[hi] = lb
                return out
    out[:] = name(float(np.median(v)))
    return out


def _velocity(level_db: float) -> int:
    return int(np.clip(round(VELOCITY_TOP * 10.0 ** (level_db / 40.0)), 1, 127))


def _hits(an: _Analysis, ev: _Events) -> list[tuple[int, int, int, int]]:
    """(onset frame, GM key, velocity, component) of every accepted hit, sorted."""
    nec, lvl, fit, ph, hr, dec4, prom = ev.nec, ev.lvl, ev.fit, ev.ph, ev.hr, ev.dec4, ev.prom
    E = ev.frames.shape[0]
    cand = np.zeros_like(nec, dtype=bool)
    for k, thr in CAND_NEC_DB.items():
        cand[k] = (nec[k] >= thr) & (lvl[k] >= CAND_RANGE_DB)
    strong = lvl >= STRONG_DB
    good = fit <= CONF_FIT_DB
    conf_k = cand[K_] & strong[K_] & good & (ph[K_] >= 0) & (hr[K_] <= -6) & (prom[K_] >= 0)
    conf_d = cand[D_] & strong[D_] & good & (ph[D_] >= 0) & (hr[D_] <= -6) & (dec4[D_] <= -7)
    conf_m = cand[M_] & strong[M_] & good & (ph[M_] >= 4) & (hr[M_] <= -4)

    def vote(conf: np.ndarray, c: np.ndarray) -> bool:
        return int(conf.sum()) >= VOTE_MIN_HITS and conf.sum() >= VOTE_MIN_FRACTION * c.sum()

    # metal hits at onsets where nothing else starts a note (no harmonic growth at all)
    alone_m = conf_m & (ev.hr_all <= ALONE_HR_DB)
    present = vote(conf_m, cand[M_]) and int(alone_m.sum()) >= VOTE_MIN_HITS
    log.debug("drums: %d onsets, confident kick/drum/metal %d/%d/%d (metal alone %d) of "
              "%d/%d/%d candidates: %s", E, conf_k.sum(), conf_d.sum(), conf_m.sum(),
              alone_m.sum(), cand[K_].sum(), cand[D_].sum(), cand[M_].sum(),
              "drums" if present else "no drums")
    if not present:
        return []
    S = an.S
    nb = S.shape[0]
    lo_env, hi_env, vh_env = (S[m[:nb]].sum(axis=0) for m in (_LO, _HI, _VH))
    own = ev.W.sum(axis=0)[:, None] * ev.H
    frames = ev.frames
    nxt = np.append(frames[1:], an.n_frames)
    hits: list[list[int]] = []
    metal: list[tuple[int, float, bool]] = []  # (index in hits, decay, no drum at the onset)
    toms: list[tuple[int, float]] = []  # (index in hits, pitch in octaves)
    for i in range(E):
        t, tn = int(frames[i]), int(nxt[i])

        def sure(k: int) -> bool:
            return lvl[k, i] >= SURE_RANGE_DB and nec[k, i] >= SURE_NEC_DB

        def add(key: int, k: int) -> int:
            hits.append([t, key, _velocity(float(lvl[k, i])), k])
            return len(hits) - 1

        if (cand[K_, i] and fit[i] <= ACCEPT_FIT_DB and _kick_shape(ev.rise[:, i])
                and (prom[K_, i] >= 0 or ph[K_, i] >= 0 or sure(K_))):
            add(KICK, K_)
        drum_here = False
        if cand[D_, i]:
            lo4, hi4 = _decay(lo_env, t, tn, 4), _decay(hi_env, t, tn, 4)
            tom = not math.isnan(lo4 - hi4) and lo4 - hi4 >= TOM_LOHI_DB
            if fit[i] <= ACCEPT_FIT_DB and ((ph[D_, i] >= -3 and hr[D_, i] <= -3) or sure(D_)):
                j = add(MID_TOM if tom else SNARE, D_)
                drum_here = True
                if tom:
                    toms.append((j, _pitch(an, t)))
            elif (tom and hi4 <= TOM_HI_DECAY_DB and nec[D_, i] >= TOM_NEC_DB
                  and lvl[D_, i] >= TOM_RANGE_DB and fit[i] <= TOM_FIT_DB):
                toms.append((add(MID_TOM, D_), _pitch(an, t)))
                drum_here = True
        vh10 = _decay(vh_env, t, tn, 10)
        slow = not math.isnan(vh10) and vh10 > OPEN_DECAY_DB
        if (nec[C_, i] >= 0.5 and lvl[C_, i] >= SURE_RANGE_DB and ph[C_, i] >= 0
                and hr[C_, i] <= -4 and own[C_, i] >= own[M_, i] and slow):
            add(CRASH, C_)
        elif cand[M_, i] and fit[i] <= ACCEPT_FIT_DB and (ph[M_, i] >= 2 or sure(M_)):
            j = add(OPEN_HAT if slow else CLOSED_HAT, M_)
            if not slow:
                metal.append((j, -30.0 if math.isnan(vh10) else max(vh10, -30.0), not drum_here))
    _name_metal(hits, metal)
    _name_toms(hits, toms)
    out = [(h[0], h[1], h[2], h[3]) for h in hits]
    out.sort(key=lambda h: (h[0], h[1]))
    return out


def _kick_shape(rise: np.ndarray) -> bool:
    """A kick's attack rises most below 130 Hz and, from the beater, also at 180-500 Hz (within
    KICK_BROAD_DB); a bass note's onset has no such click, a snare's body peaks higher up."""
    if rise.shape[0] < 7:
        return True
    low, mid = float(rise[:4].max()), float(rise[4:7].max())
    return low >= mid - KICK_MID_DB and mid >= low + KICK_BROAD_DB


def _pitch(an: _Analysis, t: int) -> float:
    """Spectral centroid (octaves re. 1 Hz) of the percussive rise at frame ``t``, 60-700 Hz."""
    sel = _PITCH[:an.P.shape[0]]
    rise = np.maximum(an.P[sel, t:t + 3].max(axis=1)
                      - (an.P[sel, max(t - 3, 0):t].mean(axis=1) if t > 0 else 0.0), 0.0)
    c = np.log2(_CENTRES[:an.P.shape[0]][sel])
    return float((c * rise).sum() / rise.sum()) if rise.sum() > 0 else float(c.mean())


def _name_metal(hits: list[list[int]], metal: list[tuple[int, float, bool]]) -> None:
    """Closed hi-hat or ride for the non-open metal hits (see :func:`_metal_labels`).

    Hits that share their onset with a snare or tom are named like the nearest clean metal hit
    (the drum's own high band would blur their decay)."""
    if not metal:
        return
    idx = np.array([m[0] for m in metal])
    v = np.array([m[1] for m in metal])
    clean = np.array([m[2] for m in metal])
    if clean.sum() >= 3:
        lab_c = _metal_labels(v[clean])
        tc = np.array([hits[j][0] for j in idx[clean]])
        labels = np.empty(v.shape[0], np.int64)
        labels[clean] = lab_c
        for q in np.nonzero(~clean)[0]:
            labels[q] = lab_c[int(np.argmin(np.abs(tc - hits[idx[q]][0])))]
    else:
        labels = _metal_labels(v)
    for j, key in zip(idx, labels):
        hits[j][1] = int(key)


def _name_toms(hits: list[list[int]], toms: list[tuple[int, float]]) -> None:
    """Low, mid or high tom by pitch within the recording's toms (thirds of their range)."""
    if not toms:
        return
    p = np.array([x[1] for x in toms])
    lo, hi = float(p.min()), float(p.max())
    for j, q in toms:
        if hi - lo < 0.25:
            key = MID_TOM
        elif q < lo + (hi - lo) / 3:
            key = LOW_TOM
        elif q > hi - (hi - lo) / 3:
            key = HIGH_TOM
        else:
            key = MID_TOM
        hits[j][1] = key


def _check(audio: np.ndarray, sr: int) -> np.ndarray:
    a = np.asarray(audio)
    if a.ndim != 1:
        raise ValueError(f"drum detection expects mono audio (n,), got shape {a.shape}")
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ValueError(f"sample rate must be a positive integer, got {sr!r}")
    return a.astype(np.float32, copy=False)


def _detect(an: _Analysis) -> list[tuple[int, int, int, int]]:
    ev = _events(an)
    return [] if ev is None else _hits(an, ev)


def _to_notes(hits) -> list[Note]:
    return [Note(onset=round(f / FPS, 6), offset=round(f / FPS + NOTE_S, 6), pitch=int(key),
                 velocity=int(vel)) for f, key, vel, _ in hits]


def detect_drums(audio: np.ndarray, sr: int) -> list[Note]:
    """Drum hits of mono float32 ``audio`` (shape ``(n,)``) at ``sr`` Hz.

    Returns ``Note(onset, onset + NOTE_S, GM drum key, velocity 1..127)`` sorted by (onset,
    key); onsets in seconds at a 10 ms resolution.  Keys are those of :data:`GM_DRUM_CLASSES`;
    several keys can share an onset.  Music without drums gives no hits (see the module
    docstring for the presence test), so this is safe to call on any input.
    """
    x = _check(audio, sr)
    if x.shape[0] < sr * 0.05 or not np.any(x):
        return []
    return _to_notes(_detect(_analyse(x, int(sr))))


# --- one-shots ------------------------------------------------------------------------------

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
        value = (10.0 * vel / 127.0 + 10.0 * np.minimum(length / max_s, 1.0) - 8.0 * around
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
    hits = [h for h in hits if 0 <= int(h.pitch) <= 127]
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
