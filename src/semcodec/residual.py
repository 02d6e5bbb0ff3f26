"""The residual layer: what the score's synthesis misses, as a coarse band-energy envelope.

The encoder renders what the decoder will produce, measures the band energies of the original
and of that decode on a coarse grid (``n_bands`` mel-spaced bands x frames of ``period_s``),
and codes, for the cells where it measurably helps, the original's band level.  The decoder
measures its own decode on the same grid and, in those cells, adds seeded noise for the energy
the decode lacks, or attenuates the decode where it is too loud (a band-limited original, an
over-bright timbre).  Everything here is numpy + the standard library (no torch, librosa or
scipy), so decoding stays light.

Units and shapes
----------------
* audio: float32 ``(n,)`` mono or ``(n, 2)`` stereo, at ``sr`` Hz;
* levels: integers, the band's mean power per STFT bin in dB divided by ``step_db``
  (``level * step_db`` dB); ``mask``: bool ``(n_bands, n_frames)``, True where a level is coded;
* band edges in Hz, mel-spaced (HTK formula) from 0 Hz to half the *original's* sample rate;
* frames: frame ``t`` covers ``[t * period_s, (t + 1) * period_s)`` seconds of the original
  (divided by the tempo factor on a tempo-changed decode).

Byte layout of the coded envelope (the ``RESD`` chunk payload, docs/FORMAT.md): 4 bytes of
parameters (bands, period in 10 ms units, step in 0.5 dB units, flags), then a binary range
code (LZMA-style, 11-bit adaptive probabilities) of the mask and the level residuals.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from semcodec.errors import ContainerError

log = logging.getLogger(__name__)

#: Bounds of the coded parameters (the reader rejects anything else).
MIN_BANDS, MAX_BANDS = 4, 32
MIN_PERIOD_UNITS, MAX_PERIOD_UNITS = 2, 100  # frame period in 10 ms units: 20 ms .. 1 s
MIN_STEP_UNITS, MAX_STEP_UNITS = 1, 24  # quantizer step in 0.5 dB units: 0.5 .. 12 dB
#: Most grid cells a residual may have (bands x frames; 32 bands of 20 ms over 24 h fit).
MAX_CELLS = 160_000_000
#: Most bytes of a RESD payload.
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
#: Levels are clamped to this range of dB (mean power per bin of the analysis STFT).
MIN_LEVEL_DB, MAX_LEVEL_DB = -150.0, 90.0
#: Default grid: 20 mel bands, 100 ms frames, 3 dB steps (see docs/FORMAT.md, "RESD").
DEFAULT_BANDS = 20
DEFAULT_PERIOD_S = 0.1
DEFAULT_STEP_DB = 3.0
#: Seed of the decoder's noise generator (numpy PCG64).
NOISE_SEED = 0x5EC0DEC
#: Deepest attenuation the decoder applies (dB).
MAX_CUT_DB = 60.0
#: Analysis STFT at 44.1 kHz: 1024-sample sine windows, hop 512 (scaled with the rate).
REF_SR = 44100
REF_N_FFT = 1024
#: Fine mel bands of the encoder's per-cell decision (its log-magnitude distance).
DECISION_MELS = 64
#: A cell is coded only when it lowers the cell's distance by more than this (log10 units).
MIN_GAIN = 0.01
_HEAD = 4


@dataclass(frozen=True)
class Envelope:
    """A coded residual: ``levels`` int ``(n_bands, n_frames)`` (only meaningful where
    ``mask``), ``mask`` bool of the same shape, frame period (s), quantizer step (dB)."""

    levels: np.ndarray
    mask: np.ndarray
    period_s: float
    step_db: float

    @property
    def n_bands(self) -> int:
        return int(self.mask.shape[0])

    @property
    def n_frames(self) -> int:
        return int(self.mask.shape[1])


# ------------------------------------------------------------------------------------------
# grid and STFT
# ------------------------------------------------------------------------------------------


def stft_size(sr: int) -> tuple[int, int]:
    """(n_fft, hop) of the analysis STFT at ``sr`` Hz: ~23 ms sine windows, 50 % overlap."""
    n_fft = max(64, int(2 ** round(math.log2(REF_N_FFT * sr / REF_SR))))
    return n_fft, n_fft // 2


def _window(n_fft: int) -> np.ndarray:
    return np.sin(np.pi * (np.arange(n_fft) + 0.5) / n_fft).astype(np.float32)


def stft(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Complex STFT ``(n_frames, n_fft // 2 + 1)`` of mono ``x`` (n,), sine window, the signal
    padded by ``hop`` zeros at the start and up to a whole frame at the end; frame ``k``
    is centred on sample ``k * hop``."""
    x = np.asarray(x, np.float32)
    n_frames = len(x) // hop + 2
    pad = np.zeros((n_frames + 1) * hop, np.float32)
    pad[hop:hop + len(x)] = x
    frames = np.lib.stride_tricks.as_strided(
        pad, shape=(n_frames, n_fft), strides=(pad.strides[0] * hop, pad.strides[0]))
    return np.fft.rfft(frames * _window(n_fft), axis=1).astype(np.complex64)


