"""Pure signal functions shared by the engines and the encoder.

Every function takes and returns numpy arrays; audio is float32, mono, shape ``(n_samples,)``
unless stated, sample rates are in Hz and loudness in LUFS (ITU-R BS.1770-4, computed block
by block so that long inputs need no float64 copy).
Nothing here keeps state or touches files.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from semcodec.constants import SILENCE_LUFS
from semcodec.runtime import work_threads


def rfft_rows(frames: np.ndarray) -> np.ndarray:
    """``np.fft.rfft(frames, axis=-1)`` for the encoder's analyses (same numbers to float
    rounding): float32 frames go through ``scipy.fft`` (complex64), which batches the rows;
    numpy 2's float32 FFT transforms row by row, ~5x slower than scipy's and than its own
    float64 one.  Not for the decoder, which must not import scipy (1-2 s per process)."""
    if frames.dtype == np.float32:
        import scipy.fft  # noqa: PLC0415 - the encoder only

        return scipy.fft.rfft(frames, axis=-1)
    return rfft64(frames)


def _scipy_fft() -> Any:
    """``scipy.fft`` when some other code has imported it already (the encoder), else None
    (the decoder never imports scipy for this)."""
    fft = sys.modules.get("scipy.fft")
    # not while another thread is still importing it
    if fft is not None and not getattr(getattr(fft, "__spec__", None), "_initializing", True):
        return fft
    return None


def rfft64(frames: np.ndarray, n: int | None = None) -> np.ndarray:
    """``np.fft.rfft(frames, n, axis=-1)`` of float64 frames, bit for bit: through
    ``scipy.fft`` (the same pocketfft, ~3x faster on many rows) when some other code has
    imported it already (the encoder), else numpy's."""
    fft = _scipy_fft()
    if fft is not None and np.asarray(frames).dtype == np.float64:
        return fft.rfft(frames, n, axis=-1)
    return np.fft.rfft(frames, n, axis=-1)


def irfft(spec: np.ndarray, n: int) -> np.ndarray:
    """``np.fft.irfft(spec, n, axis=-1)`` bit for bit (complex64 gives float32, complex128
    float64): through ``scipy.fft`` when some other code has imported it already (as
    :func:`rfft64`; numpy 2's single-precision inverse goes row by row, several times
    slower), else numpy's.  (A float32 *forward* transform differs between the two in the
    last bits: not here.)"""
    fft = _scipy_fft()
    spec = np.asarray(spec)
    if fft is not None and spec.dtype in (np.complex64, np.complex128):
        return fft.irfft(spec, n, axis=-1)
    return np.fft.irfft(spec, n, axis=-1)


def overlap_add(out: np.ndarray, frames: np.ndarray, start: int, hop: int) -> None:
    """Add row ``k`` of ``frames`` ``(n_frames, frame_len)`` into ``out`` at
    ``start + k * hop``, rows in order: the same sums in the same order as ``np.add.at`` over
    those indices (bit-identical), several times faster (numpy's ``add.at`` goes element by
    element; a slice per frame does not)."""
    n = frames.shape[1]
    for k in range(frames.shape[0]):
        o = start + k * hop
        out[o:o + n] += frames[k]


