#!/usr/bin/env python3
"""Tune semcodec.transcribe's post-processing thresholds on the evaluation clips.

Runs basic-pitch (ONNX) once per clip and caches its raw activations (npz), then sweeps a
coarse grid of post-processing settings over the cached activations and prints the mean
onset-only note F1 (mir_eval, 50 ms onset tolerance, offsets ignored) per setting, best first,
plus a per-clip table comparing basic-pitch's defaults with semcodec's current defaults.

    PYTHONPATH=src python scripts/tune_transcribe.py [--eval-dir DIR] [--cache DIR] [--top N]

Takes a few minutes on two cores (most of it the first, uncached model pass).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from semcodec import constants  # noqa: E402
from semcodec.transcribe import (  # noqa: E402
    TranscribeOptions,
    _resample,
    decode_notes,
    model_activations,
)

GRID = {
    "onset": (0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    "frame": (0.2, 0.3, 0.4),
    "min_note_s": (0.06, 0.09, 0.139),
    "melodia": (True, False),
}
#: basic-pitch's predict() defaults: onset 0.5, frame 0.3, melodia on, minimum_note_length
#: 127.7 ms = 11 frames, notes of <= 11 frames dropped, i.e. min_note_s 0.139 (12 frames) here.
BP_DEFAULTS = (0.5, 0.3, 0.139, True)


def load_clip(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return audio.mean(axis=1), sr


def activations(flac: Path, cache: Path) -> dict[str, np.ndarray]:
    cache.mkdir(parents=True, exist_ok=True)
    npz = cache / (flac.stem + ".npz")
    if npz.exists() and npz.stat().st_mtime >= flac.stat().st_mtime:
        with np.load(npz) as data:
            return {k: data[k] for k in data.files}
    audio, sr = load_clip(flac)
    note, onset, contour = model_activations(_resample(audio, sr))
    np.savez_compressed(npz, note=note, onset=onset, contour=contour)
    return {"note": note, "onset": onset, "contour": contour}


def onset_f1(events, ref: np.ndarray) -> float:
    import mir_eval

    ref_int = ref[:, :2]
    ref_hz = mir_eval.util.midi_to_hz(ref[:, 2])
    if not events:
        return 0.0
    est = np.array([(s / constants.BP_FRAMES_PER_S, e / constants.BP_FRAMES_PER_S, p)
                    for s, e, p, _ in events], dtype=float)
    est[:, 1] = np.maximum(est[:, 1], est[:, 0] + 1e-3)
    _, _, f1, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_int, ref_hz, est[:, :2], mir_eval.util.midi_to_hz(est[:, 2]),
        onset_tolerance=0.05, offset_ratio=None,
    )
    return float(f1)


def evaluate(acts, ref, onset, frame, min_note_s, melodia) -> float:
    events = decode_notes(
        acts["note"], acts["onset"], onset, frame,
        TranscribeOptions(min_note_s=min_note_s).min_note_frames, melodia,
    )
    return onset_f1(events, ref)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eval-dir", type=Path, default=Path("/work/shared/eval"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/semcodec_tune_cache"))
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()

    clips = sorted(p for p in args.eval_dir.glob("*.flac") if p.with_suffix(".notes.json").exists())
    if not clips:
        print(f"no clips with .notes.json in {args.eval_dir}", file=sys.stderr)
        return 1
    t0 = time.time()
    data = {}
    for flac in clips:
        ref = np.array(json.loads(flac.with_suffix(".notes.json").read_text()), dtype=float)
        data[flac.stem] = (activations(flac, args.cache), ref)
    print(f"# {len(data)} clips, activations ready in {time.time() - t0:.0f} s")

    rows = []
    for setting in itertools.product(*GRID.values()):
        scores = [evaluate(acts, ref, *setting) for acts, ref in data.values()]
        rows.append((float(np.mean(scores)), setting, scores))
    rows.sort(key=lambda r: -r[0])
    print(f"# grid of {len(rows)} settings swept in {time.time() - t0:.0f} s\n")
    print("| onset | frame | min_note_s | melodia | mean F1 |")
    print("|---|---|---|---|---|")
    for mean, (on, fr, mn, mel), _ in rows[: args.top]:
        print(f"| {on} | {fr} | {mn} | {mel} | {mean:.3f} |")

    cur = TranscribeOptions()
    current = (cur.onset_threshold, cur.frame_threshold, cur.min_note_s, cur.melodia_trick)
    print(f"\nbasic-pitch defaults {BP_DEFAULTS} vs semcodec defaults {current}\n")
    print("| clip | basic-pitch defaults | semcodec defaults |")
    print("|---|---|---|")
    a_all, b_all = [], []
    for name, (acts, ref) in data.items():
        a = evaluate(acts, ref, *BP_DEFAULTS)
        b = evaluate(acts, ref, *current)
        a_all.append(a)
        b_all.append(b)
        print(f"| {name} | {a:.3f} | {b:.3f} |")
    print(f"| **mean** | **{np.mean(a_all):.3f}** | **{np.mean(b_all):.3f}** |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
