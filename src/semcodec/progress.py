"""Progress reporting of :func:`semcodec.api.encode` / :func:`semcodec.api.decode`: the
callback type, the stages each reports and their overall fraction."""

from __future__ import annotations

from typing import Callable

#: ``progress(stage, fraction)``: ``stage`` is one of the names of :data:`ENCODE_STAGES` /
#: :data:`DECODE_STAGES`, followed by `` track K/N`` for the per-track stages; ``fraction``
#: (0..1) is the part of that stage (of that track) done.
Progress = Callable[[str, float], None]
#: The stages :func:`encode` reports, in order, with their typical share of its time (measured
#: on 30-s clips; for an overall fraction and ETA, see :func:`progress_fraction`).
#: The stages :func:`decode` / :func:`decode_tracks` report: ``engine`` (loading the
#: synthesizer: torch and the model, ~4 s), ``render track K/N`` per sounding track,
#: ``loudness``; "write" is the caller's (the CLI reports writing the file under that name).
#: Weights measured on a 30-s clip; rendering grows with the length, loading does not.
DECODE_STAGES = (("engine", 0.40), ("render", 0.40), ("loudness", 0.05), ("residual", 0.05),
                 ("write", 0.10))
ENCODE_STAGES = (("loudness", 0.04), ("drums", 0.07), ("transcribe", 0.13), ("split", 0.08),
                 ("samples", 0.01), ("fit", 0.47), ("residual", 0.20))


def progress_fraction(stage: str, frac: float,
                      stages: tuple[tuple[str, float], ...] = ENCODE_STAGES) -> float | None:
    """The overall fraction (0..1) of a job at ``progress(stage, frac)``; None for a stage
    that is not in ``stages``.  ``fit track 2/4`` at 0.5 counts as 1.5 of the 4 tracks."""
    name, _, rest = stage.partition(" ")
    frac = min(max(float(frac), 0.0), 1.0)
    if rest.startswith("track "):
        k, _, n = rest[len("track "):].partition("/")
        try:
            frac = min(1.0, (int(k) - 1 + frac) / max(1, int(n)))
        except ValueError:
            pass
    start = 0.0
    total = sum(w for _, w in stages)
    for n_, w in stages:
        if n_ == name:
            return min(1.0, (start + w * frac) / total)
        start += w
    return None
