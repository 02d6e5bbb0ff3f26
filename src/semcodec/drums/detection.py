"""Drum detection: HPSS, band powers, onsets, a template NMF of the attacks, the decision that
a recording has drums and the naming of each hit (the steps of :mod:`semcodec.drums`)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

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
    _median_filter,
)
from semcodec.constants import VELOCITY_MAX, VELOCITY_MIN
from semcodec.events import Note
from semcodec.runtime import work_threads
from semcodec.synth import dsp

log = logging.getLogger(__name__)

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
#: ... or with at least KIT_MIN_HITS confident kick hits AND as many confident snare/tom hits,
#: each at onsets without harmonic growth (ALONE_HR_DB): a kit's kick and snare together.  In
#: produced mixes the snare's noise and the mix's reverb often cover the hi-hat, so that too few
#: metal hits stand out (Planet Blupi's and Frozen Bubble's music: hundreds of kick and snare
#: hits, 2 metal ones; ``scripts/real_drums.py``).  A slap bass makes kick-like hits and a
#: strummed guitar snare-like ones, but not both: neither the eval folder's solos and mixes nor
#: drum-free produced music reach KIT_MIN_HITS of both (at most 1).
KIT_MIN_HITS = 4
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


#: A top band whose 99th-percentile power is this far below the strongest band's is empty.
EMPTY_BAND_DB = -80.0
#: Frames analysed per block (60 s): memory stays bounded on long inputs.
BLOCK_FRAMES = 6000
#: Extra input read around a block for the resampler (s).
RESAMPLE_MARGIN_S = 0.05
#: Blocks analysed at once (threads) for inputs longer than one block: a 5-min input's
#: analysis 4.19 -> 2.51 s on two cores (the same numbers).
ANALYSIS_WORKERS = 2


def _analyse(audio: np.ndarray, sr: int) -> _Analysis:
    """HPSS of ``audio`` (mono, ``sr`` Hz) and its band powers at 100 frames/s.

    Works in blocks of BLOCK_FRAMES frames with HPSS_KERNEL // 2 frames of context on each side,
    so the result does not depend on the blocking and memory is a few tens of MB at any length.
    Frame ``i`` is centred at ``i * HOP / ANALYSIS_SR`` s (the signal is zero-padded at the ends).
    """
    from numpy.lib.stride_tricks import sliding_window_view  # noqa: PLC0415

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
    def block(f0: int) -> None:
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
            mag[:, s:s + 512] = np.abs(dsp.rfft_rows(frames[s:s + 512] * win)).T
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

    starts = range(0, n, BLOCK_FRAMES)
    workers = work_threads(min(ANALYSIS_WORKERS, len(starts)))
    if workers > 1:
        # blocks side by side (numpy frees the GIL; each writes its own frames: the same
        # numbers as one after the other)
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

        with ThreadPoolExecutor(workers, thread_name_prefix="semcodec-drums") as pool:
            list(pool.map(block, starts))
    else:
        for f0 in starts:
            block(f0)
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
    from numpy.lib.stride_tricks import sliding_window_view  # noqa: PLC0415

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
            last = int(c)
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
    return int(np.clip(round(VELOCITY_TOP * 10.0 ** (level_db / 40.0)), VELOCITY_MIN,
                       VELOCITY_MAX))


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

    # hits at onsets where nothing else starts a note (no harmonic growth at all)
    alone = ev.hr_all <= ALONE_HR_DB
    alone_m = conf_m & alone
    n_kit = min(int((conf_k & alone).sum()), int((conf_d & alone).sum()))
    present = ((vote(conf_m, cand[M_]) and int(alone_m.sum()) >= VOTE_MIN_HITS)
               or n_kit >= KIT_MIN_HITS)
    log.debug("drums: %d onsets, confident kick/drum/metal %d/%d/%d (metal alone %d, kick and "
              "drum alone %d) of %d/%d/%d candidates: %s", E, conf_k.sum(), conf_d.sum(),
              conf_m.sum(), alone_m.sum(), n_kit, cand[K_].sum(), cand[D_].sum(), cand[M_].sum(),
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


