"""The ``RESD`` chunk payload (format 1.5) and the segmented ``RESS`` one (format 1.7): a
residual band-energy grid, range-coded.

Standard library only (the container reads and validates it without numpy); the analysis and
the synthesis that use the grid live in :mod:`semcodec.residual`.  Byte layout (docs/FORMAT.md,
"RESD"): ``n_bands`` u8, frame period u8 (10 ms units), quantizer step u8 (0.5 dB units),
flags u8 (0), then a binary range code (the LZMA range coder, 11-bit adaptive probabilities,
the leading zero byte omitted) of every cell's mask bit and, for the cells whose bit is set,
the difference between the cell's level and its prediction.  Cells are visited frame by
frame, bands from low to high.

The segmented layout (flags 1, chunk ``RESS``, docs/FORMAT.md section 6d) cuts the frames into
segments of ``F`` frames, each range-coded on its own as if it were a whole grid (fresh
probabilities, nothing known before its first frame), behind an index of their lengths: a
player decodes only the segments it reaches (:func:`segment_index`, :func:`decode_segment`),
so that a long file starts at once.

A grid is ``(n_bands, period_s, step_db, levels, mask)`` with ``levels[b][t]`` an int (the
band's mean power in dB divided by ``step_db``; 0 where the mask is off) and ``mask[b][t]`` a
bool, ``b < n_bands``, ``t < n_frames(duration, period_s)``.
"""

from __future__ import annotations

import math
import struct
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
#: Head flag of the segmented layout (the ``RESS`` chunk, format 1.7).
FLAG_SEGMENTED = 1
#: Bounds of a segment's length (frames) in the segmented layout.
MIN_SEGMENT_FRAMES, MAX_SEGMENT_FRAMES = 1, 65535
#: Bytes of the segmented layout's head after the parameter head (u16 frames per segment).
SEGMENT_HEAD_BYTES = 2
#: Bytes of one entry of the segment index (u32 length of the segment's range code).
SEGMENT_ENTRY_BYTES = 4
#: Fewest bytes of a range code (the decoder starts by reading four).
MIN_CODE_BYTES = 4

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


def _checked(grid: Grid) -> tuple[int, int, list[list[int]], list[list[bool]]]:
    """(period units, step units, levels, mask) of ``grid``, validated (ContainerError if a
    value cannot be stored)."""
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
    return period, step, levels, mask


def _range_code(n_bands: int, step_db: float, levels: list[list[int]],
                mask: list[list[bool]]) -> bytes:
    """The range code of a whole grid (or of one segment, coded as if it were one)."""
    enc = _Encoder()
    _walk(n_bands, len(mask[0]), step_db, enc, None, levels, mask)
    return enc.finish()


def _capped(out: bytes) -> bytes:
    if len(out) > MAX_PAYLOAD_BYTES:
        raise ContainerError(f"RESD: {len(out)} bytes exceed the cap of {MAX_PAYLOAD_BYTES}")
    return out


def encode(grid: Grid) -> bytes:
    """The RESD payload of ``grid`` (ContainerError if a value cannot be stored)."""
    period, step, levels, mask = _checked(grid)
    code = _range_code(grid.n_bands, grid.step_db, levels, mask)
    return _capped(bytes([grid.n_bands, period, step, 0]) + code)


def encode_segmented(grid: Grid, segment_frames: int) -> bytes:
    """The segmented payload (flags FLAG_SEGMENTED, chunk ``RESS``) of ``grid``: its frames cut
    into segments of ``segment_frames`` (the last one shorter), each range-coded on its own,
    behind an index of their lengths (ContainerError if a value cannot be stored)."""
    if not MIN_SEGMENT_FRAMES <= segment_frames <= MAX_SEGMENT_FRAMES:
        raise ContainerError(f"RESD: {segment_frames} frames per segment outside "
                             f"{MIN_SEGMENT_FRAMES}..{MAX_SEGMENT_FRAMES}")
    period, step, levels, mask = _checked(grid)
    frames = len(mask[0])
    codes = [_range_code(grid.n_bands, grid.step_db, [row[t0:t0 + segment_frames] for row in levels],
                         [row[t0:t0 + segment_frames] for row in mask])
             for t0 in range(0, frames, segment_frames)]
    head = bytes([grid.n_bands, period, step, FLAG_SEGMENTED]) + struct.pack("<H", segment_frames)
    index = b"".join(struct.pack("<I", len(c)) for c in codes)
    return _capped(head + index + b"".join(codes))


def check_head(payload: bytes, duration_s: float) -> tuple[int, float, float, int]:
    """(n_bands, period_s, step_db, n_frames) of a payload's head, validated; ContainerError
    if the payload is too short or too long, or a parameter is out of range (flags: 0 or
    FLAG_SEGMENTED, see :func:`is_segmented`)."""
    if len(payload) < HEAD_BYTES + MIN_CODE_BYTES:
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
    if flags not in (0, FLAG_SEGMENTED):
        raise ContainerError(f"RESD: unknown flags {flags}")
    frames = n_frames(duration_s, period / 100.0)
    if n_bands * frames > MAX_CELLS:
        raise ContainerError(f"RESD: {n_bands * frames} cells exceed the cap of {MAX_CELLS}")
    return n_bands, period / 100.0, step / 2.0, frames


