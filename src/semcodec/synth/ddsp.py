"""Pure-math parts of the neural synthesizer: the DDSP-style model and its signal stages.

Imports torch at module level: import this module only through :mod:`semcodec.synth.neural`
(which imports it lazily) or :mod:`semcodec.synth.train`.

Signal model (per track)
------------------------
* Every note is described at a control frame rate of ``FRAME_RATE`` Hz (hop ``HOP`` samples at
  the internal rate ``SR_INT``) by features: pitch incl. bends, velocity, log time since onset,
  log time since release, gate, log duration.  An MLP conditioned on the track's timbre
  embedding maps them to an overall amplitude, a harmonic distribution over ``N_HARM``
  harmonics (masked above ``HARM_MAX_HZ``) and ``N_BANDS`` noise band magnitudes.
* Harmonics are synthesized per note at ``SR_INT`` (phase continuous within the note, smooth
  onset ramp, faded tail) and overlap-added; the result is resampled to the output rate.
* Noise: the notes' band magnitudes are summed per track frame and shape white noise in the STFT
  domain at the output rate; bands above the top band are extrapolated (full-band noise).
* Room: the dry sum is convolved with ``delta + wet * exp-decaying filtered noise`` (3 params).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from semcodec.constants import ANALYSIS_SAMPLE_RATE
from semcodec.synth import dsp

#: Internal rate of the harmonic synthesizer and of training (Hz).
SR_INT = ANALYSIS_SAMPLE_RATE
#: Control hop at SR_INT (samples) and control frame rate (Hz).
HOP = 128
FRAME_RATE = SR_INT / HOP
N_HARM = 48
#: Harmonics above this frequency are masked (the model is trained at SR_INT).
HARM_MAX_HZ = 10500.0
N_BANDS = 32
#: Noise band centres: log-spaced from 40 Hz to 10.5 kHz.
BAND_LO_HZ, BAND_HI_HZ = 40.0, 10500.0
N_FEAT = 7
EMB_DIM = 24
N_ROOM = 3
N_PROGRAMS = 128
#: Release tail rendered after a note's offset (s), cut earlier when the note has decayed.
TAIL_S = 1.0
#: Onset ramp and end-of-tail fade (s).
ONSET_RAMP_S = 0.002
END_FADE_S = 0.03
#: Room impulse response length (s).
IR_S = 1.0
NOISE_SEED = 7919


def band_centers() -> np.ndarray:
    return np.geomspace(BAND_LO_HZ, BAND_HI_HZ, N_BANDS)


class DDSPNet(nn.Module):
    """Per-frame MLP: features + embedding → (amplitude, harmonic distribution, noise bands)."""

    def __init__(self, hidden: int = 256, emb_dim: int = EMB_DIM) -> None:
        super().__init__()
        self.emb_dim = emb_dim
        self.embedding = nn.Embedding(N_PROGRAMS, emb_dim)
        nn.init.normal_(self.embedding.weight, std=0.3)
        self.room = nn.Embedding(N_PROGRAMS, N_ROOM)
        nn.init.constant_(self.room.weight, 0.0)
        with torch.no_grad():
            self.room.weight[:, 0] = -0.5  # T60 ~ 1.2 s
            self.room.weight[:, 1] = -2.0  # wet ~ 0.12
        self.inp = nn.Linear(N_FEAT + 2 * 8 + emb_dim, hidden)
        self.l1 = nn.Linear(hidden, hidden)
        self.l2 = nn.Linear(hidden, hidden)
        self.n1 = nn.LayerNorm(hidden)
        self.n2 = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, 1 + N_HARM + N_BANDS)
        with torch.no_grad():
            self.out.bias[0] = -3.0
            self.out.bias[1 + N_HARM:] = -4.0

    def forward(self, feats: torch.Tensor, emb: torch.Tensor):
        """feats (..., N_FEAT), emb (..., EMB_DIM) broadcastable → amp (...), harm (..., H),
        noise (..., B)."""
        pitch = feats[..., :1]
        k = torch.arange(1, 9, dtype=feats.dtype, device=feats.device)
        ff = torch.cat([torch.sin(pitch * k * 2.0), torch.cos(pitch * k * 2.0)], dim=-1)
        emb = emb.expand(*feats.shape[:-1], emb.shape[-1])
        x = torch.cat([feats, ff, emb], dim=-1)
        h = torch.nn.functional.leaky_relu(self.inp(x), 0.1)
        h = h + torch.nn.functional.leaky_relu(self.l1(self.n1(h)), 0.1)
        h = h + torch.nn.functional.leaky_relu(self.l2(self.n2(h)), 0.1)
        o = self.out(h)
        amp = scaled_sigmoid(o[..., 0])
        harm = o[..., 1:1 + N_HARM]
        noise = scaled_sigmoid(o[..., 1 + N_HARM:]) * 0.05
        return amp, harm, noise


def scaled_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return 2.0 * torch.sigmoid(x) ** math.log(10.0) + 1e-7


# --- note layout ---------------------------------------------------------------------------

class NoteBatch:
    """Notes of one track laid out on the global frame grid (numpy, built once per render).

    Each note i covers frames ``f0[i] .. f0[i] + n_frames[i]`` (padded to ``max_frames``).
    """

    def __init__(self, onsets, offsets, pitches, velocities, bends, total_s: float,
                 tail_s: float = TAIL_S) -> None:
        onsets = np.asarray(onsets, np.float64)
        offsets = np.maximum(np.asarray(offsets, np.float64), onsets + 0.01)
        n = onsets.shape[0]
        ends = np.minimum(offsets + tail_s, max(total_s, 0.0) + 1e-3)
        ends = np.maximum(ends, onsets + 0.01)
        self.f0 = np.floor(onsets * FRAME_RATE).astype(np.int64)
        f1 = np.ceil(ends * FRAME_RATE).astype(np.int64) + 1
        self.n_frames = np.maximum(f1 - self.f0, 2)
        self.max_frames = int(self.n_frames.max()) if n else 2
        self.onsets, self.offsets, self.ends = onsets, offsets, ends
        self.pitches = np.asarray(pitches, np.float64)
        self.velocities = np.asarray(velocities, np.float64)
        fr = np.arange(self.max_frames)
        t_abs = (self.f0[:, None] + fr[None, :]) / FRAME_RATE  # (n, F)
        self.t_abs = t_abs
        pitch = np.repeat(self.pitches[:, None], self.max_frames, axis=1)
        for i, bl in enumerate(bends):
            for (bt, semis) in bl:
                pitch[i, t_abs[i] >= onsets[i] + bt - 1e-9] = self.pitches[i] + semis
        self.pitch = pitch
        self.valid = fr[None, :] < self.n_frames[:, None]

    def features(self) -> np.ndarray:
        t_on = np.maximum(self.t_abs - self.onsets[:, None], 0.0)
        dur = (self.offsets - self.onsets)[:, None]
        t_rel = np.maximum(t_on - dur, 0.0)
        gate = (t_on < dur).astype(np.float64)
        f = np.stack([
            (self.pitch - 64.0) / 24.0,
            np.broadcast_to(self.velocities[:, None] / 127.0, t_on.shape),
            np.log1p(t_on / 0.01) / 6.0,
            np.log1p(t_rel / 0.01) / 6.0,
            gate,
            np.broadcast_to(np.log1p(dur / 0.05) / 5.0, t_on.shape),
            np.minimum(t_on, 0.1) * 10.0,
        ], axis=-1)
        return f.astype(np.float32)

    def f0_hz(self) -> np.ndarray:
        return 440.0 * 2.0 ** ((self.pitch - 69.0) / 12.0)


def harmonic_amps(amp: torch.Tensor, harm_logits: torch.Tensor, f0_hz: torch.Tensor) -> torch.Tensor:
    """Per-harmonic amplitudes (N, F, H): softmax distribution masked above HARM_MAX_HZ."""
    k = torch.arange(1, N_HARM + 1, dtype=f0_hz.dtype, device=f0_hz.device)
    mask = (f0_hz[..., None] * k) < HARM_MAX_HZ
    logits = harm_logits.masked_fill(~mask, -1e4)
    dist = torch.softmax(logits, dim=-1) * mask
    return amp[..., None] * dist


def upsample_frames(x: torch.Tensor, n_samples: int, hop: int) -> torch.Tensor:
    """Linear interpolation of frame values (..., F) to samples (..., n_samples); frame j at j*hop."""
    shape = x.shape
    f = shape[-1]
    y = torch.nn.functional.interpolate(x.reshape(1, -1, f), size=(f - 1) * hop + 1,
                                        mode="linear", align_corners=True)
    y = y.reshape(*shape[:-1], -1)
    return _fit(y, n_samples)


def synth_harmonics(amps: torch.Tensor, f0_hz: torch.Tensor, n_samples: int,
                    start_offset: torch.Tensor, end_sample: torch.Tensor) -> torch.Tensor:
    """Harmonic signals (N, n_samples) at SR_INT for notes whose frame 0 is sample 0.

    ``amps`` (N, F, H), ``f0_hz`` (N, F); ``start_offset`` (N,) sample of the true onset within
    the note's window (onset ramp starts there); ``end_sample`` (N,) where the end fade finishes.
    """
    n_fr = amps.shape[1]
    T = (n_fr - 1) * HOP  # samples covered by frame intervals
    with torch.no_grad():
        f0_s = upsample_frames(f0_hz.double(), T, HOP)  # (N, T)
        phase = torch.cumsum(2.0 * math.pi * f0_s / SR_INT, dim=-1)
        phase = torch.remainder(phase, 2.0 * math.pi).float()
        max_h = int(min(amps.shape[-1], max(1, math.ceil(HARM_MAX_HZ / max(float(f0_hz.min()), 1.0)))))
        k = torch.arange(1, max_h + 1, dtype=torch.float32)
        # basis (N, F-1, HOP, H) and its ramp-weighted copy: amplitudes are linear within frames
        basis = torch.sin(phase.view(-1, n_fr - 1, HOP)[..., None] * k)
        w = (torch.arange(HOP, dtype=torch.float32) / HOP)[None, None, :, None]
        basis_w = basis * w
    a = amps[..., :max_h]
    a0, a1 = a[:, :-1], a[:, 1:]
    # sig[n,f,j] = sum_k S[n,f,j,k] * (a0 + w_j (a1 - a0))[n,f,k]
    sig = (torch.matmul(basis, a0[..., None]) + torch.matmul(basis_w, (a1 - a0)[..., None]))
    sig = _fit(sig.reshape(amps.shape[0], T), n_samples)
    return sig * envelope(n_samples, start_offset, end_sample, SR_INT, amps.dtype, amps.device)


WT_SIZE = 512


def synth_harmonics_wt(amps: torch.Tensor, f0_hz: torch.Tensor, n_samples: int,
                       start_offset: torch.Tensor, end_sample: torch.Tensor) -> torch.Tensor:
    """Wavetable version of :func:`synth_harmonics` (same signal up to table interpolation):
    one single-period table per frame from the harmonic amplitudes (irfft), read at the phase,
    crossfaded linearly between frames.  Cost O(T) instead of O(T * harmonics)."""
    N, n_fr, H = amps.shape
    T = (n_fr - 1) * HOP
    # phase in cycles: exact (float64) at frames, quadratic within a frame (f0 linear)
    f0d = f0_hz.double()
    inc = (f0d[:, :-1] + f0d[:, 1:]) * (0.5 * HOP / SR_INT)
    ph_fr = torch.remainder(torch.cumsum(torch.nn.functional.pad(inc, (1, 0))[:, :-1], dim=1), 1.0)
    j = torch.arange(1, HOP + 1, dtype=torch.float32)
    a = f0_hz[:, :-1, None] / SR_INT
    b = (f0_hz[:, 1:, None] - f0_hz[:, :-1, None]) / (2 * HOP * SR_INT)
    phase = ph_fr.float()[..., None] + a * j + b * j * j
    phase = torch.remainder(phase.reshape(N, T), 1.0) * WT_SIZE  # table position
    spec = torch.zeros(N, n_fr, WT_SIZE // 2 + 1, dtype=torch.complex64)
    spec[..., 1:H + 1] = torch.complex(torch.zeros_like(amps), -amps * (WT_SIZE / 2))
    tab = torch.fft.irfft(spec, WT_SIZE, dim=-1)  # (N, F, W)
    tab = torch.cat([tab, tab[..., :1]], dim=-1).reshape(-1)  # wrap column
    i0 = phase.floor().long().clamp(0, WT_SIZE - 1)
    fr = (phase - phase.floor()).float()
    t = torch.arange(T)
    f = (t // HOP)[None, :]
    w = ((t % HOP).float() / HOP)[None, :]
    base = (torch.arange(N)[:, None] * n_fr + f) * (WT_SIZE + 1) + i0
    nxt = base + (WT_SIZE + 1)
    v0 = tab[base] * (1 - fr) + tab[base + 1] * fr
    v1 = tab[nxt] * (1 - fr) + tab[nxt + 1] * fr
    sig = _fit(v0 * (1 - w) + v1 * w, n_samples)
    return sig * envelope(n_samples, start_offset, end_sample, SR_INT, amps.dtype, amps.device)


def _wt_kernel():
    """numba kernel: wavetable oscillators overlap-added into ``out`` (compiled once, cached)."""
    global _WT_KERNEL
    if _WT_KERNEL is None:
        import numba  # noqa: PLC0415

        @numba.njit(cache=True, nogil=True)
        def kernel(tabs, f0, n_frames, starts, on_off, end_off, out, hop, sr, ramp_n, fade_n):
            n_notes, _, w1 = tabs.shape
            w = w1 - 1
            for i in range(n_notes):
                phase = 0.0
                nf = n_frames[i]
                total = (nf - 1) * hop
                base = starts[i]
                for t in range(total):
                    f = t // hop
                    x = (t - f * hop) / hop
                    freq = f0[i, f] * (1.0 - x) + f0[i, f + 1] * x
                    phase += freq / sr
                    phase -= np.floor(phase)
                    pos = phase * w
                    k = int(pos)
                    if k >= w:
                        k = w - 1
                    fr = pos - k
                    v0 = tabs[i, f, k] * (1.0 - fr) + tabs[i, f, k + 1] * fr
                    v1 = tabs[i, f + 1, k] * (1.0 - fr) + tabs[i, f + 1, k + 1] * fr
                    v = v0 * (1.0 - x) + v1 * x
                    g = (t - on_off[i]) / ramp_n
                    if g <= 0.0:
                        continue
                    if g > 1.0:
                        g = 1.0
                    h = (end_off[i] - t) / fade_n
                    if h <= 0.0:
                        break
                    if h < 1.0:
                        g *= h
                    j = base + t
                    if 0 <= j < out.shape[0]:
                        out[j] += v * g

        _WT_KERNEL = kernel
    return _WT_KERNEL


_WT_KERNEL = None

#: Total note time (s) from which ``render_groups(oscillator="auto")`` uses the numba kernel:
#: loading it costs ~1.5 s per process, the torch oscillator 2-3 ms more per second of notes
#: (measured on the 2-core box with 30-s Slakh stems).
NUMBA_MIN_NOTE_S = 600.0


def warmup() -> None:
    """Load (or compile) the numba oscillator kernel now, outside any timed section."""
    try:
        kern = _wt_kernel()
    except ImportError:
        return
    kern(np.zeros((1, 2, WT_SIZE + 1), np.float32), np.full((1, 2), 100.0),
                 np.array([2], np.int64), np.array([0], np.int64), np.zeros(1), np.full(1, 100.0),
                 np.zeros(HOP, np.float32), HOP, float(SR_INT), 1.0, 1.0)


def wavetables(amps: torch.Tensor) -> np.ndarray:
    """Single-period tables (N, F, WT_SIZE + 1) of sum_k amps[..., k-1] sin(2 pi k x)."""
    N, n_fr, H = amps.shape
    spec = torch.zeros(N, n_fr, WT_SIZE // 2 + 1, dtype=torch.complex64)
    spec[..., 1:H + 1] = torch.complex(torch.zeros_like(amps), -amps * (WT_SIZE / 2))
    tab = torch.fft.irfft(spec, WT_SIZE, dim=-1)
    return torch.cat([tab, tab[..., :1]], dim=-1).numpy()


def eval_sparse(model: DDSPNet, nb: NoteBatch, emb_rows: torch.Tensor, stride: int = 4,
                dense_s: float = 0.12):
    """Model outputs on ``nb``'s grid, evaluated only on valid frames: every frame near onsets
    and releases, every ``stride``-th frame elsewhere, linear interpolation between."""
    N, F = nb.valid.shape
    t_on = nb.t_abs - nb.onsets[:, None]
    t_off = nb.t_abs - nb.offsets[:, None]
    fi = np.arange(F)[None, :]
    last = (nb.n_frames - 1)[:, None]
    ev = ((t_on < dense_s) | (np.abs(t_off) < dense_s) | (fi % stride == 0) | (fi == last))
    ev &= nb.valid
    feats = torch.from_numpy(nb.features()[ev])
    rows = torch.from_numpy(np.nonzero(ev)[0])
    amp_e, harm_e, bands_e = model(feats, emb_rows[rows])
    idx = np.where(ev, fi, -1)
    prev = np.maximum.accumulate(idx, axis=1)
    nidx = np.where(ev, fi, F + 1)
    nxt = np.minimum.accumulate(nidx[:, ::-1], axis=1)[:, ::-1]
    prev = np.where(prev < 0, nxt, prev)
    nxt = np.where(nxt > F, prev, nxt)
    prev = np.clip(prev, 0, F - 1)
    nxt = np.clip(nxt, 0, F - 1)
    span = np.maximum(nxt - prev, 1)
    w = torch.from_numpy(((fi - prev) / span).clip(0, 1).astype(np.float32))
    # position of (n, frame) in the evaluated rows
    pos = np.full((N, F), 0, np.int64)
    pos[ev] = np.arange(int(ev.sum()))
    p0 = torch.from_numpy(pos[np.arange(N)[:, None], prev])
    p1 = torch.from_numpy(pos[np.arange(N)[:, None], nxt])

    def interp(x):
        if x.dim() == 1:
            return x[p0] * (1 - w) + x[p1] * w
        return x[p0] * (1 - w[..., None]) + x[p1] * w[..., None]

    return interp(amp_e), interp(harm_e), interp(bands_e)


def envelope(n_samples: int, start: torch.Tensor, end: torch.Tensor, sr: float, dtype, device):
    t = torch.arange(n_samples, dtype=torch.float32, device=device)[None, :]
    ramp = torch.clamp((t - start[:, None].float()) / (ONSET_RAMP_S * sr), 0.0, 1.0)
    fade = torch.clamp((end[:, None].float() - t) / (END_FADE_S * sr), 0.0, 1.0)
    return (ramp * fade).to(dtype)


_NOISE_CAL: dict[int, float] = {}


def _noise_cal(sr: int) -> float:
    """Gain making the noise PSD (per Hz, 0.5-5 kHz) at ``sr`` equal to that at SR_INT."""
    if sr == SR_INT:
        return 1.0
    if sr not in _NOISE_CAL:
        b = torch.full((1, 400, N_BANDS), 0.01)
        psd = []
        for rate in (SR_INT, sr):
            y = noise_from_bands(b, rate, 2 * rate, torch.Generator().manual_seed(1),
                                 _calibrate=False)[0].numpy()
            f, p = _welch_psd(y, rate, 2048)
            psd.append(float(p[(f > 500) & (f < 5000)].mean()))
        _NOISE_CAL[sr] = math.sqrt(psd[0] / max(psd[1], 1e-30))
    return _NOISE_CAL[sr]


def _welch_psd(y: np.ndarray, sr: int, nperseg: int) -> tuple[np.ndarray, np.ndarray]:
    """One-sided PSD per Hz of ``y`` by Welch's method (Hann, 50 % overlap, mean of segments)."""
    win = np.hanning(nperseg + 1)[:-1]  # periodic Hann
    hop = nperseg // 2
    n_seg = 1 + (y.shape[0] - nperseg) // hop
    idx = np.arange(nperseg)[None, :] + hop * np.arange(n_seg)[:, None]
    seg = y[idx].astype(np.float64)
    seg -= seg.mean(axis=1, keepdims=True)
    p = (np.abs(np.fft.rfft(seg * win, axis=1)) ** 2).mean(axis=0) / (sr * np.sum(win ** 2))
    p[1:-1] *= 2.0
    return np.fft.rfftfreq(nperseg, 1.0 / sr), p


