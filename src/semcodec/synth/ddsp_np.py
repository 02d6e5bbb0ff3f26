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

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from semcodec.constants import MIDI_MAX, MIDI_MIN
from semcodec.errors import SynthError
from semcodec.runtime import blas_one_thread
from semcodec.synth import dsp
from semcodec.synth.ddsp_consts import (
    BAND_HI_HZ as BAND_HI_HZ,
    BAND_LO_HZ as BAND_LO_HZ,
    BLOCK as BLOCK,
    EMB_DIM as EMB_DIM,
    END_FADE_S as END_FADE_S,
    FRAME_RATE as FRAME_RATE,
    HARM_MAX_HZ as HARM_MAX_HZ,
    HF_TABLE as HF_TABLE,
    HOP as HOP,
    IR_S as IR_S,
    N_BANDS as N_BANDS,
    N_FEAT as N_FEAT,
    N_HARM as N_HARM,
    N_PROGRAMS as N_PROGRAMS,
    N_ROOM as N_ROOM,
    NOISE_HOP as NOISE_HOP,
    NOISE_NFFT as NOISE_NFFT,
    NOISE_PSD_PER_M2 as NOISE_PSD_PER_M2,
    NOISE_SEED as NOISE_SEED,
    ONSET_RAMP_S as ONSET_RAMP_S,
    SR_INT as SR_INT,
    TAIL_S as TAIL_S,
    WT_SIZE as WT_SIZE,
    band_centers as band_centers,
)
from semcodec.synth.ddsp_noise import (
    TorchNormals as TorchNormals,
    _sigmoid as _sigmoid,
    _torch_randn_f64 as _torch_randn_f64,
    fit_np as fit_np,
    hf_noise as hf_noise,
    hf_sigma as hf_sigma,
    hf_table as hf_table,
    ir_noise as ir_noise,
    one_pole as one_pole,
    room_ir as room_ir,
    torch_randn as torch_randn,
)
from semcodec.synth.ddsp_stream import (
    StreamConvolver as StreamConvolver,
    StreamResampler as StreamResampler,
    _Accumulator as _Accumulator,
)

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


