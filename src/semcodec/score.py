"""Score-level analysis and export: tempo, key, MIDI and MusicXML.

Pure functions over :class:`semcodec.events.Score`; times are seconds, tempo is BPM.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path
from typing import cast

import numpy as np

from semcodec.constants import VELOCITY_MAX
from semcodec.errors import OutputError
from semcodec.events import Note, Score
from semcodec.io import atomic_write_bytes

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


def beat_phase(notes: list[Note] | tuple[Note, ...], tempo_bpm: float) -> float:
    """The time (s, in [0, one beat)) of the beat grid that best fits the onsets."""
    if not notes:
        return 0.0
    beat = 60.0 / tempo_bpm
    ang = np.array([2 * np.pi * (n.onset % beat) / beat for n in notes])
    w = np.array([n.velocity for n in notes], dtype=float)
    mean = math.atan2(float((w * np.sin(ang)).sum()), float((w * np.cos(ang)).sum()))
    return (mean % (2 * np.pi)) / (2 * np.pi) * beat


def to_pretty_midi(score: Score, *, align_to_beat: bool = False):
    """A ``pretty_midi.PrettyMIDI`` of ``score`` (one instrument per track, bends as events).

    With ``align_to_beat`` the notes are shifted so that the estimated beat grid starts at a
    bar line (0 s), which makes a quantized notation readable.
    """
    import pretty_midi  # noqa: PLC0415

    tempo = midi_tempo(score.tempo_bpm)
    # every tick count must fit a MIDI delta time (28 bits): fewer ticks per beat on very long
    # and fast scores (a day at 1000 BPM), never below 24
    beats = (score.end_time + 2.0 * 60.0 / tempo) * tempo / 60.0
    resolution = max(24, min(_MIDI_RESOLUTION, int(_MIDI_MAX_TICKS // max(beats, 1.0))))
    pm = pretty_midi.PrettyMIDI(resolution=resolution, initial_tempo=tempo)
    num, den = score.time_signature
    pm.time_signature_changes.append(pretty_midi.TimeSignature(int(num), int(den), 0.0))
    shift = 0.0
    if align_to_beat:
        all_notes = [n for t in score.tracks for n in t.notes]
        phase = beat_phase(all_notes, tempo)
        shift = (60.0 / tempo - phase) % (60.0 / tempo)
    for track in score.tracks:
        inst = pretty_midi.Instrument(program=int(track.program), is_drum=track.is_drum,
                                      name=midi_text(track.name))
        for n in track.notes:
            inst.notes.append(pretty_midi.Note(velocity=int(n.velocity), pitch=int(n.pitch),
                                               start=n.onset + shift, end=n.offset + shift))
            if n.bends and not track.is_drum:
                for bp in n.bends:
                    value = int(round(bp.semitones / 2.0 * 8192))
                    inst.pitch_bends.append(pretty_midi.PitchBend(
                        max(-8192, min(8191, value)), n.onset + shift + bp.time))
                inst.pitch_bends.append(pretty_midi.PitchBend(0, n.offset + shift))
        inst.pitch_bends.sort(key=lambda b: b.time)
        pm.instruments.append(inst)
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


def lyric_track(score: Score) -> int | None:
    """Index of the track that sings the lyrics: a voice by name or program, else the
    highest pitched (mean MIDI pitch) non-drum track with notes; ``None`` without one."""
    from semcodec.constants import VOICE_PROGRAMS, is_voice_name  # noqa: PLC0415

    pitched = [i for i, t in enumerate(score.tracks) if t.notes and not t.is_drum]
    if not pitched:
        return None
    for i in pitched:
        if is_voice_name(score.tracks[i].name) or score.tracks[i].program in VOICE_PROGRAMS:
            return i
    return max(pitched, key=lambda i: float(np.mean([n.pitch for n in score.tracks[i].notes])))


def syllables(lyrics: str) -> list[tuple[str, str]]:
    """Lyrics text → ``[(syllable, syllabic), ...]`` with MusicXML's syllabic kinds
    (``single``, ``begin``, ``middle``, ``end``): words split on white space, syllables of a
    word joined by hyphens (``hel-lo`` → ``hel`` begin, ``lo`` end)."""
    out = []
    for word in lyrics.split():
        parts = [p for p in word.split("-") if p]
        if len(parts) == 1:
            out.append((parts[0], "single"))
        for k, part in enumerate(parts if len(parts) > 1 else ()):
            out.append((part, "begin" if k == 0 else ("end" if k == len(parts) - 1 else "middle")))
    return out


def to_music21(score: Score, lyrics: str | None = None):
    """A ``music21.stream.Score`` quantized to the score's tempo and meter (16ths and triplets).

    ``lyrics`` (plain text) are set one syllable per note or chord on :func:`lyric_track`'s
    part, in order; syllables left over when the notes run out are dropped (logged).
    """
    import music21  # noqa: PLC0415

    check_notation_size(score)
    pm = to_pretty_midi(score, align_to_beat=True)
    with tempfile.TemporaryDirectory() as tmp:
        mid = Path(tmp) / "score.mid"
        pm.write(str(mid))
        parsed = music21.converter.parse(str(mid), format="midi", quantizePost=True,
                                         quarterLengthDivisors=(4, 3))
    written = [t for t in score.tracks if t.notes]  # one part each, in order
    parts = cast("music21.stream.Score", parsed).parts
    if len(parts) == len(written):  # the names as text (not MIDI's Latin-1 bytes)
        for part, t in zip(parts, written):
            part.partName = "".join(ch for ch in t.name if ch.isprintable())  # XML-safe
    key = _music21_key(score.key)
    if key is not None:
        for part in cast("music21.stream.Score", parsed).parts:
            first = part.getElementsByClass("Measure").first() or part
            first.insert(0, key)
    if lyrics:
        _attach_lyrics(score, parsed, lyrics)
    return parsed


def _attach_lyrics(score: Score, parsed, lyrics: str) -> None:
    target = lyric_track(score)
    if target is None:
        log.warning("lyrics not exported: the score has no pitched notes")
        return
    # to_pretty_midi writes one instrument per track, in order; music21 gives a part each
    written = [i for i, t in enumerate(score.tracks) if t.notes]
    parts = list(parsed.parts)
    part = parts[written.index(target)] if len(parts) == len(written) else parts[0]
    sylls = syllables(lyrics)
    notes = [n for n in part.flatten().notes if not n.tie or n.tie.type == "start"]
    for el, (text, kind) in zip(notes, sylls):
        el.addLyric(text)
        el.lyrics[-1].syllabic = kind
    if len(sylls) > len(notes):
        log.warning("lyrics: %d of %d syllables had no note to go with", len(sylls) - len(notes),
                    len(sylls))


def _music21_key(name: str):
    import music21  # noqa: PLC0415

    try:
        tonic, mode = name.split()
        return music21.key.Key(tonic, mode)
    except Exception:  # noqa: BLE001 - a malformed key name only loses the signature
        return None


def check_notation_size(score: Score) -> None:
    """Refuse (:class:`OutputError`) a score too long to typeset: more than
    :data:`MAX_NOTATION_BEATS` beats up to its last note's end or :data:`MAX_NOTATION_NOTES`
    notes (checked before music21 starts)."""
    beats = score.end_time * midi_tempo(score.tempo_bpm) / 60.0
    if beats > MAX_NOTATION_BEATS or score.n_notes > MAX_NOTATION_NOTES:
        raise OutputError(
            f"score too long for MusicXML ({beats:.0f} beats, {score.n_notes} notes; at most "
            f"{MAX_NOTATION_BEATS} beats and {MAX_NOTATION_NOTES} notes): export --midi instead")


def write_musicxml(score: Score, path: str | os.PathLike, lyrics: str | None = None) -> None:
    """Write ``score`` as MusicXML (quantized notation, atomic), with ``lyrics`` if given.

    A meter music21 cannot typeset (e.g. 64/1) is replaced by 4/4 (logged)."""
    from dataclasses import replace  # noqa: PLC0415

    try:
        check_notation_size(score)
    except OutputError as exc:
        raise OutputError(f"{os.fspath(path)}: {exc}") from None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "score.musicxml"
        for attempt in (score, replace(score, time_signature=(4, 4))):
            try:
                to_music21(attempt, lyrics).write("musicxml", fp=str(out))
                break
            except Exception as exc:  # noqa: BLE001 - music21 raises many types
                if attempt.time_signature == (4, 4) or attempt is not score:
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