def downmix(audio: np.ndarray) -> np.ndarray:
    """Average the channels of ``audio`` (shape ``(n,)`` or ``(n, channels)``) to mono float32."""
    audio = np.asarray(audio)
    if audio.ndim == 1:
        return audio.astype(np.float32, copy=False)
    if audio.ndim != 2:
        raise ValueError(f"audio must be 1-D or 2-D, got shape {audio.shape}")
    if audio.shape[1] == 1:
        return audio[:, 0].astype(np.float32, copy=False)
    out = np.zeros(audio.shape[0], dtype=np.float32)
    for ch in range(audio.shape[1]):  # channel by channel: no float64 copy of the whole file
        out += audio[:, ch].astype(np.float32, copy=False)
    out /= audio.shape[1]
    return out


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample mono ``audio`` from ``sr_in`` to ``sr_out`` Hz (polyphase FIR, float32 out).

    The same filter and alignment as ``scipy.signal.resample_poly`` (Kaiser window, beta 5,
    half-length 10 x max(up, down), output length ``ceil(n * up / down)``), computed with
    numpy only: ``scipy.signal`` takes 1-2 s to import, which a decoder started once per file
    cannot afford.  Its gentle anti-imaging slope leaves a little energy above the old
    Nyquist frequency, which the neural engine's timbre fit and the benchmark were tuned with.
    """
    if sr_in == sr_out or audio.size == 0:
        return audio.astype(np.float32, copy=False)
    g = math.gcd(int(sr_in), int(sr_out))
    up, down = int(sr_out) // g, int(sr_in) // g
    x = np.asarray(audio, dtype=np.float32)
    h, pre_remove = polyphase_filter(up, down)
    n_in = x.shape[0]
    n_out = -(-n_in * up // down)
    if up <= 4:  # small up-factor (22.05 <-> 44.1 kHz...): one short direct convolution per
        # phase r, conv(x, h[r::up])[q] being the zero-stuffed signal's output q * up + r
        y = np.zeros(n_out, np.float32)
        step = up // math.gcd(up, down)  # outputs n, n + step, ... share one phase
        for n0 in range(min(step, n_out)):
            q0, ph = divmod((n0 + pre_remove) * down, up)
            dq = step * down // up  # input samples between those outputs
            c = np.convolve(x, h[ph::up].astype(np.float32))
            cnt = min(len(range(n0, n_out, step)), max(0, -(-(c.shape[0] - q0) // dq)))
            y[n0:n0 + cnt * step:step] = c[q0:q0 + cnt * dq:dq]
        return y
    T = -(-h.shape[0] // up)
    hp = np.zeros(T * up, np.float64)
    hp[: h.shape[0]] = h
    taps = hp.reshape(T, up).T.astype(np.float32)  # taps[r, t] = h[r + t * up]
    xp = np.concatenate([np.zeros(T, np.float32), x, np.zeros(T, np.float32)])
    out = np.empty(n_out, np.float32)
    t_idx = np.arange(T)
    step = max(1, (1 << 20) // T)  # outputs per block: ~4 MB of gathered samples
    for s in range(0, n_out, step):
        m = (np.arange(s, min(n_out, s + step), dtype=np.int64) + pre_remove) * down
        jmax, r = np.divmod(m, up)
        # x[j] for j = jmax - t, shifted by the T zeros in front of xp
        idx = np.clip(jmax[:, None] - t_idx[None, :] + T, 0, xp.shape[0] - 1)
        out[s:s + m.shape[0]] = np.einsum("nt,nt->n", xp[idx], taps[r])
    return out


_POLY: dict[tuple[int, int], tuple[np.ndarray, int]] = {}


def polyphase_filter(up: int, down: int) -> tuple[np.ndarray, int]:
    """(FIR taps incl. leading zero padding, outputs to drop) as resample_poly designs them."""
    if (up, down) not in _POLY:
        max_rate = max(up, down)
        half_len = 10 * max_rate
        n_taps = 2 * half_len + 1
        m = np.arange(n_taps) - half_len
        h = (1.0 / max_rate) * np.sinc(m / max_rate) * np.kaiser(n_taps, 5.0)
        h = h / h.sum() * up
        pre_pad = down - half_len % down
        h = np.concatenate([np.zeros(pre_pad), h])
        _POLY[(up, down)] = (h, (half_len + pre_pad) // down)
    return _POLY[(up, down)]


#: FFT block length of :func:`fft_convolve` (the longer the IR, the larger the FFT it uses).
_CONV_BLOCK = 1 << 16


def convolution_block(n_h: int) -> tuple[int, int]:
    """``(input samples per block, FFT size)`` of :func:`fft_convolve` for a filter of
    ``n_h`` taps (shared by the block-wise callers, which then give the same samples)."""
    block = max(_CONV_BLOCK, 1 << (int(n_h) - 1).bit_length())
    return block, 1 << (block + int(n_h) - 2).bit_length()


def fft_convolve(x: np.ndarray, h: np.ndarray, n_out: int | None = None) -> np.ndarray:
    """Linear convolution of 1-D ``x`` with FIR ``h`` by overlap-add, first ``n_out`` samples.

    ``n_out`` defaults to ``len(x)`` (a causal filter's output aligned with its input).  Works
    block by block, so memory is one output array plus a few FFT buffers whatever the length.
    Returns float64 for float64 input, float32 otherwise.
    """
    x = np.asarray(x)
    h = np.asarray(h, dtype=np.float64)
    out_dtype = np.float64 if x.dtype == np.float64 else np.float32
    n_out = x.shape[0] if n_out is None else int(n_out)
    out: np.ndarray = np.zeros(n_out, dtype=out_dtype)
    if x.shape[0] == 0 or h.shape[0] == 0 or n_out == 0:
        return out
    block, nfft = convolution_block(h.shape[0])
    hf = rfft64(h, nfft)
    for s in range(0, min(x.shape[0], n_out), block):
        seg = np.asarray(x[s:s + block], dtype=np.float64)
        y = irfft(rfft64(seg, nfft) * hf, nfft)[: seg.shape[0] + h.shape[0] - 1]
        e = min(s + y.shape[0], n_out)
        out[s:e] += y[: e - s]
    return out


#: Samples filtered per step by the loudness meter (float64 work arrays of ~1 MB each; FFTs of
#: 2**17 points are ~2x cheaper per sample than 2**19).
_LOUDNESS_CHUNK = 1 << 16
#: Threads of the K-weighting of a whole signal of two chunks or more (at most: see
#: :func:`semcodec.runtime.work_threads`).
LOUDNESS_WORKERS = 2
#: BS.1770 gating: 400-ms blocks with 75 % overlap, absolute gate -70 LUFS, relative gate -10 LU.
_GATE_BLOCK_S = 0.4
_GATE_STEP = 0.25
_GATE_ABSOLUTE_LUFS = -70.0
_GATE_RELATIVE_LU = -10.0


def _biquad(kind: str, gain_db: float, q: float, fc: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised biquad coefficients ``(b, a)`` (RBJ cookbook, as pyloudnorm's K-weighting)."""
    big_a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * (fc / sr)
    alpha = np.sin(w0) / (2.0 * q)
    cw = np.cos(w0)
    if kind == "high_shelf":
        sq = 2.0 * np.sqrt(big_a) * alpha
        b = [big_a * ((big_a + 1) + (big_a - 1) * cw + sq),
             -2 * big_a * ((big_a - 1) + (big_a + 1) * cw),
             big_a * ((big_a + 1) + (big_a - 1) * cw - sq)]
        a = [(big_a + 1) - (big_a - 1) * cw + sq,
             2 * ((big_a - 1) - (big_a + 1) * cw),
             (big_a + 1) - (big_a - 1) * cw - sq]
    else:  # high_pass
        b = [(1 + cw) / 2, -(1 + cw), (1 + cw) / 2]
        a = [1 + alpha, -2 * cw, 1 - alpha]
    return np.array(b) / a[0], np.array(a) / a[0]


def _k_weighting(sr: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two K-weighting stages of ITU-R BS.1770-4 at ``sr`` Hz (pre-filter, RLB high-pass)."""
    return [_biquad("high_shelf", 4.0, 1.0 / np.sqrt(2.0), 1500.0, sr),
            _biquad("high_pass", 0.0, 0.5, 38.0, sr)]


_K_IR: dict[int, np.ndarray] = {}


def _k_weighting_ir(sr: int) -> np.ndarray:
    """Impulse response of the K-weighting cascade at ``sr``, cut where it falls below 1e-9.

    Computed from the exact frequency response on a dense grid (time aliasing < 1e-12), so
    that the IIR filters can be applied as an FIR by FFT without scipy.signal.
    """
    if sr not in _K_IR:
        n = 1 << max(15, int(math.ceil(math.log2(sr))))  # >= 1 s: the 38 Hz tail is < 1e-9 by 0.2 s
        z = np.exp(-1j * np.pi * np.arange(n // 2 + 1) / (n // 2))
        resp = np.ones(n // 2 + 1, dtype=np.complex128)
        for b, a in _k_weighting(sr):
            resp *= (b[0] + b[1] * z + b[2] * z * z) / (a[0] + a[1] * z + a[2] * z * z)
        ir = np.fft.irfft(resp, n)
        peak = np.max(np.abs(ir))
        above = np.nonzero(np.abs(ir) > 1e-9 * peak)[0]
        _K_IR[sr] = ir[: int(above[-1]) + 1].copy()
    return _K_IR[sr]


def integrated_loudness(audio: np.ndarray, sr: int) -> float | None:
    """Integrated loudness of mono ``audio`` in LUFS, or ``None`` for silence/too-short input.

    ITU-R BS.1770-4 (K-weighting, 400-ms blocks with 75 % overlap, absolute and relative
    gates), computed block by block so that memory stays a few MB whatever the length (the
    filters carry their state from block to block); it agrees with pyloudnorm's
    ``Meter.integrated_loudness`` to rounding error.  Input shorter than 0.4 s is zero-padded.
    """
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"integrated_loudness expects mono audio (n,), got shape {audio.shape}")
    meter = LoudnessMeter(audio.shape[0], sr)
    whole = audio.shape[0] - audio.shape[0] % _LOUDNESS_CHUNK
    workers = work_threads(LOUDNESS_WORKERS)
    if whole >= 2 * _LOUDNESS_CHUNK and workers > 1:
        # the chunks' K-weighting (FFTs, most of the work) on two threads, summed here in
        # order: the same value (a 5-min input ~0.9 -> ~0.5 s)
        from semcodec.background import mapped  # noqa: PLC0415

        def filtered(s: int) -> tuple[np.ndarray, np.ndarray]:
            x = np.asarray(audio[s:s + _LOUDNESS_CHUNK], dtype=np.float64)
            return x, meter.filtered(x)

        for x, y in mapped(filtered, range(0, whole, _LOUDNESS_CHUNK), workers):
            meter.step_filtered(x, y)
        meter.push(audio[whole:])
    else:
        for s in range(0, audio.shape[0], _LOUDNESS_CHUNK):
            meter.push(audio[s:s + _LOUDNESS_CHUNK])
    return meter.result()


class LoudnessMeter:
    """:func:`integrated_loudness` of a signal of ``n`` samples fed in pieces of any size
    (``push``), then ``result()``: the same value as the whole-array function."""

    def __init__(self, n: int, sr: int) -> None:
        self.sr = int(sr)
        self.n_real = int(n)
        n_min = int(_GATE_BLOCK_S * sr) + 1
        n = max(int(n), n_min)  # shorter input is zero-padded
        self.n = n
        n_blocks = int(np.round((n / sr - _GATE_BLOCK_S) / (_GATE_BLOCK_S * _GATE_STEP))) + 1
        j = np.arange(max(n_blocks, 1))
        self.lo = np.minimum((_GATE_BLOCK_S * (j * _GATE_STEP) * sr).astype(np.int64), n)
        self.hi = np.minimum((_GATE_BLOCK_S * (j * _GATE_STEP + 1) * sr).astype(np.int64), n)
        # prefix sums of the squared K-weighted signal, sampled at the block bounds only
        self.points = np.unique(np.concatenate([self.lo, self.hi]))
        self.prefix = np.zeros(self.points.shape[0], dtype=np.float64)
        self.ir = _k_weighting_ir(sr)
        self.nfft = 1 << (_LOUDNESS_CHUNK + self.ir.shape[0] - 2).bit_length()
        self.ir_f = rfft64(self.ir, self.nfft)
        self.carry = np.zeros(self.ir.shape[0] - 1, dtype=np.float64)
        self.running = 0.0
        self.nonzero = False
        self.k = int(np.searchsorted(self.points, 1))  # points equal to 0 keep prefix 0
        self.pos = 0
        self._pending: list[np.ndarray] = []
        self._pending_n = 0

    def push(self, x: np.ndarray) -> None:
        """Feed the next samples (mono)."""
        x = np.asarray(x)
        if x.ndim != 1:
            raise ValueError(f"LoudnessMeter expects mono blocks (n,), got shape {x.shape}")
        self._pending.append(x)
        self._pending_n += x.shape[0]
        while self._pending_n >= _LOUDNESS_CHUNK:
            self._step(self._take(_LOUDNESS_CHUNK))

    def _take(self, m: int) -> np.ndarray:
        buf = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        out, rest = buf[:m], buf[m:]
        self._pending = [rest] if rest.shape[0] else []
        self._pending_n = rest.shape[0]
        return out

    def filtered(self, x: np.ndarray) -> np.ndarray:
        """The K-weighted chunk ``x`` (float64, at most _LOUDNESS_CHUNK samples) with its tail,
        ``(len(x) + len(ir) - 1,)``, before the carry of the chunks before it is added: the
        meter's heavy step, independent of its state (another thread may make it)."""
        # (rfft64/irfft: numpy's numbers bit for bit, through scipy's FFT when it is imported)
        return irfft(rfft64(x, self.nfft) * self.ir_f, self.nfft)[: x.shape[0] + self.ir.shape[0] - 1]

    def step_filtered(self, x: np.ndarray, y: np.ndarray) -> None:
        """Feed the next whole chunk ``x`` (float64, _LOUDNESS_CHUNK samples, nothing pending)
        with ``y``, its :meth:`filtered` (``y`` is used up)."""
        self._step(x, y)

    def _step(self, x: np.ndarray, y: np.ndarray | None = None) -> None:
        x = np.asarray(x, dtype=np.float64)
        if not self.nonzero and np.any(x):
            self.nonzero = True
        m = x.shape[0]
        ir_len = self.ir.shape[0]
        if y is None:
            y = self.filtered(x)
        y[: self.carry.shape[0]] += self.carry
        x, self.carry = y[:m], y[m:].copy()
        if self.carry.shape[0] < ir_len - 1:  # last, short chunk
            self.carry = np.pad(self.carry, (0, ir_len - 1 - self.carry.shape[0]))
        np.square(x, out=x)
        np.cumsum(x, out=x)
        x += self.running
        s = self.pos
        e = s + x.shape[0]
        k1 = int(np.searchsorted(self.points, e, side="right"))
        if k1 > self.k:
            self.prefix[self.k:k1] = x[self.points[self.k:k1] - s - 1]
            self.k = k1
        self.running = float(x[-1])
        self.pos = e

    def result(self) -> float | None:
        """The integrated loudness (LUFS) of what was pushed, None for silence."""
        if self._pending_n or self.pos < self.n:
            rest = self._take(self._pending_n) if self._pending_n else np.zeros(0)
            if self.pos + rest.shape[0] < self.n:  # zero padding up to n
                rest = np.concatenate([rest, np.zeros(self.n - self.pos - rest.shape[0])])
            for s in range(0, rest.shape[0], _LOUDNESS_CHUNK):
                self._step(rest[s:s + _LOUDNESS_CHUNK])
        if not self.nonzero:
            return None
        idx_lo = np.searchsorted(self.points, self.lo)
        idx_hi = np.searchsorted(self.points, self.hi)
        z = np.maximum(self.prefix[idx_hi] - self.prefix[idx_lo], 0.0) * (
            1.0 / (_GATE_BLOCK_S * self.sr))
        with np.errstate(divide="ignore"):
            block_lufs = -0.691 + 10.0 * np.log10(z)
        above_abs = block_lufs >= _GATE_ABSOLUTE_LUFS
        if not np.any(above_abs):
            return None
        gamma_r = -0.691 + 10.0 * math.log10(float(np.mean(z[above_abs]))) + _GATE_RELATIVE_LU
        gated = (block_lufs > gamma_r) & (block_lufs > _GATE_ABSOLUTE_LUFS)
        if not np.any(gated):
            return None
        mean_z = float(np.mean(z[gated]))
        if mean_z <= 0.0:
            return None
        value = -0.691 + 10.0 * math.log10(mean_z)
        if not math.isfinite(value) or value < SILENCE_LUFS:
            return None
        return value


def soft_clip(audio: np.ndarray, threshold: float = 0.9) -> np.ndarray:
    """Leave samples below ``threshold`` untouched and bend the rest smoothly under 1.0."""
    a = np.abs(audio)
    over = a > threshold
    if not np.any(over):
        return audio
    out = audio.copy()
    room = 1.0 - threshold
    out[over] = np.sign(audio[over]) * (threshold + room * np.tanh((a[over] - threshold) / room))
    return out


def release_free_memory() -> None:
    """Hand memory that is free but still held by the C heap back to the OS (glibc only).

    Many small arrays freed at once (an engine's rendering blocks, say) stay in the heap and
    keep counting in the RSS; trimming before a large allocation keeps the peak down on long
    inputs.  :func:`semcodec.runtime.release_free_memory` (a no-op where ``malloc_trim`` does
    not exist, and while a short input's encode keeps its freed memory).
    """
    from semcodec.runtime import release_free_memory as release  # noqa: PLC0415

    release()


def loudness_gain(audio: np.ndarray, sr: int, target_lufs: float | None) -> float:
    """Linear gain that brings mono ``audio`` to ``target_lufs`` (0 for a silent target, 1 when
    ``audio`` itself is silent)."""
    if target_lufs is None:
        return 0.0
    current = integrated_loudness(audio, sr)
    if current is None:
        return 1.0
    return float(10.0 ** ((target_lufs - current) / 20.0))


def match_loudness(audio: np.ndarray, sr: int, target_lufs: float | None) -> np.ndarray:
    """Scale mono ``audio`` to ``target_lufs`` (``None`` = the original was silent → silence).

    Peaks that the gain pushes over 0.9 are soft-clipped so the result stays within ±1.
    Works block by block: besides the input, memory holds one float32 output array.
    """
    if target_lufs is None:
        return np.zeros_like(audio)
    return apply_gain(audio, loudness_gain(audio, sr, target_lufs))


def apply_gain(audio: np.ndarray, gain: float) -> np.ndarray:
    """``audio`` times the linear ``gain`` as :func:`match_loudness` applies it: peaks pushed
    over 0.9 soft-clipped, block by block; a unit gain returns ``audio`` itself."""
    if gain == 1.0:
        return audio
    audio = np.asarray(audio)
    release_free_memory()
    out = np.empty(audio.shape, dtype=np.float32)
    for s in range(0, audio.shape[0], _LOUDNESS_CHUNK):
        block = (audio[s:s + _LOUDNESS_CHUNK] * gain).astype(np.float32)
        out[s:s + _LOUDNESS_CHUNK] = soft_clip(block)
    return out


#: Output samples smaller than this (-120 dBFS, 1/32 of a 16-bit step) are rounding noise.
TINY = 2.0 ** -20


def flush_tiny(audio: np.ndarray, floor: float = TINY) -> np.ndarray:
    """``audio`` with every sample below ``floor`` in magnitude set to exactly 0 (in place
    when it is a float32 array).  FFT rounding leaves ~1e-9 noise in silences, and 16-bit
    writers floor, turning every negative speck into a -1 step: silences must be zeros."""
    a = np.asarray(audio)
    if a.dtype != np.float32:
        a = a.astype(np.float32)
    a[np.abs(a) < floor] = 0.0
    return a


def pan_stereo(audio: np.ndarray, pan: float) -> np.ndarray:
    """Mono ``audio`` (n,) placed at ``pan`` (-1 left .. 1 right): float32 ``(n, 2)``.

    Linear law ``(1 - pan, 1 + pan)``: the downmix ``(left + right) / 2`` is ``audio`` itself.
    """
    a = np.asarray(audio, np.float32)
    return np.stack([a * np.float32(1.0 - pan), a * np.float32(1.0 + pan)], axis=1)


#: Samples per step of :func:`rms` (~48 s at 44.1 kHz; float64 work arrays of 16 MiB).
RMS_BLOCK = 1 << 21


def rms(x: np.ndarray) -> float:
    """Root mean square of ``x`` (any shape), squared and summed in float64 RMS_BLOCK samples
    at a time: no float64 copy of a whole long signal.  Up to RMS_BLOCK samples it is exactly
    ``sqrt(mean(x.astype(float64) ** 2))`` (nan when empty); beyond, the same but for the
    rounding of the block sums."""
    flat = np.ravel(x)
    if flat.size <= RMS_BLOCK:
        return float(np.sqrt(np.mean(flat.astype(np.float64) ** 2)))
    total = sum(float(np.sum(flat[s:s + RMS_BLOCK].astype(np.float64) ** 2))
                for s in range(0, flat.size, RMS_BLOCK))
    return float(np.sqrt(total / flat.size))


def fit_length(audio: np.ndarray, n_samples: int) -> np.ndarray:
    """Cut or zero-pad ``audio`` to exactly ``n_samples`` samples."""
    if audio.shape[0] >= n_samples:
        return audio[:n_samples]
    return np.pad(audio, (0, n_samples - audio.shape[0]))


def fade_edges(audio: np.ndarray, sr: int, seconds: float = 0.005) -> np.ndarray:
    """Apply a short raised-cosine fade-in and fade-out (no clicks at the ends)."""
    n = min(int(seconds * sr), audio.shape[0] // 2)
    if n <= 0:
        return audio
    ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n))).astype(audio.dtype)
    out = audio.copy()
    out[:n] *= ramp
    out[-n:] *= ramp[::-1]
    return out


