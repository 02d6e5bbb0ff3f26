"""The residual on the development clips: per clip, the default decoding with and without it.

Usage: .venv/bin/python scripts/residual_table.py [EVAL_DIR] [WORK_DIR]

Encodes every ``*.flac`` of EVAL_DIR (default ``../shared/eval``) with ``semcodec encode``
(defaults: 1 kbps), decodes it with ``semcodec decode`` and with ``decode --no-residual``, and
prints mel distance and chroma similarity (bench/metrics.py) of both, the bitrate, the RESD
payload's bytes and the file's bytes per part; WORK_DIR (default a temporary folder) keeps the
files, and an existing ``.smc``/``.wav`` there is reused.  The summary line gives the means and
the worst clip.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import metrics  # noqa: E402
from bench.run import load_mono  # noqa: E402

SEMCODEC = [sys.executable, "-m", "semcodec"]


def row(src: Path, work: Path) -> dict:
    smc = work / f"{src.stem}.smc"
    if not smc.exists():
        subprocess.run([*SEMCODEC, "encode", "-q", "-f", str(src), str(smc)], check=True)
    wavs = {}
    for name, flags in (("pure", ["--no-residual"]), ("res", [])):
        wavs[name] = work / f"{src.stem}.{name}.wav"
        if not wavs[name].exists():
            subprocess.run([*SEMCODEC, "decode", "-q", "-f", *flags, str(smc), str(wavs[name])],
                           check=True)
    info = json.loads(subprocess.run([*SEMCODEC, "info", "--json", str(smc)], check=True,
                                     capture_output=True, text=True).stdout)
    ref, cache = load_mono(src), {}
    out = {"clip": src.stem, "kbps": info["bitrate_kbps"], "bytes": info["bytes"],
           "resd": (info.get("residual") or {}).get("bytes", 0),
           "parts": {c["type"]: c["bytes"] for c in info["chunks"]}}
    for name, wav in wavs.items():
        est = load_mono(wav)
        out[f"mel_{name}"] = metrics.mel_distance(ref, est, ref_cache=cache)
        out[f"chroma_{name}"] = metrics.chroma_similarity(ref, est, ref_cache=cache)
    return out


def main(argv: list[str]) -> None:
    src_dir = Path(argv[0]) if argv else REPO.parent / "shared" / "eval"
    with tempfile.TemporaryDirectory(prefix="residual-table-") as tmp:
        work = Path(argv[1]) if len(argv) > 1 else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = []
        print("| clip | mel, no residual | mel, residual | chroma, no residual | chroma, residual "
              "| kbps | RESD bytes |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for src in sorted(src_dir.glob("*.flac")):
            r = row(src, work)
            rows.append(r)
            print(f"| {r['clip']} | {r['mel_pure']:.3f} | {r['mel_res']:.3f} | "
                  f"{r['chroma_pure']:.3f} | {r['chroma_res']:.3f} | {r['kbps']:.3f} | "
                  f"{r['resd']} |", flush=True)
        if rows:
            mean = {k: float(np.mean([r[k] for r in rows]))
                    for k in ("mel_pure", "mel_res", "chroma_pure", "chroma_res", "kbps")}
            print(f"| mean of {len(rows)} | {mean['mel_pure']:.3f} | {mean['mel_res']:.3f} | "
                  f"{mean['chroma_pure']:.3f} | {mean['chroma_res']:.3f} | {mean['kbps']:.3f} | "
                  f"{np.mean([r['resd'] for r in rows]):.0f} |")
            print(f"| worst | {max(r['mel_pure'] for r in rows):.3f} | "
                  f"{max(r['mel_res'] for r in rows):.3f} | | | {max(r['kbps'] for r in rows):.3f} | |")


if __name__ == "__main__":
    main(sys.argv[1:])
