"""The process set-up the CLI, the batch workers and the transcriber share: how many CPU cores
this process may use, semcodec's log format, and giving freed heap memory back between an
encode's stages (standard library only)."""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from typing import Any

#: Third-party loggers held at ERROR or above (basic-pitch's TensorFlow notices, numba, ...).
NOISY_LOGGERS = ("numba", "matplotlib", "music21")


def usable_cpus() -> int:
    """The number of CPU cores this process may use (its affinity where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


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
