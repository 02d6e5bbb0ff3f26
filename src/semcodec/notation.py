"""Readable notation: a beat grid, quantization, voices and staves for the MusicXML export.

:func:`beat_grid` turns a score's tempo map (or its single tempo) into beat times that start
on a downbeat at or before 0 s; :func:`to_music21` builds a ``music21.stream.Score`` from it:

* every note's onset and offset is quantized to its beat's subdivision, chosen per beat and
  per staff between duple 16ths (4 per beat) and triplet 8ths (3 per beat) by the onsets'
  and offsets' fit, with a penalty for triplets (compound meters: 16ths, 6 per dotted
  quarter), so the only tuplets written are triplets;
* notes that start together with the same length are one chord; at most two voices per
  staff: a group starting while both voices still sound shortens the earlier one;
* notes and rests are cut at beat boundaries where they start or end inside a beat and at
  bar lines, with ties, so every written value is a plain, dotted or triplet value;
* piano (GM programs 0-7), and any part too wide for one staff, on a grand staff split at
  middle C; a clef by register (treble,
  bass, treble 8vb for guitars, bass 8vb for basses); drums on a percussion staff at the
  usual drum-set positions with x noteheads for cymbals and hi-hats, hands up, feet down;
* the title and composer given, one tempo mark (first part), the key signature, part names
  from the General MIDI programs, lyrics under the sung line.

Times are seconds, positions in beats (a beat: a quarter in x/4, a dotted quarter in x/8).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from semcodec.constants import VOICE_PROGRAMS, is_voice_name
from semcodec.events import Note, Score, TempoMap, Track

log = logging.getLogger(__name__)

#: Triplet penalty: a beat is written in triplets when the mean error of its onsets on the
#: triplet grid (in beats) plus this is below their error on the 16ths' grid.
TRIPLET_PENALTY = 0.015
#: Longest MIDI tempo (microseconds per quarter note) a set-tempo event holds.
_MIDI_MAX_TEMPO_US = 0xFFFFFF
#: Gaps between a voice's notes up to this (beats) are closed: no rest shorter than a 16th.
MAX_GAP = Fraction(1, 4)
#: Middle C: piano notes from it up go on the upper staff.
MIDDLE_C = 60
#: GM drum key -> (display step+octave on the five-line percussion staff, notehead, foot).
DRUM_MAP: dict[int, tuple[str, str, bool]] = {
    35: ("E4", "normal", True), 36: ("F4", "normal", True),
    37: ("C5", "x", False), 38: ("C5", "normal", False), 39: ("C5", "x", False),
    40: ("C5", "normal", False), 41: ("G4", "normal", False), 42: ("G5", "x", False),
    43: ("A4", "normal", False), 44: ("D4", "x", True), 45: ("B4", "normal", False),
    46: ("G5", "circle-x", False), 47: ("D5", "normal", False), 48: ("D5", "normal", False),
    49: ("A5", "x", False), 50: ("E5", "normal", False), 51: ("F5", "x", False),
    52: ("A5", "x", False), 53: ("F5", "diamond", False), 54: ("E5", "x", False),
    55: ("A5", "x", False), 56: ("E5", "triangle", False), 57: ("A5", "x", False),
    59: ("F5", "x", False),
}
_DRUM_DEFAULT = ("C5", "x", False)


@dataclass(frozen=True)
class Grid:
    """Beat times ``beats`` (s, (n,)) with ``beats[0] <= 0`` a downbeat, ``beats_per_bar``,
    ``quarters_per_beat`` (1 in x/4, 3/2 in x/8) and the time signature."""

    beats: np.ndarray
    beats_per_bar: int
    quarters_per_beat: Fraction
    time_signature: tuple[int, int]

    def position(self, t: float | np.ndarray) -> np.ndarray:
        """Beat position(s) of time(s) ``t`` (s): linear between beats, past the last beat at
        the last beat's length."""
        b = self.beats
        t = np.asarray(t, dtype=float)
        last = b[-1] - b[-2]
        inside = np.interp(t, b, np.arange(b.size, dtype=float))
        return np.where(t > b[-1], b.size - 1 + (t - b[-1]) / last, inside)