def is_segmented(payload: bytes) -> bool:
    """Whether ``payload`` has the segmented layout (flags FLAG_SEGMENTED: chunk ``RESS``)
    rather than the whole-grid one (flags 0: chunk ``RESD``); only the flags byte is read."""
    return len(payload) >= HEAD_BYTES and payload[HEAD_BYTES - 1] == FLAG_SEGMENTED


class SegmentIndex(NamedTuple):
    """The head and index of a segmented payload (:func:`segment_index`): grid parameters,
    frames per segment, and for segment ``i`` the byte range ``spans[i]`` of its range code
    in the payload; it covers frames ``i * segment_frames`` up to the next segment's first
    (or ``n_frames``)."""

    n_bands: int
    period_s: float
    step_db: float
    n_frames: int
    segment_frames: int
    spans: tuple[tuple[int, int], ...]

    def frames_of(self, i: int) -> tuple[int, int]:
        """Frames ``(t0, t1)`` of segment ``i``."""
        t0 = i * self.segment_frames
        return t0, min(self.n_frames, t0 + self.segment_frames)


def segment_index(payload: bytes, duration_s: float) -> SegmentIndex:
    """The validated head and index of a segmented payload for a clip of ``duration_s``
    seconds (the segments' range codes are not read); ContainerError if it is not one, or
    the index does not add up to the payload."""
    n_bands, period_s, step_db, frames = check_head(payload, duration_s)
    if not is_segmented(payload):
        raise ContainerError("RESD: not the segmented layout")
    at = HEAD_BYTES + SEGMENT_HEAD_BYTES
    if len(payload) < at:
        raise ContainerError(f"RESD: {len(payload)} bytes, too short")
    (seg,) = struct.unpack_from("<H", payload, HEAD_BYTES)
    if not MIN_SEGMENT_FRAMES <= seg <= MAX_SEGMENT_FRAMES:
        raise ContainerError(f"RESD: {seg} frames per segment outside "
                             f"{MIN_SEGMENT_FRAMES}..{MAX_SEGMENT_FRAMES}")
    count = -(-frames // seg)
    if at + count * (SEGMENT_ENTRY_BYTES + MIN_CODE_BYTES) > len(payload):
        raise ContainerError(f"RESD: {count} segments do not fit in {len(payload)} bytes")
    lengths = struct.unpack_from(f"<{count}I", payload, at)
    pos = at + count * SEGMENT_ENTRY_BYTES
    spans = []
    for i, length in enumerate(lengths):
        if length < MIN_CODE_BYTES:
            raise ContainerError(f"RESD: segment {i} of {length} bytes, too short")
        spans.append((pos, pos + length))
        pos += length
    if pos != len(payload):
        raise ContainerError(f"RESD: the segment index adds up to {pos} bytes, the payload "
                             f"holds {len(payload)}")
    return SegmentIndex(n_bands, period_s, step_db, frames, seg, tuple(spans))


def _decode_code(code: bytes, n_bands: int, frames: int,
                 step_db: float) -> tuple[list[list[int]], list[list[bool]]]:
    """(levels, mask) of a grid of ``frames`` frames from its range code (validated)."""
    levels = [[0] * frames for _ in range(n_bands)]
    mask = [[False] * frames for _ in range(n_bands)]
    dec = _Decoder(code)
    _walk(n_bands, frames, step_db, None, dec, levels, mask)
    dec.finish()
    return levels, mask


def decode_segment(payload: bytes, index: SegmentIndex,
                   i: int) -> tuple[list[list[int]], list[list[bool]]]:
    """(levels, mask) of segment ``i`` of a segmented payload (``index``: its
    :func:`segment_index`): ``n_bands`` rows of the segment's frames (``index.frames_of(i)``);
    ContainerError if its range code is invalid."""
    if not 0 <= i < len(index.spans):
        raise IndexError(f"segment {i} of {len(index.spans)}")
    t0, t1 = index.frames_of(i)
    a, b = index.spans[i]
    try:
        return _decode_code(payload[a:b], index.n_bands, t1 - t0, index.step_db)
    except ContainerError as exc:
        raise ContainerError(f"{exc} (segment {i})") from None


def decode(payload: bytes, duration_s: float) -> Grid:
    """Parse and validate a RESD payload (either layout) for a clip of ``duration_s`` seconds
    (each range code must end exactly where it is said to end); ContainerError on any problem.

    The last few payloads decoded are remembered (a file is checked when it is read or
    written, then decoded again to be played: a 60-min payload takes ~2 s in pure Python);
    each call returns its own lists."""
    key = (bytes(payload), float(duration_s))
    with _DECODED_LOCK:
        g = _DECODED.get(key)
    if g is None:
        if is_segmented(payload):
            idx = segment_index(payload, duration_s)
            levels: list[list[int]] = [[] for _ in range(idx.n_bands)]
            mask: list[list[bool]] = [[] for _ in range(idx.n_bands)]
            for i in range(len(idx.spans)):
                lv, mk = decode_segment(payload, idx, i)
                for b in range(idx.n_bands):
                    levels[b] += lv[b]
                    mask[b] += mk[b]
            g = Grid(idx.n_bands, idx.period_s, idx.step_db, levels, mask)
        else:
            n_bands, period_s, step_db, frames = check_head(payload, duration_s)
            levels, mask = _decode_code(payload[HEAD_BYTES:], n_bands, frames, step_db)
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