def noise_from_bands(bands: torch.Tensor, sr: int, n_samples: int,
                     generator: torch.Generator | None = None, _calibrate: bool = True
                     ) -> torch.Tensor:
    """Filtered noise (N, n_samples) at ``sr``: band magnitudes (N, F, B) at FRAME_RATE."""
    n_fft = 512 if sr <= 24000 else (1024 if sr <= 96000 else 2048)
    hop = n_fft // 4
    n_st = n_samples // hop + 1
    # interpolate band magnitudes to STFT frame times
    fr_pos = torch.arange(n_st, dtype=torch.float64) * hop / sr * FRAME_RATE
    i0 = torch.clamp(fr_pos.floor().long(), 0, bands.shape[1] - 1)
    i1 = torch.clamp(i0 + 1, 0, bands.shape[1] - 1)
    w = (fr_pos - fr_pos.floor()).to(bands.dtype)[None, :, None]
    b = bands[:, i0] * (1 - w) + bands[:, i1] * w  # (N, S, B)
    # bands → bins: linear interpolation in log frequency; rolloff above the top band
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    lc = np.log(band_centers())
    lf = np.log(np.maximum(freqs, 1.0))
    pos = np.interp(lf, lc, np.arange(N_BANDS))
    j0 = np.clip(np.floor(pos).astype(np.int64), 0, N_BANDS - 1)
    j1 = np.clip(j0 + 1, 0, N_BANDS - 1)
    wj = torch.tensor(pos - np.floor(pos), dtype=bands.dtype)
    roll = torch.tensor(np.minimum(1.0, BAND_HI_HZ / np.maximum(freqs, 1.0)) ** 1.0,
                        dtype=bands.dtype)
    mag = (b[..., j0] * (1 - wj) + b[..., j1] * wj) * roll  # (N, S, K)
    mag[..., 0] = 0.0
    g = generator
    re = torch.randn(mag.shape, generator=g, dtype=bands.dtype)
    im = torch.randn(mag.shape, generator=g, dtype=bands.dtype)
    spec = torch.complex(re * mag, im * mag).transpose(1, 2)  # (N, K, S)
    win = torch.hann_window(n_fft, dtype=bands.dtype)
    out = torch.istft(spec, n_fft, hop, window=win, center=True, length=n_samples)
    # scale so that band magnitude ~ amplitude per bin independent of n_fft
    out = out * math.sqrt(n_fft / 512.0)
    return out * _noise_cal(sr) if _calibrate else out