def _plain_meter(ts: tuple[int, int]) -> bool:
    """A meter the notation writes as it is: a beat of a quarter, half or (compound) dotted
    quarter, bars of 1..16 beats; others (64/1, 64/64, ...) are written in 4/4."""
    num, den = ts
    beats = num // 3 if den == 8 and num % 3 == 0 else num
    return den in (2, 4) and 1 <= num <= 16 or den == 8 and num % 3 == 0 and 1 <= beats <= 8


def beat_grid(score: Score, end: float | None = None, *, pad_to_zero: bool = False) -> Grid:
    """The score's beat grid, starting on the last downbeat before the first note (at or
    before 0 s with ``pad_to_zero``) and extended past ``end`` (s, default: the last note's
    offset).

    From ``score.tempo_map`` when it has one, else a constant grid at ``score.tempo_bpm``
    (beats per minute of ``score.time_signature``'s beat) phased to the notes' onsets.
    """
    end = score.end_time if end is None else end
    tm = score.tempo_map
    if tm is not None and not _plain_meter(tm.time_signature):
        tm = TempoMap(beats=tm.beats, downbeat=tm.downbeat % 4, time_signature=(4, 4))
    if tm is None or len(tm.beats) < 2:
        ts = (int(score.time_signature[0]), int(score.time_signature[1]))
        if not _plain_meter(ts):
            ts = (4, 4)
        tempo = score.tempo_bpm if math.isfinite(score.tempo_bpm) and score.tempo_bpm > 0 else 120.0
        notes = [n for t in score.tracks if not t.is_drum for n in t.notes] or \
            [n for t in score.tracks for n in t.notes]
        phase = beat_phase(notes, tempo)
        tm = TempoMap(beats=(phase, phase + 60.0 / tempo), downbeat=0, time_signature=ts)
    bpb = tm.beats_per_bar
    beats = list(tm.beats)
    down = tm.downbeat % bpb
    first = beats[1] - beats[0]
    # the first note, or 0 s; a note up to an eighth of a beat early is on its beat
    start = 0.0 if pad_to_zero else min(
        (n.onset for t in score.tracks for n in t.notes), default=0.0) + 0.125 * first
    while beats[0] > start or down % bpb:
        beats.insert(0, beats[0] - first)
        down += 1
    if not pad_to_zero:  # no empty bars before the music
        while len(beats) > 2 * bpb and beats[bpb] <= start:
            del beats[:bpb]
    last = beats[-1] - beats[-2]
    while beats[-1] < end + bpb * last:  # a bar past the end at least
        beats.append(beats[-1] + last)
    q = Fraction(tm.quarters_per_beat).limit_denominator(8)
    return Grid(np.asarray(beats), bpb, q, tm.time_signature)


def beat_phase(notes: list[Note] | tuple[Note, ...], tempo_bpm: float) -> float:
    """The time (s, in [0, one beat)) of the beat grid that best fits the onsets."""
    if not notes:
        return 0.0
    beat = 60.0 / tempo_bpm
    ang = np.array([2 * np.pi * (n.onset % beat) / beat for n in notes])
    w = np.array([n.velocity for n in notes], dtype=float)
    mean = math.atan2(float((w * np.sin(ang)).sum()), float((w * np.cos(ang)).sum()))
    return (mean % (2 * np.pi)) / (2 * np.pi) * beat


def lyric_track(score: Score) -> int | None:
    """Index of the track that sings the lyrics: a voice by name or program, else the
    highest pitched (mean MIDI pitch) non-drum track with notes; ``None`` without one."""

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


def music21_key(name: str):
    """A ``music21.key.Key`` of a key name (``"G major"``, ``"E- minor"``); None if malformed."""
    import music21  # noqa: PLC0415

    try:
        tonic, mode = name.split()
        return music21.key.Key(tonic, mode)
    except Exception:  # noqa: BLE001 - a malformed key name only loses the signature
        return None


# --- quantization -----------------------------------------------------------------------


@dataclass
class _Event:
    on: Fraction  # beats
    off: Fraction
    pitches: list[int]
    velocity: int = 80


