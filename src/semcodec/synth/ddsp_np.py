"""The neural synthesizer in plain numpy: the DDSP model's forward pass and its signal stages.

This is the decoder's CPU implementation of :mod:`semcodec.synth.ddsp` (which needs torch and
stays the reference for training, the encoder's timbre fit and ``--device cuda``).  It computes
the same signal, stage for stage, with numpy only, so that decoding never imports torch:

* the MLP (:class:`NumpyNet`) with the weights read by :mod:`semcodec.synth.weights`;
* the model evaluated on a flat (ragged) layout of the notes' frames, densely near onsets and
  releases and every 4th frame elsewhere (as :func:`semcodec.synth.ddsp.eval_sparse`);
* wavetable oscillators (one 512-point table per frame, read at the phase, crossfaded between
  frames), the STFT-shaped noise, the room convolution and the resampling to the output rate.

The noise generator reproduces torch's CPU ``randn`` (mt19937 seeded like
``torch.Generator().manual_seed``, 24-bit uniforms, Box-Muller in groups of 16), so the output
matches the torch engine's to float32 rounding (about -100 dB).

Everything runs **block by block** (:class:`TrackRenderer`): notes are evaluated when the block
they start in is reached, the noise is drawn frame by frame and the room and the resampler carry
their state, so memory is bounded by the block length and the notes sounding at once, whatever
the length of the file.  The block length does not change the output (beyond float rounding).
"""

from __future__ import annotations

import ctypes
import math
import threading
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from semcodec.constants import ANALYSIS_SAMPLE_RATE, MIDI_MAX, MIDI_MIN
from semcodec.errors import SynthError
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
WT_SIZE = 512
#: Noise PSD per Hz (one-sided) at SR_INT of a band magnitude m is NOISE_PSD_PER_M2 * m**2.
NOISE_PSD_PER_M2 = 1.75e-7
#: Length of the periodic high-passed noise table of :func:`hf_noise` (samples).
HF_TABLE = 1 << 18
#: Noise STFT at SR_INT: size and hop (the hop equals HOP: one STFT frame per control frame).
NOISE_NFFT = 512
NOISE_HOP = 128
#: Default block length of :class:`TrackRenderer` (samples at SR_INT, ~11.9 s).
BLOCK = 1 << 18


def band_centers() -> np.ndarray:
    return np.geomspace(BAND_LO_HZ, BAND_HI_HZ, N_BANDS)


# --- notes ---------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class NoteArrays:
    """One track's notes as arrays (seconds, MIDI numbers), in the order they are played.

    ``onsets``/``offsets`` (N,) float64 s, ``pitches``/``velocities`` (N,) float64;
    pitch bends as three parallel arrays ``bend_note`` (M,) int64 (index of the note),
    ``bend_time`` (M,) s after the note's onset and ``bend_semis`` (M,) semitones.
    """

    onsets: np.ndarray
    offsets: np.ndarray
    pitches: np.ndarray
    velocities: np.ndarray
    bend_note: np.ndarray
    bend_time: np.ndarray
    bend_semis: np.ndarray

    def __len__(self) -> int:
        return int(self.onsets.shape[0])

    @classmethod
    def from_lists(cls, on, off, pit, vel, bends=None) -> "NoteArrays":
        """From parallel sequences; ``bends[i]`` is a sequence of ``(time_s, semitones)``."""
        n = len(on)
        bends = bends if bends is not None else [()] * n
        bn = [i for i, bl in enumerate(bends) for _ in bl]
        bt = [float(t) for bl in bends for t, _ in bl]
        bs = [float(s) for bl in bends for _, s in bl]
        return cls(np.asarray(on, np.float64).reshape(n), np.asarray(off, np.float64).reshape(n),
                   np.asarray(pit, np.float64).reshape(n), np.asarray(vel, np.float64).reshape(n),
                   np.asarray(bn, np.int64), np.asarray(bt, np.float64), np.asarray(bs, np.float64))

    @classmethod
    def from_track(cls, track, tempo: float = 1.0, transpose: int = 0,
                   limit_s: float = math.inf) -> "NoteArrays":
        """A pitched :class:`~semcodec.events.Track`'s notes, times divided by ``tempo``,
        pitches shifted by ``transpose``; notes out of MIDI range or starting outside
        ``[0, limit_s)`` are dropped, offsets are at least 5 ms after onsets, velocities 1..127."""
        on, off, pit, vel, bends = [], [], [], [], []
        for n in track.notes:
            p = n.pitch + transpose
            if not MIDI_MIN <= p <= MIDI_MAX:
                continue
            o = n.onset / tempo
            if o >= limit_s or o < 0:
                continue
            on.append(o)
            off.append(max(o + 0.005, n.offset / tempo))
            pit.append(p)
            vel.append(max(1, min(127, n.velocity)))
            bends.append(tuple((bp.time / tempo, bp.semitones) for bp in n.bends))
        return cls.from_lists(on, off, pit, vel, bends)

    def to_lists(self):
        """(onsets, offsets, pitches, velocities, bends) lists, the torch code's layout."""
        bends: list[list[tuple[float, float]]] = [[] for _ in range(len(self))]
        for i, t, s in zip(self.bend_note.tolist(), self.bend_time.tolist(),
                           self.bend_semis.tolist()):
            bends[i].append((t, s))
        return (self.onsets.tolist(), self.offsets.tolist(), self.pitches.tolist(),
                self.velocities.tolist(), [tuple(b) for b in bends])

    def take(self, idx: np.ndarray) -> "NoteArrays":
        """The notes ``idx`` (an index array), their bends kept and renumbered."""
        idx = np.asarray(idx, np.int64)
        remap = np.full(len(self), -1, np.int64)
        remap[idx] = np.arange(idx.shape[0])
        keep = remap[self.bend_note] >= 0 if self.bend_note.size else np.zeros(0, bool)
        return NoteArrays(self.onsets[idx], self.offsets[idx], self.pitches[idx],
                          self.velocities[idx], remap[self.bend_note[keep]],
                          self.bend_time[keep], self.bend_semis[keep])


