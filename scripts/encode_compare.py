#!/usr/bin/env python3
"""Encode quality and cost of one semcodec version on the eval clips, and two such runs compared.

    .venv/bin/python scripts/encode_compare.py run OUT.json [--src SRC] [--clips SUBSTR ...]
    .venv/bin/python scripts/encode_compare.py compare OLD.json NEW.json

``run`` encodes every Slakh clip of the eval folder (the 8 stems and 2 mixes with ground-truth
notes) with ``semcodec encode`` as a child process, the package taken from ``SRC`` (a ``src``
folder, e.g. an older checkout's) or else the installed one; decodes each file with the
*current* package's default engine (so that two runs differ by their encoder only); and
writes per clip: the benchmark's mel distance of the decoding against the original and its
round-trip note F1 (basic-pitch on the decoding against the ground truth), both from
``bench.metrics`` / ``bench.bp`` as in ``make bench``; the encoder's user+sys CPU seconds,
wall seconds and peak RSS (``getrusage`` of the child); the .smc size and its SHA-256.

``compare`` prints both runs side by side with the differences and their means, and exits 1
when a clip's mel got worse by more than ``--mel-tol`` (0.01) or the mean round-trip F1 fell.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
EVAL = Path(os.environ.get("SEMCODEC_EVAL_DIR", REPO.parent / "shared" / "eval"))
if not EVAL.is_dir():
    EVAL = Path("/work/shared/eval")


def _child(cmd: list[str], env: dict | None = None) -> dict:
    """Run ``cmd``; its wall seconds, user+sys CPU seconds and peak RSS (MiB), from wait4."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            err.seek(0)
            tail = err.read().decode("utf-8", "replace").strip()[-500:]
            raise RuntimeError(f"{' '.join(cmd)} failed: {tail}")
    return dict(wall_s=wall, cpu_s=ru.ru_utime + ru.ru_stime, rss_mb=ru.ru_maxrss / 1024.0)


def run(out: Path, src: str | None, subs: list[str]) -> None:
    from bench import metrics  # noqa: PLC0415
    from bench.bp import transcribe  # noqa: PLC0415
    from bench.run import load_mono  # noqa: PLC0415

    clips = sorted(p for p in EVAL.glob("slakh_*.flac") if (p.with_suffix(".notes.json")).exists())
    if subs:
        clips = [c for c in clips if any(s in c.name for s in subs)]
    enc_env = dict(os.environ)
    if src:
        enc_env["PYTHONPATH"] = str(Path(src).resolve())
    results = {}
    with tempfile.TemporaryDirectory(prefix="encode-compare-") as tmp:
        for clip in clips:
            smc, wav = Path(tmp) / f"{clip.stem}.smc", Path(tmp) / f"{clip.stem}.wav"
            enc = _child([sys.executable, "-m", "semcodec", "encode", "-q", "-f", str(clip),
                          str(smc)], enc_env)
            _child([sys.executable, "-m", "semcodec", "decode", "-q", "-f", str(smc), str(wav)])
            ref, est = load_mono(clip), load_mono(wav)
            gt = [tuple(n) for n in json.loads(clip.with_suffix(".notes.json").read_text())]
            notes, _ = transcribe(wav)
            data = smc.read_bytes()
            results[clip.stem] = dict(
                mel=metrics.mel_distance(ref, est),
                rt_f1=metrics.note_f1(gt, [(a, b, c) for a, b, c, _ in notes]),
                bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), **enc)
            r = results[clip.stem]
            print(f"{clip.stem:24s} mel {r['mel']:.4f} rt F1 {r['rt_f1']:.3f} encode "
                  f"{r['cpu_s']:.1f} s CPU {r['wall_s']:.1f} s wall {r['rss_mb']:.0f} MiB",
                  file=sys.stderr)
    out.write_text(json.dumps(results, indent=1))


def compare(a_path: Path, b_path: Path, mel_tol: float) -> int:
    a, b = json.loads(a_path.read_text()), json.loads(b_path.read_text())
    names = [n for n in a if n in b]
    print(f"{'clip':24s} {'mel old':>8s} {'new':>7s} {'d':>7s}  {'F1 old':>6s} {'new':>6s} "
          f"{'d':>6s}  {'CPU old':>7s} {'new':>6s}  same bytes")
    bad = []
    for n in names:
        x, y = a[n], b[n]
        print(f"{n:24s} {x['mel']:8.4f} {y['mel']:7.4f} {y['mel'] - x['mel']:+7.4f}  "
              f"{x['rt_f1']:6.3f} {y['rt_f1']:6.3f} {y['rt_f1'] - x['rt_f1']:+6.3f}  "
              f"{x['cpu_s']:7.1f} {y['cpu_s']:6.1f}  {x['sha256'] == y['sha256']}")
        if y["mel"] - x["mel"] > mel_tol:
            bad.append(f"{n}: mel {x['mel']:.4f} -> {y['mel']:.4f}")

    def mean(d, k):
        return sum(d[n][k] for n in names) / len(names)

    print(f"{'mean':24s} {mean(a, 'mel'):8.4f} {mean(b, 'mel'):7.4f} "
          f"{mean(b, 'mel') - mean(a, 'mel'):+7.4f}  {mean(a, 'rt_f1'):6.3f} "
          f"{mean(b, 'rt_f1'):6.3f} {mean(b, 'rt_f1') - mean(a, 'rt_f1'):+6.3f}  "
          f"{mean(a, 'cpu_s'):7.1f} {mean(b, 'cpu_s'):6.1f}")
    if mean(b, "rt_f1") < mean(a, "rt_f1"):
        bad.append(f"mean round-trip F1 {mean(a, 'rt_f1'):.3f} -> {mean(b, 'rt_f1'):.3f}")
    for line in bad:
        print("WORSE:", line)
    return 1 if bad else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("out", type=Path)
    r.add_argument("--src", help="a src/ folder whose semcodec package encodes")
    r.add_argument("--clips", nargs="*", default=[])
    c = sub.add_parser("compare")
    c.add_argument("old", type=Path)
    c.add_argument("new", type=Path)
    c.add_argument("--mel-tol", type=float, default=0.01)
    args = ap.parse_args(argv)
    if args.cmd == "run":
        run(args.out, args.src, args.clips)
        return 0
    return compare(args.old, args.new, args.mel_tol)


if __name__ == "__main__":
    sys.exit(main())
