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

The coded envelope is the ``RESD`` chunk's payload (:mod:`semcodec.container.resd`,
docs/FORMAT.md section 6c), or for a grid longer than SEGMENT_S the ``RESS`` chunk's (section
6d): the same grid in segments that a stream decodes as it reaches them
(:class:`SegmentedEnvelope`).
"""

from __future__ import annotations

import collections
import functools
import itertools
import logging
import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Sequence, TypeVar

import numpy as np

from semcodec.container import resd
from semcodec.synth import dsp

if TYPE_CHECKING:
    from semcodec.residual_judge import Judge

log = logging.getLogger(__name__)

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

    @property
    def any_coded(self) -> bool:
        """Whether any cell is coded."""
        return bool(np.any(self.mask))

    def window(self, c0: int, c1: int) -> "Envelope":
        """The envelope of grid frames ``c0 .. c1 - 1``."""
        return Envelope(levels=self.levels[:, c0:c1], mask=self.mask[:, c0:c1],
                        period_s=self.period_s, step_db=self.step_db)


class SegmentedEnvelope:
    """A segmented RESD payload (:func:`semcodec.container.resd.encode_segmented`) read
    lazily: the same attributes as :class:`Envelope` but ``levels``/``mask``, and
    :meth:`window` decodes only the segments it covers (the last ones asked are kept), so a
    stream that walks the grid forwards decodes each segment once, when it reaches it.  The
    segments' range codes are checked then (ContainerError)."""

    #: Segments kept decoded (a window spans at most two of them at the stream's block sizes).
    KEEP = 3

    def __init__(self, payload: bytes, duration_s: float) -> None:
        self._payload = bytes(payload)
        self._index = resd.segment_index(self._payload, duration_s)
        self.period_s, self.step_db = self._index.period_s, self._index.step_db
        self.n_bands, self.n_frames = self._index.n_bands, self._index.n_frames
        self._kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        #: Segments decoded so far (a segment decoded again after it was dropped counts twice).
        self.decoded = 0

    #: A segmented payload is written only with some coded cell (a payload may lie: then the
    #: decode goes through the STFT with no cell changed, a round-off apart).
    any_coded = True

    @property
    def n_segments(self) -> int:
        return len(self._index.spans)

    def _segment(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        got = self._kept.pop(i, None)
        if got is None:
            lv, mk = resd.decode_segment(self._payload, self._index, i)
            got = (np.asarray(lv, np.int64).reshape(self.n_bands, -1),
                   np.asarray(mk, bool).reshape(self.n_bands, -1))
            self.decoded += 1
        self._kept[i] = got  # the most recent last
        while len(self._kept) > self.KEEP:
            self._kept.pop(next(iter(self._kept)))
        return got

    def window(self, c0: int, c1: int) -> Envelope:
        """The envelope of grid frames ``c0 .. c1 - 1`` (decoding the segments it covers)."""
        c0, c1 = max(0, c0), min(self.n_frames, c1)
        seg = self._index.segment_frames
        parts = [self._segment(i) for i in range(c0 // seg, (max(c0, c1 - 1)) // seg + 1)]
        first = (c0 // seg) * seg
        levels = np.concatenate([p[0] for p in parts], axis=1)[:, c0 - first:c1 - first]
        mask = np.concatenate([p[1] for p in parts], axis=1)[:, c0 - first:c1 - first]
        return Envelope(levels=levels, mask=mask, period_s=self.period_s, step_db=self.step_db)


# ------------------------------------------------------------------------------------------
# grid and STFT
# ------------------------------------------------------------------------------------------


def stft_size(sr: int) -> tuple[int, int]:
    """(n_fft, hop) of the analysis STFT at ``sr`` Hz: sine windows of ~23 ms (1024 samples at
    44.1 kHz, a multiple of 64 samples elsewhere), 50 % overlap.  The bins are ~43 Hz wide at
    every rate, so that band levels mean the same whatever the output rate."""
    n_fft = max(64, 64 * int(round(REF_N_FFT * sr / REF_SR / 64)))
    return n_fft, n_fft // 2


def _window(n_fft: int) -> np.ndarray:
    return np.sin(np.pi * (np.arange(n_fft) + 0.5) / n_fft).astype(np.float32)


def stft(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Complex STFT ``(n_frames, n_fft // 2 + 1)`` of mono ``x`` (n,), sine window, divided by
    the window's sum (a full-scale sine peaks at 0.5 whatever ``n_fft``); the signal is padded
    by ``hop`` zeros at the start and up to a whole frame at the end; frame ``k`` is centred on
    sample ``k * hop``."""
    x = np.asarray(x, np.float32)
    n_frames = len(x) // hop + 2
    pad = np.zeros((n_frames + 1) * hop, np.float32)
    pad[hop:hop + len(x)] = x
    frames = np.lib.stride_tricks.as_strided(
        pad, shape=(n_frames, n_fft), strides=(pad.strides[0] * hop, pad.strides[0]))
    win = _window(n_fft)
    spec = np.fft.rfft(frames * (win / np.float32(win.sum())), axis=1)
    return spec.astype(np.complex64, copy=False)


def istft(spec: np.ndarray, n_fft: int, hop: int, n: int) -> np.ndarray:
    """Inverse of :func:`stft` (overlap-add with the same sine window): float32 ``(n,)``."""
    win = _window(n_fft)
    frames = dsp.irfft(spec, n_fft).astype(np.float32, copy=False) * (win * win.sum())
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


def _frame_of(n_stft: int, hop: int, sr: int, period_s: float, n_frames: int,
              start: int = 0) -> np.ndarray:
    """Grid frame of every STFT frame (centre ``k * hop / sr`` seconds), clipped to the grid;
    ``start``: the signal begins that many samples (a multiple of ``hop``) into a longer one
    whose frames these are (the same float operations as for the whole, less its first frame)."""
    t = (np.arange(n_stft) + start // hop) * hop / sr
    first = int(round(start / sr / period_s))
    return np.clip((t / period_s).astype(np.int64) - first, 0, n_frames - 1)


n_grid_frames = resd.n_frames


#: STFT frames per block of :func:`band_power` (~95 s at 44.1 kHz): bounded memory.
ANALYSIS_BLOCK_FRAMES = 8192


def band_power(x: np.ndarray, n_fft: int, hop: int, bins: np.ndarray, frames: np.ndarray,
               n_bands: int, n_frames: int) -> np.ndarray:
    """Mean ``|stft(x)|²`` (:func:`stft` of mono float32 ``x``) over each (band, grid frame)
    cell: ``(n_bands, n_frames)``; 0 for a cell with no STFT frame.  ``bins``: band of every
    STFT bin (-1: none); ``frames`` (n_stft,): grid frame of every STFT frame, non-decreasing
    (it is: grid frames follow time).  The STFT is made ANALYSIS_BLOCK_FRAMES frames at a
    time: memory holds one block, not the whole complex spectrum (~2.5 GB an hour at
    44.1 kHz).  One block gives the whole STFT's very numbers; several, the same but for
    float32 rounding of the band sums."""
    return _cell_means(_frame_band_power(x, n_fft, hop, bins, n_bands), frames, n_frames)


def _frame_band_power(x: np.ndarray, n_fft: int, hop: int, bins: np.ndarray, n_bands: int,
                      spectra: Callable[[int, int, int, int], np.ndarray] | None = None
                      ) -> np.ndarray:
    """``(n_stft, n_bands)`` float32: mean ``|stft(x)|²`` over each band (``bins`` as in
    :func:`band_power`) per STFT frame, ANALYSIS_BLOCK_FRAMES frames at a time.
    ``spectra(k0, k1, n_fft, hop)``: the spectra of frames ``k0 .. k1 - 1`` (the very numbers
    of ``np.fft.rfft``, which transforms row by row: made in other blocks, the same)."""
    onehot = np.zeros((len(bins), n_bands), np.float32)
    ok = np.nonzero(bins >= 0)[0]
    onehot[ok, bins[ok]] = 1.0
    onehot /= np.maximum(onehot.sum(axis=0), 1.0)
    n_stft = len(x) // hop + 2
    per_band = np.empty((n_stft, n_bands), np.float32)
    for k0 in range(0, n_stft, ANALYSIS_BLOCK_FRAMES):
        k1 = min(n_stft, k0 + ANALYSIS_BLOCK_FRAMES)
        spec = (spectra(k0, k1, n_fft, hop) if spectra is not None
                else np.fft.rfft(_frames(x, k0, k1, n_fft, hop), axis=1).astype(np.complex64))
        per_band[k0:k1] = (np.abs(spec) ** 2) @ onehot
    return per_band


class BandPowers:
    """:func:`band_power` of one signal for the analyses of several grids: its band power
    per STFT frame is made once per band layout (grids of as many bands share it; a few MB
    an hour) and only averaged into each grid's frames.  ``spectra``, when given: the
    signal's STFT (:meth:`ApplyMemo.spectra`).  The same numbers as :func:`band_power`."""

    def __init__(self, audio: np.ndarray,
                 spectra: Callable[[int, int, int, int], np.ndarray] | None = None) -> None:
        self.audio = audio
        self._spectra = spectra
        self._per_frame: dict[tuple, np.ndarray] = {}

    def cells(self, n_fft: int, hop: int, bins: np.ndarray, frames: np.ndarray, n_bands: int,
              n_frames: int) -> np.ndarray:
        """:func:`band_power` of the signal with these arguments."""
        key = (n_fft, hop, n_bands, np.asarray(bins).tobytes())
        per_band = self._per_frame.get(key)
        if per_band is None:
            per_band = _frame_band_power(self.audio, n_fft, hop, bins, n_bands, self._spectra)
            self._per_frame[key] = per_band
        return _cell_means(per_band, frames, n_frames)


# ------------------------------------------------------------------------------------------
# synthesis (decoder)
# ------------------------------------------------------------------------------------------


class _Plan:
    """The grid of an envelope laid over a decode of ``n`` samples at ``sr`` Hz."""

    def __init__(self, env: "Envelope | SegmentedEnvelope", sr: int, sr_original: int, n: int,
                 tempo: float) -> None:
        self.n_fft, self.hop = stft_size(sr)
        self.n = n
        n_stft = n // self.hop + 2
        period = env.period_s / tempo
        self.bins = _bin_bands(band_edges(env.n_bands, sr_original), self.n_fft, sr)
        self.frames = _frame_of(n_stft, self.hop, sr, period, env.n_frames)

    def blocks(self, size: int | None = None) -> list[tuple[int, int]]:
        """The STFT frames ``(k0, k1)`` of each block processed at a time (``size`` frames,
        default BLOCK_FRAMES)."""
        n_stft, size = len(self.frames), int(size or BLOCK_FRAMES)
        return [(k0, min(k0 + size, n_stft)) for k0 in range(0, n_stft, size)]

    def band_mean(self, n_bands: int) -> np.ndarray:
        """``(n_bins, n_bands)`` float32: a power spectrum times it is each band's mean."""
        onehot = np.zeros((len(self.bins), n_bands), np.float32)
        ok = np.nonzero(self.bins >= 0)[0]
        onehot[ok, self.bins[ok]] = 1.0
        onehot /= np.maximum(onehot.sum(axis=0), 1.0)
        return onehot


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


#: STFT frames processed at a time by :func:`apply` (~24 s at 44.1 kHz): memory stays bounded
#: on long decodes, and the noise of a block depends only on the block's index.
BLOCK_FRAMES = 2048
#: Blocks of a mono decode whose spectra are kept between the two passes (~3 min at 44.1 kHz).
KEEP_BLOCKS = 8


def _frames(x: np.ndarray, k0: int, k1: int, n_fft: int, hop: int) -> np.ndarray:
    """Windowed frames ``k0 .. k1-1`` of :func:`stft` (``(k1 - k0, n_fft)`` float32) of mono
    ``x``, without padding the whole signal: frame ``k`` covers samples
    ``(k - 1) * hop .. (k + 1) * hop``."""
    frames = _rows(_cut(x, (k0 - 1) * hop, (k1 + 1) * hop), k1 - k0, n_fft, hop)
    win = _window(n_fft)
    return frames * (win / np.float32(win.sum()))


def _cut(x: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Samples ``start .. stop`` of mono ``x`` (float32), zeros beyond its ends."""
    seg = np.zeros(stop - start, np.float32)
    lo, hi = max(start, 0), min(stop, len(x))
    if hi > lo:
        seg[lo - start:hi - start] = x[lo:hi]
    return seg


def _rows(seg: np.ndarray, n_rows: int, n_fft: int, hop: int) -> np.ndarray:
    """``n_rows`` frames of ``n_fft`` samples every ``hop`` of ``seg``: a strided view."""
    return np.lib.stride_tricks.as_strided(
        seg, shape=(n_rows, n_fft), strides=(seg.strides[0] * hop, seg.strides[0]))


def _noise_frames(k0: int, k1: int, n_fft: int, hop: int) -> np.ndarray:
    """STFT frames ``k0 .. k1-1`` (as :func:`stft` makes them) of white noise, divided by their
    expected magnitude per bin (``|N|²`` is 1 on average).  Frame ``k``'s noise depends on
    ``k`` alone, whatever the blocks a decode is cut in: it is drawn per BLOCK_FRAMES frames
    (:func:`_noise_samples`, seeded by that index)."""
    win = _window(n_fft)
    norm = np.float32(np.sqrt(np.sum(win.astype(np.float64) ** 2)) / np.sum(win))
    pieces = []
    k = k0
    while k < k1:
        j = k // BLOCK_FRAMES
        stop = min(k1, (j + 1) * BLOCK_FRAMES)
        w = _noise_samples(j, hop, BLOCK_FRAMES)
        i0 = k - j * BLOCK_FRAMES
        seg = w[i0 * hop:(stop - j * BLOCK_FRAMES + 1) * hop]
        frames = np.lib.stride_tricks.as_strided(
            seg, shape=(stop - k, n_fft), strides=(seg.strides[0] * hop, seg.strides[0]))
        pieces.append(np.fft.rfft(frames * (win / np.float32(win.sum() * norm)), axis=1))
        k = stop
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


@functools.lru_cache(maxsize=2)
def _noise_samples(j: int, hop: int, frames: int) -> np.ndarray:
    """The white noise (float32, read-only) the STFT frames ``j * frames ..`` (``frames`` of
    them: BLOCK_FRAMES) are cut from: ``(frames + 1) * hop`` samples seeded by ``j``."""
    w = np.random.default_rng([NOISE_SEED, j]).standard_normal((frames + 1) * hop,
                                                               dtype=np.float32)
    w.setflags(write=False)
    return w


def _overlap_add(out: np.ndarray, spec: np.ndarray, k0: int, n_fft: int, hop: int) -> None:
    """Add the inverse of frames ``k0 ..`` (``spec``, as :func:`stft` makes them) into ``out``."""
    _add_at(out, _block_samples(spec, n_fft, hop), (k0 - 1) * hop)


def _block_samples(spec: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """The inverse of STFT frames ``spec`` (as :func:`stft` makes them), overlap-added:
    float32 ``((len(spec) + 1) * hop,)``, from the first frame's first sample on."""
    win = _window(n_fft)
    frames = dsp.irfft(spec, n_fft).astype(np.float32, copy=False) * (win * win.sum())
    m = frames.shape[0]
    buf = np.zeros((m + 1) * hop, np.float32)
    buf[:m * hop] += frames[:, :hop].reshape(-1)
    buf[hop:] += frames[:, hop:].reshape(-1)
    return buf


def _add_at(out: np.ndarray, buf: np.ndarray, start: int) -> None:
    """``out[start + i] += buf[i]`` where ``out`` has the sample."""
    lo, hi = max(start, 0), min(start + len(buf), len(out))
    if hi > lo:
        out[lo:hi] += buf[lo - start:hi - start]


#: Threads on which :func:`apply` works an encoder's blocks (its ApplyMemo given; numpy's
#: FFTs and products release the GIL), at most one per usable core.
APPLY_WORKERS = 2

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


def _blockwise(work: Callable[[_Item], _Result], items: Sequence[_Item],
               take: Callable[[_Result], None], parallel: bool) -> None:
    """``take(work(item))`` for each of ``items`` in order; the ``work`` on APPLY_WORKERS
    threads when ``parallel`` (each item's numbers whatever the thread; ``take`` on this
    thread, in order, so that sums into one array are made in the same order), a worker
    at most ahead of ``take``.  Returns (or raises) with no thread left working."""
    from semcodec.runtime import usable_cpus  # noqa: PLC0415

    workers = min(len(items), APPLY_WORKERS, usable_cpus()) if parallel else 1
    if workers <= 1:
        for item in items:
            take(work(item))
        return
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="semcodec-residual")
    try:
        pending = collections.deque(pool.submit(work, item) for item in items[:workers])
        later = iter(items[workers:])
        while pending:
            got = pending.popleft().result()
            for item in itertools.islice(later, 1):
                pending.append(pool.submit(work, item))
            take(got)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class ApplyMemo:
    """What :func:`apply` makes of one mono decode that no envelope changes, kept for the
    encoder's many applications of envelopes to that decode (analysis passes, grids, the
    payload's benefit, the check of the notes heard): each block's spectra and the decode's
    band power per STFT frame, only for a decode of at most KEEP_BLOCKS blocks (memory:
    ~11 MB per 30 s at 44.1 kHz); and at any length the latest output (:attr:`rendered`,
    dropped when another is made).  The same numbers as without it."""

    def __init__(self, audio: np.ndarray) -> None:
        self.audio = audio
        #: (k0, k1) -> the block's spectra (read-only; copied before they are changed)
        self.specs: dict[tuple[int, int], np.ndarray] = {}
        #: (n_bands, sr_original) -> the band power per STFT frame
        self.power: dict[tuple[int, int], np.ndarray] = {}
        #: (n_fft, hop) of the spectra kept (those of the first kept)
        self.stft: tuple[int, int] | None = None
        #: (what was applied, the output) of the latest application (read-only): an
        #: envelope applied again (the analysis's last pass, then the payload's benefit and
        #: the check of the notes heard) is not rendered again
        self.rendered: tuple[tuple, np.ndarray] | None = None
        #: :func:`band_power` of the decode, from the spectra kept
        self.powers = BandPowers(audio, self.spectra)

    def _keeps(self, n_fft: int, hop: int) -> bool:
        """Whether spectra of this STFT are kept: a short mono decode (what :func:`apply`
        keeps them for), one STFT size."""
        if self.stft is None and self.audio.ndim == 1:
            self.stft = (n_fft, hop)
        return (self.stft == (n_fft, hop)
                and len(self.audio) // hop + 2 <= KEEP_BLOCKS * BLOCK_FRAMES)

    def block(self, k0: int, k1: int, n_fft: int, hop: int) -> np.ndarray:
        """The spectra of :func:`apply`'s STFT block ``k0 .. k1 - 1`` (read-only when kept)."""
        spec = self.specs.get((k0, k1)) if self.stft == (n_fft, hop) else None
        if spec is None:
            spec = np.fft.rfft(_frames(self.audio, k0, k1, n_fft, hop), axis=1)
            if self._keeps(n_fft, hop):
                spec.setflags(write=False)
                self.specs[(k0, k1)] = spec
        return spec

    def spectra(self, k0: int, k1: int, n_fft: int, hop: int) -> np.ndarray:
        """``np.fft.rfft(_frames(audio, k0, k1, n_fft, hop), axis=1)`` (complex64), from
        :func:`apply`'s blocks (made and kept as it makes them) when they are kept."""
        if not self._keeps(n_fft, hop):
            return np.fft.rfft(_frames(self.audio, k0, k1, n_fft, hop), axis=1)
        n_stft = len(self.audio) // hop + 2
        parts = []
        for b0 in range(k0 - k0 % BLOCK_FRAMES, k1, BLOCK_FRAMES):
            b1 = min(n_stft, b0 + BLOCK_FRAMES)
            parts.append(self.block(b0, b1, n_fft, hop)[max(k0, b0) - b0:min(k1, b1) - b0])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


#: The noise spectra of the blocks (:func:`_noise_frames`), kept for the encoder's
#: applications (:class:`ApplyMemo`): they depend on the block only, the same for every decode
#: of one input.  At most KEEP_BLOCKS of them (the latest input's).
_NOISE_LOCK = threading.Lock()
_NOISE: dict[tuple[int, int, int, int], np.ndarray] = {}


def _kept_noise_frames(k0: int, k1: int, n_fft: int, hop: int) -> np.ndarray:
    """:func:`_noise_frames`, kept (read-only) for the next applications."""
    key = (k0, k1, n_fft, hop)
    with _NOISE_LOCK:
        got = _NOISE.get(key)
    if got is None:
        got = _noise_frames(k0, k1, n_fft, hop)
        got.setflags(write=False)
        with _NOISE_LOCK:
            if len(_NOISE) >= KEEP_BLOCKS:
                _NOISE.clear()
            _NOISE[key] = got
    return got


def forget_noise() -> None:
    """Drop the noise spectra kept for the encoder's applications (at the end of an encode)."""
    with _NOISE_LOCK:
        _NOISE.clear()


def apply(audio: np.ndarray, sr: int, env: Envelope, sr_original: int,
          tempo: float = 1.0, memo: ApplyMemo | None = None) -> np.ndarray:
    """``audio`` (the decode, float32 ``(n,)`` or ``(n, 2)`` at ``sr`` Hz) with the residual:
    shaped noise where the decode lacks energy, attenuation where it has too much.

    The grid follows a tempo change (``tempo`` > 1: frames ``period_s / tempo`` long); band
    edges are those of the original (``sr_original``), so bands above ``sr / 2`` are dropped.
    Stereo: the cells are measured on the downmix ``(left + right) / 2``; both channels get
    the same gains and the same noise (the noise sits in the centre).  Works BLOCK_FRAMES
    STFT frames at a time: besides the input, memory holds the output and one block.
    ``memo``: an :class:`ApplyMemo` of ``audio`` (the very array; a short mono decode), whose
    spectra and band power are then made once for all the envelopes applied to it.
    """
    audio = np.asarray(audio, np.float32)
    if not np.any(env.mask) or audio.shape[0] == 0:
        return audio
    n = audio.shape[0]
    plan = _Plan(env, sr, sr_original, n, tempo)
    n_fft, hop = plan.n_fft, plan.hop
    n_stft = len(plan.frames)
    mono = audio if audio.ndim == 1 else audio.mean(axis=1)
    blocks = [(k0, min(k0 + BLOCK_FRAMES, n_stft)) for k0 in range(0, n_stft, BLOCK_FRAMES)]
    # a short mono decode keeps its spectra for pass 2 (no second FFT)
    short = audio.ndim == 1 and len(blocks) <= KEEP_BLOCKS
    # the latest output is kept for a mono decode of any length (the spectra only when short)
    renders = memo if audio.ndim == 1 and memo is not None and memo.audio is audio else None
    memo = renders if short else None
    kept: list[np.ndarray] | None = [] if short else None
    done = None
    if renders is not None:  # the same envelope applied again: the same output
        done = (sr, int(sr_original), float(tempo), env.n_bands, env.n_frames,
                float(env.period_s), float(env.step_db), np.asarray(env.mask, bool).tobytes(),
                np.where(env.mask, env.levels, 0).astype(np.int64).tobytes())
        if renders.rendered is not None and renders.rendered[0] == done:
            return renders.rendered[1]
        renders.rendered = None  # (freed before the new output is made: no more memory)
    # pass 1: the decode's mean power per cell
    power_key = (env.n_bands, int(sr_original))
    known = memo.power.get(power_key) if memo is not None else None
    fresh = known is None
    onehot = plan.band_mean(env.n_bands)
    per_frame = np.empty((n_stft, env.n_bands), np.float32) if known is None else known

    def measure(block: tuple[int, int]) -> np.ndarray:
        k0, k1 = block
        spec = (memo.block(k0, k1, n_fft, hop) if memo is not None
                else np.fft.rfft(_frames(mono, k0, k1, n_fft, hop), axis=1))
        if fresh:
            per_frame[k0:k1] = (spec.real ** 2 + spec.imag ** 2) @ onehot
        return spec if kept is not None else _NOTHING

    # (an encoder's blocks on parallel threads)
    _blockwise(measure, blocks, kept.append if kept is not None else _ignore,
               renders is not None and fresh)
    if memo is not None and fresh:
        per_frame.setflags(write=False)
        memo.power[power_key] = per_frame
    gain_cell, amp_cell = _cell_gains(env, _cell_means(per_frame, plan.frames, env.n_frames))
    if gain_cell is None and amp_cell is None:
        return audio
    bins = np.where(plan.bins >= 0, plan.bins, env.n_bands)  # a spare row: above the top band
    channels = [mono] if audio.ndim == 1 else [audio[:, ch] for ch in range(audio.shape[1])]
    outs = [np.zeros(n, np.float32) for _ in channels]
    # pass 2: gains and noise, block by block

    def synthesize(j: int) -> tuple[int, list[np.ndarray]]:
        k0, k1 = blocks[j]
        cells = plan.frames[k0:k1]
        gain = gain_cell[:, cells][bins].T if gain_cell is not None else None
        add = None
        if amp_cell is not None:
            noise = (_kept_noise_frames if memo is not None else _noise_frames)(k0, k1, n_fft,
                                                                                 hop)
            add = noise * amp_cell[:, cells][bins].T
        samples = []
        for x in channels:
            spec = kept[j] if kept is not None else np.fft.rfft(_frames(x, k0, k1, n_fft, hop),
                                                                axis=1)
            if memo is not None:  # the memo's, read-only: changed in a copy
                spec = spec.copy()
            if gain is not None:
                spec *= gain
            if add is not None:
                spec += add
            samples.append(_block_samples(spec, n_fft, hop))
        return (k0 - 1) * hop, samples

    def place(block: tuple[int, list[np.ndarray]]) -> None:
        for out, buf in zip(outs, block[1]):  # in order: the same sums
            _add_at(out, buf, block[0])

    # (an encoder's blocks on parallel threads)
    _blockwise(synthesize, range(len(blocks)), place, renders is not None)
    if renders is not None and done is not None:
        outs[0].setflags(write=False)  # (shared with the next caller of this envelope)
        renders.rendered = (done, outs[0])
    return outs[0] if audio.ndim == 1 else np.stack(outs, axis=1)


_NOTHING = np.empty(0, np.float32)


def _ignore(_: object) -> None:
    pass


def _segments(blocks: Iterator[np.ndarray], n: int, hop: int,
              bounds: list[tuple[int, int]]) -> Iterator[np.ndarray]:
    """For each STFT block ``(k0, k1)`` of ``bounds`` (in order), the samples
    ``(k0 - 1) * hop .. (k1 + 1) * hop`` of the signal that ``blocks`` hand out in order
    (``n`` samples in all; zeros beyond its ends), as :func:`_frames` cuts them."""
    buf: np.ndarray | None = None
    at = 0  # absolute index of buf[0]
    for k0, k1 in bounds:
        start, stop = (k0 - 1) * hop, (k1 + 1) * hop
        have = 0 if buf is None else buf.shape[0]
        more = []
        while at + have < min(stop, n):
            more.append(np.asarray(next(blocks), np.float32))
            have += more[-1].shape[0]
        if more:
            buf = np.concatenate(([buf] if buf is not None else []) + more)
        assert buf is not None
        seg = np.zeros((stop - start,) + buf.shape[1:], np.float32)
        lo, hi = max(start, 0), min(stop, n)
        if hi > lo:
            seg[lo - start:hi - start] = buf[lo - at:hi - at]
        keep_from = max(0, k1 * hop - hop)  # the next block starts there
        if keep_from > at:
            buf, at = buf[keep_from - at:], keep_from
        yield seg


def _windowed(seg: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """The windowed STFT frames of a mono segment of :func:`_segments` (as :func:`_frames`)."""
    frames = _rows(seg, seg.shape[0] // hop - 2, n_fft, hop)  # k0 .. k1 - 1
    win = _window(n_fft)
    return frames * (win / np.float32(win.sum()))


def apply_stream(read: Callable[[], Iterator[np.ndarray]], n: int, sr: int, env: Envelope,
                 sr_original: int, tempo: float = 1.0) -> Iterator[np.ndarray]:
    """:func:`apply` block by block, the same numbers: ``read()`` hands out the decode
    (float32 ``(m,)`` or ``(m, 2)`` blocks adding up to ``n`` samples at ``sr`` Hz) and is
    called twice (pass 1 measures the decode's power per cell, pass 2 adds the noise and
    gains); yields the output in blocks of BLOCK_FRAMES STFT hops.  Memory: the per-frame
    band powers (``n / hop x n_bands`` float32) and a few blocks, whatever ``n``."""
    if not np.any(env.mask) or n == 0:
        yield from read()
        return
    plan = _Plan(env, sr, sr_original, n, tempo)
    bounds = plan.blocks()
    onehot = plan.band_mean(env.n_bands)
    per_frame = np.empty((len(plan.frames), env.n_bands), np.float32)
    for (k0, k1), seg in zip(bounds, _segments(read(), n, plan.hop, bounds)):
        per_frame[k0:k1] = _band_power(seg, plan, onehot)
    gain_cell, amp_cell = _cell_gains(env, _cell_means(per_frame, plan.frames, env.n_frames))
    if gain_cell is None and amp_cell is None:
        yield from read()
        return

    def cells(k0: int, k1: int) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
        return gain_cell, amp_cell, plan.frames[k0:k1]

    yield from _synthesize(_segments(read(), n, plan.hop, bounds), plan, bounds, cells)


def apply_stream_once(blocks: Iterator[np.ndarray], n: int, sr: int,
                      env: "Envelope | SegmentedEnvelope",
                      sr_original: int, tempo: float = 1.0,
                      block_frames: int | None = None) -> Iterator[np.ndarray]:
    """:func:`apply_stream` in one pass over ``blocks`` (the decode, ``n`` samples): a block's
    cells are measured on it and the next block (a cell is a few STFT frames), so the first
    output comes after two blocks and the decode is read once.  ``block_frames``: STFT frames
    per block (default BLOCK_FRAMES, ~24 s at 44.1 kHz; fewer: the first output sooner, the
    noise another draw).  With the default, the same numbers as :func:`apply_stream`, except
    for an envelope that changes no cell at all (then the output is the decode through the
    STFT unchanged: a round-off apart)."""
    if not env.any_coded or n == 0:
        yield from blocks
        return
    plan = _Plan(env, sr, sr_original, n, tempo)
    bounds = plan.blocks(block_frames)
    onehot = plan.band_mean(env.n_bands)
    per_frame = np.empty((len(plan.frames), env.n_bands), np.float32)
    measured: list[np.ndarray] = []  # segments measured, not yet synthesized
    source = _segments(iter(blocks), n, plan.hop, bounds)
    # blocks measured ahead: enough for the longest cell (a slowed-down decode's cells are
    # longer) to be measured whole before its first block is synthesized
    longest = int(np.bincount(plan.frames).max())
    depth = 1 + max(1, -(-(longest - 1) // max(1, bounds[0][1] - bounds[0][0])))

    def ahead() -> Iterator[np.ndarray]:
        for j, (k0, k1) in enumerate(bounds):
            while len(measured) < depth and j + len(measured) < len(bounds):
                q0, q1 = bounds[j + len(measured)]
                seg = next(source)
                per_frame[q0:q1] = _band_power(seg, plan, onehot)
                measured.append(seg)
            yield measured.pop(0)

    def cells(k0: int, k1: int) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
        c0, c1 = int(plan.frames[k0]), int(plan.frames[k1 - 1]) + 1
        f0, f1 = np.searchsorted(plan.frames, [c0, c1])  # every frame of those cells
        sub = env.window(c0, c1)
        gain, amp = _cell_gains(sub, _cell_means(per_frame[f0:f1], plan.frames[f0:f1] - c0,
                                                 c1 - c0))
        return gain, amp, plan.frames[k0:k1] - c0

    yield from _synthesize(ahead(), plan, bounds, cells)


def _band_power(seg: np.ndarray, plan: "_Plan", onehot: np.ndarray) -> np.ndarray:
    """``(k1 - k0, n_bands)`` mean power per band of the STFT frames of a segment of
    :func:`_segments` (stereo: of its downmix)."""
    mono = seg if seg.ndim == 1 else seg.mean(axis=1)
    spec = np.fft.rfft(_windowed(mono, plan.n_fft, plan.hop), axis=1)
    return (spec.real ** 2 + spec.imag ** 2) @ onehot


def _synthesize(segs: Iterator[np.ndarray], plan: "_Plan", bounds: list[tuple[int, int]],
                cells: Callable[[int, int], tuple[np.ndarray | None, np.ndarray | None,
                                                  np.ndarray]]) -> Iterator[np.ndarray]:
    """The output of the STFT blocks ``bounds`` from their segments ``segs``: each block's
    spectra times the gains and plus the noise of its cells (``cells(k0, k1)``: the gain and
    noise rows of :func:`_cell_gains` and each frame's column in them), overlap-added; the
    finished samples are yielded as soon as no later block reaches them."""
    n, n_fft, hop = plan.n, plan.n_fft, plan.hop
    n_stft = len(plan.frames)
    bins = np.where(plan.bins >= 0, plan.bins, -1)  # -1: the spare last row, above the top band
    carry: np.ndarray | None = None
    done = 0  # output samples handed out
    for (k0, k1), seg in zip(bounds, segs):
        gain_cell, amp_cell, cols = cells(k0, k1)
        gain = gain_cell[:, cols][bins].T if gain_cell is not None else None
        add = (_noise_frames(k0, k1, n_fft, hop) * amp_cell[:, cols][bins].T
               if amp_cell is not None else None)
        chans = [seg] if seg.ndim == 1 else [seg[:, c] for c in range(seg.shape[1])]
        outs = []
        for x in chans:
            spec = np.fft.rfft(_windowed(np.ascontiguousarray(x), n_fft, hop), axis=1)
            if gain is not None:
                spec *= gain
            if add is not None:
                spec += add
            buf = np.zeros(seg.shape[0], np.float32)  # samples (k0 - 1) * hop ..
            _overlap_add(buf, spec, 1, n_fft, hop)
            outs.append(buf)
        y = outs[0] if seg.ndim == 1 else np.stack(outs, axis=1)
        if carry is not None:
            y[:carry.shape[0]] += carry
        start, nxt = (k0 - 1) * hop, (k1 - 1) * hop  # the next block adds from nxt on
        final = min(n, nxt) if k1 < n_stft else n
        if final > done:
            yield y[done - start:final - start]
            done = final
        carry = y[nxt - start:] if k1 < n_stft else None


def _cell_means(per_frame: np.ndarray, frames: np.ndarray, n_frames: int) -> np.ndarray:
    """``(n_bands, n_frames)`` means of ``per_frame`` ``(n_stft, n_bands)`` over each grid
    frame's STFT frames (``frames`` non-decreasing); 0 for a frame with none."""
    counts = np.bincount(frames, minlength=n_frames)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    cell = np.zeros((n_frames, per_frame.shape[1]), np.float64)
    have = counts > 0
    cell[have] = np.add.reduceat(per_frame.astype(np.float64), starts[have], axis=0)
    return (cell / np.maximum(counts, 1)[:, None]).T


def _cell_gains(env: Envelope, dec: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(linear gain, noise magnitude per bin) per cell, each ``(n_bands + 1, n_frames)``
    float32 with a last row for the bins above the top band (gain 1, no noise); None when no
    cell is cut, or none is filled."""
    noise, gain_db = cell_actions(env, dec)
    gain = amp = None
    if np.any(gain_db < 0):
        gain = np.vstack([10.0 ** (gain_db / 20.0), np.ones((1, env.n_frames))]).astype(np.float32)
    if np.any(noise > 0):
        amp = np.vstack([np.sqrt(noise), np.zeros((1, env.n_frames))]).astype(np.float32)
    return gain, amp


# ------------------------------------------------------------------------------------------
# analysis (encoder)
# ------------------------------------------------------------------------------------------


def _judge(x: np.ndarray, y: np.ndarray, sr: int, shared: bool = False) -> "Judge":
    """The encoder's judge of original ``x`` and decode ``y`` (imported here: the decoder
    never needs it, nor librosa); ``shared``: that of a whole input (Judge)."""
    from semcodec.residual_judge import Judge  # noqa: PLC0415

    return Judge(x, y, sr, shared=shared)


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
    #: the decode's band power (dB, ``(n_bands, n_frames)``) on the grid and the cells where
    #: cuts are eased (bool, same shape): given, the envelope's cuts are eased there
    #: (:func:`eased_cuts`)
    decoded_db: np.ndarray | None = None
    eased: np.ndarray | None = None

    def envelope(self, mask: np.ndarray) -> Envelope:
        levels, mask = np.where(mask, self.levels, 0), mask.copy()
        if self.decoded_db is not None and self.eased is not None:
            levels, mask = eased_cuts(levels, mask, self.decoded_db, self.step_db,
                                      where=self.eased)
        return Envelope(levels=levels, mask=mask, period_s=self.period_s, step_db=self.step_db)


#: Most a band's attenuation changes (dB) from one grid frame to the next where a score note
#: sounds (:func:`held_cells`): there a cut eases in and out over frames (:func:`eased_cuts`).
#: A band's gain jumping back up by 10-60 dB at a frame edge is a sudden rise of what sounds
#: there, which a transcriber hears as a note starting (a held note heard again, or a note
#: heard late where its attack's cut ends).  Bench round-trip note F1 (mel distance), cuts
#: as measured -> eased (2026-11-30): strings ensemble 0.300 -> 0.332 (0.300 -> 0.306), trio
#: 0.610 -> 0.636 (0.276 -> 0.277), winds 0.621 -> 0.627 (0.240 -> 0.244), violin 0.516 ->
#: 0.532 (0.223 -> 0.230); eased everywhere, not only under the notes: about as many notes,
#: mel +0.005 more on the violin; at 3 dB a frame: mel +0.01 more.
MAX_CUT_STEP_DB = 6.0


def eased_cuts(levels: np.ndarray, mask: np.ndarray, decoded_db: np.ndarray, step_db: float,
               max_step_db: float = MAX_CUT_STEP_DB,
               where: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(levels, mask) of a coded envelope whose cuts change by at most ``max_step_db`` dB from a
    frame to the next in each band: a cut is made shallower (never deeper), down to none (the
    cell then leaves the mask), where a neighbouring frame is cut less.  Cells that add noise
    are kept as they are.  ``levels`` int and ``mask`` bool ``(n_bands, n_frames)`` as in
    :class:`Envelope`; ``decoded_db``: the decode's band power in dB on the same grid (what
    :func:`cell_actions` compares the levels with); ``where`` (bool, same shape): only the
    cuts of these cells are eased (default: all)."""
    ratio = np.where(mask, levels * step_db - decoded_db, 0.0)
    cut = mask & (ratio < -step_db)
    if not np.any(cut):
        return levels, mask
    gain = np.where(cut, np.maximum(ratio, -MAX_CUT_DB), 0.0)
    eased = gain.copy()
    n_frames = gain.shape[1]
    for k in range(1, min(n_frames, int(math.ceil(MAX_CUT_DB / max_step_db)) + 1)):
        # the frame k before or after, less k steps: each frame at most max_step_db deeper
        np.maximum(eased[:, k:], gain[:, :-k] - k * max_step_db, out=eased[:, k:])
        np.maximum(eased[:, :-k], gain[:, k:] - k * max_step_db, out=eased[:, :-k])
    changed = cut & (eased > gain)
    if where is not None:
        changed &= where
    if not np.any(changed):
        return levels, mask
    levels = levels.copy()
    mask = mask.copy()
    levels[changed] = np.round((decoded_db[changed] + eased[changed]) / step_db).astype(levels.dtype)
    # a cut eased to less than a step is no cut: the decoder would leave the cell alone
    gone = changed & (levels * step_db - decoded_db >= -step_db)
    mask[gone] = False
    levels[gone] = 0
    return levels, mask


def _mono(audio: np.ndarray) -> np.ndarray:
    a = np.asarray(audio, np.float32)
    return a if a.ndim == 1 else a.mean(axis=1)


#: Harmonics of a score note whose bands :func:`protected_cells` keeps free of added noise.
PROTECTED_HARMONICS = (1, 2)


def protected_cells(notes, n_bands: int, sr: int, period_s: float,
                    n_frames: int) -> np.ndarray:
    """bool ``(n_bands, n_frames)``: the cells where noise would cover a score note, so that
    the residual adds none there: the bands of each note's PROTECTED_HARMONICS from the frame
    before its onset (its attack must stand out) to the frame of its offset.  ``notes``:
    ``(onset s, offset s, f0 Hz)`` triples; band edges as :func:`band_edges` for ``sr``."""
    out = np.zeros((n_bands, n_frames), bool)
    edges = band_edges(n_bands, sr)
    for onset, offset, f0 in notes:
        _mark_harmonics(out, edges, f0, PROTECTED_HARMONICS, max(0, int(onset / period_s) - 1),
                        min(n_frames - 1, int(max(offset, onset) / period_s)))
    return out


def _mark_harmonics(out: np.ndarray, edges: np.ndarray, f0: float, harmonics, t0: int,
                    t1: int) -> None:
    """Set ``out[band, t0:t1 + 1]`` for the band of each of ``harmonics`` × ``f0`` Hz below
    the top edge (none when ``t0 > t1``)."""
    if t0 > t1:
        return
    for h in harmonics:
        f = f0 * h
        if 0 < f < edges[-1]:
            out[int(np.searchsorted(edges, f, side="right")) - 1, t0:t1 + 1] = True


#: Harmonics of a score note whose bands :func:`attack_cells` keeps free of the residual ...
ATTACK_HARMONICS = (1, 2, 3, 4)
#: ... from this long (s) before its onset (the onset alignment after the residual may lead the
#: note by that much more) ...
ATTACK_BEFORE_S = 0.05
#: ... to this long (s) after it.
ATTACK_S = 0.1


def attack_cells(notes, n_bands: int, sr: int, period_s: float, n_frames: int) -> np.ndarray:
    """bool ``(n_bands, n_frames)``: the cells of the score notes' attacks, where the residual
    neither attenuates nor adds noise: the bands of each note's ATTACK_HARMONICS in the frames
    from ATTACK_BEFORE_S before its onset to ATTACK_S after it.  A cut there weakens the rise a
    transcriber hears a note start by, noise blurs it; either delays the note (bench: the solo
    Slakh guitar's onsets heard 60-150 ms late, each a missed note and an extra one).
    ``notes``: ``(onset s, offset s, f0 Hz)``; band edges as :func:`band_edges` for ``sr``."""
    out = np.zeros((n_bands, n_frames), bool)
    edges = band_edges(n_bands, sr)
    for onset, _, f0 in notes:
        _mark_harmonics(out, edges, f0, ATTACK_HARMONICS,
                        max(0, int((onset - ATTACK_BEFORE_S) / period_s)),
                        min(n_frames - 1, int((onset + ATTACK_S) / period_s)))
    return out


#: Cuts shallower than this many quantizer steps are not coded in the band of a score note's
#: fundamental while it sounds: following the original's slow level changes there (a bowed or
#: blown note's swell, its vibrato) they switch a few dB on and off every few frames, and each
#: rise is heard as the note starting again (bench trio: a held violin note heard 4 more times,
#: 250 ms apart, under cuts of 6 dB on and off).  Round-trip note F1 with the residual of fixed
#: decodes, eased cuts -> these left out too (2026-11-30): trio 0.636 -> 0.675, Slakh guitar
#: 0.564 -> 0.579, winds 0.620 -> 0.631, brass 0.562 -> 0.553, strings 0.327 -> 0.315, violin
#: 0.520 -> 0.504, flute 0.794 -> 0.793, honky-tonk piano 0.887 -> 0.875; mel +0.000..+0.004.
#: Whole encodes, the bench's figures: BENCHMARKS History 2026-11-30 16:15.
SHALLOW_CUT_STEPS = 2.5
#: Harmonics of a score note in whose bands :func:`held_cells` eases the residual's cuts ...
HELD_HARMONICS = tuple(range(1, 9))
#: ... from this long (s) before its onset to this long after its offset.
HELD_MARGIN_S = 0.05


def held_cells(notes, n_bands: int, sr: int, period_s: float, n_frames: int,
               harmonics: Sequence[float] = HELD_HARMONICS) -> np.ndarray:
    """bool ``(n_bands, n_frames)``: the cells where a score note sounds, where the residual's
    cuts are eased (:func:`eased_cuts`; a cut's sudden end there is heard as the note starting
    again or late): the bands of each note's ``harmonics`` from HELD_MARGIN_S before its
    onset to HELD_MARGIN_S after its offset.  ``notes``: ``(onset s, offset s, f0 Hz)``; band
    edges as :func:`band_edges` for ``sr``."""
    out = np.zeros((n_bands, n_frames), bool)
    edges = band_edges(n_bands, sr)
    for onset, offset, f0 in notes:
        _mark_harmonics(out, edges, f0, harmonics,
                        max(0, int((onset - HELD_MARGIN_S) / period_s)),
                        min(n_frames - 1, int((max(offset, onset) + HELD_MARGIN_S) / period_s)))
    return out


#: Passes of :func:`analyse` at most.  Measured (the coder's payload at the stored file's
#: budget, judged as the decoder plays it): 4 -> 2 passes changed the mel distance lowered
#: by at most 0.0001 (S07 0.08075 -> 0.08074, S05 0.14810 -> 0.14812, vocadito 0.33282 ->
#: 0.33285, 5-min solo 0.18036 -> 0.18047, 5-min mix 0.25372 both) and took the 5-min
#: solo's residual ~3 s less.
ANALYSIS_PASSES = 2


def analyse(original: np.ndarray, decoded: np.ndarray, sr: int, *,
            n_bands: int = DEFAULT_BANDS, period_s: float = DEFAULT_PERIOD_S,
            step_db: float = DEFAULT_STEP_DB, passes: int | None = None,
            judge: "Judge | None" = None, notes=(),
            stop: Callable[[], bool] | None = None, start: int = 0,
            memo: ApplyMemo | None = None, held_notes=None,
            powers: BandPowers | None = None) -> Analysis:
    """Measure the residual of ``decoded`` against ``original`` (mono or stereo float32 at
    ``sr`` Hz, same length; stereo is measured on the downmix).

    Analysis by synthesis: the decode is rendered with the levels of every cell exactly as
    :func:`apply` renders it (same noise), and a cell's benefit is how much that lowers the
    benchmark's multi-resolution log-mel distance to the original within the cell
    (:class:`semcodec.residual_judge.Judge`).  Each further pass (up to ``passes``) renders with
    the cells that helped only and drops those that no longer do, so that a cell's neighbours
    are as they will be (default ANALYSIS_PASSES).  ``notes`` (``(onset s, offset s, f0 Hz)``,
    the score's): no cell that would add noise over them (:func:`protected_cells`) is coded,
    nor one that would attenuate or fill their attacks (:func:`attack_cells`); attenuation
    elsewhere over them still is, eased in and out (:func:`held_cells`, :func:`eased_cuts`;
    rendered so in the passes too).
    ``held_notes``: the notes whose cuts are eased (default ``notes``; a sung line's are not:
    its spectral envelope moves with the vowels, and easing blurred it).
    ``stop()`` true before a pass: no more passes (the work is no longer wanted).
    ``start``: where ``original`` begins in a longer input (samples, a multiple of the
    analysis hop; :mod:`semcodec.residual_spans`): STFT frames fall into grid frames as they
    do in the whole input's analysis (and the decoder's).  ``memo``: an :class:`ApplyMemo`
    of ``decoded`` (mono, the same length as ``original``) for its applications (and its
    band power).  ``powers``: a :class:`BandPowers` of ``original`` (mono; the analyses of
    other grids share it).
    """
    x, y = _mono(original), _mono(decoded)
    n = min(len(x), len(y))
    # (the arrays themselves when whole: ``memo``'s and ``powers``')
    x, y = (x if x.shape[0] == n else x[:n]), (y if y.shape[0] == n else y[:n])
    n_frames = n_grid_frames(n / sr, period_s)
    shell = Envelope(levels=np.zeros((n_bands, n_frames), np.int64),
                     mask=np.ones((n_bands, n_frames), bool), period_s=period_s, step_db=step_db)
    plan = _Plan(shell, sr, sr, n, 1.0)
    if start:  # the whole input's STFT frame -> grid frame mapping
        plan.frames = _frame_of(len(plan.frames), plan.hop, sr, period_s, n_frames, start)
    px = (powers.cells if powers is not None and powers.audio is x
          else functools.partial(band_power, x))(plan.n_fft, plan.hop, plan.bins, plan.frames,
                                                 n_bands, n_frames)
    lo, hi = resd.level_range(step_db)
    db = 10.0 * np.log10(np.maximum(px, 1e-30))
    levels = np.clip(np.round(db / step_db), lo, hi).astype(np.int64)
    judge = judge or _judge(x, y, sr)
    edges = band_edges(n_bands, sr)
    mask = np.ones((n_bands, n_frames), bool)
    py = (memo.powers.cells if memo is not None and memo.audio is y
          else functools.partial(band_power, y))(plan.n_fft, plan.hop, plan.bins, plan.frames,
                                                 n_bands, n_frames)
    ydb = 10.0 * np.log10(np.maximum(py, 1e-30))
    held_notes = notes if held_notes is None else held_notes
    held = held_cells(held_notes, n_bands, sr, period_s, n_frames)
    if len(notes):
        fills = levels * step_db > ydb + step_db
        mask &= ~(fills & protected_cells(notes, n_bands, sr, period_s, n_frames))
        cuts = levels * step_db < ydb - step_db
        mask &= ~((fills | cuts) & attack_cells(notes, n_bands, sr, period_s, n_frames))
        shallow = cuts & (levels * step_db >= ydb - SHALLOW_CUT_STEPS * step_db)
        mask &= ~(shallow & held_cells(held_notes, n_bands, sr, period_s, n_frames, (1,)))
    benefit = np.zeros((n_bands, n_frames))
    for k in range(max(1, ANALYSIS_PASSES if passes is None else passes)):
        if k and stop is not None and stop():
            break
        # rendered as it will be coded: its cuts eased (the cells' benefits measured so)
        lv, ms = eased_cuts(levels, mask, ydb, step_db, where=held)
        env = Envelope(levels=lv, mask=ms, period_s=period_s, step_db=step_db)
        benefit = judge.benefit(apply(y, sr, env, sr, memo=memo), edges, period_s, n_frames)
        keep = mask & (benefit > 0)
        if np.array_equal(keep, mask):
            break
        mask = keep
        if not np.any(mask):
            break
    return Analysis(levels=levels, benefit=np.where(mask, benefit, 0.0), period_s=period_s,
                    step_db=step_db, decoded_db=ydb, eased=held)


# ------------------------------------------------------------------------------------------
# coding
# ------------------------------------------------------------------------------------------


#: About this long (s), each segment of a segmented payload; a grid of at most one segment
#: is written whole (the RESD layout, as before format 1.7).
SEGMENT_S = 60.0


def segment_frames(period_s: float) -> int:
    """Grid frames per segment of a segmented payload with frames of ``period_s`` s."""
    return max(1, min(resd.MAX_SEGMENT_FRAMES, int(round(SEGMENT_S / period_s))))


def encode_envelope(env: Envelope) -> bytes:
    """The residual payload of ``env``: the whole-grid layout (:func:`semcodec.resd.encode`,
    chunk RESD) when it spans at most one segment of about SEGMENT_S seconds, else the
    segmented one (:func:`semcodec.resd.encode_segmented`, chunk RESS), whose segments a
    player decodes as it reaches them."""
    levels = np.where(env.mask, env.levels, 0).astype(np.int64)
    grid = resd.Grid(env.n_bands, env.period_s, env.step_db, levels.tolist(),
                     env.mask.astype(bool).tolist())
    seg = segment_frames(env.period_s)
    if env.n_frames > seg:
        return resd.encode_segmented(grid, seg)
    return resd.encode(grid)


def stream_envelope(payload: bytes, duration_s: float) -> "Envelope | SegmentedEnvelope":
    """The envelope of a residual payload for :func:`apply_stream_once`: a
    :class:`SegmentedEnvelope` (segments decoded when reached) for the segmented layout,
    else :func:`decode_envelope` (ContainerError if invalid)."""
    if resd.is_segmented(payload):
        return SegmentedEnvelope(payload, duration_s)
    return decode_envelope(payload, duration_s)


def decode_envelope(payload: bytes, duration_s: float) -> Envelope:
    """Parse a residual payload (either layout) for a clip of ``duration_s`` seconds
    (ContainerError if invalid)."""
    g = resd.decode(payload, duration_s)
    return Envelope(levels=np.asarray(g.levels, np.int64).reshape(g.n_bands, -1),
                    mask=np.asarray(g.mask, bool).reshape(g.n_bands, -1),
                    period_s=g.period_s, step_db=g.step_db)


#: Grids the encoder tries, finest first: (bands, frame period s).  With the 3 dB step, the
#: one whose cells within the byte budget lower the distance most is kept.
GRIDS = ((DEFAULT_BANDS, 0.05), (DEFAULT_BANDS, DEFAULT_PERIOD_S), (DEFAULT_BANDS, 0.2),
         (12, 0.4))


def _within(a: Analysis, max_bytes: int | None) -> tuple[bytes, bool]:
    """(payload, complete) of the most beneficial cells of ``a`` whose payload fits
    ``max_bytes`` (b"" when none fits); ``complete``: every cell that helps is in it."""
    mask = a.benefit > 0
    if not np.any(mask):
        return b"", True
    data = encode_envelope(a.envelope(mask))
    if max_bytes is None or len(data) <= max_bytes:
        return data, True
    order = np.argsort(-a.benefit, axis=None)
    k_lo, k_hi = 0, int(mask.sum())  # k_lo cells fit, k_hi do not
    best = b""
    while k_hi - k_lo > max(1, k_hi // 50):
        k = (k_lo + k_hi) // 2
        m = np.zeros(a.benefit.size, bool)
        m[order[:k]] = True
        trial = encode_envelope(a.envelope(m.reshape(a.benefit.shape)))
        if len(trial) <= max_bytes:
            k_lo, best = k, trial
        else:
            k_hi = k
    return best, False


#: A note heard in the decode with the residual is one the score plays when a score note of
#: its pitch starts at most this far (s) from it (the decode's lag included).
HEARD_TOLERANCE_S = 0.1
#: The bands of these multiples of a note heard that the score does not play lose their noise
#: (the octave below: noise there makes a transcriber hear a bass under a chord) ...
HEARD_HARMONICS = (0.5, 1.0, 2.0)
#: ... from this long (s) before its onset to a frame after its offset.
HEARD_BEFORE_S = 0.15


def heard_noise_cells(heard, notes, env: Envelope, decoded_power: np.ndarray,
                      sr: int) -> np.ndarray:
    """bool ``(n_bands, n_frames)``: the cells where ``env`` adds noise (``decoded_power``:
    the decode's band power on its grid) and a transcriber hears a note that the score does
    not play: in the bands of HEARD_HARMONICS of each such note, from HEARD_BEFORE_S before its
    onset to a frame after its offset.  ``heard``: the notes transcribed from the decode with
    the residual (objects with ``onset``, ``offset`` s and MIDI ``pitch``); ``notes``: the
    score's ``(onset s, offset s, f0 Hz)``; band edges as :func:`band_edges` for ``sr``."""
    played: dict[int, list[float]] = {}
    for onset, _, f0 in notes:
        if f0 > 0:
            played.setdefault(int(round(69 + 12 * math.log2(f0 / 440.0))), []).append(onset)
    noise, _ = cell_actions(env, decoded_power)
    adds = noise > 0
    edges = band_edges(env.n_bands, sr)
    out = np.zeros(env.mask.shape, bool)
    for h in heard:
        if any(abs(o - h.onset) <= HEARD_TOLERANCE_S for o in played.get(int(h.pitch), ())):
            continue
        f0 = 440.0 * 2.0 ** ((h.pitch - 69) / 12.0)
        t0 = max(0, int((h.onset - HEARD_BEFORE_S) / env.period_s))
        t1 = min(env.n_frames - 1, int(max(h.offset, h.onset) / env.period_s) + 1)
        if t0 > t1:
            continue
        for m in HEARD_HARMONICS:
            f = f0 * m
            if 0 < f < edges[-1]:
                b = int(np.searchsorted(edges, f, side="right")) - 1
                out[b, t0:t1 + 1] |= adds[b, t0:t1 + 1]
    return out


class ResidualCoder:
    """Codes the residual of one decode within byte budgets, and measures what a payload buys.

    ``original`` and ``decoded`` (what the decoder plays without the residual): float32 ``(n,)``
    or ``(n, 2)`` at ``sr`` Hz, the same length (stereo is measured on the downmix).  The
    analyses are made once per grid and reused by every :meth:`code` call, so a budget
    allocator may ask for several sizes.  Benefits are in units of the benchmark's mel
    distance (``bench/metrics.py``): how much lower the distance to the original is when the
    decoder plays the payload.
    """

    def __init__(self, original: np.ndarray, decoded: np.ndarray, sr: int, *,
                 grids: tuple[tuple[int, float], ...] = GRIDS,
                 step_db: float = DEFAULT_STEP_DB, notes=(),
                 stop: Callable[[], bool] | None = None,
                 hears: Callable[[np.ndarray, int], Sequence] | None = None,
                 held_notes=None) -> None:
        x, y = _mono(original), _mono(decoded)
        self.notes = tuple(notes)
        self.held_notes = None if held_notes is None else tuple(held_notes)
        self.hears = hears
        self.stop = stop
        n = min(len(x), len(y))
        self.x, self.y, self.sr, self.n = x[:n], y[:n], sr, n
        self.grids, self.step_db = tuple(grids), step_db
        self._judge: Judge | None = None
        self._analyses: dict[tuple[int, float], Analysis] = {}
        #: the decode's spectra and band power, made once for all the envelopes applied
        self._memo = ApplyMemo(self.y)
        #: the original's band power, shared by the analyses of the grids
        self._powers = BandPowers(self.x)

    @property
    def judge(self) -> "Judge":
        if self._judge is None:
            self._judge = _judge(self.x, self.y, self.sr, shared=True)
        return self._judge

    def analysis(self, n_bands: int, period_s: float) -> Analysis:
        """The (cached) :func:`analyse` of one grid."""
        key = (n_bands, period_s)
        if key not in self._analyses:
            self._analyses[key] = analyse(self.x, self.y, self.sr, n_bands=n_bands,
                                          period_s=period_s, step_db=self.step_db,
                                          judge=self.judge, notes=self.notes,
                                          stop=self.stop, memo=self._memo,
                                          held_notes=self.held_notes, powers=self._powers)
        return self._analyses[key]

    def _stopped(self) -> bool:
        return self.stop is not None and self.stop()

    def benefit(self, payload: bytes) -> float:
        """How much lower the mel distance to the original is when the decoder plays
        ``payload`` (0 for b"")."""
        if not payload:
            return 0.0
        env = decode_envelope(payload, self.n / self.sr)
        z = apply(self.y, self.sr, env, self.sr, memo=self._memo)
        return float(self.judge.benefit(z, band_edges(env.n_bands, self.sr), env.period_s,
                                        env.n_frames).sum())

    def code(self, max_bytes: int | None = None) -> bytes:
        """The most beneficial payload of at most ``max_bytes`` bytes (None: no limit); b""
        when nothing helps or nothing fits.  Each grid (finest first) keeps its most
        beneficial cells that fit; the grid whose payload, as the decoder plays it, lowers the
        distance most wins (so a small budget gets a coarser grid).  Once a grid fits whole,
        the coarser ones are not tried.  b"" too as soon as ``stop()`` (given to the coder)
        is found true: the caller no longer wants it."""
        if self.n == 0 or (max_bytes is not None and max_bytes < resd.HEAD_BYTES + 4):
            return b""
        best, best_gain = b"", 0.0
        for n_bands, period in self.grids:
            if self._stopped():
                return b""
            a = self.analysis(n_bands, period)
            if self._stopped():
                return b""
            data, complete = _within(a, max_bytes)
            gain = self.benefit(data)
            log.debug("residual grid %d bands x %.2f s: %d bytes, distance lowered by %.4f",
                      n_bands, period, len(data), gain)
            if data and gain > best_gain:
                best, best_gain = data, gain
            if complete:
                break  # all of this grid fits: the coarser grids that follow cannot do better
        if best and self.hears is not None and not self._stopped():
            best = self._unheard(best, max_bytes)
        return best

    def _unheard(self, payload: bytes, max_bytes: int | None) -> bytes:
        """``payload`` coded again without the noise in which the transcriber ``hears`` notes
        that the score does not play (:func:`heard_noise_cells`; one transcription of the
        decode with ``payload``).  The mel distance gives up a little for it (bench: a
        honky-tonk piano's residual made 9 bass notes heard under its chords)."""
        from semcodec.errors import SemcodecError  # noqa: PLC0415

        hears = self.hears
        if hears is None:
            return payload
        env = decode_envelope(payload, self.n / self.sr)
        try:
            heard = hears(apply(self.y, self.sr, env, self.sr, memo=self._memo), self.sr)
        except SemcodecError as exc:  # no transcriber: the payload as it is
            log.info("residual: notes heard not checked (%s)", exc)
            return payload
        except Exception:
            if self._stopped():  # the transcriber gave up: the work is no longer wanted
                return payload
            raise
        plan = _Plan(env, self.sr, self.sr, self.n, 1.0)
        py = self._memo.powers.cells(plan.n_fft, plan.hop, plan.bins, plan.frames, env.n_bands,
                                     env.n_frames)
        bad = heard_noise_cells(heard, self.notes, env, py, self.sr)
        log.debug("residual: %d notes heard, %d cells of noise heard as notes dropped",
                  len(heard), int(bad.sum()))
        if not np.any(bad):
            return payload
        a = self.analysis(env.n_bands, env.period_s)
        data, _ = _within(Analysis(levels=a.levels, benefit=np.where(bad, 0.0, a.benefit),
                                   period_s=a.period_s, step_db=a.step_db,
                                   decoded_db=a.decoded_db, eased=a.eased), max_bytes)
        return data


def encode_residual(original: np.ndarray, decoded: np.ndarray, sr: int,
                    max_bytes: int | None = None, *,
                    grids: tuple[tuple[int, float], ...] = GRIDS,
                    step_db: float = DEFAULT_STEP_DB, notes=(),
                    stop: Callable[[], bool] | None = None,
                    hears: Callable[[np.ndarray, int], Sequence] | None = None,
                    held_notes=None) -> bytes:
    """The RESD payload for ``decoded`` (what the decoder plays without the residual) against
    ``original`` (float32 ``(n,)`` or ``(n, 2)`` at ``sr`` Hz, same length), at most
    ``max_bytes`` long (None: no limit); b"" when nothing helps or nothing fits.
    ``notes``: the score's ``(onset s, offset s, f0 Hz)``, kept free of added noise;
    ``stop()`` true: b"" at the next check (between analysis passes), the work is cancelled.
    ``hears(audio, sr)``: a transcriber (notes with onset, offset s and MIDI pitch); given,
    the noise in which it hears notes the score does not play is left out.
    ``held_notes``: those of ``notes`` whose cuts are eased (:func:`analyse`; default all).
    Shortcut for ``ResidualCoder(original, decoded, sr, notes=notes).code(max_bytes)``.
    """
    return ResidualCoder(original, decoded, sr, grids=grids, step_db=step_db,
                         notes=notes, stop=stop, hears=hears,
                         held_notes=held_notes).code(max_bytes)


def apply_payload(audio: np.ndarray, sr: int, payload: bytes, duration_s: float,
                  sr_original: int, tempo: float = 1.0) -> np.ndarray:
    """:func:`apply` of a RESD payload to a decode (ContainerError if the payload is invalid)."""
    return apply(audio, sr, decode_envelope(payload, duration_s), sr_original, tempo)