#: For a General MIDI drum key without a one-shot of its own: the keys whose one-shot may stand
#: in, best first (kicks, snares/claps, hi-hats, toms by size, crashes then rides, rides then
#: crashes).
DRUM_FALLBACKS: dict[int, tuple[int, ...]] = {
    35: (36,), 36: (35,),
    37: (38, 40, 39), 38: (40, 37, 39), 39: (38, 40, 37), 40: (38, 37, 39),
    42: (44, 46), 44: (42, 46), 46: (42, 44),
    41: (43, 45, 47, 48, 50), 43: (41, 45, 47, 48, 50), 45: (47, 43, 48, 41, 50),
    47: (45, 48, 43, 50, 41), 48: (47, 50, 45, 43, 41), 50: (48, 47, 45, 43, 41),
    49: (57, 55, 52, 51, 59, 53), 57: (49, 55, 52, 51, 59, 53), 55: (49, 57, 52, 51, 59, 53),
    52: (49, 57, 55, 51, 59, 53), 51: (59, 53, 49, 57, 55, 52), 59: (51, 53, 49, 57, 55, 52),
    53: (51, 59, 49, 57, 55, 52),
}


def oneshot_for(key: int, available) -> int | None:
    """The key whose one-shot plays drum ``key``: itself if in ``available``, else the first
    of :data:`DRUM_FALLBACKS` that is; None when there is none."""
    if key in available:
        return key
    for k in DRUM_FALLBACKS.get(key, ()):
        if k in available:
            return k
    return None


