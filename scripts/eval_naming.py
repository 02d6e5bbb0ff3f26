"""How well the tracks split out of a mix are named: the instrument-aware note F1 of the
classifier's families on every mono mix of two or more eval Slakh stems of one song.

For each song with stems in the eval folder, every combination of 2..all of its stems is summed
(as the bench's stereo clips are: the stems as they are, no shift; 26 mixes for Track00001's 5
stems, 4 for Track00049's 3), transcribed, split (``semcodec.separate.assign_tracks``, tracks
``auto``) and each track named by the classifier's family (``semcodec.instrument``).  Truth:
each stem's notes with its GM family (the folder's README).  The score of a mix is
``bench.families.instrument_prf``'s F1 (a note counts only in a track of the right family).
The timbre fit, which may replace the classifier's program in a real encode, is left out.

``--weights PATH`` reads the notes with another classifier weights file (e.g. one trained with
``python -m semcodec.instrument_train --mix-views 1 --out DIR``) instead of the committed one.

    python scripts/eval_naming.py [EVAL_DIR] [--weights PATH]
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.families

from bench import families  # noqa: E402
from semcodec import instrument as ins  # noqa: E402
from semcodec.separate import assign_tracks  # noqa: E402
from semcodec.transcribe import transcribe  # noqa: E402


def mix_f1(x: np.ndarray, sr: int, truth: list) -> tuple[float, int]:
    """(instrument F1, track count) of mono mix ``x`` against ``truth``
    ``[(onset, offset, pitch, family)]``."""
    notes = transcribe(x, sr)
    a = assign_tracks(x, sr, notes, None)
    est = []
    for k in range(a.n_tracks):
        mine = [notes[i] for i in np.nonzero(a.labels == k)[0]]
        g = ins.classify_track(x, sr, mine)
        est += [((n.onset, n.offset, n.pitch), g.family) for n in mine]
    est.sort()
    prf = families.instrument_prf([t[:3] for t in truth], [t[3] for t in truth],
                                  [e[0] for e in est], [e[1] for e in est])
    return (prf[2] if prf else 0.0), a.n_tracks


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = [a for a in argv if not a.startswith("--")]
    if "--weights" in argv:
        path = argv[argv.index("--weights") + 1]
        args.remove(path)
        model = ins.load_model(path)
        ins._default_model = lambda: model  # noqa: SLF001 - the split and the naming read with it
    d = Path(args[0]) if args else Path(__file__).resolve().parent.parent / ".." / "shared" / "eval"
    programs = families.readme_programs(d)
    scores, split = [], []
    for song in sorted({p.name.rsplit("_", 1)[0] for p in d.glob("slakh_*_S*.flac")}):
        stems = sorted(p.stem for p in d.glob(f"{song}_S*.flac") if p.stem in programs)
        audio = {s: sf.read(d / f"{s}.flac", dtype="float32", always_2d=True) for s in stems}
        sr = audio[stems[0]][1]
        for k in range(2, len(stems) + 1):
            for combo in itertools.combinations(stems, k):
                n = min(audio[s][0].shape[0] for s in combo)
                x = sum(audio[s][0][:n].mean(axis=1) for s in combo) / k
                truth = sorted((on, off, int(p), families.family_of(programs[s])) for s in combo
                               for on, off, p in json.loads((d / f"{s}.notes.json").read_text())
                               if on < n / sr)
                f1, n_tracks = mix_f1(x.astype(np.float32), sr, truth)
                scores.append(f1)
                if n_tracks > 1:
                    split.append(f1)
                print(f"{'+'.join(combo)}: {n_tracks} track(s), instrument F1 {f1:.3f}", flush=True)
    print(f"mean instrument F1 over {len(scores)} stem mixes: {np.mean(scores):.3f}; "
          f"over the {len(split)} split into several tracks: {np.mean(split):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
