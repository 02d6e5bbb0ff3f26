"""The benchmark's instrument-aware note F1 (bench/families.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from bench import families  # noqa: E402

REF = [(0.5 * i, 0.5 * i + 0.4, 40 + i % 5) for i in range(10)] + \
      [(0.5 * i + 0.25, 0.5 * i + 0.6, 70 + i % 3) for i in range(10)]
FAMS = [4] * 10 + [0] * 10  # a bass line and a piano line


def test_right_families_score_one_and_a_single_track_does_not():
    p, r, f = families.instrument_prf(REF, FAMS, list(REF), list(FAMS))
    assert p == r == f == 1.0
    _, _, f_one = families.instrument_prf(REF, FAMS, list(REF), [0] * len(REF))
    assert f_one == pytest.approx(0.5)  # the piano notes count, the bass notes do not
    _, _, f_swapped = families.instrument_prf(REF, FAMS, list(REF), [0] * 10 + [4] * 10)
    assert f_swapped == 0.0


def test_notes_of_unknown_family_are_left_out():
    fams = FAMS[:15] + [None] * 5
    p, r, f = families.instrument_prf(REF, fams, list(REF), list(FAMS))
    assert p == r == f == 1.0  # the unlabelled truth notes and their estimates do not count
    assert families.instrument_prf(REF, [None] * len(REF), REF, FAMS) is None


def test_readme_programs_and_alignment(tmp_path):
    (tmp_path / "README.md").write_text(
        "| clip | instrument | truth |\n|---|---|---|\n"
        "| song_S00 | Electric Bass, finger (33) | notes |\n| song_S01 | Piano (0) | notes |\n"
        "| other | none | none |\n")
    assert families.readme_programs(tmp_path) == {"song_S00": 33, "song_S01": 0}
    stem = [(on - 2.0, off - 2.0, p) for on, off, p in REF[:10]]
    shifted = families.align(REF, stem)
    assert [round(n[0], 6) for n in shifted] == [round(n[0], 6) for n in REF[:10]]
    assert families.align(REF, [(0.0, 1.0, 99)]) == []


def test_stereo_clip_notes_take_their_stems_families(tmp_path, monkeypatch):
    (tmp_path / "README.md").write_text(
        "| clip | instrument | truth |\n|---|---|---|\n"
        "| song_S00 | Electric Bass, finger (33) | notes |\n| song_S01 | Piano (0) | notes |\n")
    (tmp_path / "song_S00.notes.json").write_text(json.dumps([list(n) for n in REF[:10]]))
    (tmp_path / "song_S01.notes.json").write_text(json.dumps([list(n) for n in REF[10:]]))
    monkeypatch.setenv("SEMCODEC_EVAL_DIR", str(tmp_path))
    clip = {"name": "stereo_song", "source": "stereo"}
    truth = sorted(REF) + [(9.0, 9.5, 50)]  # the last note is no stem's
    fams = families.note_families(clip, truth)
    want = {n: f for n, f in zip(REF, FAMS)}
    assert fams == [want[n] for n in sorted(REF)] + [None]
    assert families.note_families({"name": "stereo_other", "source": "stereo"}, truth) is None
