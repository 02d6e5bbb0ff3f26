"""The process set-up the CLI, the batch workers and the transcriber share: how many CPU cores
this process may use, semcodec's log format, and giving freed heap memory back between an
encode's stages (standard library only)."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import threading
from typing import Any, Iterator

#: Third-party loggers held at ERROR or above (basic-pitch's TensorFlow notices, numba, ...).
NOISY_LOGGERS = ("numba", "matplotlib", "music21")


def usable_cpus() -> int:
    """The number of CPU cores this process may use (its affinity where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


class _BlasOneThread:
    """The process's OpenBLAS libraries (numpy's, scipy's) limited to one thread while any
    holder is inside (re-entrant across threads; the previous settings come back when the last
    one leaves).  OpenBLAS's setting is the process's: other threads run on one BLAS thread
    meanwhile too.

    semcodec's matrices are small or already worked on by threads of its own (tracks rendered
    side by side, the residual's judges, the drum analysis's blocks): OpenBLAS's worker
    threads spin more than they help (measured on the 2-core box: a 5-min solo's neural
    rendering took 3.4-7 s of CPU with the default two threads, 1.8 s with one; the 5-min
    solo's whole encode 60.8 -> 55.6 s of CPU, the same bytes).  Where no OpenBLAS entry points
    are found this does nothing; libraries loaded after the first use are not limited.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.saved: list[int] = []
        self.fns: list[tuple[Any, Any]] | None = None

    def _find(self) -> list[tuple[Any, Any]]:
        if self.fns is None:
            self.fns = []
            try:
                with open("/proc/self/maps") as fh:
                    paths = {ln.split()[-1] for ln in fh
                             if "openblas" in ln.lower() and ".so" in ln}
                for path in sorted(paths):
                    pair = _openblas_threads(ctypes.CDLL(path))
                    if pair is not None:
                        self.fns.append(pair)
            except (OSError, AttributeError, IndexError):
                pass
        return self.fns

    def __enter__(self) -> "_BlasOneThread":
        with self.lock:
            if self.depth == 0:
                self.saved = [int(get()) for get, _ in self._find()]
                for (_, put), n in zip(self.fns or (), self.saved):
                    if n != 1:
                        put(1)
            self.depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.depth -= 1
            if self.depth == 0:
                for (_, put), n in zip(self.fns or (), self.saved):
                    if n != 1:
                        put(n)
                self.saved = []


def _openblas_threads(lib: Any) -> tuple[Any, Any] | None:
    """``(get_num_threads, set_num_threads)`` of an OpenBLAS library, None if it has none."""
    for pre in ("scipy_openblas", "openblas"):
        for suf in ("64_", ""):
            get = getattr(lib, f"{pre}_get_num_threads{suf}", None)
            put = getattr(lib, f"{pre}_set_num_threads{suf}", None)
            if get is not None and put is not None:
                return get, put
    return None


#: numpy's and scipy's OpenBLAS on one thread while inside (``with blas_one_thread:``).
blas_one_thread = _BlasOneThread()


#: Threads semcodec's own parallel work may use ($SEMCODEC_THREADS; default: the CPUs this
#: process may use, at most 4).
WORK_THREADS_ENV = "SEMCODEC_THREADS"


def work_threads(n: int) -> int:
    """How many of ``n`` pieces of work to run at once (1: no threads): $SEMCODEC_THREADS when
    set, else :func:`usable_cpus` (at most 4).  The encoder's and decoder's threads (tracks
    side by side, the pipelines, the FFTs of a long signal) all ask here."""
    try:
        limit = int(os.environ.get(WORK_THREADS_ENV, "0"))
    except ValueError:
        limit = 0
    if limit <= 0:
        limit = min(usable_cpus(), 4)
    return max(1, min(limit, int(n)))


_TRIM: Any = None  # glibc's malloc_trim once looked up; False where there is none


def release_free_memory() -> None:
    """Give the C heap's free pages back to the system: glibc's ``malloc_trim(0)``, which
    walks the main heap and every thread's arena.  Without it the temporaries a stage freed
    (numpy arrays under glibc's mmap threshold, which rises to 32 MB after the first large
    ones are freed; library buffers) stay resident for the process's life, in the arenas of
    the threads that made them: the peak of a later stage stands on them.  Nothing else
    changes (no value computed); a no-op without glibc.  Costs milliseconds: call it between
    stages, not in inner loops."""
    global _TRIM
    if _KEEPING:  # a short input's encode: freed pages stay for its next stages (keep_freed)
        return
    if _TRIM is None:
        try:
            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
            _TRIM.argtypes, _TRIM.restype = [ctypes.c_size_t], ctypes.c_int
        except (OSError, AttributeError):  # pragma: no cover - not glibc
            _TRIM = False
    if _TRIM:
        _TRIM(0)


#: glibc's mallopt parameter number of the mmap threshold (malloc.h: M_MMAP_THRESHOLD).
_M_MMAP_THRESHOLD = -3
#: Allocations from this size (bytes) on get pages of their own once
#: :func:`return_large_blocks` is called (glibc's default rises up to 32 MB).
LARGE_BLOCK_BYTES = 1 << 20


def return_large_blocks() -> None:
    """Make glibc give every allocation of LARGE_BLOCK_BYTES or more pages of its own
    (``mallopt(M_MMAP_THRESHOLD)``), returned to the system as soon as it is freed, for the
    rest of the process.  By default the threshold rises with the largest block freed (up to
    32 MB), so that a long input's numpy temporaries of 1-32 MB are carved out of the heap
    and the threads' arenas, which keep their pages after the free: every later stage's peak
    stands on them (a 60-min encode: 1641 -> 1487 MB peak RSS, the same file).  Nothing else
    changes (no value computed); costs a page fault per page of each such block (that 60-min
    encode: ~46 % more CPU, mostly system time), so the encoder calls it for long inputs
    only; a no-op without glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.mallopt(_M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


#: glibc's mallopt parameter numbers (malloc.h): M_TRIM_THRESHOLD, M_ARENA_MAX.
_M_TRIM_THRESHOLD = -1
_M_ARENA_MAX = -8
#: glibc's default trim threshold (bytes), restored after a short input's encode.
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
#: Allocations below this (bytes) come from the heap while :func:`keep_freed` holds (glibc's
#: largest: half its 64-MB arena heaps); the heap keeps up to KEEP_TRIM_BYTES free at its top.
KEEP_MMAP_BYTES = 32 << 20
KEEP_TRIM_BYTES = 1 << 30
_KEEPING = 0  # keep_freed() blocks running (release_free_memory does nothing meanwhile)
_KEEP_LOCK = threading.Lock()


@contextlib.contextmanager
def keep_freed() -> Iterator[None]:
    """For the encode of a short input: the C heap keeps the pages that its stages free for
    the stages after them, instead of giving them back to the system and taking them again
    (a page fault per 4-KB page: on a 30-s stem ~560,000 of them, ~2 s of system time of
    ~14 s of CPU).  While the block runs: every allocation under KEEP_MMAP_BYTES comes from
    the heap (not from pages of its own, unmapped at its free), the heap keeps up to
    KEEP_TRIM_BYTES free, all threads share one arena (the pages one thread freed serve the
    next thread's), and :func:`release_free_memory` does nothing.  Afterwards the trim
    threshold and the arena limit are glibc's defaults again (the mmap threshold stays at
    KEEP_MMAP_BYTES, the top of glibc's own dynamic one) and the free memory is given back.
    Nothing else changes (no value computed); the peak resident memory is higher (30-s stem:
    ~906 -> ~1046 MB).  A no-op without glibc."""
    global _KEEPING
    libc = _libc()
    with _KEEP_LOCK:
        _KEEPING += 1
        if libc is not None and _KEEPING == 1:
            libc.mallopt(_M_MMAP_THRESHOLD, KEEP_MMAP_BYTES)
            libc.mallopt(_M_TRIM_THRESHOLD, KEEP_TRIM_BYTES)
            libc.mallopt(_M_ARENA_MAX, 1)
    try:
        yield
    finally:
        with _KEEP_LOCK:
            _KEEPING -= 1
            if libc is not None and _KEEPING == 0:
                libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
                # glibc's default arena limit (8 per core; the arenas made meanwhile stay)
                libc.mallopt(_M_ARENA_MAX, 8 * (os.cpu_count() or 1))
        release_free_memory()


_LIBC: Any = None  # glibc once looked up (with mallopt); False where there is none


def _libc() -> Any:
    global _LIBC
    if _LIBC is None:
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            _LIBC = libc
        except (OSError, AttributeError):  # pragma: no cover - not glibc
            _LIBC = False
    return _LIBC or None


def configure_logging(level: int) -> None:
    """Log to stderr as ``semcodec: message`` at ``level``; Python warnings become log lines
    (they obey -q like the rest) and the noisy third-party loggers show errors only."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("semcodec: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(level, logging.ERROR))
