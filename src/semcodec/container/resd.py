"""The ``RESD`` chunk payload (format 1.5): a residual band-energy grid, range-coded.

Standard library only (the container reads and validates it without numpy); the analysis and
the synthesis that use the grid live in :mod:`semcodec.residual`.  Byte layout (docs/FORMAT.md,
"RESD"): ``n_bands`` u8, frame period u8 (10 ms units), quantizer step u8 (0.5 dB units),
flags u8 (0), then a binary range code (the LZMA range coder, 11-bit adaptive probabilities,
the leading zero byte omitted) of every cell's mask bit and, for the cells whose bit is set,
the difference between the cell's level and its prediction.  Cells are visited frame by
frame, bands from low to high.

A grid is ``(n_bands, period_s, step_db, levels, mask)`` with ``levels[b][t]`` an int (the
band's mean power in dB divided by ``step_db``; 0 where the mask is off) and ``mask[b][t]`` a
bool, ``b < n_bands``, ``t < n_frames(duration, period_s)``.
"""

from __future__ import annotations

import math
import threading
from typing import NamedTuple

from semcodec.errors import ContainerError

#: Bounds of the coded parameters (the reader rejects anything else).
MIN_BANDS, MAX_BANDS = 4, 32
MIN_PERIOD_UNITS, MAX_PERIOD_UNITS = 2, 100  # frame period in 10 ms units: 20 ms .. 1 s
MIN_STEP_UNITS, MAX_STEP_UNITS = 1, 24  # quantizer step in 0.5 dB units: 0.5 .. 12 dB
#: Most grid cells a payload may describe (bands x frames; 20 bands of 100 ms over 24 h fit).
MAX_CELLS = 20_000_000
#: Most bytes of a RESD payload.
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
#: Levels lie in this range of dB (mean power per bin of the analysis STFT).
MIN_LEVEL_DB, MAX_LEVEL_DB = -150.0, 90.0
#: Bytes of the parameter head.
HEAD_BYTES = 4

_PROB_BITS = 11
_PROB_INIT = 1 << (_PROB_BITS - 1)
_MOVE_BITS = 5
_TOP = 1 << 24
#: Unary magnitude bits that have their own probability; larger magnitudes escape to an
#: Exp-Golomb code of at most _ESCAPE_MAX_BITS prefix bits at probability 1/2.
_UNARY_MAX = 14
_ESCAPE_MAX_BITS = 24
#: Level predicted for a band's first coded cell when no neighbour is known (dB).
DEFAULT_LEVEL_DB = -60.0


class Grid(NamedTuple):
    """A decoded RESD payload (see the module docstring)."""

    n_bands: int
    period_s: float
    step_db: float
    levels: list[list[int]]
    mask: list[list[bool]]


def n_frames(duration_s: float, period_s: float) -> int:
    """Frames of the grid for a clip of ``duration_s`` seconds: ``ceil(duration / period)``,
    at least 1."""
    return max(1, int(math.ceil(duration_s / period_s - 1e-9)))


def level_range(step_db: float) -> tuple[int, int]:
    """(lowest, highest) level a grid with this step may hold."""
    return math.ceil(MIN_LEVEL_DB / step_db), math.floor(MAX_LEVEL_DB / step_db)


# ------------------------------------------------------------------------------------------
# the range coder
# ------------------------------------------------------------------------------------------


class _Encoder:
    """Binary range encoder (the LZMA range coder: carries propagate through ``cache``)."""

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
    """The matching range decoder; reading past the end raises ContainerError."""

    def __init__(self, data: bytes) -> None:
        self.data = b"\x00" + bytes(data)
        self.pos = 0
        self.range = 0xFFFFFFFF
        self.code = 0
        for _ in range(5):
            self.code = (self.code << 8) | self._byte()

    def _byte(self) -> int:
        if self.pos >= len(self.data):
            raise ContainerError("RESD: the range code ends early (truncated or corrupt)")
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
            raise ContainerError("RESD: the range code does not end where the chunk ends "
                                 "(corrupt)")


def _exp_golomb(enc: _Encoder, value: int) -> None:
    n = (value + 1).bit_length()
    enc.direct(((1 << (n - 1)) - 1) << 1, n)  # n - 1 ones, then a zero
    enc.direct(value + 1 - (1 << (n - 1)), n - 1)


