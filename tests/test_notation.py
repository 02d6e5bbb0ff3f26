"""Readable MusicXML (semcodec.notation): grid, triplets, voices, staves, names, title."""

from __future__ import annotations

import collections
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import replace

import numpy as np
import pytest

from semcodec.events import Note, Score, TempoMap, Track
from semcodec.score import write_musicxml

BEAT = 0.5  # s, 120 BPM


def _score(jitter: float = 0.012, triplet_every: int = 4) -> Score:
    """Two bars of piano (a melody in 8ths with a triplet beat every ``triplet_every`` beats,
    half-note chords under it), a flute doubling the melody, a drum groove; onsets jittered."""
    rng = np.random.default_rng(3)
    start = 0.31
    mel, low, drums = [], [], []
    for b in range(16):
        t = start + b * BEAT
        if b % triplet_every == triplet_every - 1:
            for k in range(3):
                on = t + k * BEAT / 3 + rng.normal(0, jitter)
                mel.append(Note(on, t + (k + 1) * BEAT / 3 - 0.02, 72 + k, 90))
        else:
            for k in range(2):
                on = t + k * BEAT / 2 + rng.normal(0, jitter)
                mel.append(Note(on, t + (k + 1) * BEAT / 2 - 0.03, 71 + (b + k) % 5, 90))
        if b % 2 == 0:
            low += [Note(t, t + 2 * BEAT - 0.05, p, 70) for p in (48, 55, 64)]
        drums.append(Note(t, t + 0.05, 36 if b % 2 == 0 else 38, 100))
        drums += [Note(t + k * BEAT / 2, t + k * BEAT / 2 + 0.05, 42, 80) for k in range(2)]
    tm = TempoMap(beats=tuple(start + i * BEAT for i in range(17)), downbeat=0,
                  time_signature=(4, 4))
    return Score(tracks=(Track("track1", 0).with_notes(mel + low),
                         Track("track2", 73).with_notes(mel),
                         Track("drums", 0, True).with_notes(drums)),
                 tempo_bpm=120.0, tempo_map=tm, key="G major")


def _xml(score: Score, tmp_path, **kw) -> ET.Element:
    path = tmp_path / "out.musicxml"
    write_musicxml(score, path, **kw)
    return ET.parse(path).getroot()


def check_readable(root: ET.Element) -> None:
    """The musician-facing invariants every export must keep."""
    # only triplets
    actual = {int(t.text) for t in root.iter("actual-notes")}
    assert actual <= {3}, f"tuplets other than triplets: {actual}"
    # at most two voices per staff in every bar
    for part in root.iter("part"):
        for measure in part.iter("measure"):
            voices = collections.defaultdict(set)
            for n in measure.iter("note"):
                voices[n.findtext("staff") or "1"].add(n.findtext("voice") or "1")
            assert all(len(v) <= 2 for v in voices.values()), (part.get("id"), dict(voices))
    # named parts, a real title, one tempo mark
    names = [p.findtext("part-name") for p in root.iter("score-part")]
    assert names and all(names) and not any("Music21" in n for n in names), names
    title = root.findtext("work/work-title") or root.findtext("movement-title")
    assert title and "Music21" not in title
    assert "Music21" not in ET.tostring(root, encoding="unicode")
    assert len(list(root.iter("metronome"))) == 1


def test_quantized_bars_triplets_and_staves(tmp_path):
    sc = _score()
    root = _xml(sc, tmp_path, title="Groove", composer="Tester")
    check_readable(root)
    assert root.findtext("work/work-title") == "Groove"
    assert root.find("identification/creator[@type='composer']").text == "Tester"
    names = [p.findtext("part-name") for p in root.iter("score-part")]
    assert names == ["Acoustic Grand Piano", "Flute", "Drums"]
    parts = list(root.iter("part"))
    # 16 beats of 4/4 starting on the first downbeat: 4 bars, no empty bar before the music
    assert len(parts[1].findall("measure")) == 4
    first = parts[1].find("measure")
    assert first.find("note/rest") is None
    # the triplet beats (every 4th beat of the melody) and only those are triplets
    n_trip = sum(1 for n in parts[1].iter("note") if n.find("time-modification") is not None)
    assert n_trip == 4 * 3
    # piano: a grand staff split at middle C, key signature one sharp
    piano = parts[0]
    assert piano.findtext("measure/attributes/staves") == "2"
    clefs = [c.findtext("sign") for c in piano.find("measure/attributes").iter("clef")]
    assert clefs == ["G", "F"]
    assert piano.findtext("measure/attributes/key/fifths") == "1"
    for n in piano.iter("note"):
        if n.find("pitch") is not None:
            octave = int(n.findtext("pitch/octave"))
            assert (octave >= 4) == (n.findtext("staff") == "1")
    # drums: percussion clef, unpitched at the drum-set positions, x noteheads for hi-hats
    drums = parts[2]
    assert drums.findtext("measure/attributes/clef/sign") == "percussion"
    spots = collections.Counter((n.findtext("unpitched/display-step"),
                                 n.findtext("unpitched/display-octave"), n.findtext("notehead"))
                                for n in drums.iter("note") if n.find("unpitched") is not None)
    assert spots[("G", "5", "x")] == 32 and spots[("F", "4", None)] == 8
    assert spots[("C", "5", None)] == 8


