"""A long input's digest: a few windows of it, joined, for measurements that need not hear
all of it (the encoder's choice of how each track is played, :mod:`semcodec.sampleuse`).

A choice measured on the digest (engine, eq, sampler, voice; a level; an eq curve) holds for
the whole piece, and the measurement then costs the memory and time of DIGEST_WINDOWS x
DIGEST_WINDOW_S seconds (plus the excerpts' surroundings) instead of the whole input: a 60-min
input measured whole held several full-length renders per track.

Windows (seconds of the original) are laid evenly over the piece, plus one around every
candidate excerpt so that the sampler hears the notes its excerpts cover; overlapping ones are
merged.  In the digest, the windows follow one another: a note is kept when it starts in a
window (cut at the window's end), moved to the window's place; excerpts move likewise.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

import numpy as np

from semcodec.container import SmcFile
from semcodec.events import Note, Sample

_C = TypeVar("_C", bound=SmcFile)

#: Inputs longer than this (s) are measured on their digest.
LONG_MEASURE_S = 300.0
#: Evenly spaced windows of the digest, and their length (s).
DIGEST_WINDOWS = 6
DIGEST_WINDOW_S = 20.0
#: Seconds kept on either side of a candidate excerpt.
EXCERPT_MARGIN_S = 2.0


def merged(spans: list[tuple[float, float]], duration: float) -> list[tuple[float, float]]:
    """``spans`` clipped to ``0 .. duration``, sorted, overlapping ones merged."""
    out: list[list[float]] = []
    for a, b in sorted((max(0.0, a), min(duration, b)) for a, b in spans):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def excerpt_spans(samples: tuple[Sample, ...]) -> list[tuple[float, float]]:
    """Each pitched excerpt of ``samples`` with EXCERPT_MARGIN_S s on either side (s)."""
    return [(s.start - EXCERPT_MARGIN_S, s.start + s.duration + EXCERPT_MARGIN_S)
            for s in samples if s.key is None]


def windows(duration: float, samples: tuple[Sample, ...] = ()) -> list[tuple[float, float]]:
    """Sorted, disjoint ``(start s, end s)`` windows of a ``duration``-s piece: DIGEST_WINDOWS
    of DIGEST_WINDOW_S s spread evenly, and each pitched excerpt of ``samples`` with
    EXCERPT_MARGIN_S s around it; the whole piece when it is not longer than them."""
    if duration <= DIGEST_WINDOWS * DIGEST_WINDOW_S:
        return [(0.0, duration)]
    spans = excerpt_spans(samples)
    for j in range(DIGEST_WINDOWS):
        centre = (j + 0.5) * duration / DIGEST_WINDOWS
        spans.append((centre - DIGEST_WINDOW_S / 2.0, centre + DIGEST_WINDOW_S / 2.0))
    return merged(spans, duration)


def around(c: SmcFile, start_s: float, end_s: float) -> "Digest":
    """The digest of ``c`` (at its own rate) that holds ``start_s .. end_s`` and the
    surroundings of its excerpts (:func:`excerpt_spans`), so that a track played from an
    excerpt sounds there as in the whole decode."""
    return Digest(merged([(start_s, end_s), *excerpt_spans(c.samples)], c.duration),
                  c.sample_rate)


class Digest:
    """The windows ``wins`` of a piece at ``sr`` Hz, cut on whole samples: ``cuts`` are
    ``(first sample, end sample)`` in the original, ``offsets`` each window's start in the
    digest (s), ``n`` the digest's length in samples."""

    def __init__(self, wins: list[tuple[float, float]], sr: int) -> None:
        self.sr = sr
        self.cuts = [(int(round(a * sr)), int(round(b * sr))) for a, b in wins]
        self.offsets, pos = [], 0
        for a, b in self.cuts:
            self.offsets.append(pos / sr)
            pos += b - a
        self.n = pos

    def time(self, t: float) -> float | None:
        """Where time ``t`` (s of the original) falls in the digest; None outside the windows."""
        for (a, b), o in zip(self.cuts, self.offsets):
            if a <= t * self.sr < b:
                return t - a / self.sr + o
        return None

    def audio(self, x: np.ndarray) -> np.ndarray:
        """The windows of ``x`` (``(n,)`` or ``(n, ch)`` at ``sr``), joined."""
        return np.concatenate([x[a:b] for a, b in self.cuts], axis=0)

    def kept(self, notes: tuple[Note, ...]) -> list[tuple[int, Note]]:
        """``(index in notes, the note moved into the digest)`` of the notes that start in a
        window, in their order, each cut at its window's end."""
        out = []
        for k, note in enumerate(notes):
            for (a, b), o in zip(self.cuts, self.offsets):
                if a <= note.onset * self.sr < b:
                    shift = o - a / self.sr
                    out.append((k, replace(note, onset=note.onset + shift,
                                           offset=min(note.offset, b / self.sr) + shift)))
                    break
        return out

    def container(self, c: _C, samples: bool = False) -> _C:
        """``c`` (at ``sr``) as the digest: its notes that start in a window, moved there and
        cut at the window's end (:meth:`kept`); no residual; its samples moved too
        (:meth:`samples`) or none."""
        tracks = tuple(replace(t, notes=tuple(n for _, n in self.kept(t.notes)))
                       for t in c.score.tracks)
        return replace(c, score=replace(c.score, tracks=tracks), n_samples=self.n,
                       duration=self.n / self.sr,
                       samples=self.samples(c.samples) if samples else (), residual=b"")

    def samples(self, samples: tuple[Sample, ...]) -> tuple[Sample, ...]:
        """``samples`` moved into the digest: a pitched excerpt outside every window is left
        out; a one-shot (its time does not matter) is kept, at 0 s when outside."""
        out = []
        for s in samples:
            t = self.time(s.start)
            if t is not None:
                out.append(replace(s, start=t))
            elif s.key is not None:
                out.append(replace(s, start=0.0))
        return tuple(out)