def _exp_golomb_read(dec: _Decoder) -> int:
    n = 1
    while dec.direct(1):
        n += 1
        if n > _ESCAPE_MAX_BITS:
            raise ContainerError("RESD: escape code too long (corrupt)")
    return (1 << (n - 1)) + dec.direct(n - 1) - 1


# ------------------------------------------------------------------------------------------
# the grid
# ------------------------------------------------------------------------------------------

#: Probability slots: 8 mask contexts; per predictor kind a zero flag, a sign and the unary
#: magnitude bits.
_N_MASK_CTX = 8
_N_KINDS = 4
_KIND_SLOTS = 2 + _UNARY_MAX


def _mask_ctx(mask: list[list[bool]], b: int, t: int) -> int:
    """Context of cell (b, t)'s mask bit: the same band's previous frame, the band below in
    this frame, the band above in the previous frame."""
    left = t > 0 and mask[b][t - 1]
    below = b > 0 and mask[b - 1][t]
    above_left = t > 0 and b + 1 < len(mask) and mask[b + 1][t - 1]
    return int(left) | int(below) << 1 | int(above_left) << 2


def _predict(levels: list[list[int]], mask: list[list[bool]], last: list, b: int, t: int,
             default: int) -> tuple[int, int]:
    """(prediction, predictor kind) of the level of coded cell (b, t), from cells coded
    before it: planar (left + below - below-left) when all three are coded (kind 3), else the
    same band's previous frame (0), else the band below in this frame (1), else the band's
    last coded level, else ``default`` (2)."""
    if t > 0 and mask[b][t - 1]:
        if b > 0 and mask[b - 1][t] and mask[b - 1][t - 1]:
            return levels[b][t - 1] + levels[b - 1][t] - levels[b - 1][t - 1], 3
        return levels[b][t - 1], 0
    if b > 0 and mask[b - 1][t]:
        return levels[b - 1][t], 1
    if last[b] is not None:
        return last[b], 2
    return default, 2


def _walk(n_bands: int, frames: int, step_db: float, enc: _Encoder | None,
          dec: _Decoder | None, levels: list[list[int]], mask: list[list[bool]]) -> None:
    """Encode (``enc``) ``levels``/``mask``, or decode (``dec``) into them, cell by cell."""
    lo, hi = level_range(step_db)
    mask_probs = [_PROB_INIT] * _N_MASK_CTX
    probs = [[_PROB_INIT] * _KIND_SLOTS for _ in range(_N_KINDS)]
    last: list = [None] * n_bands
    default = int(round(DEFAULT_LEVEL_DB / step_db))
    for t in range(frames):
        for b in range(n_bands):
            ctx = _mask_ctx(mask, b, t)
            if enc is not None:
                on = mask[b][t]
                enc.bit(mask_probs, ctx, int(on))
            else:
                assert dec is not None  # one of the two is given
                on = bool(dec.bit(mask_probs, ctx))
                mask[b][t] = on
            if not on:
                continue
            pred, kind = _predict(levels, mask, last, b, t, default)
            p = probs[kind]
            if enc is not None:
                r = levels[b][t] - pred
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
                assert dec is not None
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
                levels[b][t] = value
            last[b] = levels[b][t]


def _units(grid_value: float, scale: int, lo: int, hi: int, what: str) -> int:
    units = int(round(grid_value * scale))
    if not lo <= units <= hi or abs(units / scale - grid_value) > 1e-9:
        raise ContainerError(f"RESD: {what} {grid_value} is not a multiple of 1/{scale} in "
                             f"{lo / scale:g}..{hi / scale:g}")
    return units


