"""The residual encoder's judge: how much a candidate decode lowers the log-mel distance to the
original, per cell of the residual's grid (:mod:`semcodec.residual`).

Encoder only (librosa's mel filters, from :mod:`semcodec.filterbanks`).  Shapes: audio
float32 ``(n,)`` mono at ``sr`` Hz; log-mels ``(n_frames, JUDGE_MELS)``; benefits
``(n_bands, n_frames)`` of the grid.
"""

from __future__ import annotations

import hashlib
import math
import threading
import weakref
from typing import Callable, Sequence, TypeVar

import numpy as np

from semcodec.residual import REF_SR, _cut, _rows
from semcodec.synth.dsp import rfft_rows

#: The encoder's judge: the multi-resolution log-mel distance of the benchmark
#: (bench/metrics.py): Hann STFTs of JUDGE_N_FFTS (at 44.1 kHz, scaled with the rate; hop
#: n_fft / 4), JUDGE_MELS Slaney mel bands of the magnitude, log10 floored at JUDGE_FLOOR.
JUDGE_N_FFTS = (1024, 2048, 4096)
JUDGE_MELS = 128
JUDGE_FLOOR = 1e-5
#: STFT frames of one block of the judge's log-mel (bounded memory on long inputs) at the
#: finest resolution; coarser ones take as many samples of frames per block (JUDGE_BLOCK x
#: 1024 x 4 bytes: ~17 MB of float32 frames, where 4096 frames of 4096 samples took ~185 MB
#: with their spectra on a long input), so that the block's memory does not grow with n_fft.
JUDGE_BLOCK = 4096
#: STFT frames of one step of the judge's benefit (a multiple of JUDGE_BLOCK; ~95 s at
#: 44.1 kHz for the finest resolution): its temporaries stay bounded on long inputs.
JUDGE_SPAN = 4 * JUDGE_BLOCK


#: Threads the judge computes its resolutions on (numpy's and scipy's FFTs and products
#: release the GIL): one per resolution where two cores or more are usable (three threads
#: on two cores end together, where two threads left a core idle while one of them made
#: the third resolution, about a third of each judgement), else one.
def _workers() -> int:
    from semcodec.runtime import usable_cpus  # noqa: PLC0415

    return len(JUDGE_N_FFTS) if usable_cpus() > 1 else 1


#: Whole inputs up to this long (s) have their log-mels kept for the judges of their other
#: decodes; longer ones each judge's own.  Whole inputs are judged on parallel threads, a
#: long input's spans (semcodec.residual_spans) one resolution at a time: their memory
#: stays as bounded as before (but for the original's log-mels, which every judge keeps).
JUDGE_SHORT_S = 120.0

_T = TypeVar("_T")


def _each(fn: Callable[[int], _T], n: int, parallel: bool = True) -> list[_T]:
    """``[fn(0), ..., fn(n - 1)]``, on :func:`_workers` threads when ``parallel`` (results in
    order, so that the caller sums them in the same order as one after the other: the same
    numbers)."""
    workers = min(n, _workers()) if parallel else 1
    if workers <= 1:
        return [fn(i) for i in range(n)]
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="semcodec-judge") as pool:
        return list(pool.map(fn, range(n)))


#: The original's log-mels of the latest input judged, per resolution: the encoder codes
#: the residuals of several decodes of one input (speculatively, on second threads) and
#: each judge would make them again.  Keyed by the original's samples (a digest) and rate.
_REFERENCE_LOCK = threading.Lock()
_REFERENCE: dict = {}


def _original_key(x: np.ndarray, sr: int) -> tuple:
    v = np.ascontiguousarray(x, np.float32)
    return (hashlib.blake2b(v.tobytes(), digest_size=16).digest(), v.shape[0], int(sr))


def _resolution(k: int, sr: int) -> tuple:
    """(n_fft, hop, window, mel filters, mel centres in Hz) of the judge's resolution ``k``
    (of JUDGE_N_FFTS) at ``sr`` Hz."""
    from semcodec import filterbanks  # noqa: PLC0415 - the encoder only

    n_fft = max(256, int(2 ** round(math.log2(JUDGE_N_FFTS[k] * sr / REF_SR))))
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    mel = filterbanks.mel(sr=sr, n_fft=n_fft, n_mels=JUDGE_MELS).astype(np.float32)
    centres = filterbanks.mel_frequencies(JUDGE_MELS + 2, fmax=sr / 2.0)[1:-1]
    return n_fft, n_fft // 4, window, mel, centres


