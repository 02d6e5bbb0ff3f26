"""docs/BENCHMARKS.md, docs/bench/results.json and the figures.

Everything numeric in the report is generated here from the run's results.  Text under a
``## History`` heading already in BENCHMARKS.md is kept; each run adds its summary on top of
the history, so earlier (possibly better or worse) results stay on record.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench import metrics, speed

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
MD = DOCS / "BENCHMARKS.md"
OUTDIR = DOCS / "bench"
GROUPS = ("solo", "singing", "ensemble", "real")
#: The drum clips (GM drum patterns, and one band clip) get a table of their own.
DRUM_GROUP = "drums"
HISTORY = "## History"


# --- run information --------------------------------------------------------------------

def _git(*args: str) -> str | None:
    try:
        p = subprocess.run(["git", *args], cwd=str(REPO), capture_output=True, text=True, timeout=30)
        return p.stdout.strip() if p.returncode == 0 else None
    except Exception:  # noqa: BLE001
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return None


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("semcodec", "basic-pitch", "onnxruntime", "librosa", "mir_eval", "pyfluidsynth"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    try:
        p = subprocess.run(["ffmpeg", "-hide_banner", "-version"], capture_output=True, text=True, timeout=30)
        out["ffmpeg"] = p.stdout.splitlines()[0].split()[2] if p.returncode == 0 else None
    except Exception:  # noqa: BLE001
        out["ffmpeg"] = None
    return out


def run_info(argv_display: str, started: dt.datetime) -> dict:
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = _git("status", "--porcelain")
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return dict(
        date=started.strftime("%Y-%m-%d %H:%M UTC"),
        commit=commit + ("+dirty" if dirty else ""),
        command=argv_display,
        cpu=_cpu_model(), cores=cores, ram_gib=_ram_gib(),
        os=f"{platform.system()} {platform.release()}",
        versions=_versions(),
    )


# --- aggregation ------------------------------------------------------------------------

COLUMNS = (  # (key, header, format)
    ("kbps", "kbit/s", "{:.3g}"),
    ("mel", "mel dist. ↓", "{:.3f}"),
    ("chroma", "chroma sim. ↑", "{:.3f}"),
    ("score_f1", "score F1 ↑", "{:.3f}"),
    ("rt_f1", "round-trip F1 ↑", "{:.3f}"),
    ("inst_f1", "instrument F1 ↑", "{:.3f}"),
    ("enc_x_rt", "enc ×RT ↑", "{:.3g}"),
    ("dec_x_rt", "dec ×RT ↑", "{:.3g}"),
    ("enc_rss_mb", "enc RSS MB", "{:.0f}"),
    ("dec_rss_mb", "dec RSS MB", "{:.0f}"),
)


STEREO_GROUP = "stereo"
STEREO_COLUMNS = (  # the stereo table
    ("kbps", "kbit/s", "{:.3g}"),
    ("mel", "mel dist. (downmix) ↓", "{:.3f}"),
    ("mel_lr", "L/R mel dist. ↓", "{:.3f}"),
    ("mel_lr_downmix", "L/R mel dist., downmix on both ↓", "{:.3f}"),
    ("score_f1", "score F1 ↑", "{:.3f}"),
    ("rt_f1", "round-trip F1 ↑", "{:.3f}"),
    ("inst_f1", "instrument F1 ↑", "{:.3f}"),
)

DRUM_COLUMNS = (  # the drums table
    ("kbps", "kbit/s", "{:.3g}"),
    ("mel", "mel dist. ↓", "{:.3f}"),
    ("drum_f1", "drum F1 ↑", "{:.3f}"),
    ("rt_drum_f1", "round-trip drum F1 ↑", "{:.3f}"),
)


def aggregate(per_clip: list[dict], codecs: list[str], group: str, source: str | None = None,
              columns=None) -> list[dict]:
    """Per-codec means over the clips of ``group`` (and of ``source``, e.g. "eval", if given)."""
    clips = [c for c in per_clip if c["group"] == group and (source is None or c.get("source") == source)]
    out = []
    for codec in codecs:
        rows = [c.get("rows", {}).get(codec) for c in clips]
        ok = [r for r in rows if r and r.get("status") == "ok"]
        agg = dict(codec=codec, n=len(clips), n_ok=len(ok),
                   statuses=sorted({(r or {}).get("status", "missing") for r in rows} - {"ok"}))
        for key, _, _ in (columns or COLUMNS):
            agg[key] = metrics.mean_or_none(r.get(key) for r in ok)
        out.append(agg)
    return out


def _fmt(v, f: str) -> str:
    return "–" if v is None else f.format(v)


def group_table(aggs: list[dict], short: bool = False, columns=None) -> str:
    cols = columns or (COLUMNS[:5] if short else COLUMNS)
    head = "| codec | clips ok | " + " | ".join(h for _, h, _ in cols) + " |"
    sep = "|---|---:|" + "---:|" * len(cols)
    lines = [head, sep]
    for a in aggs:
        if a["n_ok"] == 0 and a["statuses"] == ["missing"]:
            continue  # a codec not run on this group (e.g. the 1-track variant on solos)
        ok = f"{a['n_ok']}/{a['n']}"
        if a["n_ok"] < a["n"] and a["statuses"]:
            ok += " (" + ", ".join(a["statuses"]) + ")"
        lines.append(f"| {a['codec']} | {ok} | " + " | ".join(_fmt(a[k], f) for k, _, f in cols) + " |")
    return "\n".join(lines)


def failures(per_clip: list[dict], codecs: list[str]) -> list[tuple[str, str, int, str]]:
    """(codec, status, count, first error) for every distinct failure message."""
    seen: dict[tuple, list] = {}
    for c in per_clip:
        if c.get("error"):
            seen.setdefault(("(all)", "error", c["error"].splitlines()[0]), []).append(c["name"])
        for codec in codecs:
            r = c.get("rows", {}).get(codec)
            if r and r.get("status") != "ok":
                key = (codec, r.get("status", "error"), (r.get("error") or "").splitlines()[0] if r.get("error") else "")
                seen.setdefault(key, []).append(c["name"])
            if r and r.get("score_error"):
                seen.setdefault((codec, "score export", r["score_error"]), []).append(c["name"])
    return [(k[0], k[1], len(v), k[2]) for k, v in seen.items()]


# --- figures ----------------------------------------------------------------------------

def scatter_plot(per_clip: list[dict], codecs: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    cmap = plt.get_cmap("tab10")
    markers = {"solo": "o", "singing": "D", "ensemble": "s", "real": "^"}
    for i, codec in enumerate(c for c in codecs if not c.startswith("original")):
        color = cmap(i % 10)
        xs, ys = [], []
        for c in per_clip:
            r = c.get("rows", {}).get(codec)
            if r and r.get("status") == "ok" and r.get("kbps") and r.get("mel") is not None:
                ax.scatter(r["kbps"], r["mel"], s=14, alpha=0.35, color=color,
                           marker=markers.get(c["group"], "o"), linewidths=0)
                xs.append(r["kbps"])
                ys.append(r["mel"])
        if xs:
            ax.scatter(np.mean(xs), np.mean(ys), s=110, color=color, edgecolors="black",
                       label=f"{codec} ({len(xs)} clips)", zorder=5)
    ax.set_xscale("log")
    ax.set_xlabel("bitrate (kbit/s, log scale)")
    ax.set_ylabel("mel distance (lower is better)")
    ax.set_title("Bitrate vs mel distance: small = one clip (○ solo, □ ensemble, △ real); "
                 "large = codec mean", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def spectrogram_figure(clip: dict, codecs: list[str], path: Path) -> bool:
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.run import figure_wav, load_mono

    panels = []
    for codec in codecs:
        r = clip.get("rows", {}).get(codec)
        wav = figure_wav(clip["name"], codec)
        if r and r.get("status") == "ok" and wav.exists():
            panels.append((codec, str(wav)))
    if not panels:
        return False
    specs = []
    for codec, wav in panels:
        y = load_mono(wav)
        m = librosa.feature.melspectrogram(y=y, sr=metrics.SR, n_fft=2048, hop_length=512, n_mels=128)
        specs.append((codec, librosa.power_to_db(m, ref=1.0)))
    top = max(float(s.max()) for _, s in specs)
    fig, axes = plt.subplots(len(specs), 1, figsize=(11, 1.5 * len(specs) + 0.6), dpi=64, sharex=True)
    axes = np.atleast_1d(axes)
    for ax, (codec, s) in zip(axes, specs):
        t_end = s.shape[1] * 512 / metrics.SR
        ax.set_facecolor("black")
        ax.imshow(s, origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top,
                  extent=(0, t_end, 0, s.shape[0]))
        ax.set_ylabel("mel bin", fontsize=7)
        ax.set_title(codec, fontsize=9, loc="left")
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(f"{clip['name']}: log-mel spectrograms (dB, 80 dB range)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


# --- markdown -----------------------------------------------------------------------------

def _definitions() -> str:
    m = metrics
    return "\n".join([
        "Definitions (code: `bench/metrics.py`):",
        "",
        "- **kbit/s**: compressed file bytes × 8 / clip duration (`.smc` for semcodec, the Ogg `.opus` "
        "file for Opus, the `.mid.gz` for the plain pipeline, the FLAC file for the original).",
        f"- **mel distance** (lower is better): mono {m.SR} Hz, zero-padded to equal length; for n_fft in "
        f"{', '.join(str(n) for n in m.MEL_N_FFTS)} (hop n_fft/4) {m.MEL_N_MELS}-band mel magnitude "
        f"spectrograms (power 1); mean |log10(max(mel, {m.MEL_FLOOR:g}))| difference, averaged over the "
        "resolutions.",
        f"- **chroma similarity** (higher is better): CQT chroma with hop {m.CHROMA_HOP}; per-frame cosine "
        f"similarity averaged over the frames where the reference RMS (frame {m.CHROMA_RMS_FRAME}, hop "
        f"{m.CHROMA_HOP}) exceeds {m.CHROMA_RMS_REL:g} × its median.",
        f"- **score F1**: onset-only note F1 (mir_eval, onset tolerance {m.ONSET_TOLERANCE_S * 1000:g} ms, "
        "offsets ignored, 50-cent pitch tolerance) of the container's score (`semcodec export --midi`) "
        "against the ground truth.",
        "- **round-trip F1**: the same F1 for basic-pitch's transcription of the *decoded* audio; the "
        "original row is basic-pitch on the original itself (the ceiling).",
        "- **enc/dec ×RT**: clip duration / wall-clock seconds of the child process (start-up included), "
        "measured while the benchmark runs clips in parallel; **RSS**: the child's peak resident set "
        "(`/usr/bin/time -f %M`). The plain pipeline's encode is measured once per clip and cached. "
        "The speed section times a few clips again, one process at a time, next to Opus.",
        f"- **drum F1** (drum clips): class-aware drum-onset F1 (`drum_onset_f1`): GM keys mapped to kick, "
        f"snare, hi-hat (closed + pedal + open), toms, cymbals (crash + ride); within each class hits "
        f"matched one-to-one within {m.DRUM_TOLERANCE_S * 1000:g} ms; of the `.smc`'s drum track for "
        "semcodec, of the drum detector (`semcodec.drums.detect_drums`) on the original for the "
        "original row. **round-trip drum F1**: the same for the detector run on the *decoded* audio.",
        "- The plain pipeline: basic-pitch (onnxruntime, default settings) → gzipped MIDI → fluidsynth with "
        "FluidR3_GM, program 0 (piano), peak-normalised; the loudness-matched row scales that output to "
        "the original's integrated loudness (pyloudnorm, BS.1770).",
    ])


def _wall_line(info: dict) -> str:
    out = f"{info['bench_wall_s'] / 60:.1f} min with {info.get('jobs', 2)} clips in parallel"
    if info.get("bench_cpu_s"):
        out += f"; CPU time of the benchmark and its children {info['bench_cpu_s'] / 60:.1f} min"
    if info.get("loadavg_start") is not None and info.get("loadavg_end") is not None:
        out += (f"; 1-min load average {info['loadavg_start']:.1f} at the start and {info['loadavg_end']:.1f} "
                "at the end (other work on the machine slows the ×RT figures down)")
    return out


def render_markdown(info: dict, per_clip: list[dict], figures: list[str]) -> str:
    codecs = info["codecs"]
    counts = {g: sum(1 for c in per_clip if c["group"] == g)
              for g in GROUPS + (DRUM_GROUP, STEREO_GROUP)}
    ram = f"{info['ram_gib']:.1f} GiB RAM" if info.get("ram_gib") else "RAM unknown"
    v = info["versions"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`bench/`); everything above the History section is rewritten on "
        "every run and every number in it is computed by the benchmark.",
        "",
        f"- **Date**: {info['date']}",
        f"- **Commit**: `{info['commit']}`",
        f"- **Command**: `{info['command']}`",
        f"- **Machine**: {info['cpu']}, {info['cores']} cores, {ram}, {info['os']}",
        f"- **Versions**: " + ", ".join(f"{k} {val}" for k, val in v.items() if val),
        f"- **Benchmark wall time**: {_wall_line(info)}",
        f"- **semcodec engines**: {', '.join(info['engines'])} (from {info['engines_from']})",
        f"- **Clips**: {len(per_clip)} ({', '.join(f'{n} {g}' for g, n in counts.items())}); list at the end",
        "",
        _definitions(),
        "",
        *speed.section(info.get("speed")),
    ]
    for g in GROUPS:
        if not counts[g]:
            continue
        lines += [f"## {g.capitalize()} ({counts[g]} clips)", "", group_table(aggregate(per_clip, codecs, g)), ""]
        n_real = sum(1 for c in per_clip if c["group"] == g and c.get("source") == "eval")
        if g == "solo" and 0 < n_real < counts[g]:
            lines += [f"### Solo, real Slakh stems only ({n_real} clips of `../shared/eval`)", "",
                      group_table(aggregate(per_clip, codecs, g, source="eval")), ""]
    if counts[DRUM_GROUP]:
        lines += drums_section(per_clip, codecs)
    if counts[STEREO_GROUP]:
        lines += stereo_section(per_clip, codecs)
    lines += parts_section(per_clip)
    fails = failures(per_clip, codecs)
    if fails:
        lines += ["## Failures", "", "| codec | status | clips | message |", "|---|---|---:|---|"]
        for codec, status, n, msg in fails:
            msg = msg.replace("|", "\\|")[:200]
            lines.append(f"| {codec} | {status} | {n} | `{msg}` |")
        lines.append("")
    lines += ["## Figures", "", "![bitrate vs mel distance](bench/scatter.png)", ""]
    for f in figures:
        lines += [f"![spectrograms]({f})", ""]
    lines += ["## Clips", "", "Raw per-clip results: [`bench/results.json`](bench/results.json).", "",
              "| clip | group | s | notes | description |", "|---|---|---:|---:|---|"]
    for c in per_clip:
        n = c.get("n_notes")
        lines.append(f"| {c['name']} | {c['group']} | {c['duration_s']:.1f} | {'–' if n is None else n} | "
                     f"{c['description']} |")
    lines.append("")
    return "\n".join(lines)


def drums_section(per_clip: list[dict], codecs: list[str]) -> list[str]:
    """Markdown lines of the drums section: the per-codec table, then drum F1 per clip."""
    clips = [c for c in per_clip if c["group"] == DRUM_GROUP]
    lines = [f"## Drums ({len(clips)} clips)", "",
             "GM drum patterns rendered with the benchmark soundfont (and one band clip: an ensemble "
             "piece with a drum pattern), ground truth `[onset, offset, gm_key]`.", "",
             group_table(aggregate(per_clip, codecs, DRUM_GROUP, columns=DRUM_COLUMNS),
                         columns=DRUM_COLUMNS), ""]
    sc = [k for k in codecs if k.startswith("semcodec")]
    heads = ["detector on the original"] + [f"{k}: score" for k in sc[:1]] + [f"{k}: round-trip" for k in sc]
    heads += ["pitched notes: basic-pitch on the original"] + [f"pitched notes: {k} score" for k in sc[:1]]
    lines += ["Drum F1 per clip (the score of every semcodec engine is the same `.smc`), and for a "
              "band clip the note F1 of its pitched part (drum hits excluded from the truth):", "",
              "| clip | hits | " + " | ".join(heads) + " |", "|---|---:|" + "---:|" * len(heads)]
    for c in clips:
        rows = c.get("rows", {})
        vals = [rows.get(codecs[0], {}).get("drum_f1")] if codecs else [None]
        vals += [rows.get(k, {}).get("drum_f1") for k in sc[:1]]
        vals += [rows.get(k, {}).get("rt_drum_f1") for k in sc]
        vals += [rows.get(codecs[0], {}).get("rt_f1")] if codecs else [None]
        vals += [rows.get(k, {}).get("score_f1") for k in sc[:1]]
        n = c.get("n_drum_hits")
        lines.append(f"| {c['name']} | {'–' if n is None else n} | "
                     + " | ".join(_fmt(v, "{:.3f}") for v in vals) + " |")
    lines.append("")
    return lines


#: The row whose bytes per part are tabled (the default decoding).
PARTS_CODEC = "semcodec auto"
#: Record types of a .smc file, in file order (docs/FORMAT.md).
PART_TYPES = ("HEAD", "SCOR", "TIMB", "SAMP", "SKEY", "TAGS", "RESD", "END")


def parts_section(per_clip: list[dict]) -> list[str]:
    """Markdown lines: mean bytes per part of the default encoding, by group (empty when the
    run has no part sizes)."""
    groups = [g for g in GROUPS + (DRUM_GROUP, STEREO_GROUP)
              if any(c["group"] == g for c in per_clip)]
    table = []
    for g in groups:
        rows = [c.get("rows", {}).get(PARTS_CODEC) for c in per_clip if c["group"] == g]
        parts = [r["part_bytes"] for r in rows if r and r.get("status") == "ok"
                 and r.get("part_bytes")]
        if parts:
            table.append((g, len(parts), {t: float(np.mean([p.get(t, 0) for p in parts]))
                                          for t in PART_TYPES}))
    if not table:
        return []
    used = [t for t in PART_TYPES if any(m[t] for _, _, m in table)]
    lines = ["## Bytes per part", "",
             f"Mean bytes of each part of the `{PARTS_CODEC}` files (a record's framing and CRC "
             "included; HEAD is the preamble and JSON header, RESD the residual). The row "
             "*semcodec auto, no residual* above is the same file decoded with "
             "`--no-residual`, counted without its RESD chunk.", "",
             "| group | files | " + " | ".join(used) + " | total |",
             "|---|---:|" + "---:|" * (len(used) + 1)]
    for g, n, m in table:
        lines.append(f"| {g} | {n} | " + " | ".join(f"{m[t]:.0f}" for t in used)
                     + f" | {sum(m.values()):.0f} |")
    return lines + [""]


def stereo_section(per_clip: list[dict], codecs: list[str]) -> list[str]:
    """Markdown lines of the stereo section."""
    clips = [c for c in per_clip if c["group"] == STEREO_GROUP]
    return [f"## Stereo ({len(clips)} clips)", "",
            "The eval folder's Slakh stems of one song placed at pans spread from -0.6 to 0.6 "
            "and summed (`bench.dataset.stereo_clips`). **L/R mel**: the mel distance of each "
            "decoded channel against the same channel of the original, averaged; **downmix on "
            "both**: the same for the decoded downmix played on both channels (for semcodec, "
            "exactly what `--channels 1` decodes; Opus codes the two channels).", "",
            group_table(aggregate(per_clip, codecs, STEREO_GROUP, columns=STEREO_COLUMNS),
                        columns=STEREO_COLUMNS), ""]


def _history_table(head: str, rows: list[tuple[str, dict]], columns) -> list[str]:
    """History table lines: ``head`` over the first column, one line per (group, aggregate)."""
    lines = [f"| {head} | codec | clips ok | " + " | ".join(h for _, h, _ in columns) + " |",
             "|---|---|---:|" + "---:|" * len(columns)]
    for group, a in rows:
        lines.append(f"| {group} | {a['codec']} | {a['n_ok']}/{a['n']} | "
                     + " | ".join(_fmt(a[k], f) for k, _, f in columns) + " |")
    return lines


def history_entry(info: dict, per_clip: list[dict]) -> str:
    codecs = info["codecs"]
    lines = [f"### {info['date']}, commit `{info['commit']}`, {len(per_clip)} clips", ""]
    lines += _history_table("group", [(g, a) for g in GROUPS for a in aggregate(per_clip, codecs, g)
                                      if a["n"]], COLUMNS[:5])
    for group, columns in ((STEREO_GROUP, STEREO_COLUMNS[:4]), (DRUM_GROUP, DRUM_COLUMNS)):
        aggs = [a for a in aggregate(per_clip, codecs, group, columns=columns) if a["n"]]
        if aggs:
            lines += [""] + _history_table(group, [(group, a) for a in aggs], columns)
    sp = info.get("speed") or {}
    if sp.get("clips"):
        lines += ["", "| speed (median, whole process) | step | semcodec ×RT | CPU s | Opus ×RT "
                  "| semcodec / Opus |", "|---|---|---:|---:|---:|---:|"]
        for name, c in sp["clips"].items():
            for step, s in c.get("steps", {}).items():
                lines.append(f"| {name} | {step} | {_fmt(s['semcodec']['x_rt'], '{:.1f}')} | "
                             f"{_fmt(s['semcodec']['cpu_s'], '{:.2f}')} | "
                             f"{_fmt(s['opus']['x_rt'], '{:.0f}')} | {_fmt(s['ratio'], '{:.0f}×')} |")
    return "\n".join(lines) + "\n"


def merge_history(old_text: str | None, new_report: str, entry: str) -> str:
    """New report, then ``## History`` with the new entry above the old history text."""
    old_hist = ""
    if old_text:
        m = re.search(r"^## History[ \t]*$", old_text, flags=re.M)
        if m:
            old_hist = old_text[m.end():].strip("\n")
    intro = "One entry per run, newest first; older entries are kept as they were written."
    old_hist = old_hist.replace(intro, "", 1).strip("\n")
    parts = [new_report.rstrip("\n"), "", HISTORY, "", intro]
    heading = entry.strip().splitlines()[0] if entry.strip() else ""
    if heading and heading not in old_hist.splitlines():  # --report-only does not add it twice
        parts += ["", entry.rstrip("\n")]
    if old_hist:
        parts += ["", old_hist]
    return "\n".join(parts) + "\n"