def _quantize(pos_on: np.ndarray, pos_off: np.ndarray, divs: tuple[int, ...]
              ) -> tuple[list[Fraction], list[Fraction]]:
    """Onsets/offsets (beats) snapped to a per-beat subdivision chosen among ``divs`` by the
    onsets in the beat (the rhythm; offsets are too loose to judge by): the first of ``divs``
    unless another fits them better by ``TRIPLET_PENALTY`` (beats, mean error)."""
    beat_of = np.floor(pos_on + 1e-9).astype(int)
    choice: dict[int, int] = {}
    for b in np.unique(beat_of):
        frac = pos_on[beat_of == b] - b
        best, best_cost = divs[0], np.inf
        for d in divs:
            err = np.abs(frac * d - np.round(frac * d)) / d
            cost = float(err.mean()) + (TRIPLET_PENALTY if d != divs[0] else 0.0)
            if cost < best_cost:
                best, best_cost = d, cost
        choice[int(b)] = best

    def snap(p: float) -> Fraction:
        b = int(np.floor(p + 1e-9))
        d = choice.get(b, divs[0])
        return b + Fraction(int(round((p - b) * d)), d)
    ons = [snap(p) for p in pos_on]
    offs = []
    for on, p in zip(ons, pos_off):
        off = snap(p)
        if off <= on:  # at least one unit of the onset's beat grid
            d = choice.get(math.floor(on), divs[0])
            off = on + Fraction(1, d)
        offs.append(off)
    return ons, offs


def _events(notes: list[Note], grid: Grid, divs: tuple[int, ...], drum: bool) -> list[_Event]:
    """Quantized chord events of ``notes`` (beats), sorted by onset."""
    if not notes:
        return []
    on = grid.position(np.array([n.onset for n in notes]))
    off = grid.position(np.array([n.offset for n in notes]))
    qon, qoff = _quantize(on, off, divs)
    if drum:  # a hit lasts until the next hit of its voice, at most a beat (set by _voices)
        qoff = [o + Fraction(1, 4) for o in qon]
    groups: dict[tuple[Fraction, Fraction], _Event] = {}
    for n, a, b in zip(notes, qon, qoff):
        ev = groups.setdefault((a, b), _Event(a, b, [], 0))
        if n.pitch not in ev.pitches:
            ev.pitches.append(int(n.pitch))
        ev.velocity = max(ev.velocity, int(n.velocity))
    return sorted(groups.values(), key=lambda e: (e.on, -max(e.pitches)))


def _voices(events: list[_Event]) -> list[list[_Event]]:
    """At most two voices of non-overlapping events: the first free voice takes an event; when
    both still sound, an event at the same onset joins voice 1's chord and a later one cuts
    the voice that ends first."""
    voices: list[list[_Event]] = [[], []]
    for ev in events:
        ends = [v[-1].off if v else Fraction(-1) for v in voices]
        if ends[0] <= ev.on:
            voices[0].append(ev)
        elif ends[1] <= ev.on:
            voices[1].append(ev)
        else:
            k = 0 if ends[0] <= ends[1] else 1
            last = voices[k][-1]
            if last.on == ev.on:
                last.pitches += [p for p in ev.pitches if p not in last.pitches]
                last.off = min(last.off, ev.off) if last.off > ev.on else last.off
            else:
                last.off = ev.on
                voices[k].append(ev)
    for v in voices:  # no rests shorter than a 16th between a voice's notes: legato
        for a, b in zip(v, v[1:]):
            if Fraction(0) < b.on - a.off <= MAX_GAP:
                a.off = b.on
    return [v for v in voices if v]


def _drum_voices(events: list[_Event]) -> list[list[_Event]]:
    """Hands (voice 1) and feet (voice 2); a hit lasts until the next of its voice, at most
    to the end of its beat."""
    hands, feet = [], []
    for ev in events:
        up = [p for p in ev.pitches if not DRUM_MAP.get(p, _DRUM_DEFAULT)[2]]
        down = [p for p in ev.pitches if DRUM_MAP.get(p, _DRUM_DEFAULT)[2]]
        end = Fraction(math.floor(ev.on) + 1)  # to the end of its beat at most
        if up:
            hands.append(_Event(ev.on, end, up, ev.velocity))
        if down:
            feet.append(_Event(ev.on, end, down, ev.velocity))
    out = []
    for v in (hands, feet):
        merged: list[_Event] = []
        for ev in v:
            if merged and merged[-1].on == ev.on:
                merged[-1].pitches += [p for p in ev.pitches if p not in merged[-1].pitches]
                continue
            if merged:
                merged[-1].off = min(merged[-1].off, ev.on)
            merged.append(ev)
        if merged:
            out.append(merged)
    return out


