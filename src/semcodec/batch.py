"""Batch encoding and decoding of whole folder trees, on local processes or a Dask cluster.

    from semcodec import batch
    plan = batch.plan_batch("encode", "music/", "smc/")
    report = batch.run_batch(plan, jobs=4)                        # local process pool
    report = batch.run_batch(plan, scheduler="tcp://host:8786")   # Dask distributed cluster
    print(report.bitrate_kbps, [r.reason for r in report.failed])

The output tree mirrors the input tree: ``encode`` turns every audio file (``.wav .flac .ogg
.mp3 .aif .aiff``, any case) into the same relative path with ``.smc``; ``decode`` turns every
``.smc`` into ``.wav`` (or ``.flac``/``.ogg``).  Hidden files and folders (name starting with
a dot) are ignored.  Symbolic links: a link to a file inside SRC is followed; a link to a file
outside SRC is skipped unless ``follow_symlinks`` (``--follow-symlinks``); links to folders,
broken links, link loops and inputs that are not regular files (a FIFO named ``x.wav``, a
device) are skipped.  Every skipped input is counted and listed with its reason.

An output that is already *complete* is skipped, so an interrupted batch resumes where it
stopped: it exists, is newer than its input and passes a check (a ``.smc`` must parse with
every CRC right; audio must open, have the expected sample rate and length, and its last
samples must decode).  ``force`` redoes everything.  Every output is written atomically
(temporary file in the same folder, fsync, rename), so a crash or an interrupt never leaves a
partial file behind.  One bad input is reported as failed and the batch carries on.

Each file is one task.  Locally the tasks run on a pool of ``jobs`` processes (spawned, one
file at a time each); a worker process that dies (segfault, killed for memory) is replaced
and the files it was working on are retried one at a time, then reported as failed.  With a
``scheduler`` address the same task function runs on the workers of a Dask cluster, which
must see SRC and DST at the same absolute paths (a shared file system) and have semcodec
installed (``pip install 'semcodec[dask]'``).

This module never prints; the CLI (``semcodec batch``) draws the progress bar and summary.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from semcodec.batch_jobs import (
    AUDIO_EXTENSIONS as AUDIO_EXTENSIONS,
    BatchPlan as BatchPlan,
    BatchReport as BatchReport,
    DECODE_FORMATS as DECODE_FORMATS,
    DecodeSettings as DecodeSettings,
    FileResult as FileResult,
    Job as Job,
    MODES as MODES,
    default_jobs as default_jobs,
)
from semcodec.decoder import output_shape
from semcodec.errors import InputError, OutputError, SemcodecError, UsageError
from semcodec.runtime import configure_logging

log = logging.getLogger(__name__)

__all__ = [
    "AUDIO_EXTENSIONS", "BatchPlan", "BatchReport", "DecodeSettings", "FileResult", "Job",
    "default_jobs", "plan_batch", "run_batch",
]

#: Frames read back from the end of an existing audio output to check that it is complete.
_TAIL_FRAMES = 4096
#: A file is retried this many times after its worker process died, then reported failed.
_MAX_ATTEMPTS = 2

Progress = Callable[["FileResult"], None]
#: ``file_progress(rel, stage, fraction)``: a file in progress (local pool), its stage and the
#: overall fraction (0..1) of that file done.
FileProgress = Callable[[str, str, float], None]
#: How often the parent looks at the files in progress (s).
_POLL_S = 0.5


# --- planning -----------------------------------------------------------------------------------

def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _not_a_plain_input(path: Path, src: Path, follow_symlinks: bool) -> str | None:
    """Why ``path`` (found under ``src``) is not processed, or None when it is."""
    import stat

    try:
        st = os.stat(path)
    except OSError as exc:
        if path.is_symlink():
            if exc.errno == errno.ELOOP:
                return "symbolic link loop"
            return "broken symbolic link"
        return f"cannot read ({exc.strerror or exc})"
    if stat.S_ISDIR(st.st_mode):
        return "symbolic link to a folder (not followed)"
    if stat.S_ISFIFO(st.st_mode):
        return "named pipe (FIFO), not a file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (device or socket)"
    if path.is_symlink() and not follow_symlinks:
        target = Path(os.path.realpath(path))
        if src.resolve() not in target.parents:
            return (f"symbolic link to {target}, outside the source folder "
                    "(--follow-symlinks to process it)")
    return None


def plan_batch(mode: str, src_dir: str | os.PathLike, dst_dir: str | os.PathLike,
               fmt: str = "wav", follow_symlinks: bool = False) -> BatchPlan:
    """List the files of ``src_dir`` that ``mode`` (``encode``/``decode``) processes.

    Inputs that are not processed (see the module doc: links out of ``src_dir`` unless
    ``follow_symlinks``, links to folders, link loops, FIFOs) are in ``ignored``, as skipped.

    Raises InputError when ``src_dir`` is not a folder, OutputError when ``dst_dir`` exists and
    is not one, UsageError for ``decode`` into a tree that overlaps ``src_dir`` (its audio
    outputs could overwrite original recordings there).  Inputs that
    map to the same output (``a.wav`` and ``a.flac`` → ``a.smc``) are all reported as failed.
    """
    if mode not in MODES:
        raise UsageError(f"unknown batch mode '{mode}' (choose from {', '.join(MODES)})")
    if mode == "decode" and fmt not in DECODE_FORMATS:
        raise UsageError(f"unsupported output format '{fmt}' (use {', '.join(DECODE_FORMATS)})")
    src = Path(os.path.abspath(os.fspath(src_dir)))
    dst = Path(os.path.abspath(os.fspath(dst_dir)))
    if not src.exists():
        raise InputError(f"{os.fspath(src_dir)}: no such folder")
    if not src.is_dir():
        raise InputError(f"{os.fspath(src_dir)}: is not a folder")
    if dst.exists() and not dst.is_dir():
        raise OutputError(f"{os.fspath(dst_dir)}: exists and is not a folder")
    if mode == "decode" and _overlaps(src.resolve(), dst.resolve()):
        raise UsageError(f"{os.fspath(dst_dir)}: decoding into (a folder of) the source tree "
                         "could overwrite original audio there; choose a separate DST_DIR")
    suffix = ".smc" if mode == "encode" else f".{fmt}"
    wanted = AUDIO_EXTENSIONS if mode == "encode" else (".smc",)
    by_dst: dict[str, list[Job]] = {}

    def on_error(exc: OSError) -> None:
        log.warning("%s: cannot list (%s)", exc.filename, exc.strerror or exc)

    ignored: list[FileResult] = []

    def ignore(path: Path, reason: str) -> None:
        rel = path.relative_to(src).as_posix()
        ignored.append(FileResult(str(path), "", rel, "skipped", reason))

    for root, dirs, files in os.walk(src, onerror=on_error):
        root_p = Path(root)
        if root_p == dst and dst != src:
            dirs[:] = []  # never take inputs from the output tree when it lies inside SRC
            continue
        for d in sorted(dirs):
            if not d.startswith(".") and (root_p / d).is_symlink():
                ignore(root_p / d, "symbolic link to a folder (not followed)")
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or Path(name).suffix.lower() not in wanted:
                continue
            path = root_p / name
            why = _not_a_plain_input(path, src, follow_symlinks)
            if why is not None:
                ignore(path, why)
                continue
            try:
                size = path.stat().st_size
            except OSError as exc:
                ignore(path, f"cannot read ({exc.strerror or exc})")
                continue
            rel = path.relative_to(src)
            out = dst / rel.with_suffix(suffix)
            by_dst.setdefault(str(out), []).append(Job(str(path), str(out), rel.as_posix(), size))
    jobs: list[Job] = []
    conflicts: list[FileResult] = []
    for dst_path, group in by_dst.items():
        if len(group) == 1:
            jobs.append(group[0])
            continue
        names = ", ".join(j.rel for j in group)
        for j in group:
            conflicts.append(FileResult(j.src, j.dst, j.rel, "failed",
                                        f"several inputs ({names}) map to the same output "
                                        f"{Path(dst_path).relative_to(dst).as_posix()}"))
    jobs.sort(key=lambda j: j.rel)
    ignored.sort(key=lambda r: r.rel)
    return BatchPlan(mode, str(src), str(dst), fmt, tuple(jobs), tuple(conflicts),
                     tuple(ignored))


# --- the task (runs in a worker process) ----------------------------------------------------------

_threads_set: int | None = None
_busy = False


def _limit_threads(n: int | None) -> None:
    """Use at most ``n`` threads for BLAS/OpenMP and the transcriber (onnxruntime) here."""
    global _threads_set
    if not n or _threads_set == n:
        return
    _threads_set = n
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass
    # onnxruntime sizes its pool from the CPU affinity; with several workers per machine that
    # oversubscribes the cores.  (transcribe has no public knob for it yet.)
    from semcodec import transcribe

    if getattr(transcribe, "_session", None) is None and hasattr(transcribe, "_n_threads"):
        transcribe._n_threads = lambda: n  # noqa: SLF001
    # torch (timbre fit, neural engine) runs on $SEMCODEC_TORCH_THREADS threads (default 1;
    # a lone track's last fit step on timbre.LONE_REFINE_THREADS: the bytes must not depend
    # on the batch);
    # the timbre fit runs tracks / program candidates on up to MAX_WORKERS threads of its own
    from semcodec import timbre

    timbre.MAX_WORKERS = max(1, n)


def _reason(exc: BaseException, src: str) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for prefix in (f"{src}: ", f"cannot write {src}: "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text


def _complete(mode: str, job: Job, dec: DecodeSettings) -> tuple[float, int, int] | None:
    """``(duration_s, smc_bytes, notes)`` when ``job``'s output is complete, else ``None``."""
    from semcodec.container import SmcFile

    try:
        st_out = os.stat(job.dst)
        st_in = os.stat(job.src)
    except OSError:
        return None
    if st_out.st_mtime_ns <= st_in.st_mtime_ns or st_out.st_size == 0:
        return None
    try:
        if mode == "encode":
            c = SmcFile.load(job.dst)
            return c.duration, st_out.st_size, c.score.n_notes
        c = SmcFile.load(job.src)
    except SemcodecError:
        return None
    sr, expected, channels = output_shape(c, dec)
    import soundfile as sf

    try:
        with sf.SoundFile(job.dst) as f:
            if (f.samplerate != sr or f.channels != channels or f.frames != expected
                    or f.format != dec.fmt.upper()):
                return None
            if f.frames > 0:
                f.seek(max(0, f.frames - _TAIL_FRAMES))
                tail = f.read(_TAIL_FRAMES, dtype="float32")
                if tail.shape[0] != min(_TAIL_FRAMES, f.frames):
                    return None
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OSError):
        return None
    return c.duration, st_in.st_size, c.score.n_notes


