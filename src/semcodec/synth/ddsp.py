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

#: Internal rate of the harmonic synthesizer and of training (Hz).
SR_INT = 22050
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
IR_S = 1.2
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
        """feats (..., N_FEAT), emb (..., EMB_DIM) broadcastable → amp (...), harm (..., H), noise (..., B)."""
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


def upsample_frames(x: torch.Tensor, n_samples: int, hop: float) -> torch.Tensor:
    """Linear interpolation of frame values (..., F) to samples (..., n_samples); frame j at j*hop."""
    pos = torch.arange(n_samples, dtype=torch.float64, device=x.device) / hop
    i0 = torch.clamp(pos.floor().long(), 0, x.shape[-1] - 1)
    i1 = torch.clamp(i0 + 1, 0, x.shape[-1] - 1)
    w = (pos - pos.floor()).to(x.dtype)
    return x[..., i0] * (1 - w) + x[..., i1] * w


def synth_harmonics(amps: torch.Tensor, f0_hz: torch.Tensor, n_samples: int,
                    start_offset: torch.Tensor, end_sample: torch.Tensor) -> torch.Tensor:
    """Harmonic signals (N, n_samples) at SR_INT for notes whose frame 0 is sample 0.

    ``amps`` (N, F, H), ``f0_hz`` (N, F); ``start_offset`` (N,) sample of the true onset within
    the note's window (onset ramp starts there); ``end_sample`` (N,) where the end fade finishes.
    """
    f0_s = upsample_frames(f0_hz.double(), n_samples, HOP)  # (N, T)
    phase = torch.cumsum(2.0 * math.pi * f0_s / SR_INT, dim=-1)
    phase = torch.remainder(phase, 2.0 * math.pi)
    n_h = amps.shape[-1]
    # only harmonics some note can use
    max_h = int(min(n_h, max(1, math.ceil(HARM_MAX_HZ / max(float(f0_hz.min()), 1.0)))))
    a = amps[..., :max_h].transpose(1, 2)  # (N, H, F)
    a_s = upsample_frames(a, n_samples, HOP)  # (N, H, T)
    k = torch.arange(1, max_h + 1, dtype=torch.float64, device=amps.device)
    basis = torch.sin(phase[:, None, :] * k[None, :, None]).to(amps.dtype)
    sig = (a_s * basis).sum(dim=1)
    return sig * envelope(n_samples, start_offset, end_sample, SR_INT, amps.dtype, amps.device)


def envelope(n_samples: int, start: torch.Tensor, end: torch.Tensor, sr: float, dtype, device):
    t = torch.arange(n_samples, dtype=torch.float32, device=device)[None, :]
    ramp = torch.clamp((t - start[:, None].float()) / (ONSET_RAMP_S * sr), 0.0, 1.0)
    fade = torch.clamp((end[:, None].float() - t) / (END_FADE_S * sr), 0.0, 1.0)
    return (ramp * fade).to(dtype)


def noise_from_bands(bands: torch.Tensor, sr: int, n_samples: int,
                     generator: torch.Generator | None = None) -> torch.Tensor:
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
    return out * math.sqrt(n_fft / 512.0)


def room_ir(params: torch.Tensor, sr: int) -> torch.Tensor:
    """Room impulse response (IR_S * sr,) from 3 unconstrained params (decay, wet, brightness)."""
    n = int(IR_S * sr)
    g = torch.Generator().manual_seed(NOISE_SEED)
    white = torch.randn(n, generator=g, dtype=torch.float64)
    # fixed one-pole lowpass (~1.5 kHz) of the same noise
    a = math.exp(-2 * math.pi * 1500.0 / sr)
    lp = torch.from_numpy(_one_pole(white.numpy(), a))
    white = white / white.std()
    lp = lp / lp.std()
    t = torch.arange(n, dtype=torch.float64) / sr
    t60 = 0.05 + 2.5 * torch.sigmoid(params[0].double())
    wet = torch.sigmoid(params[1].double())
    bright = torch.sigmoid(params[2].double())
    env = torch.exp(-6.91 * t / t60) * torch.clamp(t / 0.005, 0.0, 1.0)
    tail = env * (bright * white + (1 - bright) * lp)
    tail = tail / torch.sqrt((tail ** 2).sum() + 1e-9)
    ir = wet * tail
    ir = ir.clone()
    ir[0] = ir[0] + 1.0
    return ir.to(params.dtype)