def _pieces(a: Fraction, b: Fraction, bpb: int) -> list[tuple[Fraction, Fraction]]:
    """[a, b) cut so that every piece lies inside one beat or spans whole beats of one bar."""
    out = []
    while a < b:
        nxt = Fraction(math.floor(a) + 1)
        if a.denominator != 1:  # starts inside a beat: to the beat's end
            cut = min(b, nxt)
        elif b - a >= 1:  # whole beats, to the bar line at most
            bar_end = (int(a) // bpb + 1) * bpb
            cut = min(Fraction(math.floor(b)), Fraction(bar_end))
        else:
            cut = b
        out.append((a, cut))
        a = cut
    return out


# --- music21 ----------------------------------------------------------------------------


@dataclass
class _Staff:
    name: str
    voices: list[list[_Event]]
    clef: str  # treble, bass, treble8vb, bass8vb, percussion
    drum: bool = False


def _clef(track: Track, pitches: list[int]) -> str:
    """The clef for a one-staff part, by its median pitch (guitars: treble 8vb)."""
    med = float(np.median(pitches)) if pitches else 60.0
    if 24 <= track.program <= 31 and 50 <= med < 76:
        return "treble8vb"
    if med < 43:
        return "bass8vb"
    return "bass" if med < 57 else "treble"


def _two_staves(track: Track, pitches: list[int]) -> bool:
    """A grand staff: a piano (GM 0-7), or a part spanning both clefs (10th percentile
    pitch under G3 and 90th over D4: one staff would need many ledger lines)."""
    if 0 <= track.program <= 7:
        return True
    lo, hi = np.percentile(pitches, [10, 90]) if pitches else (60, 60)
    return bool(lo < 55 and hi > 62)


def _make_clef(kind: str):
    from music21 import clef  # noqa: PLC0415

    return {"treble": clef.TrebleClef, "bass": clef.BassClef, "treble8vb": clef.Treble8vbClef,
            "bass8vb": clef.Bass8vbClef, "percussion": clef.PercussionClef}[kind]()


def part_name(track: Track) -> str:
    """A part's name: the General MIDI program's name ("Drums" for a drum track)."""
    import pretty_midi  # noqa: PLC0415

    if track.is_drum:
        return "Drums"
    return pretty_midi.program_to_instrument_name(int(track.program))


def _element(ev: _Event, ql: Fraction, drum: bool, tie: str | None):
    from music21 import chord, note, percussion, tie as m21tie  # noqa: PLC0415

    el: Any
    if drum:
        hits = []
        for p in sorted(ev.pitches):
            disp, head, _ = DRUM_MAP.get(p, _DRUM_DEFAULT)
            u = note.Unpitched(displayName=disp)
            u.notehead = head
            u.storedInstrument = None
            hits.append(u)
        el = hits[0] if len(hits) == 1 else percussion.PercussionChord(hits)
    elif len(ev.pitches) == 1:
        el = note.Note(ev.pitches[0])
    else:
        el = chord.Chord(sorted(ev.pitches))
    el.quarterLength = ql
    el.volume.velocity = ev.velocity
    if tie is not None and not drum:
        el.tie = m21tie.Tie(tie)
    return el


def _voice_stream(events: list[_Event], n_bars: int, grid: Grid, drum: bool
                  ) -> list[list]:
    """One list of music21 notes/chords/rests per bar for one voice."""
    from music21 import note  # noqa: PLC0415

    bpb, q = grid.beats_per_bar, grid.quarters_per_beat
    bars: list[list] = [[] for _ in range(n_bars)]
    t = Fraction(0)
    total = Fraction(n_bars * bpb)
    items = [(e.on, e.off, e) for e in events] + [(total, total, None)]
    for on, off, ev in items:
        if on > t:  # a rest
            for a, b in _pieces(t, on, bpb):
                bars[int(a) // bpb].append(note.Rest(quarterLength=(b - a) * q))
        if ev is None:
            break
        pieces = _pieces(on, min(off, total), bpb)
        for k, (a, b) in enumerate(pieces):
            tie = None
            if len(pieces) > 1:
                tie = "start" if k == 0 else ("stop" if k == len(pieces) - 1 else "continue")
            el = _element(ev, (b - a) * q, drum, tie)
            el.editorial.first = k == 0  # a syllable goes on a note's first piece only
            bars[int(a) // bpb].append(el)
        t = max(t, min(off, total))
    return bars


def _staves(score: Score, grid: Grid) -> list[tuple[Track, list[_Staff]]]:
    num, den = grid.time_signature
    simple = not (den == 8 and num % 3 == 0)
    divs = (4, 3) if simple else (6,)
    out = []
    for track in score.tracks:
        if not track.notes:
            continue
        name = part_name(track)
        if track.is_drum:
            ev = _events(list(track.notes), grid, divs, drum=True)
            out.append((track, [_Staff(name, _drum_voices(ev), "percussion", drum=True)]))
            continue
        notes = list(track.notes)
        if _two_staves(track, [n.pitch for n in notes]):  # split at middle C
            up = [n for n in notes if n.pitch >= MIDDLE_C]
            down = [n for n in notes if n.pitch < MIDDLE_C]
            out.append((track, [_Staff(name, _voices(_events(up, grid, divs, False)), "treble"),
                                _Staff(name, _voices(_events(down, grid, divs, False)), "bass")]))
            continue
        out.append((track, [_Staff(name, _voices(_events(notes, grid, divs, False)),
                                   _clef(track, [n.pitch for n in notes]))]))
    return out


def to_music21(score: Score, lyrics: str | None = None, *, title: str = "",
               composer: str = ""):
    """A ``music21.stream.Score`` of ``score``: quantized to its beat grid, one part per
    track with notes (two staves for a piano), ``lyrics`` (plain text, one syllable per note
    of :func:`semcodec.score.lyric_track`'s part) under the sung line."""
    from music21 import instrument, layout, metadata, meter, stream, tempo  # noqa: PLC0415

    grid = beat_grid(score)
    bpb = grid.beats_per_bar
    parts = _staves(score, grid)
    last = max((e.off for _, staves in parts for s in staves for v in s.voices for e in v),
               default=Fraction(bpb))
    n_bars = max(1, int(np.ceil(float(last) / bpb)))
    out = stream.Score()
    out.metadata = metadata.Metadata()
    out.metadata.title = title or "Untitled"
    out.metadata.movementName = title or "Untitled"
    out.metadata.composer = composer
    key = music21_key(score.key)
    tempo_bpm = 60.0 / float(np.median(np.diff(grid.beats)))
    sung = lyric_track(score) if lyrics else None
    sylls = syllables(lyrics) if lyrics else []
    for pi, (track, staves) in enumerate(parts):
        m21parts = []
        for si, st in enumerate(staves):
            part = stream.PartStaff() if len(staves) > 1 else stream.Part()
            part.partName = st.name
            part.partAbbreviation = st.name if len(st.name) <= 6 else st.name[:4] + "."
            inst: Any
            if st.drum:
                inst = instrument.UnpitchedPercussion()
                inst.midiChannel = 9
            else:
                inst = instrument.instrumentFromMidiProgram(int(track.program))
                inst.midiProgram = int(track.program)
            inst.partName = st.name
            inst.instrumentName = st.name
            part.insert(0, inst)
            bars_by_voice = [_voice_stream(v, n_bars, grid, st.drum) for v in st.voices]
            if not bars_by_voice:
                bars_by_voice = [_voice_stream([], n_bars, grid, st.drum)]
            for b in range(n_bars):
                m = stream.Measure(number=b + 1)
                if b == 0:
                    m.insert(0, _make_clef(st.clef))
                    if key is not None and not st.drum:
                        m.insert(0, key.__class__(key.tonic.name, key.mode))
                    m.insert(0, meter.TimeSignature(f"{grid.time_signature[0]}/"
                                                    f"{grid.time_signature[1]}"))
                    if pi == 0 and si == 0:
                        mark = tempo.MetronomeMark(number=round(tempo_bpm),
                                                   referent=float(grid.quarters_per_beat))
                        mark.placement = "above"  # type: ignore[assignment]
                        m.insert(0, mark)
                used = [bars[b] for k, bars in enumerate(bars_by_voice)
                        if k == 0 or any(not el.isRest for el in bars[b])]
                if len(bars_by_voice) == 1:  # one voice throughout: no voice layers
                    for el in used[0]:
                        m.append(el)
                else:
                    for k, els in enumerate(used):
                        v = stream.Voice(id=str(k + 1))
                        for el in els:
                            v.append(el)
                        m.insert(0, v)
                part.append(m)
            m21parts.append(part)
        if sung is not None and score.tracks[sung] is track:
            _attach_lyrics(m21parts[0], sylls)
        for p in m21parts:
            out.insert(0, p)
        if len(m21parts) > 1:
            out.insert(0, layout.StaffGroup(m21parts, name=staves[0].name, symbol="brace",
                                            barTogether=True))
    return out


def _attach_lyrics(part, sylls: list[tuple[str, str]]) -> None:
    """``sylls`` on the first piece of every note or chord of ``part``'s first voice."""
    firsts = []
    for m in part.getElementsByClass("Measure"):
        voices = m.voices
        els = voices[0].notes if voices else m.notes
        firsts += [el for el in els if getattr(el.editorial, "first", True)]
    for el, (text, kind) in zip(firsts, sylls):
        el.addLyric(text)
        el.lyrics[-1].syllabic = kind
    if len(sylls) > len(firsts):
        log.warning("lyrics: %d of %d syllables had no note to go with",
                    len(sylls) - len(firsts), len(sylls))


# --- MIDI -------------------------------------------------------------------------------


def apply_to_midi(pm, score: Score) -> None:
    """Give ``pm`` (a ``pretty_midi.PrettyMIDI`` whose notes are at the score's times) the
    score's beat grid as its tempo map, its meter and its key, keeping every note's time.

    One tempo per beat, so that MIDI beats and bars fall on the music's; the stretch before
    the first beat is a fraction of a beat rounded to a 16th; a partial first bar (a pickup)
    is written as a time signature in 16ths that lasts until the first downbeat.
    """
    import pretty_midi  # noqa: PLC0415

    grid = beat_grid(score, pad_to_zero=True)
    e = grid.beats
    res = pm.resolution
    tpb = int(round(res * grid.quarters_per_beat))  # ticks per beat
    j = int(np.nonzero(e > 0)[0][0])  # the first beat after 0 s
    local = e[j] - e[j - 1]
    six = max(1, int(round(e[j] / local * 4)))  # 16ths before it
    lead = six * res // 4
    scales = [(0, e[j] / lead)]
    for i in range(j, e.size - 1):
        scale = (e[i + 1] - e[i]) / tpb
        if abs(scale / scales[-1][1] - 1) > 1e-4:  # a tempo event where the tempo changes
            scales.append((lead + (i - j) * tpb, scale))
    if max(sc for _, sc in scales) * res * 1e6 > _MIDI_MAX_TEMPO_US:
        log.info("beats too slow for a MIDI tempo map; one tempo written")
        _midi_key(pm, score)
        return
    # pretty_midi has no public call for tempo changes: its writer emits one set_tempo per
    # entry of _tick_scales, and _update_tick_to_time rebuilds its time <-> tick table
    pm._tick_scales = scales  # noqa: SLF001
    pm._update_tick_to_time(scales[-1][0] + 1)  # noqa: SLF001
    num, den = grid.time_signature
    bpb = grid.beats_per_bar
    first_down = next(i for i in range(j, e.size) if i % bpb == 0)
    pickup = lead + (first_down - j) * tpb  # ticks before the first downbeat
    pm.time_signature_changes = []
    if 0 < pickup < bpb * tpb and pickup % (res // 4) == 0:
        pm.time_signature_changes.append(pretty_midi.TimeSignature(pickup // (res // 4), 16, 0.0))
        pm.time_signature_changes.append(pretty_midi.TimeSignature(num, den,
                                                                   float(e[first_down])))
    else:
        pm.time_signature_changes.append(pretty_midi.TimeSignature(num, den, 0.0))
    _midi_key(pm, score)


def _midi_key(pm, score: Score) -> None:
    """The score's key as ``pm``'s key signature (none for a malformed key name)."""
    import pretty_midi  # noqa: PLC0415

    name = score.key.replace("-", "b")
    if re.fullmatch(r"[A-G][#b]? (major|minor)", name):
        pm.key_signature_changes = [
            pretty_midi.KeySignature(pretty_midi.key_name_to_key_number(name), 0.0)]
