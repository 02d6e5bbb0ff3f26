#!/usr/bin/env python3
"""Encode and decode a 60-minute file; report wall time, ×RT and peak RSS; check window edges.

    .venv/bin/python scripts/long_file.py [--minutes 60] [--workdir DIR] [--keep]

1. Synthesizes a known score as a 44.1 kHz mono FLAC, block by block (harmonic tones; a
   melody plus, at every 60-s transcription window edge, a note held from 1 s before to 1 s
   after the edge, a note starting 0.12 s before it and one starting 0.08 s after it; the
   same figure in the middle of every window serves as the control group).
2. Runs ``semcodec encode`` and ``semcodec decode --engine fluidsynth`` under
   ``/usr/bin/time -v`` (Debian package ``time``) and prints wall time, ×RT and peak RSS.
3. Compares the transcribed notes with the known ones: note F1 (onsets within 50 ms) over
   the whole file, and at every window edge whether the held note came out as one note
   (not cut or split at the edge) and whether the notes next to the edge were found, and the
   same in the middle of the windows.

Exit status 0 when peak RSS ≤ --max-rss-mb (MiB) for both commands, the decoded length is
exact, note F1 ≥ 0.9, every note next to an edge is found, and the held notes survive the
edges at least as well as the middle of the windows (within 5 points, and ≥ 90 %).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SR = 44100
WINDOW_S = 60.0  # semcodec.constants.TRANSCRIBE_WINDOW_S
BLOCK_S = 20.0


def make_score(minutes: float, seed: int = 5) -> tuple[list[tuple[float, float, int]], list[dict]]:
    """(notes as (onset, offset, pitch), edge descriptions) for ``minutes`` of music."""
    rng = np.random.default_rng(seed)
    duration = minutes * 60.0
    edges = [WINDOW_S * k for k in range(1, int(duration // WINDOW_S) + 1) if WINDOW_S * k < duration - 2]
    # the same figure in the middle of every window: the control group
    middles = [WINDOW_S * k + WINDOW_S / 2 for k in range(int(duration // WINDOW_S) + 1)
               if WINDOW_S * k + WINDOW_S / 2 < duration - 2]
    notes: list[tuple[float, float, int]] = []
    edge_info = []
    for e in sorted(edges + middles):
        held = int(rng.integers(55, 67))
        before = held + int(rng.choice([4, 7, 9]))
        after = held - int(rng.choice([5, 8, 9]))  # no octave: see docs/ROBUSTNESS.md
        trio = [(e - 1.0, e + 1.0, held), (e - 0.12, e + 0.4, before), (e + 0.08, e + 0.5, after)]
        notes += trio
        edge_info.append({"edge": e, "control": e in middles, "held": trio[0], "before": trio[1],
                          "after": trio[2]})
    # a melody everywhere else (kept 1.5 s clear of the figures)
    t = 0.3
    points = edges + middles
    while t < duration - 1.0:
        d = float(rng.uniform(0.25, 0.8))
        near = any(e - 1.5 < t + d and t < e + 1.5 for e in points)
        if not near:
            notes.append((t, t + d, int(rng.integers(50, 80))))
        t += d + float(rng.uniform(0.05, 0.25))
    notes.sort()
    return notes, edge_info


def _note_wave(onset: float, offset: float, pitch: int, t: np.ndarray, held: bool) -> np.ndarray:
    """A harmonic tone sampled at absolute times ``t`` (s): 10-ms attack, decay, 30-ms release."""
    f0 = 440.0 * 2.0 ** ((pitch - 69) / 12.0)
    rel = t - onset
    env = np.minimum(1.0, rel / 0.01) * np.exp(-rel * (0.4 if held else 1.6))
    env *= np.clip((offset + 0.03 - t) / 0.03, 0.0, 1.0)
    sig = np.zeros_like(t)
    for k in range(1, 6):
        if f0 * k < SR / 2:
            sig += np.sin(2 * np.pi * f0 * k * rel) / k
    return 0.22 * env * sig


def write_flac(path: Path, notes, held_set, minutes: float) -> None:
    import soundfile as sf

    n_total = int(round(minutes * 60.0 * SR))
    starts = np.array([n[0] for n in notes])
    with sf.SoundFile(path, "w", samplerate=SR, channels=1, format="FLAC", subtype="PCM_16") as f:
        for b0 in range(0, n_total, int(BLOCK_S * SR)):
            b1 = min(n_total, b0 + int(BLOCK_S * SR))
            t0, t1 = b0 / SR, b1 / SR
            block = np.zeros(b1 - b0)
            lo = int(np.searchsorted(starts, t0 - 5.0))
            hi = int(np.searchsorted(starts, t1))
            for onset, offset, pitch in notes[lo:hi]:
                if offset + 0.03 <= t0 or onset >= t1:
                    continue
                s0 = max(b0, int(onset * SR))
                s1 = min(b1, int((offset + 0.03) * SR) + 1)
                t = np.arange(s0, s1) / SR
                block[s0 - b0:s1 - b0] += _note_wave(onset, offset, pitch, t,
                                                     (onset, offset, pitch) in held_set)
            f.write(block.astype(np.float32))


def timed(cmd: list[str]) -> dict:
    """Run ``cmd`` under GNU time -v: wall s, peak RSS MB, exit status, stderr tail."""
    gnu_time = shutil.which("time", path="/usr/bin") or "/usr/bin/time"
    if not os.path.exists(gnu_time):
        sys.exit("needs GNU time: apt-get install time")
    p = subprocess.run([gnu_time, "-v", *cmd], capture_output=True, text=True)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", p.stderr)
    parts = [float(x) for x in wall.group(1).split(":")] if wall else [float("nan")]
    seconds = sum(v * 60 ** i for i, v in enumerate(reversed(parts)))
    lines = [ln for ln in p.stderr.splitlines() if not ln.startswith(("\t", "Command"))]
    return {"cmd": " ".join(cmd[1:]), "rc": p.returncode, "wall_s": seconds,
            "peak_rss_mb": int(rss.group(1)) / 1024 if rss else float("nan"),
            "stderr": "\n".join(lines[-5:])}


def check_notes(smc: Path, notes, edge_info) -> dict:
    import mir_eval

    from semcodec.container import SmcFile as Container

    c = Container.load(smc)
    est = sorted((n.onset, n.offset, n.pitch) for t in c.score.tracks for n in t.notes)
    ref_i = np.array([[a, b] for a, b, _ in notes])
    ref_p = mir_eval.util.midi_to_hz(np.array([p for *_, p in notes], float))
    est_i = np.array([[a, max(b, a + 0.01)] for a, b, _ in est])
    est_p = mir_eval.util.midi_to_hz(np.array([p for *_, p in est], float))
    prec, rec, f1, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_i, ref_p, est_i, est_p, onset_tolerance=0.05, offset_ratio=None)
    onsets = np.array([e[0] for e in est])
    groups = {}
    for info in edge_info:
        g = groups.setdefault("control" if info["control"] else "edge",
                              {"n": 0, "held_intact": 0, "before_found": 0, "after_found": 0,
                               "bad": []})
        g["n"] += 1
        e = info["edge"]
        lo, hi = np.searchsorted(onsets, e - 3.0), np.searchsorted(onsets, e + 3.0)
        near = est[lo:hi]
        on, off, p = info["held"]
        same = [n for n in near if n[2] == p and on - 0.06 <= n[0] <= off]
        # one note, starting at the onset, lasting past the edge (not cut, not split)
        if len(same) == 1 and abs(same[0][0] - on) <= 0.06 and same[0][1] >= e + 0.5:
            g["held_intact"] += 1
        else:
            g["bad"].append({"at": e, "held": info["held"], "found": same,
                             "after": info["after"]})
        for key in ("before", "after"):
            on, off, p = info[key]
            if any(n[2] == p and abs(n[0] - on) <= 0.06 for n in near):
                g[f"{key}_found"] += 1
    return {"ref_notes": len(notes), "est_notes": len(est), "precision": prec, "recall": rec,
            "f1": f1, **groups}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--workdir", type=Path, default=None, help="keep files here (default: temp)")
    ap.add_argument("--keep", action="store_true", help="do not delete the work folder")
    ap.add_argument("--max-rss-mb", type=float, default=2048.0)
    ap.add_argument("--encode-args", default="", help="extra arguments for semcodec encode")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = ap.parse_args()

    semcodec = str(Path(sys.executable).with_name("semcodec"))
    work = args.workdir or Path(tempfile.mkdtemp(prefix="semcodec-long-"))
    work.mkdir(parents=True, exist_ok=True)
    flac, smc, wav = work / "long.flac", work / "long.smc", work / "long.wav"
    duration = args.minutes * 60.0
    notes, edge_info = make_score(args.minutes)
    held = {info["held"] for info in edge_info}
    t0 = time.perf_counter()
    if not flac.exists():
        write_flac(flac, notes, held, args.minutes)
    print(f"input: {flac} ({duration / 60:.0f} min, {flac.stat().st_size / 1e6:.1f} MB FLAC, "
          f"{len(notes)} notes, {sum(not i['control'] for i in edge_info)} window edges; made in "
          f"{time.perf_counter() - t0:.0f} s)", flush=True)

    results = {"minutes": args.minutes}
    enc = timed([semcodec, "encode", "-f", *args.encode_args.split(), str(flac), str(smc)])
    results["encode"] = enc
    print(f"encode: rc {enc['rc']}, {enc['wall_s']:.0f} s wall, {duration / enc['wall_s']:.1f}x RT, "
          f"peak RSS {enc['peak_rss_mb']:.0f} MB\n  {enc['stderr']}", flush=True)
    if enc["rc"] != 0:
        return 1
    dec = timed([semcodec, "decode", "-f", "--engine", "fluidsynth", str(smc), str(wav)])
    results["decode"] = dec
    print(f"decode: rc {dec['rc']}, {dec['wall_s']:.0f} s wall, {duration / dec['wall_s']:.1f}x RT, "
          f"peak RSS {dec['peak_rss_mb']:.0f} MB\n  {dec['stderr']}", flush=True)

    import soundfile as sf

    if dec["rc"] == 0:
        info = sf.info(wav)
        results["decoded"] = {"frames": info.frames, "samplerate": info.samplerate,
                              "expected_frames": int(round(duration * SR))}
        print(f"decoded: {info.frames} frames at {info.samplerate} Hz "
              f"(expected {int(round(duration * SR))})")
    chk = check_notes(smc, notes, edge_info)
    results["notes"] = chk
    print(f"notes: {chk['est_notes']} found for {chk['ref_notes']} known; onset P/R/F1 "
          f"{chk['precision']:.3f}/{chk['recall']:.3f}/{chk['f1']:.3f}")
    for key, label in (("edge", "at the window edges"), ("control", "mid-window (control)")):
        g = chk[key]
        print(f"{label}: {g['held_intact']}/{g['n']} held notes intact (one note, not cut or "
              f"split), {g['before_found']}/{g['n']} notes starting 0.12 s before and "
              f"{g['after_found']}/{g['n']} starting 0.08 s after the point found")
        for bad in g["bad"]:
            print(f"  {bad['at']:.0f} s: held {bad['held']} -> "
                  f"{[(round(a, 3), round(b, 3), p) for a, b, p in bad['found']]} "
                  f"(other note {bad['after'][2]} at {bad['after'][0]:.2f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    if not (args.keep or args.workdir):
        shutil.rmtree(work, ignore_errors=True)
    ok = (enc["rc"] == 0 and dec["rc"] == 0
          and max(enc["peak_rss_mb"], dec["peak_rss_mb"]) <= args.max_rss_mb
          and results.get("decoded", {}).get("frames") == int(round(duration * SR))
          and chk["f1"] >= 0.9
          and chk["edge"]["held_intact"] >= 0.9 * chk["edge"]["n"]
          # the edges may not do worse than the middle of the windows
          and chk["edge"]["held_intact"] / chk["edge"]["n"]
          >= chk["control"]["held_intact"] / chk["control"]["n"] - 0.05
          and chk["edge"]["before_found"] == chk["edge"]["n"]
          and chk["edge"]["after_found"] == chk["edge"]["n"])
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