_IR_NOISE: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}


def _ir_noise(sr: int) -> tuple[torch.Tensor, torch.Tensor]:
    if sr not in _IR_NOISE:
        n = int(IR_S * sr)
        g = torch.Generator().manual_seed(NOISE_SEED)
        white = torch.randn(n, generator=g, dtype=torch.float64)
        a = math.exp(-2 * math.pi * 1500.0 / sr)  # fixed one-pole lowpass (~1.5 kHz)
        lp = torch.from_numpy(_one_pole(white.numpy(), a))
        t = torch.arange(n, dtype=torch.float64) / sr
        onset = torch.clamp(t / 0.005, 0.0, 1.0)
        _IR_NOISE[sr] = ((white / white.std() * onset).float(), (lp / lp.std() * onset).float())
    return _IR_NOISE[sr]


def room_ir(params: torch.Tensor, sr: int) -> torch.Tensor:
    """Room impulse responses (G, IR_S * sr) from (G, 3) unconstrained params (decay, wet, brightness)."""
    white, lp = _ir_noise(sr)
    n = white.shape[0]
    t = torch.arange(n, dtype=torch.float32) / sr
    t60 = 0.05 + 2.5 * torch.sigmoid(params[:, 0:1])
    wet = torch.sigmoid(params[:, 1:2])
    bright = torch.sigmoid(params[:, 2:3])
    env = torch.exp(-6.91 * t[None, :] / t60)
    tail = env * (bright * white[None, :] + (1 - bright) * lp[None, :])
    tail = tail / torch.sqrt((tail ** 2).sum(dim=1, keepdim=True) + 1e-9)
    ir = wet * tail
    delta = torch.zeros(n)
    delta[0] = 1.0
    return ir + delta[None, :]


