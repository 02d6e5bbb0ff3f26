"""The process set-up the CLI, the batch workers and the transcriber share: how many CPU cores
this process may use, and semcodec's log format (standard library only)."""

from __future__ import annotations

import logging
import os
import sys

#: Third-party loggers held at ERROR or above (basic-pitch's TensorFlow notices, numba, ...).
NOISY_LOGGERS = ("numba", "matplotlib", "music21")


def usable_cpus() -> int:
    """The number of CPU cores this process may use (its affinity where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


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