def process_file(mode: str, job: Job, encode_options: Any = None,
                 decode_settings: DecodeSettings | None = None, force: bool = False,
                 threads: int | None = None,
                 progress: Callable[[str, float], None] | None = None) -> FileResult:
    """Encode or decode one file (skipping a complete output unless ``force``); never raises
    for a bad file: the failure is in the returned :class:`FileResult`.  ``progress(stage,
    fraction)`` is passed on to :func:`semcodec.api.encode` / ``decode``."""
    t0 = time.perf_counter()
    dec = decode_settings or DecodeSettings()
    result = FileResult(job.src, job.dst, job.rel, "failed")
    try:
        _limit_threads(threads)
        done = None if force else _complete(mode, job, dec)
        if done is not None:
            result.status = "skipped"
            result.duration_s, result.smc_bytes, result.notes = done
            return result
        os.makedirs(os.path.dirname(job.dst), exist_ok=True)
        from semcodec import api

        if mode == "encode":
            c = api.encode(job.src, options=encode_options, progress=progress)
            c.save(job.dst)
            result.smc_bytes = os.stat(job.dst).st_size
        else:
            from semcodec.audio import write_audio

            c = api.load(job.src)
            audio, sr = api.decode(c, dec, progress=progress)
            write_audio(job.dst, audio, sr, dec.fmt,
                        progress=progress and (lambda f: progress("write", f)))
            del audio
            result.smc_bytes = job.size
        result.duration_s = float(c.duration)
        result.notes = c.score.n_notes
        result.status = "ok"
    except SemcodecError as exc:
        result.reason = _reason(exc, job.src)
    except MemoryError:
        result.reason = "out of memory"
    except OSError as exc:
        result.reason = f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}"
    except KeyboardInterrupt:
        result.reason = "interrupted"
    except Exception as exc:  # noqa: BLE001 - a bug; reported, the batch carries on
        log.debug("internal error on %s", job.src, exc_info=True)
        result.reason = f"internal error: {type(exc).__name__}: {_reason(exc, job.src)}"
    finally:
        result.elapsed_s = time.perf_counter() - t0
    return result