def istft(spec: np.ndarray, n_fft: int, hop: int, n: int) -> np.ndarray:
    """Inverse of :func:`stft` (overlap-add with the same sine window): float32 ``(n,)``."""
    frames = np.fft.irfft(spec, n=n_fft, axis=1).astype(np.float32) * _window(n_fft)
    n_frames = frames.shape[0]
    out = np.zeros((n_frames + 1) * hop, np.float32)
    out[:n_frames * hop] += frames[:, :hop].reshape(-1)
    out[hop:(n_frames + 1) * hop] += frames[:, hop:].reshape(-1)
    return out[hop:hop + n]


def band_edges(n_bands: int, sr_original: int) -> np.ndarray:
    """``n_bands + 1`` band edges (Hz), equally spaced in mel from 0 to ``sr_original / 2``."""
    top = 2595.0 * math.log10(1.0 + (sr_original / 2.0) / 700.0)
    mels = np.linspace(0.0, top, n_bands + 1)
    return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)


def _bin_bands(edges: np.ndarray, n_fft: int, sr: int) -> np.ndarray:
    """Band index of every STFT bin (``n_fft // 2 + 1``,), -1 above the last edge."""
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    idx = np.searchsorted(edges, freqs, side="right") - 1
    idx[freqs >= edges[-1]] = -1
    idx[0] = 0
    # a band narrower than a bin gets the nearest bin, so that no band is empty
    for b in range(len(edges) - 1):
        if not np.any(idx == b):
            centre = 0.5 * (edges[b] + edges[b + 1])
            k = int(round(centre * n_fft / sr))
            if k < len(idx):
                idx[k] = b
    return idx


def _frame_of(n_stft: int, hop: int, sr: int, period_s: float, n_frames: int) -> np.ndarray:
    """Grid frame of every STFT frame (centre ``k * hop / sr`` seconds), clipped to the grid."""
    t = np.arange(n_stft) * hop / sr
    return np.clip((t / period_s).astype(np.int64), 0, n_frames - 1)


def n_grid_frames(duration_s: float, period_s: float) -> int:
    """Frames of the grid for a clip of ``duration_s`` seconds (at least 1)."""
    return max(1, int(math.ceil(duration_s / period_s - 1e-9)))


def band_power(power: np.ndarray, bins: np.ndarray, frames: np.ndarray, n_bands: int,
               n_frames: int) -> np.ndarray:
    """Mean of ``power`` ``(n_stft, n_bins)`` over each (band, grid frame) cell:
    ``(n_bands, n_frames)``; 0 for a cell with no STFT frame.  ``frames`` (n_stft,) must be
    non-decreasing (it is: grid frames follow time)."""
    onehot = np.zeros((len(bins), n_bands), np.float32)
    ok = np.nonzero(bins >= 0)[0]
    onehot[ok, bins[ok]] = 1.0
    counts_b = np.maximum(onehot.sum(axis=0), 1.0)
    per_band = np.asarray(power, np.float32) @ (onehot / counts_b)  # (n_stft, n_bands)
    counts_t = np.bincount(frames, minlength=n_frames)
    starts = np.concatenate([[0], np.cumsum(counts_t)[:-1]])
    cell = np.zeros((n_frames, n_bands), np.float64)
    have = counts_t > 0
    cell[have] = np.add.reduceat(per_band.astype(np.float64), starts[have], axis=0)
    return (cell / np.maximum(counts_t, 1)[:, None]).T