class NoteBatch:
    """Notes of one track laid out on the global frame grid (numpy, built once per render).

    Each note i covers frames ``f0[i] .. f0[i] + n_frames[i]`` (padded to ``max_frames``).
    Used by the torch model (:mod:`semcodec.synth.ddsp`); the numpy renderer uses the flat
    layout of :class:`_Frames`.
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
        return _features(self.t_abs, self.onsets[:, None], self.offsets[:, None], self.pitch,
                         self.velocities[:, None])

    def f0_hz(self) -> np.ndarray:
        return 440.0 * 2.0 ** ((self.pitch - 69.0) / 12.0)


def _features(t_abs, onsets, offsets, pitch, velocities) -> np.ndarray:
    """Model input features (..., N_FEAT) float32 (see the ddsp module docstring)."""
    t_on = np.maximum(t_abs - onsets, 0.0)
    dur = offsets - onsets
    t_rel = np.maximum(t_on - dur, 0.0)
    gate = (t_on < dur).astype(np.float64)
    f = np.stack([
        (pitch - 64.0) / 24.0,
        np.broadcast_to(velocities / 127.0, t_on.shape),
        np.log1p(t_on / 0.01) / 6.0,
        np.log1p(t_rel / 0.01) / 6.0,
        gate,
        np.broadcast_to(np.log1p(dur / 0.05) / 5.0, t_on.shape),
        np.minimum(t_on, 0.1) * 10.0,
    ], axis=-1)
    return f.astype(np.float32)


def note_windows(onsets, offsets, total_s: float, tail_s) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first frame f0, frame count, end time s) of notes rendered with ``tail_s`` (as NoteBatch)."""
    onsets = np.asarray(onsets, np.float64)
    offsets = np.maximum(np.asarray(offsets, np.float64), onsets + 0.01)
    ends = np.minimum(offsets + tail_s, max(total_s, 0.0) + 1e-3)
    ends = np.maximum(ends, onsets + 0.01)
    f0 = np.floor(onsets * FRAME_RATE).astype(np.int64)
    n_frames = np.maximum(np.ceil(ends * FRAME_RATE).astype(np.int64) + 1 - f0, 2)
    return f0, n_frames, ends


# --- the model -----------------------------------------------------------------------------

