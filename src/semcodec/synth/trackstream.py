"""A pitched track's stored render (:func:`semcodec.synth.sampler.render_track`) block by block.

For long outputs the decoder cannot hold a track's whole rendering and its filtered copies
(a 60-min track is 635 MB of float32 at 44.1 kHz, and the voice's noise frames several GB):
:func:`render_track_blocks` produces the same chain as consecutive blocks with bounded memory:

* the engine's part comes from the engine's own block renderer (``engine_blocks``);
* the sampler's and the voice's notes are rendered in segments (:func:`segments`): the notes
  starting within SEGMENT_S seconds are rendered together, into that span plus their ringing
  (their last end + TAIL_S), and the overlapping spans are added;
* the room and the correction EQ are streamed (:func:`semcodec.synth.sampler.room_blocks`,
  :func:`semcodec.synth.sampler.eq_blocks`: the same samples as the whole-array filters).

The engine-with-room-and-EQ chain gives the whole render's samples up to the engine's own
block rendering; the sampler gives the same notes at the same places (a sample of rounding
apart); the voice's harmonics are the same, its breath noise is drawn per segment (another
random draw of the same shaped noise).  Mono float32 blocks, times in seconds.
"""

from __future__ import annotations

import bisect
from dataclasses import replace
from typing import Callable, Iterator

import numpy as np

from semcodec.events import Track
from semcodec.synth import sampler

#: Notes are grouped by onset into segments this long (s), each rendered alone.
SEGMENT_S = 20.0
#: A segment is rendered this far (s) past its last note's end: the sampler's release
#: (sampler.RELEASE_S) and the voice's (voice.RELEASE_S) are shorter.
TAIL_S = 0.25

#: ``engine_blocks(track)``: the track (some of its notes) rendered by the decoding engine, as
#: float32 blocks adding up to the output's length, or None when it is silent.
EngineBlocks = Callable[[Track], "Iterator[np.ndarray] | None"]


def segments(render: Callable[[Track, int], np.ndarray], track: Track, sr: int,
             n_samples: int, tempo: float = 1.0) -> Iterator[np.ndarray]:
    """``track`` rendered segment by segment as float32 blocks adding up to ``n_samples``.

    ``render(sub, m)`` renders a track of some notes, shifted so that its segment starts at
    time 0, into ``m`` samples (mono at ``sr`` Hz; note times divided by ``tempo`` as the
    renderers do).  A segment's span [a, b) is final once rendered (later notes start at or
    after b), so it is handed out then: memory is one segment plus the longest note.
    """
    n_samples = int(n_samples)
    seg = max(1, int(SEGMENT_S * sr))
    notes = track.notes
    starts = [n.onset / tempo * sr for n in notes]
    pending = np.zeros(0, np.float32)  # output samples [pos, pos + pending.size)
    pos = 0
    for a in range(0, n_samples, seg):
        b = min(a + seg, n_samples)
        i0 = bisect.bisect_left(starts, a - 0.5) if a else 0
        i1 = bisect.bisect_left(starts, b - 0.5) if b < n_samples else len(notes)
        sel = [nt for nt in notes[i0:i1] if nt.onset >= 0.0]
        if sel:
            end = max(nt.offset / tempo for nt in sel)
            m = min(n_samples - a, max(b - a, int((end + TAIL_S) * sr) + 1 - a))
            shift = a / sr * tempo  # score seconds
            sub = replace(track, notes=tuple(replace(nt, onset=nt.onset - shift,
                                                     offset=nt.offset - shift) for nt in sel))
            y = np.asarray(render(sub, m), np.float32)[:m]
            if pending.shape[0] < a + m - pos:
                pending = np.concatenate([pending, np.zeros(a + m - pos - pending.shape[0],
                                                            np.float32)])
            pending[a - pos:a - pos + y.shape[0]] += y
        if pending.shape[0] < b - pos:
            pending = np.concatenate([pending, np.zeros(b - pos - pending.shape[0], np.float32)])
        yield pending[:b - pos].copy()
        pending = pending[b - pos:]
        pos = b


def _summed(a: Iterator[np.ndarray], b: Iterator[np.ndarray] | None,
            n: int) -> Iterator[np.ndarray]:
    """The sample-wise sum of two block streams of ``n`` samples each (any block sizes)."""
    if b is None:
        yield from a
        return
    rb = sampler.BlockReader(b, n)
    done = 0
    for x in a:
        x = np.asarray(x, np.float32)
        yield x + rb.read(done, done + x.shape[0])
        done += x.shape[0]


def render_track_blocks(track: Track, excerpts: list[tuple[np.ndarray, float]], sr: int,
                        n_samples: int, engine_blocks: EngineBlocks, *, transpose: int = 0,
                        tempo: float = 1.0, seed: int = 0) -> Iterator[np.ndarray]:
    """:func:`semcodec.synth.sampler.render_track` as float32 blocks adding up to
    ``n_samples`` (mono at ``sr`` Hz), with bounded memory (see the module's doc).

    ``excerpts``: the track's stored excerpts decoded at ``sr`` with their start times (s);
    ``engine_blocks(track)`` renders a track (some of its notes) with the decoding engine.
    """
    from semcodec.synth import voice  # noqa: PLC0415

    n_samples = int(n_samples)
    spec = track.render
    use = spec.use if spec is not None else ""

    def engine(t: Track) -> Iterator[np.ndarray]:
        it = engine_blocks(t) if t.notes else None
        return sampler.exactly(iter(()) if it is None else it, n_samples)

    src: Iterator[np.ndarray] | None = None
    if use == "voice" and spec is not None and (excerpts or spec.voice):
        model = sampler.voice_model(spec, excerpts, sr, track)
        if model is not None:
            count = iter(range(1 << 30))

            def sing(sub: Track, m: int) -> np.ndarray:  # a seed per segment: fresh breath noise
                return voice.render(model, sub, sr, m, transpose=transpose, tempo=tempo,
                                    seed=seed * 1_000_003 + next(count))

            src = segments(sing, track, sr, n_samples, tempo)
    elif use == "sampler" and excerpts:
        zs = sampler.excerpt_zones(excerpts, sr, track)
        if zs:
            played = set(sampler.covered(track, zs, transpose))
            mine = replace(track, notes=tuple(nt for k, nt in enumerate(track.notes) if k in played))
            rest = replace(track, notes=tuple(nt for k, nt in enumerate(track.notes)
                                              if k not in played))

            def play(sub: Track, m: int) -> np.ndarray:
                return sampler.render_sampler(sub, zs, sr, m, transpose=transpose,
                                              tempo=tempo)[0]

            src = _summed(segments(play, mine, sr, n_samples, tempo),
                          engine(rest) if rest.notes else None, n_samples)
    if src is None:
        src = engine(track)
        if use or spec is None:  # no render, or its excerpt is missing: the engine alone
            return src
    assert spec is not None
    if len(spec.room) == 2:
        src = sampler.room_blocks(src, n_samples, sr, float(spec.room[0]), float(spec.room[1]),
                                  seed=seed)
    if spec.eq_db:
        src = sampler.eq_blocks(src, n_samples, sr, np.asarray(spec.eq_db, np.float64))
    g = np.float32(10.0 ** (spec.gain_db / 20.0))
    return (np.asarray(x, np.float32) * g for x in src)