def play_oneshots(hits, shots: dict[int, np.ndarray], sr: int, n_samples: int, *,
                  ref_velocity: dict[int, int] | None = None) -> np.ndarray:
    """A sampler: mono float32 ``(n_samples,)`` at ``sr`` Hz with every hit's one-shot added.

    ``hits`` is a sequence of ``(onset_s, key, velocity)``; ``shots`` maps a key to its one-shot
    (mono float32 at ``sr``).  A hit plays its key's one-shot, or the one-shot of the closest
    related key (:func:`oneshot_for`: toms share, crash <-> ride, open <-> closed hi-hat), and
    is skipped when there is none.  The level is ``(velocity / ref) ** 2`` where ``ref`` is
    ``ref_velocity[shot key]`` (the velocity of the hit the one-shot was cut from, so that this
    hit is reproduced as it was), 127 when not given.  Hits outside the output are dropped;
    one-shots running past the end are cut.
    """
    n_samples = int(n_samples)
    out = np.zeros(max(n_samples, 0), np.float32)
    refs = ref_velocity or {}
    for onset, key, velocity in hits:
        src = oneshot_for(int(key), shots)
        if src is None:
            continue
        s = int(round(float(onset) * sr))
        if s < 0 or s >= n_samples:
            continue
        shot = np.asarray(shots[src], np.float32)
        ref = max(1, min(127, int(refs.get(src, 127))))
        gain = (max(1, min(127, int(velocity))) / ref) ** 2
        e = min(n_samples, s + shot.shape[0])
        out[s:e] += gain * shot[:e - s]
    return out