def _on_sigint(signum, frame) -> None:  # noqa: ARG001
    global _busy
    if _busy:  # once per file: a second SIGINT must not cut the clean-up of the first short
        _busy = False
        raise KeyboardInterrupt


_slots = None  # per-job progress in shared memory (local pool): [fraction, stage index] * jobs


def _stage_names(mode: str) -> tuple[str, ...]:
    from semcodec import api

    stages = api.ENCODE_STAGES if mode == "encode" else api.DECODE_STAGES
    return tuple(name for name, _ in stages)


def _slot_progress(mode: str, slot: int) -> Callable[[str, float], None] | None:
    """A ``progress(stage, fraction)`` that writes the file's overall fraction and stage into
    its slot of the shared array (no lock: a worker that dies cannot block the others)."""
    if _slots is None or slot < 0:
        return None
    from semcodec import api

    stages = api.ENCODE_STAGES if mode == "encode" else api.DECODE_STAGES
    names = _stage_names(mode)

    def report(stage: str, frac: float) -> None:
        overall = api.progress_fraction(stage, frac, stages)
        if overall is None:
            return
        _slots[2 * slot + 1] = float(names.index(stage.partition(" ")[0]))
        _slots[2 * slot] = max(_slots[2 * slot], overall)

    return report


def _worker_init(log_level: int, ignore_sigint: bool = False, slots: Any = None) -> None:
    """Pool worker start: SIGINT interrupts the file in progress only (an idle worker ignores
    it and exits when the pool shuts down), or nothing when the parent ignores SIGINT (started
    in the background, under nohup); log lines look like the CLI's."""
    global _slots
    _slots = slots
    signal.signal(signal.SIGINT, signal.SIG_IGN if ignore_sigint else _on_sigint)
    _watch_parent(os.getppid())
    # as it always did, a worker logs errors only (its former list of noisy loggers named
    # "root", which is the root logger)
    configure_logging(max(log_level, logging.ERROR))