def _interp_matrix(centres: np.ndarray, n_points: int) -> np.ndarray:
    """``(n_points, len(centres))`` weights interpolating linearly between ``centres``
    (positions in point units), constant beyond the first and last centre."""
    m = np.zeros((n_points, len(centres)), np.float32)
    pos = np.arange(n_points, dtype=np.float64)
    if len(centres) == 1:
        m[:, 0] = 1.0
        return m
    j = np.clip(np.searchsorted(centres, pos) - 1, 0, len(centres) - 2)
    w = np.clip((pos - centres[j]) / np.maximum(centres[j + 1] - centres[j], 1e-9), 0.0, 1.0)
    m[np.arange(n_points), j] = 1.0 - w
    m[np.arange(n_points), j + 1] += w
    return m


# ------------------------------------------------------------------------------------------
# synthesis (decoder)
# ------------------------------------------------------------------------------------------


class _Plan:
    """The grid of an envelope laid over a decode of ``n`` samples at ``sr`` Hz."""

    def __init__(self, env: Envelope, sr: int, sr_original: int, n: int, tempo: float) -> None:
        self.n_fft, self.hop = stft_size(sr)
        self.n = n
        n_stft = n // self.hop + 2
        period = env.period_s / tempo
        self.bins = _bin_bands(band_edges(env.n_bands, sr_original), self.n_fft, sr)
        self.frames = _frame_of(n_stft, self.hop, sr, period, env.n_frames)
        # interpolation: frames between grid-frame centres, bins between band centres
        t_centres = (np.arange(env.n_frames) + 0.5) * period * sr / self.hop
        self.t_interp = _interp_matrix(t_centres, n_stft)  # (n_stft, n_frames)
        valid = np.array([np.mean(np.nonzero(self.bins == b)[0]) if np.any(self.bins == b)
                          else np.nan for b in range(env.n_bands)])
        have = ~np.isnan(valid)
        f_interp = np.zeros((len(self.bins), env.n_bands), np.float32)
        if np.any(have):
            f_interp[:, have] = _interp_matrix(valid[have], len(self.bins))
        f_interp[self.bins < 0] = 0.0  # nothing above the original's band
        self.f_interp = f_interp  # (n_bins, n_bands)


