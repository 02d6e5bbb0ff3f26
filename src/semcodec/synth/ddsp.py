"""Pure-math parts of the neural synthesizer: the DDSP-style model and its signal stages.

Imports torch at module level: import this module only through :mod:`semcodec.synth.neural`
(which imports it lazily) or :mod:`semcodec.synth.train`.  The decoder's CPU path is the numpy
twin of this module, :mod:`semcodec.synth.ddsp_np`; here everything runs on the device of the
embeddings passed in (``--device cuda``), the noise being drawn from a CPU generator.

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

from semcodec.synth import dsp

# constants, the note layout and the numpy signal helpers are shared with the numpy engine
from semcodec.synth.ddsp_np import (  # noqa: E402,F401 - re-exported for train/timbre
    BAND_HI_HZ,
    BAND_LO_HZ,
    EMB_DIM,
    END_FADE_S,
    FRAME_RATE,
    HARM_MAX_HZ,
    HF_TABLE,
    HOP,
    IR_S,
    N_BANDS,
    N_FEAT,
    N_HARM,
    N_PROGRAMS,
    N_ROOM,
    NOISE_PSD_PER_M2,
    NOISE_SEED,
    ONSET_RAMP_S,
    SR_INT,
    TAIL_S,
    WT_SIZE,
    NoteBatch,
    fit_np,
    one_pole,
    band_centers,
    hf_noise,
)


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
                    start_offset: torch.Tensor, end_sample: torch.Tensor,
                    cache: dict | None = None) -> torch.Tensor:
    """Harmonic signals (N, n_samples) at SR_INT for notes whose frame 0 is sample 0.

    ``amps`` (N, F, H), ``f0_hz`` (N, F); ``start_offset`` (N,) sample of the true onset within
    the note's window (onset ramp starts there); ``end_sample`` (N,) where the end fade finishes.
    ``cache``: a dict kept by the caller for calls on the same notes (same ``f0_hz``, offsets
    and shapes; only ``amps`` may differ, e.g. the steps of a fit): the sine bases and the
    envelope, which depend on the notes only, are made on the first call and reused (the
    same numbers, without the sines: most of a step's forward pass).
    """
    n_fr = amps.shape[1]
    T = (n_fr - 1) * HOP  # samples covered by frame intervals
    if cache is not None and "basis" in cache:
        basis, basis_w, max_h, env = (cache[k] for k in ("basis", "basis_w", "max_h", "env"))
    else:
        with torch.no_grad():
            f0_s = upsample_frames(f0_hz.double(), T, HOP)  # (N, T)
            phase = torch.cumsum(2.0 * math.pi * f0_s / SR_INT, dim=-1)
            phase = torch.remainder(phase, 2.0 * math.pi).float()
            max_h = int(min(amps.shape[-1],
                            max(1, math.ceil(HARM_MAX_HZ / max(float(f0_hz.min()), 1.0)))))
            k = torch.arange(1, max_h + 1, dtype=torch.float32, device=amps.device)
            # basis (N, F-1, HOP, H) and its ramp-weighted copy: amplitudes are linear within
            # frames
            basis = torch.sin(phase.view(-1, n_fr - 1, HOP)[..., None] * k)
            w = (torch.arange(HOP, dtype=torch.float32, device=amps.device) / HOP)[None, None, :, None]
            basis_w = basis * w
        env = envelope(n_samples, start_offset, end_sample, SR_INT, amps.dtype, amps.device)
        if cache is not None:
            cache.update(basis=basis, basis_w=basis_w, max_h=max_h, env=env)
    a = amps[..., :max_h]
    a0, a1 = a[:, :-1], a[:, 1:]
    # sig[n,f,j] = sum_k S[n,f,j,k] * (a0 + w_j (a1 - a0))[n,f,k]
    sig = (torch.matmul(basis, a0[..., None]) + torch.matmul(basis_w, (a1 - a0)[..., None]))
    sig = _fit(sig.reshape(amps.shape[0], T), n_samples)
    return sig * env



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
    dev = amps.device
    j = torch.arange(1, HOP + 1, dtype=torch.float32, device=dev)
    a = f0_hz[:, :-1, None] / SR_INT
    b = (f0_hz[:, 1:, None] - f0_hz[:, :-1, None]) / (2 * HOP * SR_INT)
    phase = ph_fr.float()[..., None] + a * j + b * j * j
    phase = torch.remainder(phase.reshape(N, T), 1.0) * WT_SIZE  # table position
    spec = torch.zeros(N, n_fr, WT_SIZE // 2 + 1, dtype=torch.complex64, device=dev)
    spec[..., 1:H + 1] = torch.complex(torch.zeros_like(amps), -amps * (WT_SIZE / 2))
    tab = torch.fft.irfft(spec, WT_SIZE, dim=-1)  # (N, F, W)
    tab = torch.cat([tab, tab[..., :1]], dim=-1).reshape(-1)  # wrap column
    i0 = phase.floor().long().clamp(0, WT_SIZE - 1)
    fr = (phase - phase.floor()).float()
    t = torch.arange(T, device=dev)
    f = (t // HOP)[None, :]
    w = ((t % HOP).float() / HOP)[None, :]
    base = (torch.arange(N, device=dev)[:, None] * n_fr + f) * (WT_SIZE + 1) + i0
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
    return torch.cat([tab, tab[..., :1]], dim=-1).cpu().numpy()


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
    dev = emb_rows.device
    feats = torch.from_numpy(nb.features()[ev]).to(dev)
    rows = torch.from_numpy(np.nonzero(ev)[0]).to(dev)
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
    w = torch.from_numpy(((fi - prev) / span).clip(0, 1).astype(np.float32)).to(dev)
    # position of (n, frame) in the evaluated rows
    pos = np.full((N, F), 0, np.int64)
    pos[ev] = np.arange(int(ev.sum()))
    p0 = torch.from_numpy(pos[np.arange(N)[:, None], prev]).to(dev)
    p1 = torch.from_numpy(pos[np.arange(N)[:, None], nxt]).to(dev)

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
                     generator: torch.Generator | list[torch.Generator] | None = None,
                     _calibrate: bool = True
                     ) -> torch.Tensor:
    """Filtered noise (N, n_samples) at ``sr``: band magnitudes (N, F, B) at FRAME_RATE."""
    n_fft = 512 if sr <= 24000 else (1024 if sr <= 96000 else 2048)
    hop = n_fft // 4
    n_st = n_samples // hop + 1
    # interpolate band magnitudes to STFT frame times
    dev = bands.device
    fr_pos = torch.arange(n_st, dtype=torch.float64, device=dev) * hop / sr * FRAME_RATE
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
    wj = torch.tensor(pos - np.floor(pos), dtype=bands.dtype, device=dev)
    roll = torch.tensor(np.minimum(1.0, BAND_HI_HZ / np.maximum(freqs, 1.0)) ** 1.0,
                        dtype=bands.dtype, device=dev)
    mag = (b[..., j0] * (1 - wj) + b[..., j1] * wj) * roll  # (N, S, K)
    mag[..., 0] = 0.0
    # drawn from the (CPU) generator, then moved: every device plays the same noise.  A list
    # of generators (one per row) draws each row as a batch of one would.
    g = generator
    if isinstance(g, (list, tuple)):
        pairs = [(torch.randn(mag.shape[1:], generator=gi, dtype=bands.dtype),
                  torch.randn(mag.shape[1:], generator=gi, dtype=bands.dtype)) for gi in g]
        re = torch.stack([p[0] for p in pairs]).to(dev)
        im = torch.stack([p[1] for p in pairs]).to(dev)
    else:
        re = torch.randn(mag.shape, generator=g, dtype=bands.dtype).to(dev)
        im = torch.randn(mag.shape, generator=g, dtype=bands.dtype).to(dev)
    spec = torch.complex(re * mag, im * mag).transpose(1, 2)  # (N, K, S)
    win = torch.hann_window(n_fft, dtype=bands.dtype, device=dev)
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
        lp = torch.from_numpy(one_pole(white.numpy(), a))
        t = torch.arange(n, dtype=torch.float64) / sr
        onset = torch.clamp(t / 0.005, 0.0, 1.0)
        _IR_NOISE[sr] = ((white / white.std() * onset).float(), (lp / lp.std() * onset).float())
    return _IR_NOISE[sr]


def room_ir(params: torch.Tensor, sr: int) -> torch.Tensor:
    """Room impulse responses (G, IR_S * sr) from (G, 3) unconstrained params (decay, wet, brightness)."""
    dev = params.device
    white, lp = (x.to(dev) for x in _ir_noise(sr))
    n = white.shape[0]
    t = torch.arange(n, dtype=torch.float32, device=dev) / sr
    t60 = 0.05 + 2.5 * torch.sigmoid(params[:, 0:1])
    wet = torch.sigmoid(params[:, 1:2])
    bright = torch.sigmoid(params[:, 2:3])
    env = torch.exp(-6.91 * t[None, :] / t60)
    tail = env * (bright * white[None, :] + (1 - bright) * lp[None, :])
    tail = tail / torch.sqrt((tail ** 2).sum(dim=1, keepdim=True) + 1e-9)
    ir = wet * tail
    delta = torch.zeros(n, device=dev)
    delta[0] = 1.0
    return ir + delta[None, :]


def fft_convolve(x: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """Convolve (G, T) with (G, L) row by row, truncated to T."""
    n = x.shape[-1] + ir.shape[-1]
    nfft = 1 << (n - 1).bit_length()
    y = torch.fft.irfft(torch.fft.rfft(x, nfft) * torch.fft.rfft(ir, nfft), nfft)
    return y[..., :x.shape[-1]]


MRSTFT_FFTS = (256, 512, 1024, 2048)


def mrstft_target(target: torch.Tensor, ffts=MRSTFT_FFTS) -> list[torch.Tensor]:
    """The target's STFT magnitudes of :func:`mrstft_loss` (one per size), to compute once
    for many predictions against the same target."""
    out = []
    with torch.no_grad():
        for n in ffts:
            win = torch.hann_window(n, dtype=target.dtype, device=target.device)
            out.append(torch.stft(target, n, n // 4, window=win, return_complex=True).abs())
    return out


def mrstft_loss(pred: torch.Tensor, target: torch.Tensor,
                ffts=MRSTFT_FFTS, target_mags: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Multi-resolution STFT loss: spectral convergence + log-magnitude L1, mean over sizes.
    ``target_mags``: :func:`mrstft_target` of ``target`` (the same numbers, not recomputed)."""
    total = pred.new_zeros(())
    for k, n in enumerate(ffts):
        win = torch.hann_window(n, dtype=pred.dtype, device=pred.device)
        P = torch.stft(pred, n, n // 4, window=win, return_complex=True).abs()
        T = (target_mags[k] if target_mags is not None else
             torch.stft(target, n, n // 4, window=win, return_complex=True).abs())
        sc = torch.linalg.norm(T - P) / (torch.linalg.norm(T) + 1e-7)
        lm = (torch.log(P + 1e-5) - torch.log(T + 1e-5)).abs().mean()
        total = total + sc + lm
    return total / len(ffts)


# --- whole-track rendering -----------------------------------------------------------------

def _harmonic_signal(nb: NoteBatch, amps: torch.Tensor, f0: torch.Tensor, grp: torch.Tensor,
                     G: int, n_int: int, dev: torch.device, *, fast: bool, oscillator: str,
                     note_chunk: int, cache: dict | None = None) -> torch.Tensor:
    """The harmonic part of :func:`render_groups` at SR_INT, (G, n_int): the notes' harmonics
    (``amps`` (N, F, H), ``f0`` (N, F) Hz) synthesized in chunks and added into their groups;
    ``cache`` (not ``fast``): :func:`synth_harmonics`'s, one entry per chunk."""
    dtype = torch.float32
    # harmonic part, notes in chunks sorted by length
    harm_buf = torch.zeros(G * (n_int + nb.max_frames * HOP + HOP), dtype=dtype, device=dev)
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
    if fast and oscillator == "numba" and dev.type == "cpu":
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
        harm_buf = torch.from_numpy(out).to(dev)
    for c in range(0, 0 if fast and kern is not None else len(order), note_chunk):
        idx = order[c:c + note_chunk]
        nf = int(nb.n_frames[idx].max())
        L = (nf - 1) * HOP
        it = torch.from_numpy(idx).to(dev)
        args = (amps[it, :nf], f0[it, :nf], L, torch.from_numpy(on_off[idx]).to(dev),
                torch.from_numpy(end_off[idx]).to(dev))
        if fast:
            sig = synth_harmonics_wt(*args)
        else:
            sig = synth_harmonics(*args, cache=None if cache is None
                                  else cache.setdefault((c, note_chunk), {}))
        pos = ((grp[it] * stride + torch.from_numpy(starts[idx]).to(dev))[:, None]
               + torch.arange(L, device=dev)[None, :])
        harm_buf = harm_buf.index_add(0, pos.reshape(-1), sig.reshape(-1))
    return harm_buf.view(G, stride)[:, :n_int]


def render_groups(model: DDSPNet, nb: NoteBatch, group: np.ndarray, emb: torch.Tensor,
                  room: torch.Tensor, n_samples: int, *, sr: int = SR_INT,
                  seed: int = 0, generator: torch.Generator | None = None,
                  note_chunk: int = 16, resample=None, fast: bool = False,
                  outputs=None, oscillator: str = "auto", seeds=None,
                  harmonic_cache: dict | None = None) -> torch.Tensor:
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
    ``seeds`` (G ints, decode time): each group's noise drawn as that group rendered alone
    with ``seed=seeds[g]`` would draw it (batches of many files' tracks).
    ``harmonic_cache`` (not ``fast``): a dict the caller keeps between renderings of the same
    ``nb`` and ``group`` (a fit's steps): what of the harmonic synthesis depends on the notes
    only is made once (:func:`synth_harmonics`); the same output.
    """
    G = emb.shape[0]
    dev = emb.device  # everything runs where the embeddings are (the model must be there too)
    dtype = torch.float32
    n_int = int(math.ceil(n_samples * SR_INT / sr))
    n_fr_total = n_int // HOP + 2
    grp = torch.from_numpy(np.asarray(group, np.int64)).to(dev)
    if outputs is None:
        feats = torch.from_numpy(nb.features()).to(dev)
        amp, harm, bands = model(feats, emb[grp][:, None, :])
    else:
        amp, harm, bands = (o[:, :nb.max_frames] for o in outputs)
    valid = torch.from_numpy(nb.valid).to(dev)
    f0 = torch.from_numpy(nb.f0_hz().astype(np.float32)).to(dev)
    amp = amp * valid
    bands = bands * valid[..., None]
    amps = harmonic_amps(amp, harm, f0)  # (N, F, H)
    harm_sig = _harmonic_signal(nb, amps, f0, grp, G, n_int, dev, fast=fast, oscillator=oscillator,
                                note_chunk=note_chunk, cache=harmonic_cache)
    if sr != SR_INT and (not fast or resample is None):
        raise ValueError("sr != SR_INT needs fast=True and a resample function")
    # noise: band magnitudes summed per group frame, synthesized at SR_INT
    fidx = torch.from_numpy(nb.f0[:, None] + np.arange(nb.max_frames)[None, :]).to(dev)
    fidx = torch.clamp(fidx, max=n_fr_total - 1)
    flat = (grp[:, None] * n_fr_total + fidx).reshape(-1)
    gb = torch.zeros(G * n_fr_total, N_BANDS, dtype=dtype, device=dev).index_add(
        0, flat, bands.reshape(-1, N_BANDS)).view(G, n_fr_total, N_BANDS)
    gens: torch.Generator | list[torch.Generator]
    if seeds is not None:
        gens = [torch.Generator().manual_seed(NOISE_SEED + int(sd)) for sd in seeds]
    else:
        gens = generator if generator is not None else torch.Generator().manual_seed(NOISE_SEED + seed)
    noise = noise_from_bands(gb, SR_INT, n_int, gens)
    dry = harm_sig + noise
    if not fast:
        return _fit(fft_convolve(dry, room_ir(room, SR_INT)), n_samples)
    if dev.type != "cpu":  # the room on the device too; resampling stays on the CPU (numpy)
        wet_t = fft_convolve(dry, room_ir(room, SR_INT))
        wet = [w for w in wet_t.cpu().numpy()]
    else:
        ir = room_ir(room, SR_INT).numpy()
        wet = [dsp.fft_convolve(dry[g].numpy(), ir[g], n_int) for g in range(G)]
    if sr != SR_INT:
        rng = np.random.default_rng(NOISE_SEED + seed)
        up = [resample(w, SR_INT, sr) for w in wet]
        if sr > 2 * BAND_HI_HZ + 1000:
            top = gb[:, :, -1].cpu().numpy()
            rngs = ([np.random.default_rng(NOISE_SEED + int(sd)) for sd in seeds]
                    if seeds is not None else [rng] * G)
            up = [u + hf_noise(top[g], sr, u.shape[0], rngs[g]) for g, u in enumerate(up)]
        wet = up
    return torch.from_numpy(np.stack([fit_np(w, n_samples) for w in wet]).astype(np.float32))


def _fit(x: torch.Tensor, n: int) -> torch.Tensor:
    if x.shape[-1] >= n:
        return x[..., :n]
    return torch.nn.functional.pad(x, (0, n - x.shape[-1]))