def _one_pole(x: np.ndarray, a: float) -> np.ndarray:
    """``y[n] = (1 - a) x[n] + a y[n-1]`` (a one-pole low-pass), float64."""
    y = np.empty(x.shape[0], dtype=np.float64)
    acc = 0.0
    g = 1.0 - a
    for i, v in enumerate(x.tolist()):
        acc = g * v + a * acc
        y[i] = acc
    return y


def fft_convolve(x: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """Convolve (G, T) with (G, L) row by row, truncated to T."""
    n = x.shape[-1] + ir.shape[-1]
    nfft = 1 << (n - 1).bit_length()
    y = torch.fft.irfft(torch.fft.rfft(x, nfft) * torch.fft.rfft(ir, nfft), nfft)
    return y[..., :x.shape[-1]]


def mrstft_loss(pred: torch.Tensor, target: torch.Tensor,
                ffts=(256, 512, 1024, 2048)) -> torch.Tensor:
    """Multi-resolution STFT loss: spectral convergence + log-magnitude L1, mean over sizes."""
    total = pred.new_zeros(())
    for n in ffts:
        win = torch.hann_window(n, dtype=pred.dtype, device=pred.device)
        P = torch.stft(pred, n, n // 4, window=win, return_complex=True).abs()
        T = torch.stft(target, n, n // 4, window=win, return_complex=True).abs()
        sc = torch.linalg.norm(T - P) / (torch.linalg.norm(T) + 1e-7)
        lm = (torch.log(P + 1e-5) - torch.log(T + 1e-5)).abs().mean()
        total = total + sc + lm
    return total / len(ffts)


# --- whole-track rendering -----------------------------------------------------------------

def render_groups(model: DDSPNet, nb: NoteBatch, group: np.ndarray, emb: torch.Tensor,
                  room: torch.Tensor, n_samples: int, *, sr: int = SR_INT,
                  seed: int = 0, generator: torch.Generator | None = None,
                  note_chunk: int = 16, resample=None, fast: bool = False,
                  outputs=None, oscillator: str = "auto") -> torch.Tensor:
    """Render notes into ``G = emb.shape[0]`` groups (tracks or training clips): (G, n_samples).

    ``group`` (N,) is each note's group; ``emb`` (G, E) and ``room`` (G, 3) per group.  The
    harmonic part is synthesized at SR_INT; for another ``sr`` a ``resample(x, sr_in, sr_out)``
    numpy function must be given (used without gradients at decode time).
    ``fast`` uses the wavetable oscillator (decode time, no gradients); ``outputs`` are
    precomputed model outputs (amp, harm, bands) on ``nb``'s frame grid (e.g. from
    :func:`eval_sparse`), possibly wider than ``nb.max_frames``.
    ``oscillator`` (with ``fast``) picks the wavetable implementation: ``"numba"`` (compiled
    kernel, fastest per sample but ~1.5 s to load in a fresh process), ``"torch"``
    (vectorised), or ``"auto"``: numba only when the notes add up to at least
    :data:`NUMBA_MIN_NOTE_S` seconds, where its loading time pays off.  The choice depends on
    the notes only, so a given score always renders the same way.
    """
    G = emb.shape[0]
    dtype = torch.float32
    n_int = int(math.ceil(n_samples * SR_INT / sr))
    n_fr_total = n_int // HOP + 2
    feats = torch.from_numpy(nb.features())
    grp = torch.from_numpy(np.asarray(group, np.int64))
    if outputs is None:
        amp, harm, bands = model(feats, emb[grp][:, None, :])
    else:
        amp, harm, bands = (o[:, :nb.max_frames] for o in outputs)
    valid = torch.from_numpy(nb.valid)
    f0 = torch.from_numpy(nb.f0_hz().astype(np.float32))
    amp = amp * valid
    bands = bands * valid[..., None]
    amps = harmonic_amps(amp, harm, f0)  # (N, F, H)
    # harmonic part, notes in chunks sorted by length
    harm_buf = torch.zeros(G * (n_int + nb.max_frames * HOP + HOP), dtype=dtype)
    stride = n_int + nb.max_frames * HOP + HOP
    order = np.argsort(nb.n_frames if fast else nb.pitches, kind="stable")
    if fast:
        note_chunk = max(note_chunk, 32)
    starts = nb.f0 * HOP
    on_off = np.round(nb.onsets * SR_INT).astype(np.int64) - starts
    end_off = np.round(nb.ends * SR_INT).astype(np.int64) - starts
    kern = None
    if fast and oscillator == "auto":
        note_s = float(nb.n_frames.sum()) * HOP / SR_INT
        oscillator = "numba" if note_s >= NUMBA_MIN_NOTE_S else "torch"
    if fast and oscillator == "numba":
        try:
            kern = _wt_kernel()
        except ImportError:  # no numba: the torch wavetable oscillator below
            kern = None
    if fast and kern is not None:
        out = np.zeros(G * stride, np.float32)
        f0d = nb.f0_hz()
        for c in range(0, len(order), note_chunk):
            idx = order[c:c + note_chunk]
            nf = int(nb.n_frames[idx].max())
            tabs = wavetables(amps[torch.from_numpy(idx), :nf])
            ca = np.ascontiguousarray
            kern(ca(tabs, np.float32), ca(f0d[idx, :nf], np.float64),
                 ca(nb.n_frames[idx], np.int64),
                 ca(grp.numpy()[idx] * stride + starts[idx], np.int64),
                 ca(on_off[idx], np.float64), ca(end_off[idx], np.float64), out, HOP,
                 float(SR_INT), ONSET_RAMP_S * SR_INT, END_FADE_S * SR_INT)
        harm_buf = torch.from_numpy(out)
    for c in range(0, 0 if fast and kern is not None else len(order), note_chunk):
        idx = order[c:c + note_chunk]
        nf = int(nb.n_frames[idx].max())
        L = (nf - 1) * HOP
        it = torch.from_numpy(idx)
        synth = synth_harmonics_wt if fast else synth_harmonics
        sig = synth(amps[it, :nf], f0[it, :nf], L,
                              torch.from_numpy(on_off[idx]), torch.from_numpy(end_off[idx]))
        pos = (grp[it] * stride + torch.from_numpy(starts[idx]))[:, None] + torch.arange(L)[None, :]
        harm_buf = harm_buf.index_add(0, pos.reshape(-1), sig.reshape(-1))
    harm_sig = harm_buf.view(G, stride)[:, :n_int]
    if sr != SR_INT and (not fast or resample is None):
        raise ValueError("sr != SR_INT needs fast=True and a resample function")
    # noise: band magnitudes summed per group frame, synthesized at SR_INT
    fidx = torch.from_numpy(nb.f0[:, None] + np.arange(nb.max_frames)[None, :])
    fidx = torch.clamp(fidx, max=n_fr_total - 1)
    flat = (grp[:, None] * n_fr_total + fidx).reshape(-1)
    gb = torch.zeros(G * n_fr_total, N_BANDS, dtype=dtype).index_add(
        0, flat, bands.reshape(-1, N_BANDS)).view(G, n_fr_total, N_BANDS)
    if generator is None:
        generator = torch.Generator().manual_seed(NOISE_SEED + seed)
    noise = noise_from_bands(gb, SR_INT, n_int, generator)
    dry = harm_sig + noise
    if not fast:
        return _fit(fft_convolve(dry, room_ir(room, SR_INT)), n_samples)
    ir = room_ir(room, SR_INT).numpy()
    wet = [dsp.fft_convolve(dry[g].numpy(), ir[g], n_int) for g in range(G)]
    if sr != SR_INT:
        rng = np.random.default_rng(NOISE_SEED + seed)
        up = [resample(w, SR_INT, sr) for w in wet]
        if sr > 2 * BAND_HI_HZ + 1000:
            up = [u + hf_noise(gb[g, :, -1].numpy(), sr, u.shape[0], rng) for g, u in enumerate(up)]
        wet = up
    return torch.from_numpy(np.stack([_fit_np(w, n_samples) for w in wet]).astype(np.float32))


#: Noise PSD per Hz (one-sided) at SR_INT of a band magnitude m is NOISE_PSD_PER_M2 * m**2.
NOISE_PSD_PER_M2 = 1.75e-7


def hf_noise(top: np.ndarray, sr: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Noise above BAND_HI_HZ (output rates > 2 * SR_INT/2): the top band's level extended with
    a 1/f rolloff, high-passed white noise shaped by the top band's frame envelope.

    The high-passed noise is one periodic table of :data:`HF_TABLE` samples (~6 s at 44.1 kHz,
    made in the frequency domain, so it tiles without seams), repeated: a few ms instead of
    filtering ``n`` samples.
    """
    t_fr = np.arange(top.shape[0]) / FRAME_RATE
    env = np.interp(np.arange(n) / sr, t_fr, top).astype(np.float32)
    if not np.any(env > 0):
        return np.zeros(n, np.float32)
    # mean of (BAND_HI/f)^2 over [BAND_HI, sr/2] times the PSD → white-noise variance
    hi = sr / 2.0
    mean_roll = BAND_HI_HZ * (1.0 / BAND_HI_HZ - 1.0 / hi) / (hi - BAND_HI_HZ)
    sigma = math.sqrt(NOISE_PSD_PER_M2 * mean_roll * hi)
    table = _hf_table(sr, rng)
    reps = -(-n // table.shape[0])
    w = np.tile(table, reps)[:n] if reps > 1 else table[:n].copy()
    w *= env
    w *= np.float32(sigma)
    return w


#: Length of the periodic high-passed noise table of :func:`hf_noise` (samples).
HF_TABLE = 1 << 18


def _hf_table(sr: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance white noise with every bin below BAND_HI_HZ removed (periodic, float32)."""
    spec = rng.standard_normal(HF_TABLE // 2 + 1) + 1j * rng.standard_normal(HF_TABLE // 2 + 1)
    freqs = np.fft.rfftfreq(HF_TABLE, 1.0 / sr)
    spec[freqs < BAND_HI_HZ] = 0.0
    spec[-1] = spec[-1].real
    t = np.fft.irfft(spec, HF_TABLE)
    return (t / max(float(np.std(t)), 1e-12)).astype(np.float32)


def _fit_np(x: np.ndarray, n: int) -> np.ndarray:
    return x[:n] if x.shape[0] >= n else np.pad(x, (0, n - x.shape[0]))


def _fit(x: torch.Tensor, n: int) -> torch.Tensor:
    if x.shape[-1] >= n:
        return x[..., :n]
    return torch.nn.functional.pad(x, (0, n - x.shape[-1]))
