"""Writing files safely: atomically (a temporary file in the same folder, fsynced, then renamed
over the target) and durably (the folder is fsynced after the rename).  Standard library only;
every writer of semcodec goes through here (``.smc`` files, audio, MIDI/MusicXML, batch reports).
A process killed mid-write (SIGKILL) leaves its temporary file; the first write of a later run
into that folder removes it once it is :data:`STALE_TEMP_AGE_S` old.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Callable

from semcodec.errors import OutputError

__all__ = ["STALE_TEMP_AGE_S", "atomic_write", "atomic_write_bytes", "fsync_directory",
           "sweep_stale_temp_files"]

log = logging.getLogger(__name__)

#: A temporary file of an atomic write that nobody has written to for this long (seconds) was
#: left by a process killed mid-write (SIGKILL, OOM killer, power loss: no clean-up runs);
#: the next write into its folder removes it.  A live writer touches its file continually.
STALE_TEMP_AGE_S = 3600.0
#: The temporary files semcodec's writers create: ``.NAME.XXXXXXXX.tmp`` (tempfile.mkstemp
#: with prefix ``.NAME.``), NAME being a file semcodec writes.
_TEMP_NAME = re.compile(r"^\..+\.(smc|wav|flac|ogg|opus|mp3|mid|musicxml|json)"
                        r"\.[a-z0-9_]{8}\.tmp$", re.IGNORECASE)
_swept: set[str] = set()


def sweep_stale_temp_files(folder: str | os.PathLike, max_age_s: float = STALE_TEMP_AGE_S,
                           *, now: float | None = None) -> list[str]:
    """Remove the temporary files that a killed semcodec left in ``folder`` and return their
    paths: names ``.NAME.XXXXXXXX.tmp`` of semcodec's outputs (``.smc``, audio, MIDI,
    MusicXML, JSON reports), regular files (not links) owned by this user, not modified for
    ``max_age_s`` seconds.  Best effort: a file that cannot be examined or removed is left."""
    removed: list[str] = []
    uid = os.getuid() if hasattr(os, "getuid") else None
    now = time.time() if now is None else now
    try:
        entries = os.scandir(os.fspath(folder))
    except OSError:
        return removed
    with entries:
        for entry in entries:
            if not _TEMP_NAME.match(entry.name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
                if (not stat.S_ISREG(st.st_mode) or (uid is not None and st.st_uid != uid)
                        or now - st.st_mtime < max_age_s):
                    continue
                os.unlink(entry.path)
            except OSError:
                continue
            removed.append(entry.path)
    for path in removed:
        log.info("removed %s, a temporary file left by an interrupted semcodec run", path)
    return removed


def _sweep_once(folder: Path) -> None:
    """:func:`sweep_stale_temp_files` the first time this process writes into ``folder``."""
    key = os.path.abspath(folder)
    if key not in _swept:
        _swept.add(key)
        sweep_stale_temp_files(folder)


def _default_mode() -> int:
    """Permission bits of a new file under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def fsync_directory(folder: str | os.PathLike) -> None:
    """Make a rename in ``folder`` durable (fsync the directory); a no-op where unsupported."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` atomically: ``write(fh)`` fills a temporary file (opened ``w+b``, so it
    may also read back and rewrite) in the same folder, which is fsynced and renamed over
    ``path``, keeping an existing file's permission bits.  On any failure or interrupt the
    temporary file is removed and an existing ``path`` is left untouched; OS errors become
    :class:`OutputError`, other exceptions of ``write`` propagate."""
    target = Path(os.fspath(path))
    folder = target.parent if str(target.parent) else Path(".")
    _sweep_once(folder)
    tmp_name = None
    try:
        try:
            mode = os.stat(target).st_mode & 0o7777
        except OSError:
            mode = _default_mode()
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "w+b") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, target)
        tmp_name = None
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        if tmp_name is not None:  # failed or interrupted (KeyboardInterrupt included)
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
    fsync_directory(folder)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda fh: fh.write(data))
