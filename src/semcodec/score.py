"""Score-level analysis and export: tempo, key, MIDI and MusicXML.

Pure functions over :class:`semcodec.events.Score`; times are seconds, tempo is BPM.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from semcodec.constants import VELOCITY_MAX
from semcodec.errors import OutputError
from semcodec.events import Note, Score
from semcodec.io import atomic_write_bytes
from semcodec.notation import apply_to_midi, beat_phase, lyric_track, music21_key, syllables
from semcodec.notation import to_music21 as _notation_to_music21

__all__ = ["estimate_key", "estimate_tempo", "beat_phase", "to_pretty_midi", "write_midi",
           "lyric_track", "syllables", "to_music21", "music21_key", "write_musicxml",
           "score_from_music21"]

log = logging.getLogger(__name__)

_PITCH_NAMES = ("C", "C#", "D", "E-", "E", "F", "F#", "G", "A-", "A", "B-", "B")
# Krumhansl-Kessler key profiles (major, minor), index 0 = tonic.
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def estimate_key(notes: list[Note] | tuple[Note, ...]) -> str:
    """Key by Krumhansl-Schmuckler correlation of the duration-weighted pitch-class histogram.

    Returns e.g. ``"G major"`` or ``"E- minor"`` (music21 spelling); ``"C major"`` without notes.
    """
    hist = np.zeros(12)
    for n in notes:
        hist[n.pitch % 12] += max(n.duration, 0.05) * n.velocity
    if not hist.any():
        return "C major"
    best, best_r = "C major", -2.0
    for tonic in range(12):
        for mode, prof in (("major", _MAJOR), ("minor", _MINOR)):
            r = float(np.corrcoef(hist, np.roll(prof, tonic))[0, 1])
            if r > best_r:
                best, best_r = f"{_PITCH_NAMES[tonic]} {mode}", r
    return best


def estimate_tempo(notes: list[Note] | tuple[Note, ...], *, default: float = 120.0) -> float:
    """Tempo in BPM from the note onsets (autocorrelation of an onset envelope).

    The envelope is built from the score at 100 frames/s, so this costs nothing on long audio.
    The autocorrelation is weighted by a log-normal prior centred on ``default`` BPM (one octave
    wide), as librosa's tempo estimator does.  ``default`` when there are < 8 notes.
    """
    if len(notes) < 8:
        return default
    fps = 100.0
    end = max(n.onset for n in notes) + 2.0
    env = np.zeros(int(end * fps) + 1)
    for n in notes:
        env[int(n.onset * fps)] += n.velocity / VELOCITY_MAX
    env = np.convolve(env, np.hanning(5), mode="same")  # ~30 ms onset bumps
    env -= env.mean()
    size = 1 << int(np.ceil(np.log2(2 * env.size)))
    spec = np.fft.rfft(env, size)
    ac = np.fft.irfft(spec * np.conj(spec), size)[: env.size]
    lags = np.arange(int(fps * 60 / 240), min(int(fps * 60 / 30), env.size - 1))
    if lags.size < 3 or ac[0] <= 0:
        return default
    bpm = 60.0 * fps / lags
    prior = np.exp(-0.5 * (np.log2(bpm / default)) ** 2)
    score = ac[lags] * prior
    i = int(np.argmax(score))
    lag = float(lags[i])
    if 0 < i < lags.size - 1:  # parabolic refinement of the peak
        a, b, c = score[i - 1], score[i], score[i + 1]
        denom = a - 2 * b + c
        if denom < 0:
            lag += 0.5 * (a - c) / denom
    value = 60.0 * fps / lag
    if not math.isfinite(value) or value <= 0:
        return default
    return round(value, 1)


def to_pretty_midi(score: Score):
    """A ``pretty_midi.PrettyMIDI`` of ``score`` (one instrument per track, bends as events).

    Notes keep their times (s); the tempo map (one tempo per beat of ``score.tempo_map``, or
    ``score.tempo_bpm``), the meter and the key signature make the MIDI bars fall on the
    music's (:func:`semcodec.notation.apply_to_midi`).
    """
    import pretty_midi  # noqa: PLC0415

    tempo = float(score.tempo_bpm) if score.tempo_bpm > 0 else 120.0
    pm = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=tempo)
    for track in score.tracks:
        inst = pretty_midi.Instrument(program=int(track.program), is_drum=track.is_drum,
                                      name=track.name)
        for n in track.notes:
            inst.notes.append(pretty_midi.Note(velocity=int(n.velocity), pitch=int(n.pitch),
                                               start=n.onset, end=n.offset))
            if n.bends and not track.is_drum:
                for bp in n.bends:
                    value = int(round(bp.semitones / 2.0 * 8192))
                    inst.pitch_bends.append(pretty_midi.PitchBend(
                        max(-8192, min(8191, value)), n.onset + bp.time))
                inst.pitch_bends.append(pretty_midi.PitchBend(0, n.offset))
        inst.pitch_bends.sort(key=lambda b: b.time)
        pm.instruments.append(inst)
    apply_to_midi(pm, score)
    return pm


def write_midi(score: Score, path: str | os.PathLike) -> None:
    """Write ``score`` as a Standard MIDI File (atomic)."""
    import io  # noqa: PLC0415

    pm = to_pretty_midi(score)
    buf = io.BytesIO()
    pm.write(buf)
    atomic_write_bytes(path, buf.getvalue())


def to_music21(score: Score, lyrics: str | None = None, *, title: str = "",
               composer: str = ""):
    """A ``music21.stream.Score`` of ``score``, quantized to its beat grid with 16ths and
    triplets, two voices per staff at most (:func:`semcodec.notation.to_music21`);
    ``lyrics`` (plain text) one syllable per note of :func:`lyric_track`'s part."""
    return _notation_to_music21(score, lyrics, title=title, composer=composer)


