"""Speed side by side: whole processes of semcodec and of Opus on the same clips, in one run.

For each clip of :data:`SPEED_CLIPS` found in the run (one solo stem, one mix), :data:`RUNS`
rounds (``BENCH_SPEED_RUNS``), one command at a time and after the parallel part of the
benchmark (so nothing of the benchmark runs next to them), each round::

    semcodec encode -q -f CLIP x.smc          opusenc --quiet --bitrate 12 CLIP x.opus
    semcodec decode -q -f x.smc x.wav         opusdec --quiet --rate 44100 x.opus x.wav

(semcodec with its default engine; Opus from opus-tools, or ``ffmpeg`` with libopus when
opus-tools is missing; the table says which).  Each command is a child process measured with
``os.wait4``: wall seconds (start-up included), CPU seconds (user + sys of the process and its
threads) and peak RSS.  The figures are the medians over the rounds; the ratio semcodec/Opus
is the median of the per-round ratios, so a machine that slows down for a while affects both
sides of a round alike (``bench.metrics.run_summary``, ``bench.metrics.paired_ratio``); the
same for CPU seconds, which a busy machine distorts less.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from bench import metrics

#: Clips timed (names as in the benchmark): one solo Slakh stem and one Slakh mix.
SPEED_CLIPS = ("slakh_Track00001_S07", "slakh_Track00001_mix")
#: Rounds per clip (median of these).
RUNS = int(os.environ.get("BENCH_SPEED_RUNS", "3"))
#: Opus bitrate of the comparison (kbit/s).
OPUS_KBPS = 12
#: Before timing, wait up to this long (s; ``BENCH_SPEED_SETTLE_S``, 0: not at all) for the
#: 1-min load average to fall below SETTLE_LOAD_PER_CORE x cores: the section starts right
#: after the benchmark's parallel part, whose load (3.2 on the 2-core box) slowed the first
#: rounds (S07 encode 9.65 s there, 6.62 s timed alone).
SETTLE_MAX_S = float(os.environ.get("BENCH_SPEED_SETTLE_S", "120"))
SETTLE_LOAD_PER_CORE = 0.5
#: Seconds between two looks at the load while settling.
SETTLE_POLL_S = 5.0
#: Steps of a round, in order: (step, codec).
STEPS = (("encode", "semcodec"), ("encode", "opus"), ("decode", "semcodec"), ("decode", "opus"))

#: A step's command: (source clip, work folder) -> argv.
Command = Callable[[Path, Path], list]


def timed(cmd: list[str], timeout: float = 900.0) -> dict:
    """Run ``cmd`` (output discarded); ``{rc, wall_s, cpu_s, rss_mb, stderr}`` of the child
    process from ``os.wait4`` (CPU: user + sys, all its threads; RSS: peak, MiB)."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        try:
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err,
                                 stdin=subprocess.DEVNULL)
        except OSError as e:
            return dict(rc=127, wall_s=None, cpu_s=None, rss_mb=None, stderr=str(e))
        deadline = t0 + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                p.kill()
                _, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.005)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode("utf-8", "replace")[-1000:]
    return dict(rc=p.returncode, wall_s=wall, cpu_s=ru.ru_utime + ru.ru_stime,
                rss_mb=ru.ru_maxrss / 1024.0, stderr=text)


def opus_tool() -> str:
    """``"opus-tools"`` (opusenc/opusdec on PATH), else ``"ffmpeg"``."""
    return "opus-tools" if shutil.which("opusenc") and shutil.which("opusdec") else "ffmpeg"