def encode(grid: Grid) -> bytes:
    """The RESD payload of ``grid`` (ContainerError if a value cannot be stored)."""
    if not MIN_BANDS <= grid.n_bands <= MAX_BANDS:
        raise ContainerError(f"RESD: {grid.n_bands} bands outside {MIN_BANDS}..{MAX_BANDS}")
    period = _units(grid.period_s, 100, MIN_PERIOD_UNITS, MAX_PERIOD_UNITS, "frame period (s)")
    step = _units(grid.step_db, 2, MIN_STEP_UNITS, MAX_STEP_UNITS, "step (dB)")
    if len(grid.levels) != grid.n_bands or len(grid.mask) != grid.n_bands:
        raise ContainerError("RESD: levels/mask do not have one row per band")
    frames = len(grid.mask[0])
    if grid.n_bands * frames > MAX_CELLS:
        raise ContainerError(f"RESD: {grid.n_bands * frames} cells exceed {MAX_CELLS}")
    lo, hi = level_range(grid.step_db)
    levels = [[int(v) for v in row] for row in grid.levels]
    mask = [[bool(v) for v in row] for row in grid.mask]
    for b in range(grid.n_bands):
        if len(levels[b]) != frames or len(mask[b]) != frames:
            raise ContainerError("RESD: rows of different lengths")
        for t in range(frames):
            if mask[b][t] and not lo <= levels[b][t] <= hi:
                raise ContainerError(f"RESD: level {levels[b][t]} outside {lo}..{hi}")
    enc = _Encoder()
    _walk(grid.n_bands, frames, grid.step_db, enc, None, levels, mask)
    out = bytes([grid.n_bands, period, step, 0]) + enc.finish()
    if len(out) > MAX_PAYLOAD_BYTES:
        raise ContainerError(f"RESD: {len(out)} bytes exceed the cap of {MAX_PAYLOAD_BYTES}")
    return out


def check_head(payload: bytes, duration_s: float) -> tuple[int, float, float, int]:
    """(n_bands, period_s, step_db, n_frames) of a payload's head, validated; ContainerError
    if the payload is too short or too long, or a parameter is out of range."""
    if len(payload) < HEAD_BYTES + 4:
        raise ContainerError(f"RESD: {len(payload)} bytes, too short")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContainerError(f"RESD: {len(payload)} bytes exceed the cap of {MAX_PAYLOAD_BYTES}")
    n_bands, period, step, flags = payload[:HEAD_BYTES]
    if not MIN_BANDS <= n_bands <= MAX_BANDS:
        raise ContainerError(f"RESD: {n_bands} bands outside {MIN_BANDS}..{MAX_BANDS}")
    if not MIN_PERIOD_UNITS <= period <= MAX_PERIOD_UNITS:
        raise ContainerError(f"RESD: frame period {period * 10} ms outside "
                             f"{MIN_PERIOD_UNITS * 10}..{MAX_PERIOD_UNITS * 10} ms")
    if not MIN_STEP_UNITS <= step <= MAX_STEP_UNITS:
        raise ContainerError(f"RESD: step {step / 2:g} dB outside "
                             f"{MIN_STEP_UNITS / 2:g}..{MAX_STEP_UNITS / 2:g} dB")
    if flags != 0:
        raise ContainerError(f"RESD: unknown flags {flags}")
    frames = n_frames(duration_s, period / 100.0)
    if n_bands * frames > MAX_CELLS:
        raise ContainerError(f"RESD: {n_bands * frames} cells exceed the cap of {MAX_CELLS}")
    return n_bands, period / 100.0, step / 2.0, frames


def decode(payload: bytes, duration_s: float) -> Grid:
    """Parse and validate a RESD payload for a clip of ``duration_s`` seconds (the range code
    must end exactly at the payload's end); ContainerError on any problem.

    The last few payloads decoded are remembered (a file is checked when it is read or
    written, then decoded again to be played: a 60-min payload takes ~2 s in pure Python);
    each call returns its own lists."""
    key = (bytes(payload), float(duration_s))
    with _DECODED_LOCK:
        g = _DECODED.get(key)
    if g is None:
        n_bands, period_s, step_db, frames = check_head(payload, duration_s)
        levels = [[0] * frames for _ in range(n_bands)]
        mask = [[False] * frames for _ in range(n_bands)]
        dec = _Decoder(payload[HEAD_BYTES:])
        _walk(n_bands, frames, step_db, None, dec, levels, mask)
        dec.finish()
        g = Grid(n_bands, period_s, step_db, levels, mask)
        with _DECODED_LOCK:
            _DECODED[key] = g
            while len(_DECODED) > _REMEMBERED:
                _DECODED.pop(next(iter(_DECODED)))
    return g._replace(levels=[row[:] for row in g.levels], mask=[row[:] for row in g.mask])


#: Payloads whose decoded grids :func:`decode` remembers (the oldest is dropped first).
_REMEMBERED = 4
_DECODED: dict[tuple[bytes, float], Grid] = {}
_DECODED_LOCK = threading.Lock()