def _watch_parent(parent: int, every_s: float = 1.0) -> None:
    """Exit this worker when the batch process that started it is gone (killed with SIGKILL,
    which runs no clean-up): the file in progress is interrupted (its temporary file is
    removed, as on Ctrl-C), an idle worker exits at once.  Without this the workers lived on
    as orphans."""
    import _thread
    import threading

    def watch() -> None:
        interrupted = False
        while True:
            time.sleep(every_s)
            if os.getppid() == parent:
                continue
            if not _busy:
                os._exit(0)
            if not interrupted:  # raises KeyboardInterrupt in the file's thread (via SIGINT's
                interrupted = True  # handler); the file returns "interrupted", then we exit
                _thread.interrupt_main()

    threading.Thread(target=watch, name="semcodec-parent-watch", daemon=True).start()


def _pool_task(mode: str, job: Job, encode_options: Any, decode_settings: DecodeSettings,
               force: bool, threads: int | None, slot: int = -1) -> FileResult:
    global _busy
    _busy = True
    try:
        return process_file(mode, job, encode_options, decode_settings, force, threads,
                            _slot_progress(mode, slot))
    finally:
        _busy = False


def _dask_task(mode: str, job: Job, encode_options: Any, decode_settings: DecodeSettings,
               force: bool) -> FileResult:
    # Dask's nanny sets OMP_NUM_THREADS to the threads a task may use (1 by default)
    try:
        threads = int(os.environ.get("OMP_NUM_THREADS", "0")) or None
    except ValueError:
        threads = None
    return process_file(mode, job, encode_options, decode_settings, force, threads)


