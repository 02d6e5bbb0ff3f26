"""The residual of a long input, coded span by span in bounded memory (encoder only).

:class:`semcodec.residual.ResidualCoder` holds the whole original, the whole decode, a
candidate output and the judge's log-mels of both: about 2.5 GB for an hour at 44.1 kHz.
:class:`SpanCoder` codes the same grids from consecutive spans of about SPAN_S seconds: each
span is analysed on its own (:func:`semcodec.residual.analyse`: its own judge and candidate
outputs) from that span of the original and of the decode (rendered span by span by the
caller, see :func:`semcodec.encode_budget._span_decoder`), and the spans' analyses are joined
along time.  Memory holds the original (the encoder has it anyway), one span's work and the
joined analyses (a few MB an hour).

Spans start on a sample that is a whole number of residual frames of every grid (a multiple
of 0.4 s) and of the analysis hop, and STFT frames fall into grid frames as in the whole
input's analysis (and the decoder's), so the joined grid and its levels are the whole input's
but at the spans' edges.  There a span's STFTs see zeros beyond it: the grid frame on either
side of an inner edge is not coded (the decoder leaves it as the synthesis plays it: at most
two frames every ~100 s).  A candidate output's noise is seeded per span, and the judge's
log-mel frames near an edge see zeros too; both only move the measured benefits a little.
The benefit of a payload is the sum of its cells' measured benefits (no further decode is
rendered).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import numpy as np

from semcodec.runtime import release_free_memory
from semcodec.residual import (
    DEFAULT_STEP_DB,
    GRIDS,
    Analysis,
    ResidualCoder,
    analyse,
    decode_envelope,
    n_grid_frames,
    stft_size,
)

if TYPE_CHECKING:
    from semcodec.residual_judge import Judge

#: Inputs longer than this (s) have their residual coded span by span.
LONG_RESIDUAL_S = 300.0
#: About this long (s), each span; rounded to a whole number of SPAN_QUANTUM_S and hops.
SPAN_S = 100.0
#: Spans start at multiples of this (s): a whole number of frames of every grid in GRIDS.
SPAN_QUANTUM_S = 0.4


def span_samples(sr: int) -> int | None:
    """Samples per span at ``sr`` Hz: a multiple of the analysis hop and of SPAN_QUANTUM_S
    seconds, about SPAN_S seconds long; None when SPAN_QUANTUM_S is not a whole number of
    samples at this rate (then the spans could not start on frame boundaries)."""
    q = SPAN_QUANTUM_S * sr
    if abs(q - round(q)) > 1e-6 or round(q) <= 0:
        return None
    _, hop = stft_size(sr)
    unit = math.lcm(int(round(q)), hop)
    return unit * max(1, int(round(SPAN_S * sr / unit)))



def _joined(parts: "list[np.ndarray | None]") -> "np.ndarray | None":
    """The spans' grids side by side; None when there are none or one is missing."""
    arrays = [p for p in parts if p is not None]
    if not arrays or len(arrays) < len(parts):
        return None
    return np.concatenate(arrays, axis=1)

