"""Do the stored excerpts and track renders pay for themselves?  (issue 10, items 2-4)

For every clip of the eval folder (or the clips named): encode with the default options at a
bitrate target, then decode twice — as stored (each track played as its ``render`` says: its
excerpt as a voice or a sampler, its spectral correction and room) and with
``track_renders=False`` (the engines alone, the excerpts unplayed as before) — and print the
benchmark's mel distance (bench.metrics.mel_distance, 44.1 kHz) of both against the original,
the file's kbps and bytes per part, and what each track plays.  ``--opus`` adds libopus at
6 kbps (bench.codecs.run_opus) for reference.

    python scripts/sample_gain.py [--kbps 1.0] [--opus] [--out DIR] [CLIP ...]

Clips are names in ../shared/eval without .flac (default: all of them).  The encodes are kept
in ``--out`` (default a temporary folder) and reused when present.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
EVAL = REPO.parent.parent / "shared" / "eval"
if not EVAL.is_dir():
    EVAL = Path("/work/shared/eval")


def main() -> None:
    import semcodec
    from bench.metrics import SR, mel_distance
    from semcodec.container import part_sizes
    from semcodec.synth import dsp

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips", nargs="*")
    ap.add_argument("--kbps", type=float, default=1.0)
    ap.add_argument("--opus", action="store_true", help="also measure Opus at 6 kbps")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    clips = args.clips or sorted(p.stem for p in EVAL.glob("*.flac"))
    out = args.out or Path(tempfile.mkdtemp(prefix="sample_gain_"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"# encodes in {out}; bitrate target {args.kbps} kbps")
    print("clip | kbps | mel with renders | mel without | gain | bytes per part | tracks")
    rows = []
    for clip in clips:
        src = EVAL / f"{clip}.flac"
        ref, sr = sf.read(src, dtype="float32", always_2d=True)
        ref = dsp.downmix(ref)
        if sr != SR:
            ref = dsp.resample(ref, sr, SR)
        smc = out / f"{clip}.smc"
        t0 = time.monotonic()
        if not smc.exists():
            c = semcodec.encode(src, options=semcodec.EncodeOptions(kbps=args.kbps))
            c.save(smc)
        enc_s = time.monotonic() - t0
        c = semcodec.load(smc)
        data = smc.read_bytes()
        kbps = len(data) * 8 / c.duration / 1000
        with_r, _ = semcodec.decode(c, sample_rate=SR, channels=1)
        without, _ = semcodec.decode(c, sample_rate=SR, channels=1, track_renders=False)
        d_with, d_without = mel_distance(ref, with_r), mel_distance(ref, without)
        parts = {k: v for k, v in part_sizes(c, data).items() if v}
        uses = [(t.render.use or "eq") if t.render is not None else "engine"
                for t in c.score.tracks if t.notes and not t.is_drum]
        rows.append((d_with, d_without))
        line = (f"{clip} | {kbps:.3f} | {d_with:.4f} | {d_without:.4f} | {d_without - d_with:+.4f}"
                f" | {parts} | {','.join(uses)} (encode {enc_s:.0f} s)")
        if args.opus:
            from bench.codecs import run_opus

            (out / f"{clip}_opus").mkdir(exist_ok=True)
            r = run_opus(src, out / f"{clip}_opus", 6)
            if r.get("status") == "ok":
                y, _ = sf.read(r["wav"], dtype="float32", always_2d=True)
                line += f" | opus6k {mel_distance(ref, dsp.downmix(y)):.4f}"
        print(line, flush=True)
    if rows:
        a = np.array(rows)
        print(f"mean | | {a[:, 0].mean():.4f} | {a[:, 1].mean():.4f} | "
              f"{(a[:, 1] - a[:, 0]).mean():+.4f} | | {len(rows)} clips")


if __name__ == "__main__":
    main()
