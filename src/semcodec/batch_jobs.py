"""The data of a batch job (part of :mod:`semcodec.batch`, which re-exports it): the
settings, one file's job and result, the plan and the report."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from semcodec.container import bitrate_kbps
from semcodec.decoder import DecodeOptions
from semcodec.errors import UsageError
from semcodec.runtime import usable_cpus


#: Input extensions of ``batch encode`` (compared case-insensitively).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")
#: Output formats of ``batch decode``.
DECODE_FORMATS = ("wav", "flac", "ogg")
MODES = ("encode", "decode")


@dataclass(frozen=True)
class DecodeSettings(DecodeOptions):
    """Options of ``batch decode``: those of :func:`semcodec.api.decode` and the output
    format."""

    fmt: str = "wav"

    def __post_init__(self) -> None:
        if self.channels not in (None, 1, 2):
            raise UsageError(f"channels must be 1 or 2, got {self.channels}")
        if self.fmt not in DECODE_FORMATS:
            raise UsageError(f"unsupported output format '{self.fmt}' "
                             f"(use {', '.join(DECODE_FORMATS)})")


@dataclass(frozen=True)
class Job:
    """One file to process: absolute input and output paths, the path relative to SRC."""

    src: str
    dst: str
    rel: str
    size: int


@dataclass
class FileResult:
    """The outcome of one file.

    ``status`` is ``ok``, ``skipped`` (the output was already complete) or ``failed``
    (``reason`` says why); ``duration_s`` is the audio duration (s), ``smc_bytes`` the size of
    the ``.smc`` file (the output of encode, the input of decode), ``elapsed_s`` the wall time
    spent on the file, ``notes`` the number of notes of the score.
    """

    src: str
    dst: str
    rel: str
    status: str
    reason: str = ""
    duration_s: float = 0.0
    smc_bytes: int = 0
    elapsed_s: float = 0.0
    notes: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["duration_s"] = round(self.duration_s, 6)
        d["elapsed_s"] = round(self.elapsed_s, 3)
        return d


@dataclass(frozen=True)
class BatchPlan:
    """What a batch will do: ``jobs`` to run, and ``conflicts`` already known to fail."""

    mode: str
    src_dir: str
    dst_dir: str
    fmt: str
    jobs: tuple[Job, ...]
    conflicts: tuple[FileResult, ...] = ()
    #: Inputs not processed (symbolic links not followed, FIFOs, ...): status "skipped" with
    #: the reason.
    ignored: tuple[FileResult, ...] = ()

    @property
    def n_files(self) -> int:
        return len(self.jobs) + len(self.conflicts) + len(self.ignored)


@dataclass
class BatchReport:
    """The outcome of a batch: one :class:`FileResult` per input file, sorted by path."""

    mode: str
    src_dir: str
    dst_dir: str
    results: list[FileResult]
    elapsed_s: float
    jobs: int | None = None
    scheduler: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def _with(self, status: str) -> list[FileResult]:
        return [r for r in self.results if r.status == status]

    @property
    def ok(self) -> list[FileResult]:
        return self._with("ok")

    @property
    def skipped(self) -> list[FileResult]:
        return self._with("skipped")

    @property
    def failed(self) -> list[FileResult]:
        return self._with("failed")

    @property
    def total_smc_bytes(self) -> int:
        """Bytes of all ``.smc`` files of the batch (written now or found complete)."""
        return sum(r.smc_bytes for r in self.results if r.status != "failed")

    @property
    def total_duration_s(self) -> float:
        """Audio seconds those ``.smc`` files hold."""
        return sum(r.duration_s for r in self.results if r.status != "failed")

    @property
    def bitrate_kbps(self) -> float:
        """Total ``.smc`` bits over the total duration, in kbit/s (0 without audio)."""
        return bitrate_kbps(self.total_smc_bytes, self.total_duration_s)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "src": self.src_dir,
            "dst": self.dst_dir,
            "jobs": self.jobs,
            "scheduler": self.scheduler,
            "settings": self.settings,
            "elapsed_s": round(self.elapsed_s, 3),
            "files": len(self.results),
            "ok": len(self.ok),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "total_smc_bytes": self.total_smc_bytes,
            "total_duration_s": round(self.total_duration_s, 6),
            "bitrate_kbps": round(self.bitrate_kbps, 4),
            "results": [r.to_dict() for r in self.results],
        }

    def write_json(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` as JSON, atomically."""
        from semcodec.io import atomic_write_bytes

        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        atomic_write_bytes(path, text.encode("utf-8"))

    def summary_lines(self) -> list[str]:
        """A human summary: counts, total bitrate, time, and every failure with its reason."""
        n = len(self.results)
        where = f"Dask cluster {self.scheduler}" if self.scheduler else f"{self.jobs} job(s)"
        lines = [
            f"batch {self.mode}: {n} file(s): {len(self.ok)} ok, {len(self.skipped)} skipped, "
            f"{len(self.failed)} failed in {self.elapsed_s:.1f} s ({where})",
        ]
        d = self.total_duration_s
        if d > 0:
            lines.append(f"total: {self.total_smc_bytes} bytes of .smc for {d:.1f} s of audio "
                         f"= {self.bitrate_kbps:.3f} kbps")
        for r in self.skipped:
            if r.reason:  # not an output found complete: an input left alone, and why
                lines.append(f"skipped: {r.rel}: {r.reason}")
        for r in self.failed:
            lines.append(f"failed: {r.rel}: {r.reason}")
        return lines


def default_jobs() -> int:
    """The number of CPU cores this process may use."""
    return usable_cpus()