# --- running ---------------------------------------------------------------------------------------

def _died(job: Job) -> FileResult:
    return FileResult(job.src, job.dst, job.rel, "failed",
                      "the worker process died on this file (crash, or killed for memory)")


#: What every task gets after the mode and the job: encode options, decode settings, force.
_TaskArgs = tuple[Any, DecodeSettings, bool]


def _run_local(plan: BatchPlan, todo: list[Job], jobs: int, args: _TaskArgs,
               emit: Callable[[FileResult], None],
               file_progress: FileProgress | None = None) -> None:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = multiprocessing.get_context("spawn")
    # biggest files first: the long ones do not end up alone at the end
    normal = deque(sorted(todo, key=lambda j: (-j.size, j.rel)))
    suspects: deque[Job] = deque()
    threads = max(1, default_jobs() // jobs)
    level = logging.getLogger().getEffectiveLevel()
    ignore_sigint = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    slot_of = {job.rel: i for i, job in enumerate(todo)}
    slots = ctx.RawArray("d", 2 * len(todo)) if file_progress is not None else None
    if slots is not None:
        slots[:] = [-1.0] * len(slots)  # -1: not started; a stage at 0 % is reported
    names = _stage_names(plan.mode)

    def poll(running: list[tuple[Job, bool]]) -> None:
        if slots is None or file_progress is None:
            return
        for job, _ in running:
            k = slot_of[job.rel]
            if slots[2 * k] >= 0.0:
                idx = int(slots[2 * k + 1])
                file_progress(job.rel, names[idx] if 0 <= idx < len(names) else "",
                              float(slots[2 * k]))

    def submit(pool, job: Job):
        return pool.submit(_pool_task, plan.mode, job, *args, threads, slot_of[job.rel])

    while normal or suspects:
        workers = min(jobs, len(normal)) if normal else 1
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                   initializer=_worker_init,
                                   initargs=(level, ignore_sigint, slots))
        inflight: dict[Any, tuple[Job, bool]] = {}
        broken = False
        try:
            while True:
                if not broken:
                    if normal:
                        while normal and len(inflight) < workers:
                            job = normal.popleft()
                            inflight[submit(pool, job)] = (job, False)
                    elif suspects and not inflight:  # a suspect runs alone
                        job = suspects.popleft()
                        inflight[submit(pool, job)] = (job, True)
                if not inflight:
                    break
                done, _ = wait(list(inflight), return_when=FIRST_COMPLETED,
                               timeout=_POLL_S if slots is not None else None)
                poll(list(inflight.values()))
                for fut in done:
                    job, alone = inflight.pop(fut)
                    broken = _collect(fut, job, alone, suspects, emit) or broken
                if broken and not inflight:
                    break
        except BaseException:
            _stop_pool(pool)
            raise
        pool.shutdown(wait=True)


def _collect(fut: Any, job: Job, alone: bool, suspects: deque[Job],
             emit: Callable[[FileResult], None]) -> bool:
    """Emit the result of a finished task (or queue its file as a suspect when its worker
    died among others); True when the pool broke."""
    from concurrent.futures.process import BrokenProcessPool

    exc = fut.exception()
    if isinstance(exc, BrokenProcessPool):
        if alone:
            emit(_died(job))
        else:
            suspects.append(job)
        return True
    if exc is not None:
        emit(FileResult(job.src, job.dst, job.rel, "failed",
                        f"internal error: {type(exc).__name__}: {exc}"))
    else:
        emit(fut.result())
    return False


