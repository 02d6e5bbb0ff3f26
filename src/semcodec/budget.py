"""One bitrate target: which parts of a file to keep, in order of measured benefit per byte.

The encoder offers candidate :class:`Part` s — the score and header (required), timbres,
excerpts (with the benefit the encoder measured: how much closer the decode gets, in mel
distance), drum one-shots — and optionally a residual coder ``code(max_bytes) -> bytes`` that
fills whatever is left (:mod:`semcodec.residual`, when present).  :func:`allocate` keeps the
required parts, then the others by benefit per byte while they fit, never spending more than
the budget; a part may require another (an upgrade: the longer variant of an excerpt set is
offered as the increment over the shorter one).  When the residual's benefit can be measured
(``residual_benefit``), a part is kept only if it gains more than the residual loses without
its bytes.

Standard library only; sizes in bytes, benefits in units of mel distance (larger is better).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

log = logging.getLogger(__name__)

#: Kinds of parts, in the order a part of unknown benefit is ranked (higher first) and in
#: which ``semcodec info`` lists the costs.
KINDS = ("header", "score", "timbre", "residual", "sample", "oneshot")
#: Benefit per byte given to a part whose benefit was not measured (None): by kind, so that
#: timbres (tiny, always useful) come first, then one-shots (the drum sampler needs them),
#: ahead of any measured part.
DEFAULT_DENSITY = {"timbre": 1.0, "oneshot": 0.5, "sample": 0.0, "residual": 0.0}
#: Bytes the container adds around a residual payload (chunk type, length, CRC).
RESIDUAL_OVERHEAD = 12


class ResidualCoder(Protocol):
    """What the allocator needs of a residual layer (``semcodec.residual``'s coder)."""

    def code(self, max_bytes: int) -> bytes:
        """A payload of at most ``max_bytes`` bytes (b"" when nothing helps)."""
        ...

    def benefit(self, payload: bytes) -> float:
        """How much closer (mel distance) the decode gets with ``payload``."""
        ...


def budget_bytes(kbps: float, duration_s: float) -> int:
    """Whole bytes a file of ``duration_s`` seconds may have at ``kbps`` kbit/s."""
    if kbps < 0 or duration_s < 0 or not math.isfinite(kbps * duration_s):
        raise ValueError(f"bad budget: {kbps} kbps over {duration_s} s")
    return int(math.floor(kbps * 1000.0 / 8.0 * duration_s))


@dataclass(frozen=True)
class Part:
    """A candidate piece of the file: ``name`` (unique), ``kind`` (one of KINDS), its size
    ``nbytes`` in the file, its measured ``benefit`` (mel distance gained; None: not
    measured, ranked by kind), ``required`` (kept whatever the budget: header, score), and
    ``requires``: the name of a part that must be kept for this one to be (an upgrade)."""

    name: str
    kind: str
    nbytes: int
    benefit: float | None = None
    required: bool = False
    requires: str | None = None

    @property
    def density(self) -> float:
        """Benefit per byte (the default of its kind when not measured)."""
        if self.benefit is None:
            return DEFAULT_DENSITY.get(self.kind, 0.0) + 1.0  # ahead of any measured part
        return self.benefit / max(1, self.nbytes)


@dataclass(frozen=True)
class Allocation:
    """The result: parts ``kept`` and ``dropped``, the ``residual`` payload (b"" when none),
    the ``budget`` (bytes) and the bytes ``used`` (kept parts + residual with its framing)."""

    kept: tuple[Part, ...]
    dropped: tuple[Part, ...]
    residual: bytes = b""
    budget: int = 0
    used: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)

    def keeps(self, name: str) -> bool:
        """True when the part ``name`` is kept."""
        return any(p.name == name for p in self.kept)


def allocate(budget: int, parts: Sequence[Part], *,
             residual: Callable[[int], bytes] | None = None,
             residual_benefit: Callable[[bytes], float] | None = None) -> Allocation:
    """Spend ``budget`` bytes on ``parts`` (see the module docstring).

    Required parts are always kept (when they alone exceed the budget the excess is logged:
    nothing else is kept then).  Optional parts with a measured benefit ≤ 0 are never kept.
    ``residual(max_bytes)`` must return at most ``max_bytes`` bytes (checked: a longer
    payload is dropped); it is called with what is left at the end.  With
    ``residual_benefit(payload)`` (the residual's measured benefit, same units as the parts'),
    a measured part is kept only if it gains more than the residual would lose by giving up
    its bytes (both measured: the residual coded with and without them).
    """
    names = [p.name for p in parts]
    if len(set(names)) != len(names):
        raise ValueError("part names must be unique")
    kept: list[Part] = [p for p in parts if p.required]
    left = budget - sum(p.nbytes for p in kept)
    if left < 0:
        log.warning("the required parts (%d bytes) exceed the budget of %d bytes",
                    budget - left, budget)
    optional = [p for p in parts if not p.required
                and (p.benefit is None or p.benefit > 0) and p.nbytes >= 0]
    value_cache: dict[int, float] = {}

    def residual_value(nbytes: int) -> float:
        """The residual's measured benefit when it may use ``nbytes`` (framing included)."""
        m = nbytes - RESIDUAL_OVERHEAD
        if m <= 0 or residual is None or residual_benefit is None:
            return 0.0
        if m not in value_cache:
            data = residual(m)
            value_cache[m] = residual_benefit(data) if data and len(data) <= m else 0.0
        return value_cache[m]

    optional.sort(key=lambda p: (-p.density, p.nbytes, p.name))
    have = {p.name for p in kept}
    changed = True
    while changed:  # passes until nothing more fits (an upgrade may follow its base)
        changed = False
        for p in optional:
            if p.name in have or p.nbytes > left:
                continue
            if p.requires is not None and p.requires not in have:
                continue
            if (p.benefit is not None and residual_benefit is not None
                    and p.benefit <= residual_value(left) - residual_value(left - p.nbytes)):
                continue  # its bytes do more as residual
            kept.append(p)
            have.add(p.name)
            left -= p.nbytes
            changed = True
    payload = b""
    if residual is not None and left > RESIDUAL_OVERHEAD:
        payload = residual(left - RESIDUAL_OVERHEAD)
        if len(payload) > left - RESIDUAL_OVERHEAD:
            log.warning("residual coder returned %d bytes for at most %d: dropped",
                        len(payload), left - RESIDUAL_OVERHEAD)
            payload = b""
    used = budget - left + (len(payload) + RESIDUAL_OVERHEAD if payload else 0)
    by_kind: dict[str, int] = {}
    for p in kept:
        by_kind[p.kind] = by_kind.get(p.kind, 0) + p.nbytes
    if payload:
        by_kind["residual"] = by_kind.get("residual", 0) + len(payload) + RESIDUAL_OVERHEAD
    dropped = tuple(p for p in parts if p.name not in have)
    for p in dropped:
        log.info("%s (%d bytes, benefit %s) not kept within %d bytes", p.name, p.nbytes,
                 "unmeasured" if p.benefit is None else f"{p.benefit:.4f}", budget)
    return Allocation(kept=tuple(kept), dropped=dropped, residual=payload, budget=budget,
                      used=used, by_kind=by_kind)