def _jsonable(o):
    if isinstance(o, dict):
        return {k: _jsonable(v) for k, v in o.items() if k not in ("stderr",)}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, float) and not np.isfinite(o):
        return None
    return o


def write_all(info: dict, per_clip: list[dict], docs: Path | None = None) -> None:
    docs = Path(docs) if docs else DOCS
    md_path, outdir = docs / "BENCHMARKS.md", docs / "bench"
    outdir.mkdir(parents=True, exist_ok=True)
    codecs = info["codecs"]
    scatter_plot(per_clip, codecs, outdir / "scatter.png")
    figures = []
    for old in outdir.glob("spectrograms_*.png"):
        old.unlink()
    for name in info.get("figure_clips", []):
        clip = next((c for c in per_clip if c["name"] == name), None)
        if clip is None:
            continue
        fname = f"spectrograms_{name}.png"
        try:
            if spectrogram_figure(clip, codecs, outdir / fname):
                figures.append(f"bench/{fname}")
        except Exception as e:  # noqa: BLE001
            print(f"bench: spectrogram figure for {name} failed: {e}", file=sys.stderr)
    clean = []
    for c in per_clip:
        c2 = _jsonable(c)
        for r in c2.get("rows", {}).values():
            r.pop("figure_wav", None)
            r.pop("wav", None)
        c2["audio"] = os.path.relpath(c["audio"], REPO)
        for key in ("notes", "drums"):
            if c2.get(key):
                c2[key] = os.path.relpath(c[key], REPO)
        clean.append(c2)
    (outdir / "results.json").write_text(json.dumps(dict(run=_jsonable(info), clips=clean), indent=1) + "\n")
    md = render_markdown(info, per_clip, figures)
    old = md_path.read_text() if md_path.exists() else None
    md_path.write_text(merge_history(old, md, history_entry(info, per_clip)))
    print(f"bench: wrote {md_path}, {outdir}/results.json, "
          f"{len(figures) + 1} figures", file=sys.stderr)


