"""Tempo/key estimation and the MIDI/MusicXML exports."""

from __future__ import annotations

import music21

from semcodec.events import Note, Score, Track
from semcodec.score import (
    estimate_key,
    estimate_tempo,
    score_from_music21,
    to_pretty_midi,
    write_midi,
    write_musicxml,
)


def _scale(tonic: int, steps=(0, 2, 4, 5, 7, 9, 11, 12), beat=0.5) -> list[Note]:
    notes = []
    for rep in range(4):
        for i, s in enumerate(steps):
            t = (rep * len(steps) + i) * beat
            notes.append(Note(t, t + beat * 0.9, tonic + s, 90 if i % 4 == 0 else 70))
    return notes


def test_key_of_a_g_major_scale():
    assert estimate_key(_scale(67)) == "G major"


def test_key_of_a_minor_triad_melody():
    notes = [Note(i * 0.5, i * 0.5 + 0.4, p, 80) for i, p in enumerate([57, 60, 64, 57, 60, 64, 69, 64, 60, 57] * 3)]
    assert estimate_key(notes) == "A minor"


def test_tempo_of_a_steady_pulse():
    notes = _scale(60, beat=0.5)  # 120 BPM eighth... quarter = 0.5 s
    assert abs(estimate_tempo(notes) - 120) < 4 or abs(estimate_tempo(notes) - 60) < 2


def test_tempo_default_with_few_notes():
    assert estimate_tempo([Note(0, 1, 60, 80)]) == 120.0


def test_midi_export_keeps_notes_and_program(tmp_path):
    score = Score(tracks=(Track("lead", 40, notes=tuple(_scale(60))),), tempo_bpm=120)
    write_midi(score, tmp_path / "s.mid")
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(tmp_path / "s.mid"))
    assert pm.instruments[0].program == 40
    assert len(pm.instruments[0].notes) == 32
    assert abs(pm.instruments[0].notes[0].start - 0.0) < 1e-3


def test_musicxml_export_is_parsed_back_quantized(tmp_path):
    score = Score(tracks=(Track("lead", 0, notes=tuple(_scale(60))),), tempo_bpm=120, key="C major")
    out = tmp_path / "s.musicxml"
    write_musicxml(score, out)
    parsed = music21.converter.parse(str(out))
    notes = list(parsed.flatten().notes)
    assert len(notes) == 32
    # quarter notes at 120 BPM: every duration is a simple fraction of a quarter
    assert all(float(n.duration.quarterLength * 12).is_integer() for n in notes)
    assert len(parsed.parts[0].getElementsByClass("Measure")) >= 8


def test_bends_become_pitch_bend_events():
    from semcodec.events import BendPoint

    score = Score(tracks=(Track("v", 0, notes=(Note(0, 1, 60, 80, (BendPoint(0.2, 1.0),)),)),))
    pm = to_pretty_midi(score)
    assert any(b.pitch > 0 for b in pm.instruments[0].pitch_bends)


def test_score_from_music21_parts_and_times():
    s = score_from_music21(music21.corpus.parse("bach/bwv66.6"), tempo_bpm=60, programs=[1, 2],
                           max_seconds=10)
    assert len(s.tracks) == 4
    assert [t.program for t in s.tracks] == [1, 2, 1, 2]
    assert all(n.onset < 10 and n.offset <= 10 for t in s.tracks for n in t.notes)