class _BlasOneThread:
    """numpy's OpenBLAS limited to one thread while any model evaluation runs (re-entrant
    across threads; the previous setting comes back when the last one leaves).

    The model's matrices are a few hundred rows: OpenBLAS's worker threads spin more than they
    help, and tracks already render in threads of their own (measured on the 2-core box: a
    5-min solo's neural rendering took 3.4-7 s of CPU with the default two threads, 1.8 s with
    one).  Where the OpenBLAS entry points cannot be found this does nothing.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.saved = None
        self.fns = None

    def _find(self):
        if self.fns is None:
            self.fns = ()
            try:
                with open("/proc/self/maps") as fh:
                    paths = {ln.split()[-1] for ln in fh
                             if "openblas" in ln.lower() and ".so" in ln}
                for path in sorted(paths):
                    lib = ctypes.CDLL(path)
                    for pre in ("scipy_openblas", "openblas"):
                        for suf in ("64_", ""):
                            get = getattr(lib, f"{pre}_get_num_threads{suf}", None)
                            put = getattr(lib, f"{pre}_set_num_threads{suf}", None)
                            if get is not None and put is not None:
                                self.fns = (get, put)
                                return self.fns
            except (OSError, AttributeError, IndexError):
                self.fns = ()
        return self.fns

    def __enter__(self):
        with self.lock:
            if self.depth == 0 and self._find():
                get, put = self.fns
                self.saved = int(get())
                if self.saved != 1:
                    put(1)
            self.depth += 1
        return self

    def __exit__(self, *exc):
        with self.lock:
            self.depth -= 1
            if self.depth == 0 and self.fns and self.saved not in (None, 1):
                self.fns[1](self.saved)
                self.saved = None
        return False


blas_one_thread = _BlasOneThread()

def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))


def scaled_sigmoid(x: np.ndarray) -> np.ndarray:
    return (2.0 * _sigmoid(x) ** np.float32(math.log(10.0)) + 1e-7).astype(np.float32)


def _leaky(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, np.float32(0.1) * x)


class NumpyNet:
    """The DDSPNet forward pass in numpy (float32), from the safetensors arrays."""

    def __init__(self, w: dict[str, np.ndarray]) -> None:
        try:
            self.embedding = w["embedding.weight"]
            self.room = w["room.weight"]
            w_in = w["inp.weight"]
            self.emb_dim = self.embedding.shape[1]
            n_x = N_FEAT + 16
            self.w_x = np.ascontiguousarray(w_in[:, :n_x].T)
            self.w_e = np.ascontiguousarray(w_in[:, n_x:].T)
            self.b_in = w["inp.bias"]
            self.w1, self.b1 = np.ascontiguousarray(w["l1.weight"].T), w["l1.bias"]
            self.w2, self.b2 = np.ascontiguousarray(w["l2.weight"].T), w["l2.bias"]
            self.g1, self.c1 = w["n1.weight"], w["n1.bias"]
            self.g2, self.c2 = w["n2.weight"], w["n2.bias"]
            self.w_out, self.b_out = np.ascontiguousarray(w["out.weight"].T), w["out.bias"]
        except KeyError as exc:
            raise SynthError(f"neural weights lack tensor {exc}") from None
        if self.w_e.shape[0] != self.emb_dim or self.w_out.shape[1] != 1 + N_HARM + N_BANDS:
            raise SynthError("neural weights do not match the model's layout")

    @staticmethod
    def _norm(h: np.ndarray, g: np.ndarray, c: np.ndarray) -> np.ndarray:
        mu = h.mean(axis=-1, keepdims=True)
        d = h - mu
        var = np.mean(d * d, axis=-1, keepdims=True)
        return d / np.sqrt(var + np.float32(1e-5)) * g + c

    def __call__(self, feats: np.ndarray, emb: np.ndarray, chunk: int = 8192):
        """feats (R, N_FEAT) float32, emb (E,) → amp (R,), harm logits (R, H), noise (R, B)."""
        with blas_one_thread:
            return self._forward(feats, emb, chunk)

    def _forward(self, feats: np.ndarray, emb: np.ndarray, chunk: int):
        base = (np.asarray(emb, np.float32) @ self.w_e + self.b_in).astype(np.float32)
        k = np.arange(1, 9, dtype=np.float32)
        R = feats.shape[0]
        o = np.empty((R, 1 + N_HARM + N_BANDS), np.float32)
        for s in range(0, R, chunk):
            f = feats[s:s + chunk]
            pk = f[:, :1] * k * np.float32(2.0)
            x = np.concatenate([f, np.sin(pk), np.cos(pk)], axis=1)
            h = _leaky(x @ self.w_x + base)
            h = h + _leaky(self._norm(h, self.g1, self.c1) @ self.w1 + self.b1)
            h = h + _leaky(self._norm(h, self.g2, self.c2) @ self.w2 + self.b2)
            o[s:s + chunk] = h @ self.w_out + self.b_out
        amp = scaled_sigmoid(o[:, 0])
        harm = o[:, 1:1 + N_HARM]
        noise = scaled_sigmoid(o[:, 1 + N_HARM:]) * np.float32(0.05)
        return amp, harm, noise


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


# --- streaming pieces ----------------------------------------------------------------------

class _Accumulator:
    """A growing float32 signal indexed by absolute position; the consumed front is dropped."""

    def __init__(self, width: int | None = None) -> None:
        self.base = 0
        self.width = width
        shape = (0,) if width is None else (0, width)
        self.buf = np.zeros(shape, np.float32)

    def _ensure(self, end: int) -> None:
        need = end - self.base
        if need > self.buf.shape[0]:
            size = max(need, int(self.buf.shape[0] * 1.5) + 1024)
            shape = (size,) if self.width is None else (size, self.width)
            nb = np.zeros(shape, np.float32)
            nb[:self.buf.shape[0]] = self.buf
            self.buf = nb

    def add(self, start: int, x: np.ndarray) -> None:
        start = int(start)
        if start < self.base:
            x = x[self.base - start:]
            start = self.base
        if x.shape[0] == 0:
            return
        self._ensure(start + x.shape[0])
        self.buf[start - self.base:start - self.base + x.shape[0]] += x

    def add_at(self, idx: np.ndarray, x: np.ndarray) -> None:
        """Add rows ``x`` at absolute positions ``idx`` (repeats are summed)."""
        if idx.size == 0:
            return
        self._ensure(int(idx.max()) + 1)
        np.add.at(self.buf, idx - self.base, x)

    def take(self, start: int, end: int) -> np.ndarray:
        """A copy of positions [start, end) (zeros where nothing was added)."""
        self._ensure(end)
        return self.buf[start - self.base:end - self.base].copy()

    def drop(self, upto: int) -> None:
        k = upto - self.base
        if k > 0:
            self.buf = self.buf[k:].copy() if k < self.buf.shape[0] else self.buf[:0].copy()
            self.base = upto


class StreamConvolver:
    """Causal convolution with FIR ``h`` by overlap-add, block by block (float32 FFTs: the
    error is ~1e-7 of the signal)."""

    def __init__(self, h: np.ndarray) -> None:
        self.h = np.asarray(h, np.float32)
        self.carry = np.zeros(self.h.shape[0] - 1, np.float32)
        self._hf: dict[int, np.ndarray] = {}

    def push(self, x: np.ndarray) -> np.ndarray:
        m = x.shape[0]
        if m == 0:
            return np.zeros(0, np.float32)
        L = self.h.shape[0]
        nfft = 1 << (m + L - 2).bit_length()
        if nfft not in self._hf:
            self._hf = {nfft: np.fft.rfft(self.h, nfft)}
        y = np.fft.irfft(np.fft.rfft(np.asarray(x, np.float32), nfft) * self._hf[nfft],
                         nfft)[:m + L - 1]
        y[:L - 1] += self.carry
        out = y[:m]
        self.carry = y[m:].copy()
        return out.astype(np.float32)


class StreamResampler:
    """:func:`semcodec.synth.dsp.resample` (polyphase FIR, as scipy's resample_poly) block by
    block: ``push`` input blocks, get every output whose inputs are all known; ``finish`` for
    the rest (inputs past the end are zeros).  Total output ``ceil(n_in * up / down)``."""

    def __init__(self, sr_in: int, sr_out: int, n_in: int) -> None:
        g = math.gcd(int(sr_in), int(sr_out))
        self.up, self.down = int(sr_out) // g, int(sr_in) // g
        h, self.pre = dsp.polyphase_filter(self.up, self.down)
        T = -(-h.shape[0] // self.up)
        hp = np.zeros(T * self.up, np.float64)
        hp[:h.shape[0]] = h
        self.T = T
        self.taps = hp.reshape(T, self.up).T.astype(np.float32)  # taps[r, t] = h[r + t * up]
        self.n_in = int(n_in)
        self.n_out = -(-self.n_in * self.up // self.down)
        self.x = np.zeros(0, np.float32)
        self.x0 = 0  # absolute index of self.x[0]
        self.got = 0  # inputs received
        self.m = 0  # next output

    def _jmax(self, m):
        return (np.asarray(m, np.int64) + self.pre) * self.down // self.up

    def push(self, x: np.ndarray) -> np.ndarray:
        self.x = np.concatenate([self.x, np.asarray(x, np.float32)])
        self.got += x.shape[0]
        # outputs m with jmax(m) < got (all their inputs known)
        m1 = (self.got * self.up - 1) // self.down - self.pre + 1 if self.got else 0
        if self.got >= self.n_in:
            m1 = self.n_out
        return self._emit(min(max(m1, self.m), self.n_out))

    def finish(self) -> np.ndarray:
        self.got = max(self.got, self.n_in)
        return self._emit(self.n_out)

    def _emit(self, m1: int) -> np.ndarray:
        m0 = self.m
        if m1 <= m0:
            return np.zeros(0, np.float32)
        T, up, down = self.T, self.up, self.down
        lo = int(self._jmax(m0)) - T + 1
        hi = int(self._jmax(m1 - 1)) + 1
        # input segment [lo, hi) with zeros outside what exists
        seg = np.zeros(hi - lo, np.float32)
        a, b = max(lo, self.x0), min(hi, self.x0 + self.x.shape[0])
        if b > a:
            seg[a - lo:b - lo] = self.x[a - self.x0:b - self.x0]
        out = np.empty(m1 - m0, np.float32)
        if up <= 4 and down == 1:
            for n0 in range(m0, min(m0 + up, m1)):
                q0, ph = divmod((n0 + self.pre) * down, up)
                taps = self.taps[ph]  # y[m] = sum_t taps[t] x[q - t]
                cnt = len(range(n0, m1, up))
                xs = seg[q0 - T + 1 - lo:q0 - T + 1 - lo + cnt + T - 1]
                out[n0 - m0::up] = np.convolve(xs, taps, mode="valid")[:cnt]
        else:
            t_idx = np.arange(T)
            step = max(1, (1 << 20) // T)
            for s in range(m0, m1, step):
                m = np.arange(s, min(m1, s + step), dtype=np.int64)
                jmax, r = np.divmod((m + self.pre) * down, up)
                idx = jmax[:, None] - t_idx[None, :] - lo
                out[s - m0:s - m0 + m.shape[0]] = np.einsum("nt,nt->n", seg[idx], self.taps[r])
        self.m = m1
        # keep the inputs the next outputs need
        keep = int(self._jmax(m1)) - T + 1
        if keep > self.x0:
            k = min(keep - self.x0, self.x.shape[0])
            self.x = self.x[k:]
            self.x0 += k
        return out


# --- one track -----------------------------------------------------------------------------

_SIN_BASIS: np.ndarray | None = None
#: Oscillator intervals (frames) computed per step: keeps the tables and per-sample arrays in
#: the CPU caches (~0.5 MB each).
_OSC_CHUNK = 1024


def _sin_basis() -> np.ndarray:
    """(N_HARM, WT_SIZE + 1): row k-1 is sin(2 pi k x / WT_SIZE) (wrap column included)."""
    global _SIN_BASIS
    if _SIN_BASIS is None:
        x = np.arange(WT_SIZE + 1) % WT_SIZE
        k = np.arange(1, N_HARM + 1)
        _SIN_BASIS = np.sin(2.0 * math.pi * k[:, None] * x[None, :] / WT_SIZE).astype(np.float32)
    return _SIN_BASIS


class TrackRenderer:
    """One pitched track of the neural engine, rendered block by block at the output rate.

    ``notes`` (sorted or not), ``emb`` (EMB_DIM,) and ``room`` (3,) the track's timbre,
    ``seed`` the track index (its noise).  ``blocks()`` yields consecutive float32 blocks
    adding up to ``n_samples`` samples at ``sr`` Hz; :meth:`render` returns them joined.
    """

    def __init__(self, net: NumpyNet, notes: NoteArrays, emb, room, sr: int, n_samples: int,
                 *, seed: int = 0, block: int = BLOCK) -> None:
        self.net = net
        self.sr, self.n_samples = int(sr), int(n_samples)
        self.emb = np.asarray(emb, np.float32)
        self.ir = room_ir(room, SR_INT)
        self.seed = int(seed)
        self.block = int(block)
        self.n_int = int(math.ceil(self.n_samples * SR_INT / self.sr))
        self.n_fr_total = self.n_int // HOP + 2
        self.total_s = self.n_samples / self.sr
        order = np.argsort(notes.onsets, kind="stable")
        self.notes = notes.take(order)
        self.f0, self.n_frames, self.ends = note_windows(self.notes.onsets, self.notes.offsets,
                                                         self.total_s, TAIL_S)

    # -- notes -> harmonic signal and noise bands -------------------------------------------
    def _notes_into(self, idx: np.ndarray, harm: _Accumulator, bands: _Accumulator) -> None:
        """Evaluate notes ``idx`` and add their harmonic signal and band magnitudes."""
        nt = self.notes.take(idx)
        f0, nfr = self.f0[idx], self.n_frames[idx]
        on = nt.onsets
        off = np.maximum(nt.offsets, on + 0.01)
        N = idx.shape[0]
        R = int(nfr.sum())
        row_note = np.repeat(np.arange(N), nfr)
        starts_row = np.cumsum(nfr) - nfr
        fi = np.arange(R) - starts_row[row_note]
        t_abs = (f0[row_note] + fi) / FRAME_RATE
        pitch = nt.pitches[row_note].copy()
        for i, bt, semis in zip(nt.bend_note.tolist(), nt.bend_time.tolist(),
                                nt.bend_semis.tolist()):
            s, e = starts_row[i], starts_row[i] + nfr[i]
            sel = t_abs[s:e] >= on[i] + bt - 1e-9
            pitch[s:e][sel] = nt.pitches[i] + semis
        # sparse evaluation: every frame near onsets/releases, every 4th elsewhere
        t_on = t_abs - on[row_note]
        t_off = t_abs - off[row_note]
        last_fi = nfr[row_note] - 1
        ev = (t_on < 0.12) | (np.abs(t_off) < 0.12) | (fi % 4 == 0) | (fi == last_fi)
        rows = np.flatnonzero(ev)
        feats = _features(t_abs[rows], on[row_note[rows]], off[row_note[rows]], pitch[rows],
                          nt.velocities[row_note[rows]])
        amp_e, harm_e, bands_e = self.net(feats, self.emb)
        r_all = np.arange(R)
        prev = np.maximum.accumulate(np.where(ev, r_all, -1))
        nxt = np.minimum.accumulate(np.where(ev, r_all, R)[::-1])[::-1]
        span = np.maximum(nxt - prev, 1)
        w = ((r_all - prev) / span).clip(0, 1).astype(np.float32)
        rank = np.cumsum(ev) - 1
        p0, p1 = rank[prev], rank[nxt]
        w1 = w[:, None]
        amp = amp_e[p0] * (1 - w) + amp_e[p1] * w
        harm_l = harm_e[p0] * (1 - w1) + harm_e[p1] * w1
        bnd = bands_e[p0] * (1 - w1) + bands_e[p1] * w1
        # cut each release tail where the note has decayed (-60 dB re. its peak)
        level = amp + bnd.sum(-1)
        peak = np.maximum.reduceat(level, starts_row) + np.float32(1e-9)
        loud = (level > peak[row_note] * np.float32(1e-3)) | (t_abs < off[row_note])
        last = np.maximum.reduceat(np.where(loud, fi, -1), starts_row)
        last = np.where(last >= 0, last, 1)
        ends = np.minimum(self.ends[idx], (f0 + last + 1) / FRAME_RATE + END_FADE_S)
        ends = np.maximum(ends, off + 0.02)
        tails = np.maximum(ends - off, 0.02)
        _, nfr2, ends2 = note_windows(on, off, self.total_s, tails)
        nfr2 = np.minimum(nfr2, nfr)
        keep = fi < nfr2[row_note]
        amp, harm_l, bnd = amp[keep], harm_l[keep], bnd[keep]
        pitch, row_note, fi = pitch[keep], row_note[keep], fi[keep]
        starts_row = np.cumsum(nfr2) - nfr2
        # harmonic amplitudes: softmax masked above HARM_MAX_HZ
        f0_hz = (440.0 * 2.0 ** ((pitch - 69.0) / 12.0)).astype(np.float32)
        k = np.arange(1, N_HARM + 1, dtype=np.float32)
        mask = (f0_hz[:, None] * k) < np.float32(HARM_MAX_HZ)
        lg = np.where(mask, harm_l, np.float32(-1e4))
        lg = lg - lg.max(axis=1, keepdims=True)
        e = np.exp(lg)
        dist = e / e.sum(axis=1, keepdims=True) * mask
        amps = (amp[:, None] * dist).astype(np.float32)
        # noise bands per global frame (each note's frames are consecutive)
        fidx = f0[row_note] + fi
        last_fr = self.n_fr_total - 1
        for i in range(N):
            s_, e_ = starts_row[i], starts_row[i] + nfr2[i]
            g0_ = int(f0[i])
            n_in = max(0, min(e_ - s_, last_fr - g0_))
            if n_in:
                bands.add(g0_, bnd[s_:s_ + n_in])
            if s_ + n_in < e_:  # frames past the end fold into the last one (as torch clamps)
                bands.add_at(np.minimum(fidx[s_ + n_in:e_], last_fr), bnd[s_ + n_in:e_])
        # wavetable oscillators over the intervals between consecutive frames of each note
        iv = np.flatnonzero(fi < nfr2[row_note] - 1)  # interval rows (frame f -> f + 1)
        iv_note = row_note[iv]
        f0d = f0_hz.astype(np.float64)
        inc = (f0d[iv] + f0d[iv + 1]) * (0.5 * HOP / SR_INT)
        cs = np.cumsum(inc)
        n_iv = nfr2 - 1
        first_iv = np.cumsum(n_iv) - n_iv
        base = np.concatenate([[0.0], cs])[first_iv]
        ph_fr = np.remainder(cs - inc - base[iv_note], 1.0).astype(np.float32)
        a = f0_hz[iv] / np.float32(SR_INT)
        b = (f0_hz[iv + 1] - f0_hz[iv]) / np.float32(2 * HOP * SR_INT)
        start_smp = f0 * HOP
        on_off = (np.round(on * SR_INT).astype(np.int64) - start_smp).astype(np.float32)
        end_off = (np.round(ends2 * SR_INT).astype(np.int64) - start_smp).astype(np.float32)
        t_iv = fi[iv] * HOP  # note-relative sample of each interval's start
        # intervals touched by the onset ramp or the end fade
        edge = ((t_iv < on_off[iv_note] + ONSET_RAMP_S * SR_INT + 1)
                | (t_iv + HOP > end_off[iv_note] - END_FADE_S * SR_INT - 1))
        pos0 = start_smp[iv_note] + t_iv
        basis = _sin_basis()
        j = np.arange(1, HOP + 1, dtype=np.float32)
        wj = np.arange(HOP, dtype=np.float32) / np.float32(HOP)
        W1 = WT_SIZE + 1
        for c0 in range(0, iv.shape[0], _OSC_CHUNK):
            c1 = min(iv.shape[0], c0 + _OSC_CHUNK)
            r0 = int(iv[c0])
            with blas_one_thread:
                tabs = (amps[r0:int(iv[c1 - 1]) + 2] @ basis).reshape(-1)  # rows * (W + 1)
            phase = ph_fr[c0:c1, None] + a[c0:c1, None] * j + b[c0:c1, None] * (j * j)
            phase -= np.floor(phase)
            phase *= np.float32(WT_SIZE)
            i0 = np.minimum(phase.astype(np.int32), WT_SIZE - 1)
            fr = phase
            fr -= i0
            g0 = ((iv[c0:c1] - r0) * W1).astype(np.int32)[:, None] + i0
            t0 = tabs[g0]
            v0 = t0 + fr * (tabs[g0 + 1] - t0)
            g0 += W1
            t1 = tabs[g0]
            v1 = t1 + fr * (tabs[g0 + 1] - t1)
            sig = v0 + wj * (v1 - v0)
            e_idx = np.flatnonzero(edge[c0:c1])
            if e_idx.size:
                k_ = c0 + e_idx
                t_rel = (t_iv[k_][:, None] + np.arange(HOP)[None, :]).astype(np.float32)
                ramp = np.clip((t_rel - on_off[iv_note[k_]][:, None])
                               / np.float32(ONSET_RAMP_S * SR_INT), 0, 1)
                fade = np.clip((end_off[iv_note[k_]][:, None] - t_rel)
                               / np.float32(END_FADE_S * SR_INT), 0, 1)
                sig[e_idx] *= ramp * fade
            # overlap-add: a note's intervals are consecutive in time
            notes_here = iv_note[c0:c1]
            cuts = np.flatnonzero(np.diff(notes_here)) + 1
            for s_, e_ in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [c1 - c0]])):
                harm.add(int(pos0[c0 + s_]), sig[s_:e_].reshape(-1))

    # -- the block loop ----------------------------------------------------------------------
    def blocks(self) -> Iterator[np.ndarray]:
        n_int, sr = self.n_int, self.sr
        harm = _Accumulator()
        bands = _Accumulator(N_BANDS)
        conv = StreamConvolver(self.ir)
        res = StreamResampler(SR_INT, sr, n_int) if sr != SR_INT else None
        hf = sr != SR_INT and sr > 2 * BAND_HI_HZ + 1000
        hf_tab = hf_table(sr, np.random.default_rng(NOISE_SEED + self.seed)) if hf else None
        hf_s = np.float32(hf_sigma(sr)) if hf else None
        # noise STFT: frames s = 0 .. n_st - 1, centred at s * NOISE_HOP
        n_st = n_int // NOISE_HOP + 1
        K = NOISE_NFFT // 2 + 1
        n_rand = n_st * K
        gen_re = TorchNormals(NOISE_SEED + self.seed, n_rand)
        gen_im = TorchNormals(NOISE_SEED + self.seed, n_rand, skip=TorchNormals.draws(n_rand))
        freqs = np.fft.rfftfreq(NOISE_NFFT, 1.0 / SR_INT)
        posb = np.interp(np.log(np.maximum(freqs, 1.0)), np.log(band_centers()), np.arange(N_BANDS))
        j0 = np.clip(np.floor(posb).astype(np.int64), 0, N_BANDS - 1)
        j1 = np.clip(j0 + 1, 0, N_BANDS - 1)
        wj = (posb - np.floor(posb)).astype(np.float32)
        roll = (np.minimum(1.0, BAND_HI_HZ / np.maximum(freqs, 1.0)) ** 1.0).astype(np.float32)
        win = np.hanning(NOISE_NFFT + 1)[:-1].astype(np.float32)
        win2 = win * win
        half = NOISE_NFFT // 2
        ola = _Accumulator()
        wsum = _Accumulator()
        next_frame = 0  # next noise STFT frame to synthesize
        next_note = 0
        n_notes = len(self.notes)
        starts = self.f0 * HOP
        top = _Accumulator()  # top-band magnitudes per frame (for hf noise)
        out_pos = 0  # output samples emitted
        for b0 in range(0, n_int, self.block):
            b1 = min(n_int, b0 + self.block)
            # notes whose window (or noise frames) reach into [.., b1 + one STFT window)
            lim = b1 + NOISE_NFFT + 2 * HOP
            k = next_note
            while k < n_notes and starts[k] < lim:
                k += 1
            if k > next_note:
                self._notes_into(np.arange(next_note, k), harm, bands)
                next_note = k
            # noise frames whose window starts before b1 (+ the centring offset)
            s_end = min(n_st, (b1 + half) // NOISE_HOP + 1) if b1 < n_int else n_st
            if s_end > next_frame:
                fb = bands.take(next_frame, s_end)  # (S, B), frame s <-> STFT frame s
                top.add(next_frame, fb[:, -1].copy())
                mag = (fb[:, j0] * (1 - wj) + fb[:, j1] * wj) * roll
                mag[:, 0] = 0.0
                S = s_end - next_frame
                live = mag.any(axis=1)  # silent frames: no normals, no FFT
                need = np.repeat(live, K)
                re = gen_re.take(S * K, need).reshape(S, K)
                im = gen_im.take(S * K, need).reshape(S, K)
                frames = np.zeros((S + 3, NOISE_NFFT), np.float32)
                if live.any():
                    spec = (re[live] * mag[live]) + 1j * (im[live] * mag[live])
                    frames[:S][live] = np.fft.irfft(spec, NOISE_NFFT, axis=1) * win
                # overlap-add with hop NOISE_NFFT / 4: quarter c of frame s lands at hop s + c
                q = NOISE_NFFT // 4
                acc = np.zeros((S + 3, q), np.float32)
                wacc = np.zeros((S + 3, q), np.float32)
                for c_ in range(4):
                    acc[c_:c_ + S] += frames[:S, c_ * q:(c_ + 1) * q]
                    wacc[c_:c_ + S] += win2[c_ * q:(c_ + 1) * q]
                ola.add(next_frame * NOISE_HOP - half, acc.reshape(-1))
                wsum.add(next_frame * NOISE_HOP - half, wacc.reshape(-1))
                next_frame = s_end
            noise = ola.take(b0, b1)
            env = wsum.take(b0, b1)
            noise = np.where(env > 1e-11, noise / np.where(env > 1e-11, env, 1), 0).astype(np.float32)
            dry = harm.take(b0, b1) + noise
            harm.drop(b1)
            ola.drop(b1)
            wsum.drop(b1)
            bands.drop(max(0, next_frame - 2))
            wet = conv.push(dry)
            if res is None:
                y = wet
            else:
                y = res.push(wet) if b1 < n_int else np.concatenate([res.push(wet), res.finish()])
            if hf and y.shape[0]:
                m_idx = np.arange(out_pos, out_pos + y.shape[0])
                fr_hi = int(m_idx[-1] / sr * FRAME_RATE) + 2
                tf = top.take(top.base, max(fr_hi, top.base + 1))
                t_fr = (top.base + np.arange(tf.shape[0])) / FRAME_RATE
                # frames not synthesized yet are zeros (only past the end of the noise STFT)
                envh = np.interp(m_idx / sr, t_fr, tf).astype(np.float32)
                if np.any(envh > 0) and hf_tab is not None:
                    tab = hf_tab[m_idx & (HF_TABLE - 1)]
                    y = y + tab * envh * hf_s
                top.drop(max(0, int(out_pos / sr * FRAME_RATE) - 2))
            if out_pos + y.shape[0] > self.n_samples:
                y = y[:self.n_samples - out_pos]
            out_pos += y.shape[0]
            if y.shape[0]:
                yield y.astype(np.float32, copy=False)
        if out_pos < self.n_samples:
            yield np.zeros(self.n_samples - out_pos, np.float32)

    def render(self) -> np.ndarray:
        """The whole track, mono float32 ``(n_samples,)``."""
        out = np.zeros(self.n_samples, np.float32)
        pos = 0
        for y in self.blocks():
            out[pos:pos + y.shape[0]] = y
            pos += y.shape[0]
        return out