def default_commands(semcodec: str | None = None) -> dict[tuple[str, str], Command]:
    """The commands of :data:`STEPS`: semcodec's console script, Opus at OPUS_KBPS."""
    if semcodec is None:
        from bench.codecs import semcodec_bin  # noqa: PLC0415

        semcodec = semcodec_bin()
    if opus_tool() == "opus-tools":
        opus_enc = lambda src, w: ["opusenc", "--quiet", "--bitrate", str(OPUS_KBPS),  # noqa: E731
                                   str(src), str(w / "x.opus")]
        opus_dec = lambda _src, w: ["opusdec", "--quiet", "--rate", "44100",  # noqa: E731
                                   str(w / "x.opus"), str(w / "opus.wav")]
    else:
        ff = ["ffmpeg", "-nostdin", "-y", "-hide_banner", "-loglevel", "error"]
        opus_enc = lambda src, w: ff + ["-i", str(src), "-ac", "1", "-c:a", "libopus",  # noqa: E731
                                        "-b:a", f"{OPUS_KBPS}k", str(w / "x.opus")]
        opus_dec = lambda _src, w: ff + ["-i", str(w / "x.opus"), "-ar", "44100",  # noqa: E731
                                        str(w / "opus.wav")]
    return {
        ("encode", "semcodec"): lambda src, w: [semcodec, "encode", "-q", "-f", str(src),
                                                str(w / "x.smc")],
        ("encode", "opus"): opus_enc,
        ("decode", "semcodec"): lambda _src, w: [semcodec, "decode", "-q", "-f", str(w / "x.smc"),
                                                str(w / "semcodec.wav")],
        ("decode", "opus"): opus_dec,
    }


def measure_clip(src: Path, duration_s: float, runs: int = RUNS,
                 commands: dict[tuple[str, str], Command] | None = None) -> dict:
    """Time :data:`STEPS` on clip ``src`` for ``runs`` rounds.

    Returns ``{"runs": n, "steps": {"encode": {"semcodec": summary, "opus": summary,
    "ratio": semcodec/opus wall}, "decode": {...}}}`` with each summary from
    :func:`bench.metrics.run_summary`, or ``{"error": message}`` when a command failed."""
    commands = commands or default_commands()
    raw: dict[tuple[str, str], list[dict]] = {k: [] for k in STEPS}
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as tmp:
        work = Path(tmp)
        for _ in range(runs):
            for key in STEPS:
                r = timed(commands[key](Path(src), work))
                if r["rc"] != 0:
                    last = (r["stderr"].strip().splitlines() or [f"exit status {r['rc']}"])[-1]
                    return dict(error=f"{key[1]} {key[0]}: {last}"[:300])
                raw[key].append(r)
    steps: dict = {}
    for step in ("encode", "decode"):
        sc, op = raw[(step, "semcodec")], raw[(step, "opus")]
        steps[step] = dict(
            semcodec=metrics.run_summary(sc, duration_s),
            opus=metrics.run_summary(op, duration_s),
            ratio=metrics.paired_ratio([r["wall_s"] for r in sc], [r["wall_s"] for r in op]),
            ratio_cpu=metrics.paired_ratio([r["cpu_s"] for r in sc], [r["cpu_s"] for r in op]))
    return dict(runs=runs, steps=steps)


def settle(max_s: float = SETTLE_MAX_S) -> dict:
    """Wait (at most ``max_s`` seconds) for the 1-min load average to fall below
    SETTLE_LOAD_PER_CORE per core; ``{"load_before", "waited_s"}``."""
    limit = SETTLE_LOAD_PER_CORE * (os.cpu_count() or 1)
    first = os.getloadavg()[0]
    t0 = time.monotonic()
    while max_s > 0 and os.getloadavg()[0] >= limit and time.monotonic() - t0 < max_s:
        time.sleep(min(SETTLE_POLL_S, max(0.0, max_s - (time.monotonic() - t0))))
    return dict(load_before=first, waited_s=round(time.monotonic() - t0, 1))