class SpanCoder(ResidualCoder):
    """:class:`semcodec.residual.ResidualCoder` for a long input: ``original`` float32
    ``(n,)`` or ``(n, 2)`` at ``sr`` Hz (stereo measured on the downmix, span by span);
    ``decoded(a, b)`` hands out samples ``a .. b`` of the decode (what the decoder plays
    without the residual, mono float32), ``n_decoded`` samples long in all; ``span`` samples
    per span (:func:`span_samples`).  ``notes``: the score's ``(onset s, offset s, f0 Hz)``,
    kept free of added noise."""

    def __init__(self, original: np.ndarray, decoded: Callable[[int, int], np.ndarray],
                 n_decoded: int, sr: int, span: int, *,
                 grids: tuple[tuple[int, float], ...] = GRIDS,
                 step_db: float = DEFAULT_STEP_DB, notes=(),
                 stop: Callable[[], bool] | None = None, held_notes=None) -> None:
        self.original = np.asarray(original, np.float32)
        self.held_notes = None if held_notes is None else tuple(held_notes)
        self.stop = stop
        self.decoded, self.span = decoded, span
        self.notes = tuple(notes)
        self.hears = None  # the decode is never whole here: the notes heard are not checked
        self.sr, self.n = sr, min(self.original.shape[0], n_decoded)
        self.grids, self.step_db = tuple(grids), step_db
        self._analyses: dict[tuple[int, float], Analysis] = {}

    @property
    def judge(self) -> "Judge":
        raise AttributeError("a SpanCoder judges span by span: no whole-input judge")

    def _spans(self) -> list[tuple[int, int]]:
        return [(a, min(self.n, a + self.span)) for a in range(0, self.n, self.span)]

    def analysis(self, n_bands: int, period_s: float) -> Analysis:
        """The (cached) analysis of one grid, joined from the spans' analyses."""
        key = (n_bands, period_s)
        if key in self._analyses:
            return self._analyses[key]
        total = n_grid_frames(self.n / self.sr, period_s)
        levels, benefit, decoded_db, eased = [], [], [], []
        done = 0
        for a, b in self._spans():
            t0 = a / self.sr
            want = (total - done if b >= self.n
                    else int(round((b - a) / self.sr / period_s)))
            x = self.original[a:b]
            x = x if x.ndim == 1 else x.mean(axis=1)
            y = np.asarray(self.decoded(a, b), np.float32)[:len(x)]
            y = np.pad(y, (0, len(x) - len(y))) if len(y) < len(x) else y
            def near(ns):
                return [(on - t0, off - t0, f0) for on, off, f0 in ns
                        if off >= t0 - period_s and on <= b / self.sr + period_s]

            notes = near(self.notes)
            held = None if self.held_notes is None else near(self.held_notes)
            if self._stopped():
                break
            part = analyse(x, y, self.sr, n_bands=n_bands, period_s=period_s,
                           step_db=self.step_db, notes=notes, start=a, stop=self.stop,
                           held_notes=held)
            lv, bn = part.levels[:, :want], part.benefit[:, :want]
            dd = part.decoded_db[:, :want] if part.decoded_db is not None else None
            ez = part.eased[:, :want] if part.eased is not None else None
            if lv.shape[1] < want:  # rounding of the span's frame count: nothing there
                pad = ((0, 0), (0, want - lv.shape[1]))
                lv, bn = np.pad(lv, pad), np.pad(bn, pad)
                dd = np.pad(dd, pad) if dd is not None else None
                ez = np.pad(ez, pad) if ez is not None else None
            # the frames next to a span's inner edges are measured with zeros beyond the
            # edge (the STFT's windows reach over it): not coded, the decode left as it is
            bn = bn.copy()
            if a > 0:
                bn[:, 0] = 0.0
            if b < self.n:
                bn[:, -1] = 0.0
            levels.append(lv)
            benefit.append(bn)
            decoded_db.append(dd)
            eased.append(ez)
            done += want
            release_free_memory()  # the span's temporaries: not under the next span's
        out = Analysis(levels=np.concatenate(levels, axis=1),
                       benefit=np.concatenate(benefit, axis=1),
                       period_s=period_s, step_db=self.step_db,
                       decoded_db=_joined(decoded_db), eased=_joined(eased))
        if not self._stopped():  # a cancelled analysis is short: not kept
            self._analyses[key] = out
        return out

    def benefit(self, payload: bytes) -> float:
        """The summed measured benefit of the cells ``payload`` codes (0 for b"")."""
        if not payload:
            return 0.0
        env = decode_envelope(payload, self.n / self.sr)
        a = self.analysis(env.n_bands, env.period_s)
        return float(np.sum(np.where(env.mask, a.benefit, 0.0)))
