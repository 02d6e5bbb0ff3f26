"""Render the bundled example: a Bach chorale played on piano (TimGM6mb soundfont).

Run from the repo root:  .venv/bin/python scripts/make_example.py
Writes examples/bach_chorale.flac and examples/bach_chorale.notes.json ([onset, offset, pitch]).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import music21
import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from semcodec.score import score_from_music21  # noqa: E402
from semcodec.synth.fluid import render_score  # noqa: E402

SR = 44100
SECONDS = 20.0
SOUNDFONT = "/usr/share/sounds/sf2/TimGM6mb.sf2"


def main() -> None:
    chorale = music21.corpus.parse("bach/bwv66.6")
    score = score_from_music21(chorale, tempo_bpm=84, programs=[0], max_seconds=SECONDS - 1.5)
    # gentle dynamics so that velocity matters: soprano louder, inner voices softer
    vel = [92, 70, 66, 80]
    score = type(score)(
        tracks=tuple(t.with_notes([type(n)(n.onset, n.offset, n.pitch, vel[i % 4]) for n in t.notes])
                     for i, t in enumerate(score.tracks)),
        tempo_bpm=score.tempo_bpm,
    )
    audio = render_score(score, SR, int(SECONDS * SR), soundfont=SOUNDFONT)
    audio = audio / max(1e-9, float(np.abs(audio).max())) * 0.7
    out = Path("examples")
    out.mkdir(exist_ok=True)
    sf.write(out / "bach_chorale.flac", audio, SR, subtype="PCM_16")
    notes = sorted([n.onset, n.offset, n.pitch] for t in score.tracks for n in t.notes)
    (out / "bach_chorale.notes.json").write_text(json.dumps([[round(a, 4), round(b, 4), p] for a, b, p in notes]))
    print(f"wrote examples/bach_chorale.flac ({len(notes)} notes, {SECONDS} s)")


if __name__ == "__main__":
    main()