def run(clips: list[dict], runs: int = RUNS) -> dict:
    """Time the clips of :data:`SPEED_CLIPS` among ``clips`` (benchmark clip dicts), once
    the machine has settled (:func:`settle`)."""
    chosen = [c for name in SPEED_CLIPS for c in clips if c["name"] == name]
    waited = settle() if chosen else dict(load_before=os.getloadavg()[0], waited_s=0.0)
    out = dict(opus_tool=opus_tool(), opus_kbps=OPUS_KBPS, runs=runs, cores=os.cpu_count(),
               settle=waited, loadavg_start=os.getloadavg()[0], clips={})
    for c in chosen:
        print(f"bench: timing {c['name']} ({runs} rounds)", file=sys.stderr)
        out["clips"][c["name"]] = dict(measure_clip(Path(c["audio"]), float(c["duration_s"]), runs),
                                       duration_s=float(c["duration_s"]), group=c.get("group"))
    out["loadavg_end"] = os.getloadavg()[0]
    return out


def _f(v, fmt: str) -> str:
    return "–" if v is None else fmt.format(v)


def table(speed: dict) -> list[str]:
    """Markdown table lines: one row per clip and step (encode, decode)."""
    lines = ["| clip | step | semcodec wall s | CPU s | ×RT | peak MiB | Opus wall s | CPU s | ×RT "
             "| peak MiB | semcodec / Opus: wall | CPU |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, c in speed.get("clips", {}).items():
        if "error" in c:
            lines.append(f"| {name} | – | {c['error']} |" + " |" * 10)
            continue
        for step in ("encode", "decode"):
            s = c["steps"][step]
            a, b = s["semcodec"], s["opus"]
            lines.append(
                f"| {name} ({c['duration_s']:.0f} s) | {step} | {_f(a['wall_s'], '{:.2f}')} | "
                f"{_f(a['cpu_s'], '{:.2f}')} | {_f(a['x_rt'], '{:.1f}')} | {_f(a['rss_mb'], '{:.0f}')} | "
                f"{_f(b['wall_s'], '{:.2f}')} | {_f(b['cpu_s'], '{:.2f}')} | {_f(b['x_rt'], '{:.0f}')} | "
                f"{_f(b['rss_mb'], '{:.0f}')} | {_f(s['ratio'], '{:.0f}×')} | "
                f"{_f(s.get('ratio_cpu'), '{:.0f}×')} |")
    return lines


def section(speed: dict | None) -> list[str]:
    """The report's speed section (markdown lines); empty when speed was not measured."""
    if not speed or not speed.get("clips"):
        return []
    tool = ("opusenc / opusdec (opus-tools)" if speed.get("opus_tool") == "opus-tools"
            else "ffmpeg with libopus (opus-tools not installed)")
    return ["## Speed, side by side with Opus", "",
            f"Whole processes, one at a time after the rest of the benchmark, median of "
            f"{speed['runs']} rounds per clip: `semcodec encode` / `semcodec decode` (default "
            f"engine) against {tool} at {speed['opus_kbps']} kbit/s on the same clip, in turns "
            "(`bench/speed.py`). Wall seconds include start-up; CPU seconds are user + sys of "
            "the process and all its threads; ×RT = clip duration / wall; the last column is "
            "the medians of the per-round ratios (wall; CPU). "
            + (f"The section waited {speed['settle']['waited_s']:.0f} s for the machine to "
               f"settle (1-min load average {speed['settle']['load_before']:.1f} then). "
               if speed.get("settle", {}).get("waited_s") else "")
            + f"1-min load average {speed['loadavg_start']:.1f} before and "
            f"{speed['loadavg_end']:.1f} after (other work on the machine inflates wall times, "
            "less so CPU times).", "", *table(speed), ""]


def main(argv=None) -> int:
    """``python -m bench.speed [--runs N] CLIP ...``: the speed table for audio files."""
    import argparse  # noqa: PLC0415

    import soundfile as sf  # noqa: PLC0415

    ap = argparse.ArgumentParser(prog="python -m bench.speed", description=main.__doc__)
    ap.add_argument("clips", nargs="+", type=Path)
    ap.add_argument("--runs", type=int, default=RUNS)
    args = ap.parse_args(argv)
    clips = [dict(name=p.stem, audio=str(p), duration_s=sf.info(str(p)).duration) for p in args.clips]
    global SPEED_CLIPS
    SPEED_CLIPS = tuple(c["name"] for c in clips)
    print("\n".join(section(run(clips, args.runs))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
