#!/usr/bin/env python3
"""How soon a streaming decode starts: ``semcodec decode FILE -`` timed to its first audio.

    .venv/bin/python scripts/stream_start.py FILE.smc [FILE.smc ...] [--runs 3] [--kib 64]

For each run and file (files alternated), the wall seconds from starting the process to
reading the WAV header (44 bytes) and the first ``--kib`` KiB of audio from its stdout, and
the CPU seconds (user + sys of all its threads, from ``/proc/PID/stat``) the process had used
by then; the process is then stopped.  On a loaded machine the CPU figure bounds what a quiet
one would take as wall time.  Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

WAV_HEADER_BYTES = 44


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def first_audio(path: Path, n_bytes: int, semcodec: str) -> tuple[float, float]:
    """(wall s, CPU s) of ``semcodec decode path -`` until ``n_bytes`` of audio came out."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([semcodec, "decode", "-q", str(path), "-"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    want, got = WAV_HEADER_BYTES + n_bytes, 0
    while got < want:
        chunk = proc.stdout.read(want - got)
        if not chunk:
            break
        got += len(chunk)
    wall = time.perf_counter() - t0
    cpu = _cpu_s(proc.pid)
    proc.kill()
    proc.wait()
    if got < want:
        raise SystemExit(f"{path}: the decode ended after {got} bytes (exit {proc.returncode})")
    return wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", type=Path, nargs="+")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--kib", type=int, default=64, help="audio to wait for (KiB)")
    ap.add_argument("--semcodec", default=str(Path(sys.executable).with_name("semcodec")))
    args = ap.parse_args()
    res: dict[Path, list[tuple[float, float]]] = {f: [] for f in args.files}
    for _ in range(args.runs):
        for f in args.files:
            res[f].append(first_audio(f, args.kib * 1024, args.semcodec))
    for f, runs in res.items():
        walls = ", ".join(f"{w:.2f}" for w, _ in runs)
        cpus = ", ".join(f"{c:.2f}" for _, c in runs)
        print(f"{f}: first {args.kib} KiB of audio after wall {walls} s; CPU used by then {cpus} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