def _noise_frames(mag: np.ndarray, gen_re: TorchNormals, gen_im: TorchNormals, win: np.ndarray,
                  win2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The noise STFT frames of band magnitudes ``mag`` (S, NOISE_NFFT // 2 + 1), windowed and
    overlap-added in quarters: ``(signal, window-squared sum)``, each ``(S + 3, NOISE_NFFT // 4)``
    (quarter c of frame s lands at hop s + c)."""
    K = NOISE_NFFT // 2 + 1
    S = mag.shape[0]
    live = mag.any(axis=1)  # silent frames: no normals, no FFT
    need = np.repeat(live, K)
    re = gen_re.take(S * K, need).reshape(S, K)
    im = gen_im.take(S * K, need).reshape(S, K)
    frames = np.zeros((S + 3, NOISE_NFFT), np.float32)
    if live.any():
        spec = (re[live] * mag[live]) + 1j * (im[live] * mag[live])
        frames[:S][live] = dsp.irfft(spec, NOISE_NFFT) * win
    # overlap-add with hop NOISE_NFFT / 4: quarter c of frame s lands at hop s + c
    q = NOISE_NFFT // 4
    acc = np.zeros((S + 3, q), np.float32)
    wacc = np.zeros((S + 3, q), np.float32)
    for c_ in range(4):
        acc[c_:c_ + S] += frames[:S, c_ * q:(c_ + 1) * q]
        wacc[c_:c_ + S] += win2[c_ * q:(c_ + 1) * q]
    return acc, wacc


def _with_hf(y: np.ndarray, out_pos: int, sr: int, top: _Accumulator, hf_tab: np.ndarray | None,
             hf_s: np.float32 | None) -> np.ndarray:
    """Output block ``y`` (starting at output sample ``out_pos``, rate ``sr``) with the noise
    above the model's bands, following the top band's magnitudes ``top`` (per frame)."""
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
    return y


class TrackRenderer:
    """One pitched track of the neural engine, rendered block by block at the output rate.

    ``notes`` (sorted or not), ``emb`` (EMB_DIM,) and ``room`` (3,) the track's timbre,
    ``seed`` the track index (its noise).  ``blocks()`` yields consecutive float32 blocks
    adding up to ``n_samples`` samples at ``sr`` Hz; :meth:`render` returns them joined.
    ``pipelined``: the notes of each block are evaluated on a second thread while the first
    adds the noise, the room and the resampling of the block before (the same operations in
    the same order: the same samples; a 5-min solo's render ~1.6x faster on two cores).
    """

    def __init__(self, net: NumpyNet, notes: NoteArrays, emb, room, sr: int, n_samples: int,
                 *, seed: int = 0, block: int = BLOCK, pipelined: bool = False) -> None:
        self.net = net
        self.pipelined = bool(pipelined)
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
        self._bands_into(bands, bnd, f0, fi, row_note, starts_row, nfr2)
        self._oscillators_into(harm, amps, f0_hz, f0, fi, row_note, nfr2, on, ends2)

    def _bands_into(self, bands: _Accumulator, bnd: np.ndarray, f0: np.ndarray, fi: np.ndarray,
                    row_note: np.ndarray, starts_row: np.ndarray, nfr2: np.ndarray) -> None:
        """Add the notes' band magnitudes ``bnd`` (rows: the notes' frames, consecutive per
        note) to ``bands`` at their global frames."""
        # noise bands per global frame (each note's frames are consecutive)
        fidx = f0[row_note] + fi
        last_fr = self.n_fr_total - 1
        for i in range(nfr2.shape[0]):
            s_, e_ = starts_row[i], starts_row[i] + nfr2[i]
            g0_ = int(f0[i])
            n_in = max(0, min(e_ - s_, last_fr - g0_))
            if n_in:
                bands.add(g0_, bnd[s_:s_ + n_in])
            if s_ + n_in < e_:  # frames past the end fold into the last one (as torch clamps)
                bands.add_at(np.minimum(fidx[s_ + n_in:e_], last_fr), bnd[s_ + n_in:e_])

    def _oscillators_into(self, harm: _Accumulator, amps: np.ndarray, f0_hz: np.ndarray,
                          f0: np.ndarray, fi: np.ndarray, row_note: np.ndarray, nfr2: np.ndarray,
                          on: np.ndarray, ends2: np.ndarray) -> None:
        """Add the notes' harmonic signal (wavetable oscillators over the intervals between
        consecutive frames of each note, onset ramp and end fade) to ``harm``."""
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
    def _parts(self) -> Iterator[tuple[int, int, np.ndarray, int, np.ndarray | None]]:
        """The first stage of :meth:`blocks`: for each block of internal samples ``b0 .. b1``,
        ``(b0, b1, harmonic signal (b1 - b0,), first noise frame f, band magnitudes of the
        noise frames f .. (S, N_BANDS) or None)``: the notes evaluated, nothing of the noise,
        the room or the resampler, which the second stage adds."""
        n_int = self.n_int
        harm = _Accumulator()
        bands = _Accumulator(N_BANDS)
        n_st = n_int // NOISE_HOP + 1
        half = NOISE_NFFT // 2
        next_frame = 0  # next noise STFT frame whose band magnitudes are handed on
        next_note = 0
        n_notes = len(self.notes)
        starts = self.f0 * HOP
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
            first, fb = next_frame, None
            if s_end > next_frame:
                fb = bands.take(next_frame, s_end)  # (S, B), frame s <-> STFT frame s
                next_frame = s_end
            h = harm.take(b0, b1)
            harm.drop(b1)
            bands.drop(max(0, next_frame - 2))
            yield b0, b1, h, first, fb

    def blocks(self) -> Iterator[np.ndarray]:
        n_int, sr = self.n_int, self.sr
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
        top = _Accumulator()  # top-band magnitudes per frame (for hf noise)
        out_pos = 0  # output samples emitted
        parts = self._parts()
        if self.pipelined and n_int > self.block:
            # the notes of the next block are evaluated on a second thread while this one
            # adds the noise, the room and the resampling (the same operations, in the same
            # order: the same samples)
            from semcodec.background import ahead  # noqa: PLC0415

            parts = ahead(parts)
        for b0, b1, h, first, fb in parts:
            if fb is not None:
                top.add(first, fb[:, -1].copy())
                mag = (fb[:, j0] * (1 - wj) + fb[:, j1] * wj) * roll
                mag[:, 0] = 0.0
                acc, wacc = _noise_frames(mag, gen_re, gen_im, win, win2)
                ola.add(first * NOISE_HOP - half, acc.reshape(-1))
                wsum.add(first * NOISE_HOP - half, wacc.reshape(-1))
            noise = ola.take(b0, b1)
            env = wsum.take(b0, b1)
            noise = np.where(env > 1e-11, noise / np.where(env > 1e-11, env, 1), 0).astype(np.float32)
            dry = h + noise
            ola.drop(b1)
            wsum.drop(b1)
            wet = conv.push(dry)
            if res is None:
                y = wet
            else:
                y = res.push(wet) if b1 < n_int else np.concatenate([res.push(wet), res.finish()])
            if hf and y.shape[0]:
                y = _with_hf(y, out_pos, sr, top, hf_tab, hf_s)
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