def write_musicxml(score: Score, path: str | os.PathLike, lyrics: str | None = None, *,
                   title: str | None = None, composer: str = "") -> None:
    """Write ``score`` as MusicXML (quantized notation, atomic), with ``lyrics`` if given;
    ``title`` defaults to the output file's name without its extension."""
    parsed = to_music21(score, lyrics, title=title or Path(os.fspath(path)).stem,
                        composer=composer)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "score.musicxml"
        try:
            parsed.write("musicxml", fp=str(out))
        except Exception as exc:  # noqa: BLE001 - music21 raises many types
            raise OutputError(f"{os.fspath(path)}: cannot write MusicXML ({exc})") from None
        atomic_write_bytes(path, out.read_bytes())


def score_from_music21(stream, *, tempo_bpm: float | None = None, programs: list[int] | None = None,
                       max_seconds: float | None = None, velocity: int = 80) -> Score:
    """A :class:`Score` from a music21 stream: one track per part, times in seconds.

    ``tempo_bpm`` overrides the stream's tempo (default: its first metronome mark, else 100);
    ``programs`` gives each part's GM program (default piano); notes starting after
    ``max_seconds`` are dropped and those crossing it are cut.
    """
    from semcodec.events import Track  # noqa: PLC0415

    if tempo_bpm is None:
        marks = stream.flatten().getElementsByClass("MetronomeMark")
        tempo_bpm = float(marks[0].number) if marks and marks[0].number else 100.0
    spq = 60.0 / tempo_bpm  # seconds per quarter note
    tracks = []
    for i, part in enumerate(stream.parts if hasattr(stream, "parts") and stream.parts else [stream]):
        notes = []
        for el in part.flatten().notes:
            if el.duration.quarterLength <= 0:
                continue
            on = float(el.offset) * spq
            off = on + float(el.duration.quarterLength) * spq
            if max_seconds is not None:
                if on >= max_seconds:
                    continue
                off = min(off, max_seconds)
            for p in getattr(el, "pitches", ()):
                notes.append(Note(on, off, int(p.midi), velocity))
        program = programs[i % len(programs)] if programs else 0
        name = part.partName or f"part{i + 1}"
        tracks.append(Track(name=str(name), program=program).with_notes(notes))
    return Score(tracks=tuple(tracks), tempo_bpm=round(float(tempo_bpm), 1))
