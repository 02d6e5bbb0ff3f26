"""The fluidsynth engine: plays a score through a General MIDI soundfont (pyfluidsynth).

A thin class over :func:`render_notes`; each track plays its General MIDI program (the one the
encoder fitted), drums play the GM kit (bank 128).  Each note gets a channel of its own from
its track's pool so per-note pitch bends do not leak into other notes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from semcodec.constants import (
    SOUNDFONT_CANDIDATES,
    SYNTH_BEND_RANGE_SEMITONES,
    env_soundfont,
)
from semcodec.errors import SynthError
from semcodec.events import Note, Sample, Score, Timbre, Track

log = logging.getLogger(__name__)

#: MIDI channels fluidsynth is started with; every channel ≡ 9 (mod 16) is left to drums.
N_CHANNELS = 256
CHANNELS_PER_TRACK_MAX = 16
#: fluidsynth renders at most at this rate (Hz); higher output rates are resampled.
FLUID_MAX_SR = 96000


def find_soundfont(path: str | os.PathLike | None = None) -> str:
    """The soundfont to use: ``path``, else $SEMCODEC_SOUNDFONT, else the first installed GM one."""
    if path is not None:
        p = os.fspath(path)
        if not os.path.isfile(p):
            raise SynthError(f"{p}: soundfont not found")
        return p
    env = env_soundfont()
    if env:
        if not os.path.isfile(env):
            raise SynthError(f"{env}: soundfont named by $SEMCODEC_SOUNDFONT not found")
        return env
    for cand in SOUNDFONT_CANDIDATES:
        if os.path.isfile(cand):
            return cand
    raise SynthError(
        "no General MIDI soundfont found (install one: apt-get install fluid-soundfont-gm, "
        "or pass --soundfont PATH)"
    )


def import_fluidsynth():
    """Import pyfluidsynth without letting it write to stdout.

    pyfluidsynth prints "'fluidsynth' was found at ..." at import time when $CI is set; the
    library must never print (a decoded file may be going to stdout), so that line is caught
    and logged at debug level instead.
    """
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            import fluidsynth  # noqa: PLC0415 - optional native dependency, imported when used
    except (ImportError, OSError) as exc:  # OSError: libfluidsynth missing
        raise SynthError(
            f"fluidsynth is unavailable ({exc}); install it: apt-get install libfluidsynth3"
        ) from exc
    finally:
        if captured.getvalue().strip():
            log.debug("pyfluidsynth: %s", captured.getvalue().strip())
    return fluidsynth


def set_bend_range(synth, chans, semitones: int = SYNTH_BEND_RANGE_SEMITONES) -> None:
    """Set the pitch-bend range (RPN 0) of ``chans`` to ``semitones`` (the score's bend range)."""
    for c in chans:
        synth.cc(c, 101, 0)
        synth.cc(c, 100, 0)
        synth.cc(c, 6, int(semitones))
        synth.cc(c, 38, 0)


@dataclass(frozen=True)
class _Event:
    sample: int
    order: int  # noteoffs before bends before noteons at the same sample
    kind: str
    chan: int
    a: int = 0
    b: int = 0


def _bend_value(semitones: float) -> int:
    value = int(round(semitones / SYNTH_BEND_RANGE_SEMITONES * 8192))
    return max(-8192, min(8191, value))


def _track_events(notes: tuple[Note, ...], chans: list[int], sr: int, tempo: float,
                  transpose: int, is_drum: bool) -> list[_Event]:
    """Schedule one track's notes on its channel pool (least recently released channel first)."""
    events: list[_Event] = []
    free_at = {c: -1 for c in chans}
    for note in notes:
        on = int(round(note.onset / tempo * sr))
        off = max(on + 1, int(round(note.offset / tempo * sr)))
        pitch = note.pitch if is_drum else note.pitch + transpose
        if not 0 <= pitch <= 127:
            continue
        free = [c for c in chans if free_at[c] <= on]
        chan = min(free, key=lambda c: free_at[c]) if free else min(chans, key=lambda c: free_at[c])
        free_at[chan] = off
        if not is_drum:
            first = note.bends[0].semitones if note.bends and note.bends[0].time <= 0 else 0.0
            events.append(_Event(on, 1, "bend", chan, _bend_value(first)))
            for bp in note.bends:
                t = on + int(round(bp.time / tempo * sr))
                if on < t < off:
                    events.append(_Event(t, 1, "bend", chan, _bend_value(bp.semitones)))
        events.append(_Event(on, 2, "on", chan, pitch, max(1, min(127, note.velocity))))
        events.append(_Event(off, 0, "off", chan, pitch))
    return events


def render_score(score: Score, sr: int, n_samples: int, *, soundfont: str | None = None,
                 programs: dict[int, int] | None = None, transpose: int = 0,
                 tempo: float = 1.0, gain: float = 0.5,
                 progress: Callable[[float], None] | None = None) -> np.ndarray:
    """Render ``score`` with fluidsynth; returns mono float32 audio of shape ``(n_samples,)``.

    ``programs`` overrides the GM program per track index; ``transpose`` shifts pitched tracks by
    semitones; ``tempo`` > 1 plays faster (note times are divided by it).  ``progress(fraction)``
    is called as the rendering advances (fraction of the output).
    """
    out = np.zeros(int(n_samples), np.float32)
    pos = 0
    for y in render_score_blocks(score, sr, n_samples, soundfont=soundfont, programs=programs,
                                 transpose=transpose, tempo=tempo, gain=gain, progress=progress):
        out[pos:pos + y.shape[0]] = y
        pos += y.shape[0]
    return out


#: Samples per block of :func:`render_score_blocks` (at the output rate).
FLUID_BLOCK = 1 << 17


def _schedule(synth: Any, sfid: int, score: Score, programs: dict[int, int] | None,
              render_sr: int, tempo: float, transpose: int) -> list[_Event]:
    """Give each track its MIDI channels on ``synth`` (programs selected, bend range set; a
    drum track one of the drum channels) and return all the tracks' events in time order."""
    melodic = [c for c in range(N_CHANNELS) if c % 16 != 9]
    drums = [c for c in range(N_CHANNELS) if c % 16 == 9]
    per_track = max(1, min(CHANNELS_PER_TRACK_MAX, len(melodic) // max(1, len(score.tracks))))
    events: list[_Event] = []
    for i, track in enumerate(score.tracks):
        if track.is_drum:
            chans, drums = drums[:1], drums[1:] or drums
            program = (programs or {}).get(i, 0)
            for c in chans:
                synth.program_select(c, sfid, 128, program)
        else:
            chans, melodic = melodic[:per_track], melodic[per_track:]
            program = (programs or {}).get(i, track.program)
            for c in chans:
                synth.program_select(c, sfid, 0, program)
            set_bend_range(synth, chans)
        if not chans:
            log.warning("track %d (%s): no MIDI channel left, not played", i, track.name)
            continue
        events.extend(_track_events(track.notes, chans, render_sr, tempo, transpose,
                                    track.is_drum))
    events.sort(key=lambda e: (e.sample, e.order))
    return events


def render_score_blocks(score: Score, sr: int, n_samples: int, *, soundfont: str | None = None,
                        programs: dict[int, int] | None = None, transpose: int = 0,
                        tempo: float = 1.0, gain: float = 0.5, block: int = FLUID_BLOCK,
                        progress: Callable[[float], None] | None = None) -> Iterator[np.ndarray]:
    """:func:`render_score` as consecutive float32 blocks adding up to ``n_samples`` (one synth
    kept running: memory is one block whatever the length); ``progress`` as there."""
    fluidsynth = import_fluidsynth()
    sf_path = find_soundfont(soundfont)
    n_samples = int(n_samples)
    render_sr = min(sr, FLUID_MAX_SR)
    synth = fluidsynth.Synth(gain=gain, samplerate=float(render_sr), channels=N_CHANNELS)
    try:
        sfid = synth.sfload(sf_path)
        if sfid < 0:
            raise SynthError(f"{sf_path}: fluidsynth cannot load this soundfont")
        events = _schedule(synth, sfid, score, programs, render_sr, tempo, transpose)
        out_len = int(round(n_samples * render_sr / sr))
        res = None
        if render_sr != sr:
            from semcodec.synth.ddsp_np import StreamResampler  # noqa: PLC0415

            res = StreamResampler(render_sr, sr, out_len)
        done = 0  # output samples yielded

        def emit(y: np.ndarray, last: bool) -> Iterator[np.ndarray]:
            nonlocal done
            if res is not None:
                y = res.push(y)
                if last:
                    y = np.concatenate([y, res.finish()])
            y = y[:max(0, n_samples - done)]
            done += y.shape[0]
            if y.shape[0]:
                yield y

        pos, k = 0, 0
        next_report = out_len // 20  # about 20 reports over the output
        while pos < out_len:
            end = min(out_len, pos + block)
            audio = np.zeros(end - pos, np.float32)
            at = pos
            while k < len(events) and events[k].sample < end:
                ev = events[k]
                if ev.sample > at:
                    pull(synth, audio[at - pos:ev.sample - pos])
                    at = ev.sample
                    if progress is not None and at >= next_report:
                        progress(at / out_len)
                        next_report = at + out_len // 20
                if ev.kind == "on":
                    synth.noteon(ev.chan, ev.a, ev.b)
                elif ev.kind == "off":
                    synth.noteoff(ev.chan, ev.a)
                else:
                    synth.pitch_bend(ev.chan, ev.a)
                k += 1
            if end > at:
                pull(synth, audio[at - pos:])
            pos = end
            if progress is not None:
                progress(pos / out_len)
            yield from emit(audio, pos >= out_len)
    finally:
        synth.delete()
    if done < n_samples:
        yield np.zeros(n_samples - done, np.float32)


#: fluid_synth_write_s16 scales by 32766 (pyfluidsynth's get_samples); the float output is
#: scaled the same way so that levels do not depend on the output path.
_S16_SCALE = np.float32(32766.0 / 32768.0)
_write_float = None


def _float_writer():
    """``fluid_synth_write_float`` from the library pyfluidsynth loaded (ctypes), or None."""
    global _write_float
    if _write_float is None:
        import ctypes  # noqa: PLC0415 - only with fluidsynth

        fluidsynth = import_fluidsynth()
        fn = getattr(getattr(fluidsynth, "_fl", None), "fluid_synth_write_float", None)
        if fn is None:  # pragma: no cover - every fluidsynth 1.x/2.x has it
            _write_float = False
        else:
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                           ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
            _write_float = fn
    return _write_float or None


def pull(synth, out: np.ndarray) -> None:
    """Fill ``out`` with the synth's next frames as mono float32.

    Rendered with ``fluid_synth_write_float``: the 16-bit path (pyfluidsynth's
    ``get_samples``) adds dither from a table fluidsynth fills with libc ``rand()`` the first
    time a synth is created in a process, so its output depended on how often anything else in
    that process had called ``rand()`` before (a Dask worker that had run other tasks decoded
    different bytes than a fresh process).  The float path has no dither: deterministic.
    """
    write = _float_writer()
    pos, n = 0, out.shape[0]
    buf = np.empty(2 * min(n, 1 << 16), dtype=np.float32)
    while pos < n:
        k = min(n - pos, 1 << 16)
        if write is not None:
            ptr = buf.ctypes.data
            if write(synth.synth, k, ptr, 0, 2, ptr, 1, 2) != 0:
                raise SynthError("fluidsynth failed to render")
            st = buf[:2 * k].reshape(-1, 2)
            out[pos:pos + k] = st.mean(axis=1) * _S16_SCALE
        else:  # pragma: no cover
            st = np.asarray(synth.get_samples(k), dtype=np.float32).reshape(-1, 2)
            out[pos:pos + k] = st.mean(axis=1) * (1.0 / 32768.0)
        pos += k


class FluidsynthEngine:
    """Decoding engine over :func:`render_score` with one soundfont."""

    name = "fluidsynth"

    def __init__(self, soundfont: str | os.PathLike | None = None) -> None:
        self.soundfont = find_soundfont(soundfont)

    def render(self, score: Score, sr: int, n_samples: int, *, timbres: tuple[Timbre, ...] = (),
               programs: dict[int, int] | None = None, transpose: int = 0, tempo: float = 1.0,
               samples: tuple[Sample, ...] = (),
               progress: Callable[[float], None] | None = None) -> np.ndarray:
        """Mono float32 audio ``(n_samples,)`` at ``sr`` Hz; loudness is left to the caller.

        ``timbres`` and ``samples`` (the neural engine's) are not used: the GM programs play.
        ``progress(fraction)`` is called as the rendering advances (fraction of the output).
        """
        del timbres, samples
        return render_score(score, sr, n_samples, soundfont=self.soundfont, programs=programs,
                            transpose=transpose, tempo=tempo, progress=progress)

    def blocks(self, score: Score, sr: int, n_samples: int, *, timbres: tuple[Timbre, ...] = (),
               programs: dict[int, int] | None = None, transpose: int = 0, tempo: float = 1.0,
               samples: tuple[Sample, ...] = ()) -> Iterator[np.ndarray]:
        """:meth:`render` as consecutive float32 blocks (bounded memory)."""
        del timbres, samples
        return render_score_blocks(score, sr, n_samples, soundfont=self.soundfont,
                                   programs=programs, transpose=transpose, tempo=tempo)


def render_notes(notes: list[Note] | tuple[Note, ...], program: int, sr: int, n_samples: int, *,
                 is_drum: bool = False, soundfont: str | None = None) -> np.ndarray:
    """Render one instrument's ``notes`` with GM ``program``: mono float32 ``(n_samples,)``."""
    track = Track(name="t", program=program, is_drum=is_drum).with_notes(list(notes))
    return render_score(Score(tracks=(track,)), sr, n_samples, soundfont=soundfont,
                        programs={0: program})