def _one_pole(x: np.ndarray, a: float) -> np.ndarray:
    from scipy.signal import lfilter

    return lfilter([1 - a], [1, -a], x)


def fft_convolve(x: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """Convolve (..., T) with (L,), truncated to T."""
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
                  note_chunk: int = 64, resample=None) -> torch.Tensor:
    """Render notes into ``G = emb.shape[0]`` groups (tracks or training clips): (G, n_samples).

    ``group`` (N,) is each note's group; ``emb`` (G, E) and ``room`` (G, 3) per group.  The
    harmonic part is synthesized at SR_INT; for another ``sr`` a ``resample(x, sr_in, sr_out)``
    numpy function must be given (used without gradients at decode time).
    """
    G = emb.shape[0]
    dtype = torch.float32
    n_int = int(math.ceil(n_samples * SR_INT / sr))
    n_fr_total = n_int // HOP + 2
    feats = torch.from_numpy(nb.features())
    grp = torch.from_numpy(np.asarray(group, np.int64))
    amp, harm, bands = model(feats, emb[grp][:, None, :])
    valid = torch.from_numpy(nb.valid)
    f0 = torch.from_numpy(nb.f0_hz().astype(np.float32))
    amp = amp * valid
    bands = bands * valid[..., None]
    amps = harmonic_amps(amp, harm, f0)  # (N, F, H)
    # harmonic part, notes in chunks sorted by length
    harm_buf = torch.zeros(G * (n_int + nb.max_frames * HOP + HOP), dtype=dtype)
    stride = n_int + nb.max_frames * HOP + HOP
    order = np.argsort(nb.n_frames, kind="stable")
    starts = nb.f0 * HOP
    on_off = np.round(nb.onsets * SR_INT).astype(np.int64) - starts
    end_off = np.round(nb.ends * SR_INT).astype(np.int64) - starts
    for c in range(0, len(order), note_chunk):
        idx = order[c:c + note_chunk]
        nf = int(nb.n_frames[idx].max())
        L = (nf - 1) * HOP
        it = torch.from_numpy(idx)
        sig = synth_harmonics(amps[it, :nf], f0[it, :nf], L,
                              torch.from_numpy(on_off[idx]), torch.from_numpy(end_off[idx]))
        pos = (grp[it] * stride + torch.from_numpy(starts[idx]))[:, None] + torch.arange(L)[None, :]
        harm_buf = harm_buf.index_add(0, pos.reshape(-1), sig.reshape(-1))
    harm_sig = harm_buf.view(G, stride)[:, :n_int]
    if sr != SR_INT:
        if resample is None:
            raise ValueError("resample function needed for sr != SR_INT")
        harm_sig = torch.from_numpy(np.stack([resample(h.detach().numpy(), SR_INT, sr)
                                              for h in harm_sig]))
    harm_sig = _fit(harm_sig, n_samples)
    # noise: band magnitudes summed per group frame
    fidx = torch.from_numpy(nb.f0[:, None] + np.arange(nb.max_frames)[None, :])
    fidx = torch.clamp(fidx, max=n_fr_total - 1)
    flat = (grp[:, None] * n_fr_total + fidx).reshape(-1)
    gb = torch.zeros(G * n_fr_total, N_BANDS, dtype=dtype).index_add(
        0, flat, bands.reshape(-1, N_BANDS)).view(G, n_fr_total, N_BANDS)
    if generator is None:
        generator = torch.Generator().manual_seed(NOISE_SEED + seed)
    noise = noise_from_bands(gb, sr, n_samples, generator)
    dry = harm_sig + noise
    outs = [fft_convolve(dry[g], room_ir(room[g], sr)) for g in range(G)]
    return torch.stack(outs)


def _fit(x: torch.Tensor, n: int) -> torch.Tensor:
    if x.shape[-1] >= n:
        return x[..., :n]
    return torch.nn.functional.pad(x, (0, n - x.shape[-1]))
