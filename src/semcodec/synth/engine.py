"""What a decoding engine is (:class:`Engine`), how one is made, and block-stream helpers.

An engine renders a score to mono float32 audio, whole (:meth:`Engine.render`) or as
consecutive blocks (:meth:`Engine.blocks`, bounded memory, for streaming).  Loudness, panning
and any post-processing are left to the caller (``semcodec.api``): the render pipeline is
per track (``track_blocks`` where an engine offers it) then a mix step (:func:`mix_blocks`), so
later steps (a residual-noise layer, a sampler) can be added per track or after the mix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from semcodec.errors import SynthError, UsageError
from semcodec.events import Sample, Score, Timbre

ENGINES = ("auto", "neural", "fluidsynth")


@runtime_checkable
class Engine(Protocol):
    """A synthesizer that plays a :class:`~semcodec.events.Score`."""

    name: str

    def render(self, score: Score, sr: int, n_samples: int, *, timbres: tuple[Timbre, ...] = (),
               programs: dict[int, int] | None = None, transpose: int = 0, tempo: float = 1.0,
               samples: tuple[Sample, ...] = (),
               progress: Callable[[float], None] | None = None) -> np.ndarray:
        """Mono float32 ``(n_samples,)`` at ``sr`` Hz; ``programs`` maps track index → GM
        program, ``transpose`` semitones, ``tempo`` > 1 faster; loudness left to the caller.
        ``progress(fraction)`` is called as the rendering advances."""
        ...

    def blocks(self, score: Score, sr: int, n_samples: int, *, timbres: tuple[Timbre, ...] = (),
               programs: dict[int, int] | None = None, transpose: int = 0, tempo: float = 1.0,
               samples: tuple[Sample, ...] = ()) -> Iterator[np.ndarray]:
        """:meth:`render` as consecutive float32 blocks adding up to ``n_samples``."""
        ...


def available_engines() -> list[str]:
    """Engines usable on this machine, best first (nothing heavy is imported to find out)."""
    names = []
    try:
        from semcodec.synth import neural  # noqa: PLC0415

        if neural.engine_available():
            names.append("neural")
    except ImportError:
        pass
    names.append("fluidsynth")
    return names


def make_engine(name: str = "auto", *, device: str = "auto",
                soundfont: str | None = None, neural_weights: Path | None = None) -> Engine:
    """The engine ``name`` (``auto``: the best available); ``device`` for the neural engine
    (``auto``/``cpu``: numpy on the CPU, ``cuda``: torch on the GPU) and ``neural_weights``
    (None: the current model), ``soundfont`` for fluidsynth.  Raises :class:`UsageError` for an
    unknown name, :class:`SynthError` when the engine cannot run here."""
    if name not in ENGINES:
        raise UsageError(f"unknown engine '{name}' (choose from {', '.join(ENGINES)})")
    if name == "auto":
        name = available_engines()[0]
    if name == "neural":
        try:
            from semcodec.synth.neural import NeuralEngine  # noqa: PLC0415
        except ImportError as exc:
            raise SynthError(f"the neural engine is unavailable ({exc})") from None
        return NeuralEngine(device=device, weights=neural_weights)
    from semcodec.synth.fluid import FluidsynthEngine  # noqa: PLC0415

    return FluidsynthEngine(soundfont)


def reblock(blocks: Iterable[np.ndarray], n_samples: int, block: int) -> Iterator[np.ndarray]:
    """Blocks of any sizes → blocks of exactly ``block`` samples (the last one shorter),
    ``n_samples`` in all (cut or zero-padded)."""
    buf: list[np.ndarray] = []
    have = 0
    done = 0
    it = iter(blocks)
    while done < n_samples:
        want = min(block, n_samples - done)
        while have < want:
            y = next(it, None)
            if y is None:
                break
            buf.append(np.asarray(y, np.float32))
            have += y.shape[0]
        if have < want:  # the source ended early: silence
            buf.append(np.zeros(want - have, np.float32))
            have = want
        joined = np.concatenate(buf) if len(buf) > 1 else buf[0]
        out, rest = joined[:want], joined[want:]
        buf, have = ([rest] if rest.shape[0] else []), rest.shape[0]
        done += want
        yield out


def mix_blocks(parts: Sequence[tuple[Iterable[np.ndarray], float]], n_samples: int,
               block: int) -> Iterator[np.ndarray]:
    """Sum of the block streams ``parts`` (each with a linear gain): float32 blocks of
    ``block`` samples, ``n_samples`` in all."""
    streams = [(reblock(b, n_samples, block), np.float32(g)) for b, g in parts]
    done = 0
    while done < n_samples:
        m = min(block, n_samples - done)
        out = np.zeros(m, np.float32)
        for it, g in streams:
            out += next(it) * g
        done += m
        yield out
