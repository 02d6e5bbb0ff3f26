"""The drum detector alone, without encoding: drum-onset F1 on the drum clips, hits elsewhere.

    .venv/bin/python -m bench.drumcheck [--clips SUBSTR ...]

For every clip with drum ground truth (``bench.dataset.drum_clips``) prints the class-aware
drum-onset F1 (``bench.metrics.drum_onset_prf``) of ``semcodec.drums.detect_drums`` on the
original audio, per class too; for the development clips (no drums) the number of hits it
reports, which should be 0.  A quick check while ``semcodec encode`` is being changed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.drumcheck", description=__doc__.splitlines()[0])
    ap.add_argument("--clips", nargs="*", default=None, help="only clips whose name contains one of these")
    args = ap.parse_args(argv)

    from bench import dataset, metrics
    from bench.run import load_mono
    from semcodec import drums

    clips = dataset.drum_clips(progress=False) + dataset.eval_clips()
    if args.clips:
        clips = [c for c in clips if any(s in c["name"] for s in args.clips)]
    f1s = []
    for c in clips:
        y = load_mono(c["audio"])
        t0 = time.perf_counter()
        hits = drums.detect_drums(y, metrics.SR)
        wall = time.perf_counter() - t0
        est = [(n.onset, n.offset, n.pitch) for n in hits]
        gt = dataset.load_drums(c)
        if gt:
            p, r, f = metrics.drum_onset_prf(gt, est)
            f1s.append(f)
            per = []
            for cls in metrics.DRUM_METRIC_CLASSES:
                ref = [g for g in gt if metrics.drum_class(g[2]) == cls]
                mine = [e for e in est if metrics.drum_class(e[2]) == cls]
                if ref or mine:
                    cf = metrics.drum_onset_f1(ref, mine)
                    per.append(f"{cls} {len(ref)}/{len(mine)}" + (f" {cf:.2f}" if cf is not None else ""))
            print(f"{c['name']:28s} F1 {f:.3f} (P {p:.3f} R {r:.3f}) {wall:5.2f} s  " + ", ".join(per))
        else:
            kinds = Counter(metrics.drum_class(e[2]) for e in est)
            print(f"{c['name']:28s} {len(hits)} hits {dict(kinds) if kinds else ''} {wall:5.2f} s")
    if f1s:
        print(f"mean drum F1 {sum(f1s) / len(f1s):.3f} over {len(f1s)} clips")
    return 0


if __name__ == "__main__":
    sys.exit(main())