def cell_actions(env: Envelope, decoded_power: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(noise power per bin, gain in dB), both ``(n_bands, n_frames)``, that bring the
    decode's band power ``decoded_power`` to the coded levels in the masked cells.

    Where the target exceeds the decode by more than one step, noise of the missing power is
    added; where it is more than one step below, the decode is attenuated (down to
    -MAX_CUT_DB); elsewhere, and outside the mask, nothing changes.
    """
    target = 10.0 ** (env.levels.astype(np.float64) * env.step_db / 10.0)
    have = np.maximum(decoded_power, 1e-30)
    ratio_db = 10.0 * np.log10(np.maximum(target, 1e-30) / have)
    noise = np.where(env.mask & (ratio_db > env.step_db), target - decoded_power, 0.0)
    gain = np.where(env.mask & (ratio_db < -env.step_db), np.maximum(ratio_db, -MAX_CUT_DB), 0.0)
    return np.maximum(noise, 0.0), gain


def _noise_spec(n: int, n_fft: int, hop: int) -> tuple[np.ndarray, float]:
    """STFT of the seeded white noise (n,) and its expected magnitude per bin."""
    rng = np.random.default_rng(NOISE_SEED)
    w = rng.standard_normal(n, dtype=np.float32)
    win = _window(n_fft)
    return stft(w, n_fft, hop), float(np.sqrt(np.sum(win.astype(np.float64) ** 2)))


def apply(audio: np.ndarray, sr: int, env: Envelope, sr_original: int,
          tempo: float = 1.0) -> np.ndarray:
    """``audio`` (the decode, float32 ``(n,)`` or ``(n, 2)`` at ``sr`` Hz) with the residual:
    shaped noise where the decode lacks energy, attenuation where it has too much.

    The grid follows a tempo change (``tempo`` > 1: frames ``period_s / tempo`` long); band
    edges are those of the original (``sr_original``), so bands above ``sr / 2`` are dropped.
    Stereo: the cells are measured on the downmix ``(left + right) / 2``; both channels get
    the same gains and the same noise (the noise sits in the centre).
    """
    audio = np.asarray(audio, np.float32)
    if not np.any(env.mask) or audio.shape[0] == 0:
        return audio
    n = audio.shape[0]
    plan = _Plan(env, sr, sr_original, n, tempo)
    noise_spec, norm = _noise_spec(n, plan.n_fft, plan.hop)
    mono = audio if audio.ndim == 1 else audio.mean(axis=1)
    spec = stft(mono, plan.n_fft, plan.hop)
    power = np.abs(spec) ** 2
    dec = band_power(power, plan.bins, plan.frames, env.n_bands, env.n_frames)
    noise, gain_db = cell_actions(env, dec)
    amp_tf = (plan.t_interp @ np.sqrt(noise).T.astype(np.float32)) @ plan.f_interp.T
    gain_tf = (plan.t_interp @ gain_db.T.astype(np.float32)) @ plan.f_interp.T
    gain_lin = (10.0 ** (gain_tf / 20.0)).astype(np.float32)
    add = noise_spec * (amp_tf / norm)
    if audio.ndim == 1:
        return istft(spec * gain_lin + add, plan.n_fft, plan.hop, n)
    out = np.empty_like(audio)
    for ch in range(audio.shape[1]):
        s = stft(audio[:, ch], plan.n_fft, plan.hop)
        out[:, ch] = istft(s * gain_lin + add, plan.n_fft, plan.hop, n)
    return out


def _gains(env: Envelope, plan: _Plan, spec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(linear gain, noise amplitude per bin), both ``(n_stft, n_bins)`` float32, for the
    decode whose STFT is ``spec``."""
    power = np.abs(spec) ** 2
    dec = band_power(power, plan.bins, plan.frames, env.n_bands, env.n_frames)
    noise, gain_db = cell_actions(env, dec)
    amp_tf = (plan.t_interp @ np.sqrt(noise).T.astype(np.float32)) @ plan.f_interp.T
    gain_tf = (plan.t_interp @ gain_db.T.astype(np.float32)) @ plan.f_interp.T
    return (10.0 ** (gain_tf / 20.0)).astype(np.float32), amp_tf.astype(np.float32)


# ------------------------------------------------------------------------------------------
# analysis (encoder)
# ------------------------------------------------------------------------------------------


def _mel_matrix(n_mels: int, n_fft: int, sr: int) -> np.ndarray:
    """``(n_mels, n_bins)`` triangular mel filters (HTK), each summing to 1, up to sr / 2."""
    top = 2595.0 * math.log10(1.0 + (sr / 2.0) / 700.0)
    hz = 700.0 * (10.0 ** (np.linspace(0.0, top, n_mels + 2) / 2595.0) - 1.0)
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    m = np.zeros((n_mels, len(freqs)), np.float32)
    for i in range(n_mels):
        lo, c, hi = hz[i], hz[i + 1], hz[i + 2]
        up = (freqs - lo) / max(c - lo, 1e-9)
        down = (hi - freqs) / max(hi - c, 1e-9)
        m[i] = np.maximum(0.0, np.minimum(up, down))
        if m[i].sum() == 0:
            m[i, min(len(freqs) - 1, int(round(c * n_fft / sr)))] = 1.0
        m[i] /= m[i].sum()
    return m


@dataclass
class Analysis:
    """What the encoder measured: ``levels`` int ``(n_bands, n_frames)`` (the original's band
    levels in steps), ``benefit`` float ``(n_bands, n_frames)`` (how much coding the cell
    lowers the log-mel distance, summed over its fine-mel bins and STFT frames; <= 0: it does
    not help), and the grid parameters."""

    levels: np.ndarray
    benefit: np.ndarray
    period_s: float
    step_db: float

    def envelope(self, mask: np.ndarray) -> Envelope:
        return Envelope(levels=np.where(mask, self.levels, 0), mask=mask.copy(),
                        period_s=self.period_s, step_db=self.step_db)


def _mono(audio: np.ndarray) -> np.ndarray:
    a = np.asarray(audio, np.float32)
    return a if a.ndim == 1 else a.mean(axis=1)


def analyse(original: np.ndarray, decoded: np.ndarray, sr: int, *,
            n_bands: int = DEFAULT_BANDS, period_s: float = DEFAULT_PERIOD_S,
            step_db: float = DEFAULT_STEP_DB, passes: int = 2) -> Analysis:
    """Measure the residual of ``decoded`` against ``original`` (mono or stereo float32 at
    ``sr`` Hz, same length; stereo is measured on the downmix).

    Analysis by synthesis: the levels of every cell are applied to the decode in the STFT
    domain, exactly as :func:`apply` does, and a cell's benefit is how much that lowers the
    ``|log10 mel(original) - log10 mel(result)|`` distance (DECISION_MELS fine mel bands) over
    the cell.  The second pass re-measures with the cells that helped only, so that a cell's
    neighbours are as they will be.
    """
    x, y = _mono(original), _mono(decoded)
    n = min(len(x), len(y))
    x, y = x[:n], y[:n]
    n_frames = n_grid_frames(n / sr, period_s)
    levels_env = Envelope(levels=np.zeros((n_bands, n_frames), np.int64),
                          mask=np.ones((n_bands, n_frames), bool),
                          period_s=period_s, step_db=step_db)
    plan = _Plan(levels_env, sr, sr, n, 1.0)
    sx, sy = stft(x, plan.n_fft, plan.hop), stft(y, plan.n_fft, plan.hop)
    px = band_power(np.abs(sx) ** 2, plan.bins, plan.frames, n_bands, n_frames)
    lo, hi = math.ceil(MIN_LEVEL_DB / step_db), math.floor(MAX_LEVEL_DB / step_db)
    db = 10.0 * np.log10(np.maximum(px, 1e-30))
    levels = np.clip(np.round(db / step_db), lo, hi).astype(np.int64)
    mel = _mel_matrix(DECISION_MELS, plan.n_fft, sr)
    floor = float(np.sum(_window(plan.n_fft))) / 2.0 * 10.0 ** -5.5
    lx = np.log10(np.maximum(np.abs(sx) @ mel.T, floor))  # (n_stft, n_mels)
    ly = np.log10(np.maximum(np.abs(sy) @ mel.T, floor))
    base = np.abs(lx - ly)
    freqs = np.arange(plan.n_fft // 2 + 1) * sr / plan.n_fft
    mel_band = plan.bins[np.clip(np.argmax(mel, axis=1), 0, len(freqs) - 1)]
    mask = np.ones((n_bands, n_frames), bool)
    benefit = np.zeros((n_bands, n_frames))
    for _ in range(max(1, passes)):
        env = Envelope(levels=levels, mask=mask, period_s=period_s, step_db=step_db)
        gain, amp = _gains(env, plan, sy)
        # the noise's expected magnitude, not one draw: the decision does not hang on luck
        out = np.sqrt(np.abs(sy * gain) ** 2 + amp ** 2)
        lz = np.log10(np.maximum(out @ mel.T, floor))
        diff = base - np.abs(lx - lz)  # (n_stft, n_mels), > 0 where the residual helps
        per = np.zeros((n_frames, n_bands))
        ok = mel_band >= 0
        per_mel = np.zeros((len(plan.frames), n_bands))
        np.add.at(per_mel.T, mel_band[ok], diff[:, ok].T)
        np.add.at(per, plan.frames, per_mel)
        counts = (np.bincount(plan.frames, minlength=n_frames)[:, None]
                  * np.bincount(mel_band[ok], minlength=n_bands)[None, :])
        benefit = per.T
        mask = (benefit > MIN_GAIN * np.maximum(counts.T, 1)) & mask
    return Analysis(levels=levels, benefit=benefit * mask, period_s=period_s, step_db=step_db)


# ------------------------------------------------------------------------------------------
# entropy coding: an LZMA-style binary range coder with adaptive 11-bit probabilities
# ------------------------------------------------------------------------------------------

_PROB_BITS = 11
_PROB_INIT = 1 << (_PROB_BITS - 1)
_MOVE_BITS = 5
_TOP = 1 << 24
#: Unary magnitude bits with their own probability; the rest of a magnitude is Exp-Golomb.
_UNARY_MAX = 14
_ESCAPE_MAX_BITS = 24


class _Encoder:
    """Binary range encoder (the LZMA range coder: carry propagation through ``cache``)."""

    def __init__(self) -> None:
        self.low = 0
        self.range = 0xFFFFFFFF
        self.cache = 0
        self.cache_size = 1
        self.out = bytearray()

    def _shift_low(self) -> None:
        if self.low < 0xFF000000 or self.low >= 1 << 32:
            carry = self.low >> 32
            temp = self.cache
            while True:
                self.out.append((temp + carry) & 0xFF)
                temp = 0xFF
                self.cache_size -= 1
                if self.cache_size == 0:
                    break
            self.cache = (self.low >> 24) & 0xFF
        self.cache_size += 1
        self.low = (self.low & 0x00FFFFFF) << 8

    def bit(self, probs: list[int], i: int, bit: int) -> None:
        p = probs[i]
        bound = (self.range >> _PROB_BITS) * p
        if bit:
            self.low += bound
            self.range -= bound
            probs[i] = p - (p >> _MOVE_BITS)
        else:
            self.range = bound
            probs[i] = p + (((1 << _PROB_BITS) - p) >> _MOVE_BITS)
        while self.range < _TOP:
            self.range = (self.range << 8) & 0xFFFFFFFF
            self._shift_low()

    def direct(self, value: int, n_bits: int) -> None:
        """``n_bits`` bits of ``value`` (high first) at probability 1/2."""
        for k in range(n_bits - 1, -1, -1):
            self.range >>= 1
            if (value >> k) & 1:
                self.low += self.range
            while self.range < _TOP:
                self.range = (self.range << 8) & 0xFFFFFFFF
                self._shift_low()

    def finish(self) -> bytes:
        for _ in range(5):
            self._shift_low()
        return bytes(self.out[1:])  # the first byte is always 0: not stored


class _Decoder:
    """The matching range decoder; reading past the end of ``data`` raises ContainerError."""

    def __init__(self, data: bytes) -> None:
        self.data = b"\x00" + bytes(data)
        self.pos = 0
        self.range = 0xFFFFFFFF
        self.code = 0
        for _ in range(5):
            self.code = (self.code << 8) | self._byte()

    def _byte(self) -> int:
        if self.pos >= len(self.data):
            raise ContainerError("RESD: range code ends early (truncated or corrupt)")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def bit(self, probs: list[int], i: int) -> int:
        p = probs[i]
        bound = (self.range >> _PROB_BITS) * p
        if self.code < bound:
            self.range = bound
            probs[i] = p + (((1 << _PROB_BITS) - p) >> _MOVE_BITS)
            bit = 0
        else:
            self.code -= bound
            self.range -= bound
            probs[i] = p - (p >> _MOVE_BITS)
            bit = 1
        while self.range < _TOP:
            self.range = (self.range << 8) & 0xFFFFFFFF
            self.code = ((self.code << 8) | self._byte()) & 0xFFFFFFFF
        return bit

    def direct(self, n_bits: int) -> int:
        value = 0
        for _ in range(n_bits):
            self.range >>= 1
            bit = 1 if self.code >= self.range else 0
            if bit:
                self.code -= self.range
            value = (value << 1) | bit
            while self.range < _TOP:
                self.range = (self.range << 8) & 0xFFFFFFFF
                self.code = ((self.code << 8) | self._byte()) & 0xFFFFFFFF
        return value

    def finish(self) -> None:
        if self.pos != len(self.data) or self.code != 0:
            raise ContainerError("RESD: range code does not end where the chunk ends (corrupt)")


#: Probability slots: mask contexts, then per predictor kind (zero, sign, unary...).
_N_MASK_CTX = 8
_N_KINDS = 4
_KIND_SLOTS = 2 + _UNARY_MAX


def _mask_ctx(mask: np.ndarray, b: int, t: int) -> int:
    left = bool(t > 0 and mask[b, t - 1])
    below = bool(b > 0 and mask[b - 1, t])
    above_left = bool(t > 0 and b + 1 < mask.shape[0] and mask[b + 1, t - 1])
    return int(left) | int(below) << 1 | int(above_left) << 2


def _predict(levels: np.ndarray, mask: np.ndarray, last: list, b: int, t: int,
             default: int) -> tuple[int, int]:
    """(prediction, predictor kind) of the level of active cell (b, t) from cells already
    coded: the same band's previous frame, else the band below in this frame, else the band's
    last coded level, else ``default``."""
    if t > 0 and mask[b, t - 1]:
        return int(levels[b, t - 1]), 0
    if b > 0 and mask[b - 1, t]:
        return int(levels[b - 1, t]), 1
    if last[b] is not None:
        return last[b], 2
    return default, 3


#: Level predicted for a band's first coded cell when no neighbour is known (in steps of 3 dB:
#: -60 dB); the coder adapts, this only sets where it starts.
_DEFAULT_LEVEL_DB = -60.0


def _code_cells(env: Envelope, enc: _Encoder | None, dec: _Decoder | None,
                lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Encode (``enc``) or decode (``dec``) the mask and levels, frame by frame, bands low to
    high; returns (levels, mask) (the decoded ones, or ``env``'s)."""
    n_bands, n_frames = env.levels.shape
    levels = env.levels.astype(np.int64) if enc else np.zeros((n_bands, n_frames), np.int64)
    mask = env.mask.copy() if enc else np.zeros((n_bands, n_frames), bool)
    mask_probs = [_PROB_INIT] * _N_MASK_CTX
    probs = [[_PROB_INIT] * _KIND_SLOTS for _ in range(_N_KINDS)]
    last: list = [None] * n_bands
    default = int(round(_DEFAULT_LEVEL_DB / env.step_db))
    for t in range(n_frames):
        for b in range(n_bands):
            ctx = _mask_ctx(mask, b, t)
            if enc:
                on = bool(mask[b, t])
                enc.bit(mask_probs, ctx, int(on))
            else:
                on = bool(dec.bit(mask_probs, ctx))
                mask[b, t] = on
            if not on:
                continue
            pred, kind = _predict(levels, mask, last, b, t, default)
            p = probs[kind]
            if enc:
                r = int(levels[b, t]) - pred
                mag = abs(r)
                enc.bit(p, 0, int(mag != 0))
                if mag:
                    enc.bit(p, 1, int(r < 0))
                    for i in range(1, _UNARY_MAX + 1):
                        more = int(mag > i)
                        enc.bit(p, 1 + i, more)
                        if not more:
                            break
                    else:
                        _exp_golomb(enc, mag - _UNARY_MAX - 1)
            else:
                mag = 0
                if dec.bit(p, 0):
                    neg = dec.bit(p, 1)
                    mag = 1
                    while mag <= _UNARY_MAX and dec.bit(p, 1 + mag):
                        mag += 1
                    if mag > _UNARY_MAX:
                        mag = _UNARY_MAX + 1 + _exp_golomb_read(dec)
                    if neg:
                        mag = -mag
                value = pred + mag
                if not lo <= value <= hi:
                    raise ContainerError(f"RESD: level {value} outside {lo}..{hi} (corrupt)")
                levels[b, t] = value
            last[b] = int(levels[b, t])
    return levels, mask


def _exp_golomb(enc: _Encoder, value: int) -> None:
    n = (value + 1).bit_length()
    enc.direct((1 << (n - 1)) - 1 << 1, n)  # n - 1 ones, then a zero
    enc.direct(value + 1 - (1 << (n - 1)), n - 1)


def _exp_golomb_read(dec: _Decoder) -> int:
    n = 1
    while dec.direct(1):
        n += 1
        if n > _ESCAPE_MAX_BITS:
            raise ContainerError("RESD: escape code too long (corrupt)")
    return (1 << (n - 1)) + dec.direct(n - 1) - 1


def _level_range(step_db: float) -> tuple[int, int]:
    return math.ceil(MIN_LEVEL_DB / step_db), math.floor(MAX_LEVEL_DB / step_db)


def encode_envelope(env: Envelope) -> bytes:
    """The RESD payload of ``env``: 4 parameter bytes, then the range code (docs/FORMAT.md)."""
    period_units = int(round(env.period_s * 100))
    step_units = int(round(env.step_db * 2))
    if not (MIN_BANDS <= env.n_bands <= MAX_BANDS
            and MIN_PERIOD_UNITS <= period_units <= MAX_PERIOD_UNITS
            and MIN_STEP_UNITS <= step_units <= MAX_STEP_UNITS
            and abs(period_units / 100 - env.period_s) < 1e-9
            and abs(step_units / 2 - env.step_db) < 1e-9):
        raise ContainerError(f"RESD: unsupported grid ({env.n_bands} bands, "
                             f"{env.period_s} s, {env.step_db} dB)")
    lo, hi = _level_range(env.step_db)
    if np.any(env.mask & ((env.levels < lo) | (env.levels > hi))):
        raise ContainerError(f"RESD: a level is outside {lo}..{hi}")
    enc = _Encoder()
    _code_cells(env, enc, None, lo, hi)
    return bytes([env.n_bands, period_units, step_units, 0]) + enc.finish()


def decode_envelope(payload: bytes, duration_s: float) -> Envelope:
    """Parse a RESD payload for a clip of ``duration_s`` seconds; ContainerError if invalid."""
    if len(payload) < _HEAD:
        raise ContainerError(f"RESD: {len(payload)} bytes, shorter than its {_HEAD}-byte head")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContainerError(f"RESD: {len(payload)} bytes exceed the cap of {MAX_PAYLOAD_BYTES}")
    n_bands, period_units, step_units, flags = payload[:_HEAD]
    if not MIN_BANDS <= n_bands <= MAX_BANDS:
        raise ContainerError(f"RESD: {n_bands} bands outside {MIN_BANDS}..{MAX_BANDS}")
    if not MIN_PERIOD_UNITS <= period_units <= MAX_PERIOD_UNITS:
        raise ContainerError(f"RESD: frame period {period_units * 10} ms outside "
                             f"{MIN_PERIOD_UNITS * 10}..{MAX_PERIOD_UNITS * 10} ms")
    if not MIN_STEP_UNITS <= step_units <= MAX_STEP_UNITS:
        raise ContainerError(f"RESD: step {step_units / 2} dB outside "
                             f"{MIN_STEP_UNITS / 2}..{MAX_STEP_UNITS / 2} dB")
    if flags != 0:
        raise ContainerError(f"RESD: unknown flags {flags}")
    period_s, step_db = period_units / 100.0, step_units / 2.0
    n_frames = n_grid_frames(duration_s, period_s)
    if n_bands * n_frames > MAX_CELLS:
        raise ContainerError(f"RESD: {n_bands * n_frames} cells exceed the cap of {MAX_CELLS}")
    shell = Envelope(levels=np.zeros((n_bands, n_frames), np.int64),
                     mask=np.zeros((n_bands, n_frames), bool), period_s=period_s, step_db=step_db)
    dec = _Decoder(payload[_HEAD:])
    lo, hi = _level_range(step_db)
    levels, mask = _code_cells(shell, None, dec, lo, hi)
    dec.finish()
    return Envelope(levels=np.where(mask, levels, 0), mask=mask, period_s=period_s,
                    step_db=step_db)
