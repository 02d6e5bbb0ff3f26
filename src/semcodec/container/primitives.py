"""Primitive encoding: the error helper, LEB128/zigzag varints, a bounds-checked payload reader,
float16 values, and the time quantisation and clip-end bounds the chunks share."""

from __future__ import annotations

import math
import struct
from typing import Any, TypeGuard

from semcodec.constants import BEND_TICK_S, SCORE_TICK_S
from semcodec.container.spec import _F16, _U32, END_SLACK_S
from semcodec.errors import ContainerError


def _fail(message: str) -> ContainerError:
    return ContainerError(message)


def _uvarint(value: int) -> bytes:
    """LEB128 encoding of an unsigned integer < 2**64."""
    if value < 0 or value >= 1 << 64:
        raise _fail(f"cannot encode {value} as an unsigned varint")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _zigzag(value: int) -> int:
    return value * 2 if value >= 0 else -value * 2 - 1


def _unzigzag(value: int) -> int:
    return (value >> 1) ^ -(value & 1)


class _Reader:
    """Bounds-checked cursor over a payload; every read raises ContainerError past the end."""

    __slots__ = ("buf", "pos", "end", "what")

    def __init__(self, buf: bytes, what: str) -> None:
        self.buf = buf
        self.pos = 0
        self.end = len(buf)
        self.what = what

    def remaining(self) -> int:
        return self.end - self.pos

    def need(self, n: int) -> None:
        if n < 0 or n > self.end - self.pos:
            raise _fail(f"{self.what}: truncated (needs {n} bytes, {self.end - self.pos} left)")

    def uvarint(self) -> int:
        buf, pos, end = self.buf, self.pos, self.end
        result = 0
        shift = 0
        for i in range(10):
            if pos >= end:
                raise _fail(f"{self.what}: truncated varint")
            byte = buf[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if byte == 0 and i > 0:
                    raise _fail(f"{self.what}: overlong varint")
                if result >= 1 << 64:
                    raise _fail(f"{self.what}: varint exceeds 64 bits")
                self.pos = pos
                return result
            shift += 7
        raise _fail(f"{self.what}: varint longer than 10 bytes")

    def zvarint(self) -> int:
        return _unzigzag(self.uvarint())

    def uvarints(self, n: int) -> list[int]:
        """``n`` uvarints; single-byte values (the common case) take a fast path."""
        buf, end = self.buf, self.end
        out: list[int] = []
        append = out.append
        for _ in range(n):
            pos = self.pos
            if pos < end and buf[pos] < 0x80:
                append(buf[pos])
                self.pos = pos + 1
            else:
                append(self.uvarint())
        return out

    def zvarints(self, n: int) -> list[int]:
        return [(u >> 1) ^ -(u & 1) for u in self.uvarints(n)]

    def u8(self) -> int:
        self.need(1)
        self.pos += 1
        return self.buf[self.pos - 1]

    def u32(self) -> int:
        self.need(4)
        (value,) = _U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return value

    def f16(self) -> float:
        self.need(2)
        (value,) = _F16.unpack_from(self.buf, self.pos)
        self.pos += 2
        if not math.isfinite(value):
            raise _fail(f"{self.what}: non-finite float16")
        return value

    def take(self, n: int) -> bytes:
        self.need(n)
        self.pos += n
        return bytes(self.buf[self.pos - n : self.pos])

    def finish(self) -> None:
        if self.pos != self.end:
            raise _fail(f"{self.what}: {self.end - self.pos} unexpected bytes at the end")


def _f16(value: float, what: str) -> bytes:
    try:
        value = float(value)
        if not math.isfinite(value):
            raise ValueError
        return _F16.pack(value)
    except (OverflowError, ValueError, TypeError, struct.error):
        raise _fail(f"{what}: {value!r} is not representable as a finite float16") from None



def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_num(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(
        value
    )



def _exact_duration(n_samples: int, sample_rate: int) -> float:
    return n_samples / sample_rate


def _end_limit_ticks(duration: float) -> int:
    """Largest note end (in score ticks) a file of this duration may hold."""
    return int(math.floor((duration + END_SLACK_S) / SCORE_TICK_S + 1e-6))


def _bend_ok(onset_ticks: int, bend_ticks: int, duration: float) -> bool:
    return onset_ticks * SCORE_TICK_S + bend_ticks * BEND_TICK_S <= duration + END_SLACK_S + 1e-9


def _end_limit_ms(duration: float) -> int:
    return int(math.floor((duration + END_SLACK_S) * 1000.0 + 1e-6))


def _round_tick(value: float, quantum: float, what: str) -> int:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(f"{what}: {value!r} is not a finite number")
    return int(round(value / quantum))


def _round_float(value: float, ndigits: int) -> float | int:
    rounded = round(float(value), ndigits)
    return int(rounded) if rounded.is_integer() and abs(rounded) < 1e15 else rounded

