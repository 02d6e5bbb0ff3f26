"""The streaming pieces of the numpy DDSP (part of :mod:`semcodec.synth.ddsp_np`, which
re-exports them): a growing accumulator, a block convolver and a block resampler that
carry their state from block to block."""

from __future__ import annotations

import math

import numpy as np

from semcodec.synth import dsp

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
        y = dsp.irfft(np.fft.rfft(np.asarray(x, np.float32), nfft) * self._hf[nfft],
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
