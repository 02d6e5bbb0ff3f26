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

__all__ = ["estimate_key", "estimate_tempo", "beat_phase", "to_pretty_midi", "midi_tempo",
           "midi_text", "write_midi", "lyric_track", "syllables", "to_music21", "music21_key",
           "check_notation_size", "write_musicxml", "score_from_music21"]

log = logging.getLogger(__name__)

#: Slowest tempo a Standard MIDI File holds (its set-tempo event stores at most 0xFFFFFF
#: microseconds per beat): slower container tempos (the format allows 1 BPM) are written as
#: this one; the notes keep their times in seconds.
MIDI_MIN_TEMPO_BPM = 60e6 / 0xFFFFFF
#: Largest MIDI delta time (ticks) and the ticks per beat the exporter prefers.
_MIDI_MAX_TICKS = 0x0FFFFFFF
_MIDI_RESOLUTION = 220
#: Longest score typeset as MusicXML (beats up to the last note's end; music21 needs ~5 ms a
#: beat, and sheet music this long is unreadable anyway): longer scores are refused in one line.
MAX_NOTATION_BEATS = 20_000
#: Most notes typeset as MusicXML.
MAX_NOTATION_NOTES = 50_000

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

    tempo = midi_tempo(score.tempo_bpm)
    # every tick count must fit a MIDI delta time (28 bits): fewer ticks per beat on very long
    # and fast scores (a day at 1000 BPM), never below 24; a multiple of 4 (16ths)
    beats = (score.end_time + 2.0 * 60.0 / tempo) * tempo / 60.0
    resolution = max(24, min(_MIDI_RESOLUTION, int(_MIDI_MAX_TICKS // max(2.0 * beats, 1.0))))
    pm = pretty_midi.PrettyMIDI(resolution=resolution - resolution % 4, initial_tempo=tempo)
    num, den = score.time_signature
    pm.time_signature_changes.append(pretty_midi.TimeSignature(int(num), int(den), 0.0))
    for track in score.tracks:
        inst = pretty_midi.Instrument(program=int(track.program), is_drum=track.is_drum,
                                      name=midi_text(track.name))
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


def midi_tempo(tempo_bpm: float) -> float:
    """The tempo (BPM) a MIDI file is written with for a score at ``tempo_bpm``: the same,
    raised to :data:`MIDI_MIN_TEMPO_BPM` (120 for a value that is not a positive number)."""
    tempo = float(tempo_bpm)
    if not math.isfinite(tempo) or tempo <= 0:
        return 120.0
    if tempo < MIDI_MIN_TEMPO_BPM:
        log.info("tempo %.3g BPM is below what MIDI holds; written as %.3f BPM", tempo,
                 MIDI_MIN_TEMPO_BPM)
    return max(tempo, MIDI_MIN_TEMPO_BPM + 1e-6)


def midi_text(text: str) -> str:
    """``text`` for a MIDI text event: mido writes these as Latin-1, so the UTF-8 bytes of
    ``text`` are passed as Latin-1 characters (the file then holds UTF-8, as DAWs expect)."""
    return text.encode("utf-8", "replace").decode("latin-1")


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
    ``lyrics`` (plain text) one syllable per note of :func:`lyric_track`'s part.  Scores too
    long to typeset are refused (:func:`check_notation_size`)."""
    check_notation_size(score)
    return _notation_to_music21(score, lyrics, title=_xml_text(title),
                                composer=_xml_text(composer))


def _xml_text(text: str) -> str:
    """``text`` without the characters XML cannot hold (control characters)."""
    return "".join(ch for ch in text if ch.isprintable())


def check_notation_size(score: Score) -> None:
    """Refuse (:class:`OutputError`) a score too long to typeset: more than
    :data:`MAX_NOTATION_BEATS` beats up to its last note's end or :data:`MAX_NOTATION_NOTES`
    notes (checked before music21 starts)."""
    beats = score.end_time * midi_tempo(score.tempo_bpm) / 60.0
    if beats > MAX_NOTATION_BEATS or score.n_notes > MAX_NOTATION_NOTES:
        raise OutputError(
            f"score too long for MusicXML ({beats:.0f} beats, {score.n_notes} notes; at most "
            f"{MAX_NOTATION_BEATS} beats and {MAX_NOTATION_NOTES} notes): export --midi instead")


def write_musicxml(score: Score, path: str | os.PathLike, lyrics: str | None = None, *,
                   title: str | None = None, composer: str = "") -> None:
    """Write ``score`` as MusicXML (quantized notation, atomic), with ``lyrics`` if given;
    ``title`` defaults to the output file's name without its extension.

    A meter music21 cannot typeset (e.g. 64/1) is replaced by 4/4 (logged)."""
    from dataclasses import replace  # noqa: PLC0415

    try:
        check_notation_size(score)
    except OutputError as exc:
        raise OutputError(f"{os.fspath(path)}: {exc}") from None
    name = title or Path(os.fspath(path)).stem
    tm = score.tempo_map
    plain = replace(score, time_signature=(4, 4), tempo_map=None if tm is None else replace(
        tm, time_signature=(4, 4), downbeat=tm.downbeat % 4))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "score.musicxml"
        for attempt in (score, plain):
            try:
                to_music21(attempt, lyrics, title=name, composer=composer).write(
                    "musicxml", fp=str(out))
                break
            except Exception as exc:  # noqa: BLE001 - music21 raises many types
                if attempt is not score:
                    raise OutputError(f"{os.fspath(path)}: cannot write MusicXML ({exc})") from None
                log.warning("meter %d/%d cannot be typeset (%s); written in 4/4",
                            *score.time_signature, str(exc).splitlines()[0][:80])
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