def rewrite_from_results(docs: Path | None = None) -> None:
    """Regenerate the report and figures from an existing results.json (no codec is run)."""
    docs = Path(docs) if docs else DOCS
    data = json.loads((docs / "bench" / "results.json").read_text())
    info, per_clip = data["run"], data["clips"]
    for c in per_clip:
        c["audio"] = str(REPO / c["audio"])
        for key in ("notes", "drums"):
            if c.get(key):
                c[key] = str(REPO / c[key])
    write_all(info, per_clip, docs=docs)


#: Rows of the per-clip table printed with ``--no-report``: (codec, short name).
PER_CLIP_ROWS = ((None, "original"), (PARTS_CODEC, "auto"), ("semcodec auto, no residual", "no resid."))


def per_clip_table(per_clip: list[dict]) -> str:
    """Markdown table, one line per clip: kbit/s, mel, chroma and round-trip F1 of the default
    decoding (with and without the residual) and basic-pitch's F1 on the original."""
    head = ["clip", "group", "original rt F1"]
    for _, short in PER_CLIP_ROWS[1:]:
        head += [f"{short} kbit/s", f"{short} mel", f"{short} chroma", f"{short} rt F1"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for c in per_clip:
        rows = c.get("rows", {})
        orig = next((r for k, r in rows.items() if k.startswith("original")), {}) or {}
        cells = [c["name"], c["group"], _fmt(orig.get("rt_f1"), "{:.3f}")]
        for codec, _ in PER_CLIP_ROWS[1:]:
            r = rows.get(codec) or {}
            ok = r.get("status") == "ok"
            cells += [_fmt(r.get(k) if ok else None, f) for k, f in
                      (("kbps", "{:.3f}"), ("mel", "{:.3f}"), ("chroma", "{:.3f}"), ("rt_f1", "{:.3f}"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def print_tables(info: dict, per_clip: list[dict]) -> None:
    for g in GROUPS:
        if any(c["group"] == g for c in per_clip):
            print(f"\n{g}\n" + group_table(aggregate(per_clip, info["codecs"], g)))
    if per_clip:
        print("\nper clip\n" + per_clip_table(per_clip))
    if any(c["group"] == DRUM_GROUP for c in per_clip):
        print("\n" + "\n".join(drums_section(per_clip, info["codecs"])))
    if any(c["group"] == STEREO_GROUP for c in per_clip):
        print("\n" + "\n".join(stereo_section(per_clip, info["codecs"])))
    parts = parts_section(per_clip)
    if parts:
        print("\n" + "\n".join(parts))
    if info.get("speed"):
        print("\n" + "\n".join(speed.section(info["speed"])))
