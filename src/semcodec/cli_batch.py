"""``semcodec batch encode|decode``: whole folder trees (part of the command line;
registered on the group by :mod:`semcodec.cli`)."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import click

from semcodec.cli_common import (
    EXIT_ERROR,
    STATE,
    _channels,
    _encode_options,
    _encode_options_from,
    _say,
    _synth_options,
    _verbosity,
)
from semcodec.errors import OutputError


# --- batch -------------------------------------------------------------------------------

@click.group("batch")
@_verbosity
def batch_group() -> None:
    """Encode or decode whole folder trees, on local processes or a Dask cluster.

    \b
      semcodec batch encode music/ smc/ --jobs 4
      semcodec batch decode smc/ wav/ --engine fluidsynth --format flac
      semcodec batch encode music/ smc/ --scheduler tcp://HOST:8786

    The output tree mirrors the input tree.  Outputs that are already complete (newer than
    their input, and valid) are skipped, so an interrupted batch resumes; -f redoes them.
    A bad file is reported and the batch carries on; the exit status is 2 if any failed.
    """


def _batch_common(f):
    for opt in reversed([
        click.option("-j", "--jobs", type=click.IntRange(1, 1024), default=None,
                     help="Local worker processes (default: the number of cores)."),
        click.option("-f", "--force", is_flag=True, help="Redo outputs that are already complete."),
        click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
                     help="Write the per-file results as JSON to this file."),
        click.option("--scheduler", default=None, metavar="tcp://HOST:8786",
                     help="Run on this Dask cluster instead (pip install 'semcodec[dask]')."),
        click.option("--follow-symlinks", is_flag=True,
                     help="Also process symbolic links to files outside SRC_DIR (skipped and "
                     "listed by default)."),
    ]):
        f = opt(f)
    return f


def _run_batch(mode: str, src: str, dst: str, fmt: str, jobs, force: bool, report_path,
               scheduler, follow_symlinks: bool = False, **settings) -> None:
    from tqdm import tqdm

    from semcodec import batch

    if report_path:
        rp = Path(report_path)
        if rp.is_dir() or not (rp.parent if str(rp.parent) else Path(".")).is_dir():
            raise OutputError(f"{report_path}: cannot write the report there")
    plan = batch.plan_batch(mode, src, dst, fmt, follow_symlinks=follow_symlinks)
    if plan.n_files == 0:
        _say(f"batch {mode}: no input files under {src}")
    show = not STATE.quiet and sys.stderr.isatty()
    # files done plus the fractions of the files in progress: the bar and its ETA move while
    # files are being worked on; the files in progress are listed with their stage after it
    bar = tqdm(total=plan.n_files, desc=f"batch {mode}", file=sys.stderr, disable=not show,
               dynamic_ncols=True, smoothing=0.1,
               bar_format="{desc} |{bar}| {n:.1f}/{total_fmt} files {elapsed}<{remaining}"
               "{postfix}")
    finished = [0]
    running: dict[str, tuple[str, float]] = {}

    def redraw() -> None:
        n = finished[0] + sum(f for _, f in running.values())
        with bar.get_lock():
            if n > bar.n:
                bar.update(n - bar.n)
            bar.set_postfix_str(", ".join(f"{Path(rel).name} {stage} {frac * 100:.0f}%"
                                          for rel, (stage, frac) in sorted(running.items())))

    def progress(res) -> None:
        finished[0] += 1
        running.pop(res.rel, None)
        redraw()
        if res.status == "failed":
            msg = f"semcodec: error: {Path(src) / res.rel}: {res.reason}"
            bar.write(msg, file=sys.stderr) if show else click.echo(msg, err=True)

    def file_progress(rel: str, stage: str, frac: float) -> None:
        running[rel] = (stage, frac)
        redraw()

    stop = threading.Event()

    def tick() -> None:  # the clock moves while workers start and load their models
        while not stop.wait(0.5):
            with bar.get_lock():
                bar.refresh()

    ticker = threading.Thread(target=tick, name="semcodec-progress", daemon=True)
    if show:
        ticker.start()
    try:
        report = batch.run_batch(plan, jobs=jobs, force=force, scheduler=scheduler,
                                 progress=progress, file_progress=file_progress if show else None,
                                 **settings)
    finally:
        stop.set()
        if show:
            ticker.join()
        bar.close()
    if report_path:
        report.write_json(report_path)
    for line in report.summary_lines():
        if not line.startswith("failed:"):
            _say(line)
        elif not STATE.quiet:
            click.echo(line, err=True)
    if report.failed:
        raise SystemExit(EXIT_ERROR)


@batch_group.command("encode")
@click.argument("src_dir", type=str)
@click.argument("dst_dir", type=str)
@_batch_common
@_encode_options
@_verbosity
def batch_encode(src_dir: str, dst_dir: str, jobs, force: bool, report_path, scheduler,
                 follow_symlinks: bool, **options) -> None:
    """Encode every audio file under SRC_DIR (.wav .flac .ogg .mp3 .aif .aiff) to DST_DIR/**.smc."""
    opts = _encode_options_from(**options)
    _run_batch("encode", src_dir, dst_dir, "wav", jobs, force, report_path, scheduler,
               follow_symlinks, encode_options=opts)


@batch_group.command("decode")
@click.argument("src_dir", type=str)
@click.argument("dst_dir", type=str)
@_batch_common
@click.option("--format", "fmt", type=click.Choice(["wav", "flac", "ogg"]), default="wav",
              show_default=True, help="Output format.")
@_synth_options
@_verbosity
def batch_decode(src_dir: str, dst_dir: str, jobs, force: bool, report_path, scheduler,
                 follow_symlinks: bool, fmt: str, engine: str, device: str, soundfont,
                 sample_rate, transpose: int, tempo: float, channels: str,
                 no_residual: bool, max_duration: float) -> None:
    """Decode every .smc under SRC_DIR to DST_DIR/**.wav (or --format flac|ogg)."""
    from semcodec import batch

    if soundfont is not None:
        soundfont = os.path.abspath(soundfont)  # workers may run elsewhere
    settings = batch.DecodeSettings(engine=engine, device=device, soundfont=soundfont,
                                    sample_rate=sample_rate, fmt=fmt, transpose=transpose,
                                    tempo=tempo, channels=_channels(channels),
                                    max_duration_s=max_duration or None,
                                    residual=not no_residual)
    _run_batch("decode", src_dir, dst_dir, fmt, jobs, force, report_path, scheduler,
               follow_symlinks, decode_settings=settings)