def _stop_pool(pool: Any) -> None:
    """Interrupted: stop the files in progress (their temporary files are removed), drop the
    queue, wait for the workers to exit."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            os.kill(proc.pid, signal.SIGINT)
        except (OSError, AttributeError):
            pass
    pool.shutdown(wait=True, cancel_futures=True)


def _run_dask(plan: BatchPlan, todo: list[Job], scheduler: str, args: _TaskArgs,
              emit: Callable[[FileResult], None]) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise SemcodecError(
            "--scheduler needs Dask distributed: pip install 'semcodec[dask]'") from None
    try:
        # connect timeout: dask config distributed.comm.timeouts.connect (30 s by default)
        client = Client(scheduler, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise SemcodecError(f"cannot connect to the Dask scheduler at {scheduler}: "
                            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                            ) from None
    futures: dict[Any, Job] = {}
    try:
        order = sorted(todo, key=lambda j: (-j.size, j.rel))
        for i, job in enumerate(order):
            fut = client.submit(_dask_task, plan.mode, job, *args, pure=False,
                                priority=len(order) - i, retries=1)
            futures[fut] = job
        for fut in as_completed(list(futures), loop=client.loop):
            job = futures[fut]
            try:
                emit(fut.result())
            except Exception as exc:  # noqa: BLE001 - KilledWorker, lost scheduler, ...
                emit(FileResult(job.src, job.dst, job.rel, "failed",
                                f"cluster error: {type(exc).__name__}: {exc}"))
    except BaseException:
        try:
            client.cancel(list(futures))
        except Exception:  # noqa: BLE001
            pass
        raise
    finally:
        client.close()


def run_batch(plan: BatchPlan, *, jobs: int | None = None, force: bool = False,
              encode_options: Any = None, decode_settings: DecodeSettings | None = None,
              scheduler: str | None = None, progress: Progress | None = None,
              file_progress: FileProgress | None = None) -> BatchReport:
    """Run ``plan`` on ``jobs`` local processes (default: the number of cores) or, with
    ``scheduler`` (``tcp://host:8786``), on a Dask cluster; ``progress(result)`` is called as
    each file finishes, ``file_progress(rel, stage, fraction)`` about twice a second for each
    file in progress (local processes only; on a cluster files report when they finish).
    ``encode_options`` is an :class:`semcodec.api.EncodeOptions`."""
    t0 = time.perf_counter()
    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs {jobs}: must be at least 1")
    n_jobs = jobs or default_jobs()
    dec = decode_settings or DecodeSettings(fmt=plan.fmt)
    if plan.mode == "decode" and dec.fmt != plan.fmt:
        raise UsageError(f"decode settings write {dec.fmt}, the plan {plan.fmt}")
    results: list[FileResult] = []

    def emit(res: FileResult) -> None:
        results.append(res)
        if progress is not None:
            progress(res)

    for res in (*plan.conflicts, *plan.ignored):
        emit(res)
    todo = list(plan.jobs)
    if not force:  # complete outputs are skipped here, without starting any worker
        todo = []
        for job in plan.jobs:
            done = _complete(plan.mode, job, dec)
            if done is None:
                todo.append(job)
            else:
                duration, smc_bytes, notes = done
                emit(FileResult(job.src, job.dst, job.rel, "skipped", duration_s=duration,
                                smc_bytes=smc_bytes, notes=notes))
    # the workers need not check again: they redo every file they get
    args: _TaskArgs = (encode_options, dec, True)
    if todo:
        if scheduler:
            _run_dask(plan, todo, scheduler, args, emit)
        else:
            _run_local(plan, todo, n_jobs, args, emit, file_progress)
    results.sort(key=lambda r: r.rel)
    settings: dict[str, Any] = {"force": force}
    if plan.mode == "encode" and encode_options is not None:
        settings["encode"] = _jsonable(encode_options)
    if plan.mode == "decode":
        settings["decode"] = _jsonable(dec)
    return BatchReport(plan.mode, plan.src_dir, plan.dst_dir, results,
                       time.perf_counter() - t0, None if scheduler else n_jobs, scheduler,
                       settings)


def _jsonable(obj: Any) -> Any:
    try:
        d = asdict(obj)
    except TypeError:
        return repr(obj)
    return json.loads(json.dumps(d, default=repr))
