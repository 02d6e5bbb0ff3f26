"""How well ``semcodec.separate.assign_tracks`` groups a mix's notes by instrument.

For each Slakh mix in the eval folder, the transcribed notes are labelled with the stem whose
ground-truth note they match (same pitch, onset within 50 ms); the script prints the number of
tracks chosen, purity (share of labelled notes in their track's majority stem) and, for the
solo stems, the number of tracks ``auto`` picks (1 is right).

    python scripts/eval_separate.py [EVAL_DIR]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from semcodec.separate import assign_tracks
from semcodec.transcribe import transcribe


def _truth(path: Path):
    return [tuple(x) for x in json.loads(path.read_text())]


def align(mix_truth: list, stem_truth: list) -> list:
    """The stem's notes shifted onto the mix's time line (the excerpts were cut at different
    points of the song): the offset most (pitch, onset) pairs agree on, else nothing."""
    from collections import Counter

    votes = Counter()
    for on, _, p in stem_truth:
        for on2, _, p2 in mix_truth:
            if int(p) == int(p2):
                votes[round(on2 - on, 2)] += 1
    if not votes:
        return []
    shift, n = votes.most_common(1)[0]
    if n < max(3, len(stem_truth) // 4):
        return []
    return [(on + shift, off + shift, p) for on, off, p in stem_truth]


def label(notes, stems: dict[str, list]) -> list[str | None]:
    out = []
    for n in notes:
        best = None
        for name, truth in stems.items():
            for on, off, p in truth:
                if int(p) == n.pitch and abs(on - n.onset) <= 0.05:
                    d = abs(on - n.onset)
                    if best is None or d < best[0]:
                        best = (d, name)
        out.append(best[1] if best else None)
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = [a for a in argv if not a.startswith("--")]
    d = Path(args[0]) if args else Path(__file__).resolve().parent.parent / ".." / "shared" / "eval"
    for mix in sorted(d.glob("*_mix.flac")):
        prefix = mix.name[: -len("_mix.flac")]
        audio, sr = sf.read(mix, dtype="float32")
        notes = list(transcribe(audio, sr))
        mix_truth = _truth(d / f"{prefix}_mix.notes.json")
        stems = {p.name.split("_")[-1].split(".")[0]: align(mix_truth, _truth(p))
                 for p in sorted(d.glob(f"{prefix}_S*.notes.json"))}
        print(mix.name, "stems aligned:", {k: len(v) for k, v in stems.items()})
        lab = label(notes, stems)
        for k in (None, 2, 3, 4):
            a = assign_tracks(audio, sr, notes, k)
            pur = []
            for t in range(a.n_tracks):
                ls = [lab[i] for i in np.nonzero(a.labels == t)[0] if lab[i]]
                if ls:
                    top = max(set(ls), key=ls.count)
                    pur.append((ls.count(top), len(ls), top))
            purity = sum(p[0] for p in pur) / max(1, sum(p[1] for p in pur))
            print(f"{mix.name}: tracks={k or 'auto'} -> {a.n_tracks}, purity {purity:.3f}, "
                  f"majority stems {[p[2] + f'({p[0]}/{p[1]})' for p in pur]}")
        ls = [x for x in lab if x]
        print(f"  one track purity {max(ls.count(s) for s in set(ls)) / len(ls):.3f}; "
              f"labelled {len(ls)}/{len(notes)} notes")
    for stem in sorted(d.glob("*_S*.flac")) if "--stems" in argv else ():
        audio, sr = sf.read(stem, dtype="float32")
        notes = list(transcribe(audio, sr))
        a = assign_tracks(audio, sr, notes, None)
        print(f"{stem.name}: auto -> {a.n_tracks} track(s) ({len(notes)} notes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