def prepare_reference(x: np.ndarray, sr: int) -> None:
    """Make and keep the log-mels of the original ``x`` (mono float32 at ``sr`` Hz) that the
    judges of its decodes then take (the encoder: on a second thread while the timbres are
    fitted, before any decode exists); nothing for an input over JUDGE_SHORT_S or whose
    log-mels a judge makes span by span (JUDGE_SPAN)."""
    x = np.asarray(x, np.float32)
    if len(x) > JUDGE_SHORT_S * sr:
        return
    key = _original_key(x, sr)
    with _REFERENCE_LOCK:
        if key in _REFERENCE:
            return
    out = []
    for k in range(len(JUDGE_N_FFTS)):
        n_fft, hop, window, mel, _ = _resolution(k, sr)
        if 1 + len(x) // hop > JUDGE_SPAN:
            return
        lx = Judge._logmel(x, n_fft, hop, window, mel)  # noqa: SLF001 - this module's own
        lx.setflags(write=False)
        out.append(lx)
    with _REFERENCE_LOCK:
        _REFERENCE.clear()  # the latest input only
        _REFERENCE[key] = tuple(out)


def block_frames(n_fft: int) -> int:
    """Frames per block of the judge's log-mel at ``n_fft``: JUDGE_BLOCK frames of 1024
    samples' worth (JUDGE_BLOCK at 1024 or less, half as many at 2048, ...)."""
    return max(1, JUDGE_BLOCK * 1024 // max(1024, n_fft))


class Judge:
    """How much a candidate output lowers the log-mel distance to ``x``, per grid cell."""

    def __init__(self, x: np.ndarray, y: np.ndarray, sr: int, shared: bool = False) -> None:
        """``shared``: the judge of a whole input (not of a long input's span): judged on
        parallel threads (a block of ~45 MB at a time per thread, whatever the length), and
        when it is at most JUDGE_SHORT_S long, its log-mels shared with the judges of its
        other decodes."""
        self.sr, self.x = sr, x
        #: the original's log-mels shared
        self.short = shared and len(x) <= JUDGE_SHORT_S * sr
        #: judged on parallel threads
        self.parallel = shared
        key = _original_key(x, sr) if self.short else None
        with _REFERENCE_LOCK:
            known: Sequence = _REFERENCE.get(key, ()) if self.short else ()

        def one(k: int) -> tuple:
            n_fft, hop, window, mel, centres = _resolution(k, sr)
            lx, base = self._reference(x, y, n_fft, hop, window, mel,
                                       known[k] if k < len(known) else None)
            # each resolution counts as the mean over its frames and mel bands (the metric)
            weight = 1.0 / (base.shape[0] * JUDGE_MELS * len(JUDGE_N_FFTS))
            return (n_fft, hop, window, mel, centres, lx, base, weight)

        #: (the output, weakly: its memory is its maker's, the grid, its benefit) of the
        #: latest read-only output judged: one judged again (the residual's analysis's last
        #: pass, then its payload) is not
        self._last: tuple[weakref.ref, tuple, np.ndarray] | None = None
        # the resolutions on parallel threads, kept in order
        self.res = _each(one, len(JUDGE_N_FFTS), self.parallel)
        if self.short and not known:
            with _REFERENCE_LOCK:
                _REFERENCE.clear()  # the latest input only
                _REFERENCE[key] = tuple(r[5] for r in self.res)

    def _reference(self, x: np.ndarray, y: np.ndarray, n_fft: int, hop: int,
                   window: np.ndarray, mel: np.ndarray, known: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """(the log-mel of the original ``x``, ``|log-mel(x) - log-mel(y)|`` of the decode
        ``y``), each ``(n_frames, JUDGE_MELS)`` float32, made span by span (JUDGE_SPAN frames:
        the spans :meth:`benefit` measures in, so the very numbers it would make of ``x``;
        kept whatever the length: ~15 MB per 100 s at 44.1 kHz, where making it again took
        half of each judgement).  ``known``: the log-mel of ``x`` made before (read-only;
        not made again)."""
        n = 1 + len(x) // hop
        known = known if known is not None and known.shape == (n, JUDGE_MELS) else None
        lx = known if known is not None else np.empty((n, JUDGE_MELS), np.float32)
        base = np.empty((n, JUDGE_MELS), np.float32)
        for k0 in range(0, n, JUDGE_SPAN):
            k1 = min(n, k0 + JUDGE_SPAN)
            part = (known[k0:k1] if known is not None
                    else self._logmel(x, n_fft, hop, window, mel, k0, k1))
            base[k0:k1] = np.abs(part - self._logmel(y, n_fft, hop, window, mel, k0, k1))
            if lx is not known:
                lx[k0:k1] = part
        lx.setflags(write=False)  # shared with the judges of other decodes of ``x``
        return lx, base

    @staticmethod
    def _logmel(v: np.ndarray, n_fft: int, hop: int, window: np.ndarray,
                mel: np.ndarray, k0: int = 0, k1: int | None = None) -> np.ndarray:
        """``(k1 - k0, JUDGE_MELS)`` log-mel frames ``k0 .. k1`` (default: all) of ``v``
        (frames centred on ``k * hop``, zeros beyond the ends), JUDGE_BLOCK frames at a time
        from ``k0``: no padded copy of the whole signal and no whole-length frame matrix (an
        hour's would take gigabytes)."""
        v = np.asarray(v, np.float32)
        half = n_fft // 2
        k1 = 1 + len(v) // hop if k1 is None else k1
        out = np.empty((k1 - k0, mel.shape[0]), np.float32)
        step = block_frames(n_fft)
        for a in range(k0, k1, step):
            b = min(k1, a + step)
            seg = _cut(v, a * hop - half, (b - 1) * hop - half + n_fft)
            mag = np.abs(rfft_rows(_rows(seg, b - a, n_fft, hop) * window))
            out[a - k0:b - k0] = np.log10(np.maximum(mag @ mel.T, JUDGE_FLOOR))
        return out

    def benefit(self, z: np.ndarray, edges: np.ndarray, period_s: float,
                n_frames: int) -> np.ndarray:
        """``(n_bands, n_frames)``: the distance of the decode minus that of ``z``, split over
        the cells of the grid (band ``edges`` in Hz, frames of ``period_s``); a positive cell
        brings ``z`` closer to the original than the decode.  A read-only ``z`` (that its
        maker does not change either: :func:`semcodec.residual.apply`'s kept output) judged
        on the same grid as the time before gets the same numbers, not measured again."""
        grid = (np.asarray(edges, np.float64).tobytes(), float(period_s), int(n_frames))
        last = self._last
        if last is not None and last[0]() is z and last[1] == grid:
            return last[2].copy()
        n_bands = len(edges) - 1

        def one(k: int) -> np.ndarray:
            n_fft, hop, window, mel, centres, lx, base, weight = self.res[k]
            band = np.clip(np.searchsorted(edges, centres, side="right") - 1, 0, n_bands - 1)
            frames = np.clip((np.arange(base.shape[0]) * hop / self.sr / period_s)
                             .astype(np.int64), 0, n_frames - 1)
            onehot = np.zeros((JUDGE_MELS, n_bands), np.float32)
            onehot[np.arange(JUDGE_MELS), band] = 1.0
            per_band = np.empty((base.shape[0], n_bands), np.float32)  # (frames, n_bands)
            for k0 in range(0, base.shape[0], JUDGE_SPAN):  # bounded memory on long inputs
                k1 = min(base.shape[0], k0 + JUDGE_SPAN)
                lz = self._logmel(z, n_fft, hop, window, mel, k0, k1)
                per_band[k0:k1] = (base[k0:k1] - np.abs(lx[k0:k1] - lz)) @ onehot
            counts = np.bincount(frames, minlength=n_frames)
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            have = counts > 0
            cell = np.zeros((n_frames, n_bands))
            cell[have] = np.add.reduceat(per_band.astype(np.float64), starts[have], axis=0)
            return cell.T * weight

        out = np.zeros((n_bands, n_frames))
        # the resolutions on parallel threads, summed in order (the same numbers)
        for part in _each(one, len(self.res), self.parallel):
            out += part
        if isinstance(z, np.ndarray) and not z.flags.writeable:
            self._last = (weakref.ref(z), grid, out.copy())
        return out


def forget_reference() -> None:
    """Drop the original's log-mels kept by the judges (at the end of an encode)."""
    with _REFERENCE_LOCK:
        _REFERENCE.clear()