def test_notes_on_the_beat_grid_follow_the_tempo_map(tmp_path):
    # the same music played with a ritardando: the beat map carries it, bars stay whole
    sc = _score(jitter=0.0)
    times = np.cumsum([0.31] + [BEAT * (1 + 0.04 * i) for i in range(16)])
    warp = lambda t: float(np.interp(t, [0.31 + i * BEAT for i in range(17)], times))  # noqa: E731
    tracks = tuple(t.with_notes([replace(n, onset=warp(n.onset), offset=warp(n.offset))
                                 for n in t.notes]) for t in sc.tracks)
    sc = replace(sc, tracks=tracks, tempo_map=TempoMap(beats=tuple(times), time_signature=(4, 4)))
    root = _xml(sc, tmp_path)
    check_readable(root)
    flute = list(root.iter("part"))[1]
    assert len(flute.findall("measure")) == 4
    assert all(m.find("note/rest") is None for m in flute.findall("measure"))


def test_no_tempo_map_and_three_four(tmp_path):
    sc = replace(_score(triplet_every=100), tempo_map=None, time_signature=(3, 4))
    root = _xml(sc, tmp_path, title="Waltz")
    check_readable(root)
    assert root.findtext("part/measure/attributes/time/beats") == "3"
    assert not any(True for _ in root.iter("time-modification"))


def test_title_from_the_file_name(tmp_path):
    sc = _score()
    path = tmp_path / "My Song.musicxml"
    write_musicxml(sc, path)
    root = ET.parse(path).getroot()
    assert root.findtext("work/work-title") == "My Song"


def test_lyrics_under_the_sung_line(tmp_path):
    sc = _score()
    sung = Track("voice", 53).with_notes([Note(0.31 + i * BEAT, 0.31 + (i + 0.9) * BEAT, 67, 80)
                                          for i in range(8)])
    sc = replace(sc, tracks=sc.tracks + (sung,))
    root = _xml(sc, tmp_path, lyrics="hel-lo dear world")
    check_readable(root)
    voice_part = list(root.iter("part"))[-1]
    texts = [(lyr.findtext("syllabic"), lyr.findtext("text")) for lyr in voice_part.iter("lyric")]
    assert texts == [("begin", "hel"), ("end", "lo"), ("single", "dear"), ("single", "world")]


def test_real_clip_export(encoded_chorale, tmp_path):
    """A clip encoded from audio (the rendered chorale) exports as readable MusicXML, and
    MuseScore (where installed) renders it without errors."""
    import semcodec

    _wav, smc, _truth = encoded_chorale
    c = semcodec.load(smc)
    out = tmp_path / "chorale.musicxml"
    c.to_musicxml(out)
    root = ET.parse(out).getroot()
    check_readable(root)
    assert root.findtext("work/work-title") == "chorale"
    mscore = shutil.which("mscore3") or shutil.which("musescore3") or shutil.which("mscore")
    if mscore is None:
        pytest.skip("MuseScore is not installed (apt-get install musescore3): "
                    "the MusicXML was checked, not rendered")
    pdf = tmp_path / "chorale.pdf"
    run = subprocess.run([mscore, "-o", str(pdf), str(out)], capture_output=True, text=True,
                         timeout=120, env={"QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path),
                                           "PATH": "/usr/bin:/bin"})
    errors = [ln for ln in (run.stdout + run.stderr).splitlines()
              if "error" in ln.lower() and "xdg_runtime" not in ln.lower()]
    assert run.returncode == 0 and pdf.exists() and pdf.stat().st_size > 1000, run.stderr
    assert not errors, errors
