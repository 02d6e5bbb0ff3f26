"""The numpy DDSP's noise sources and room (part of :mod:`semcodec.synth.ddsp_np`, which
re-exports them): torch-compatible normal draws, the room impulse response, the
high-frequency noise above the model's bands."""

from __future__ import annotations

import math

import numpy as np

from semcodec.synth.ddsp_consts import (
    BAND_HI_HZ,
    FRAME_RATE,
    HF_TABLE,
    IR_S,
    NOISE_PSD_PER_M2,
    NOISE_SEED,
    SR_INT,
)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))


# --- torch-compatible noise ----------------------------------------------------------------

class TorchNormals:
    """Standard normals exactly as ``torch.randn(n, generator=torch.Generator().manual_seed(seed),
    dtype=torch.float32)`` draws them on the CPU, produced in order, a few at a time.

    ``skip`` raw 32-bit draws are discarded first (a second ``randn`` from the same generator
    starts after the first one's ``n + (16 if n % 16 else 0)`` draws).  torch fills uniforms
    ``(u & 0xffffff) / 2**24``, turns each group of 16 into normals by Box-Muller and, when
    ``n % 16``, redoes the last 16 from 16 fresh draws.
    """

    def __init__(self, seed: int, n: int, skip: int = 0) -> None:
        self._rs = np.random.RandomState(int(seed) & 0xFFFFFFFF)
        while skip > 0:
            k = min(skip, 1 << 22)
            self._rs.randint(0, 1 << 32, size=k, dtype=np.uint32)
            skip -= k
        self.n = int(n)
        self.n_full = self.n - self.n % 16
        self.pos = 0  # next index to hand out
        self._made = 0  # normals made so far (index of _buf[0] is pos)
        self._buf = np.zeros(0, np.float32)

    @staticmethod
    def draws(n: int) -> int:
        """Raw draws a ``randn`` of ``n`` values consumes."""
        return n + (16 if n % 16 else 0)

    @staticmethod
    def _box_muller(raw: np.ndarray) -> np.ndarray:
        u = (raw & np.uint32(0xFFFFFF)).astype(np.float32) * np.float32(2.0 ** -24)
        d = u.reshape(-1, 16)
        r = np.sqrt(np.float32(-2.0) * np.log(np.float32(1.0) - d[:, :8]))
        th = np.float32(2.0 * math.pi) * d[:, 8:]
        return np.concatenate([r * np.cos(th), r * np.sin(th)], axis=1).reshape(-1)

    def take(self, m: int, need: np.ndarray | None = None) -> np.ndarray:
        """The next ``m`` normals (float32).  ``need`` (m,) bool: values that will be used;
        groups of 16 without any are left at 0 (the draws still advance the stream)."""
        end = self.pos + m
        if end > self.n:
            raise ValueError("TorchNormals: more values than the stream holds")
        tail_start = self.n - 16 if self.n % 16 else self.n
        target = self.n_full if end > tail_start else -(-end // 16) * 16
        parts = [self._buf]
        if target > self._made:
            raw = self._rs.randint(0, 1 << 32, size=target - self._made, dtype=np.uint32)
            if need is None:
                parts.append(self._box_muller(raw))
            else:
                vm = np.ones(target - self._made, bool)
                k = min(end, target) - self._made
                if k > 0:
                    vm[:k] = need[self._made - self.pos:self._made - self.pos + k]
                groups = vm.reshape(-1, 16).any(axis=1)
                vals = np.zeros((groups.shape[0], 16), np.float32)
                if groups.any():
                    vals[groups] = self._box_muller(raw.reshape(-1, 16)[groups]).reshape(-1, 16)
                parts.append(vals.reshape(-1))
            self._made = target
        if end > tail_start and self._made < self.n:
            # the partial last group's uniforms are drawn, then the last 16 values redone
            self._rs.randint(0, 1 << 32, size=self.n - self._made, dtype=np.uint32)
            tail = self._box_muller(self._rs.randint(0, 1 << 32, size=16, dtype=np.uint32))
            buf = np.concatenate(parts) if len(parts) > 1 else parts[0]
            buf = np.concatenate([buf[:tail_start - self.pos], tail])
            parts = [buf]
            self._made = self.n
        buf = np.concatenate(parts) if len(parts) > 1 else parts[0]
        out, self._buf = buf[:m], buf[m:]
        self.pos = end
        return out


def torch_randn(seed: int, n: int, skip: int = 0) -> np.ndarray:
    """``n`` float32 normals as torch's CPU generator seeded with ``seed`` draws them."""
    return TorchNormals(seed, n, skip).take(n)


# --- room ----------------------------------------------------------------------------------

def one_pole(x: np.ndarray, a: float) -> np.ndarray:
    """``y[n] = (1 - a) x[n] + a y[n-1]`` (a one-pole low-pass), float64."""
    y = np.empty(x.shape[0], dtype=np.float64)
    acc = 0.0
    g = 1.0 - a
    for i, v in enumerate(x.tolist()):
        acc = g * v + a * acc
        y[i] = acc
    return y


_IR_NOISE: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _torch_randn_f64(seed: int, n: int) -> np.ndarray:
    """``torch.randn(n, dtype=float64)`` of a fresh generator (53-bit uniforms, two draws each)."""
    total = n + (16 if n % 16 else 0)
    raw = np.random.RandomState(seed).randint(0, 1 << 32, size=2 * total,
                                              dtype=np.uint32).astype(np.uint64)
    r64 = (raw[0::2] << np.uint64(32)) | raw[1::2]
    u = (r64 & np.uint64((1 << 53) - 1)).astype(np.float64) * 2.0 ** -53

    def bm(d):
        d = d.reshape(-1, 16)
        r = np.sqrt(-2.0 * np.log(1.0 - d[:, :8]))
        th = 2.0 * math.pi * d[:, 8:]
        return np.concatenate([r * np.cos(th), r * np.sin(th)], axis=1).reshape(-1)

    nf = n - n % 16
    out = u[:n].copy()
    out[:nf] = bm(u[:nf])
    if n % 16:
        out[n - 16:] = bm(u[n:n + 16])
    return out


def ir_noise(sr: int) -> tuple[np.ndarray, np.ndarray]:
    """(white, low-passed) unit-std noises of IR_S s with a 5-ms onset ramp (float32)."""
    if sr not in _IR_NOISE:
        n = int(IR_S * sr)
        white = _torch_randn_f64(NOISE_SEED, n)
        a = math.exp(-2 * math.pi * 1500.0 / sr)  # fixed one-pole lowpass (~1.5 kHz)
        lp = one_pole(white, a)
        t = np.arange(n, dtype=np.float64) / sr
        onset = np.clip(t / 0.005, 0.0, 1.0)
        _IR_NOISE[sr] = ((white / white.std(ddof=1) * onset).astype(np.float32),
                         (lp / lp.std(ddof=1) * onset).astype(np.float32))
    return _IR_NOISE[sr]


def room_ir(params: np.ndarray, sr: int = SR_INT) -> np.ndarray:
    """Room impulse response (IR_S * sr,) float32 from 3 unconstrained params (decay, wet,
    brightness): ``delta + wet * exp-decaying filtered noise`` of unit energy."""
    white, lp = ir_noise(sr)
    p = np.asarray(params, np.float32).reshape(3)
    t = np.arange(white.shape[0], dtype=np.float32) / np.float32(sr)
    t60 = np.float32(0.05) + np.float32(2.5) * _sigmoid(p[0:1])
    wet = _sigmoid(p[1:2]).astype(np.float32)
    bright = _sigmoid(p[2:3]).astype(np.float32)
    env = np.exp(np.float32(-6.91) * t / t60.astype(np.float32))
    tail = env * (bright * white + (np.float32(1) - bright) * lp)
    tail = tail / np.sqrt(np.sum(tail * tail) + np.float32(1e-9))
    ir = (wet * tail).astype(np.float32)
    ir[0] += np.float32(1.0)
    return ir


# --- high-frequency noise (output rates above 2 * BAND_HI_HZ) -------------------------------

def hf_table(sr: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance white noise with every bin below BAND_HI_HZ removed (periodic, float32)."""
    spec = rng.standard_normal(HF_TABLE // 2 + 1) + 1j * rng.standard_normal(HF_TABLE // 2 + 1)
    freqs = np.fft.rfftfreq(HF_TABLE, 1.0 / sr)
    spec[freqs < BAND_HI_HZ] = 0.0
    spec[-1] = spec[-1].real
    t = np.fft.irfft(spec, HF_TABLE)
    return (t / max(float(np.std(t)), 1e-12)).astype(np.float32)


def hf_sigma(sr: int) -> float:
    """Std of white noise above BAND_HI_HZ for a unit top-band magnitude (1/f rolloff)."""
    hi = sr / 2.0
    mean_roll = BAND_HI_HZ * (1.0 / BAND_HI_HZ - 1.0 / hi) / (hi - BAND_HI_HZ)
    return math.sqrt(NOISE_PSD_PER_M2 * mean_roll * hi)


def hf_noise(top: np.ndarray, sr: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Noise above BAND_HI_HZ (output rates > 2 * SR_INT/2): the top band's level extended with
    a 1/f rolloff, high-passed white noise shaped by the top band's frame envelope.

    The high-passed noise is one periodic table of :data:`HF_TABLE` samples (~6 s at 44.1 kHz,
    made in the frequency domain, so it tiles without seams), repeated.
    """
    t_fr = np.arange(top.shape[0]) / FRAME_RATE
    env = np.interp(np.arange(n) / sr, t_fr, top).astype(np.float32)
    if not np.any(env > 0):
        return np.zeros(n, np.float32)
    table = hf_table(sr, rng)
    reps = -(-n // table.shape[0])
    w = np.tile(table, reps)[:n] if reps > 1 else table[:n].copy()
    w *= env
    w *= np.float32(hf_sigma(sr))
    return w


def fit_np(x: np.ndarray, n: int) -> np.ndarray:
    return x[:n] if x.shape[0] >= n else np.pad(x, (0, n - x.shape[0]))
