"""Writing files safely: atomically (a temporary file in the same folder, fsynced, then renamed
over the target) and durably (the folder is fsynced after the rename).  Standard library only;
every writer of semcodec goes through here (``.smc`` files, audio, MIDI/MusicXML, batch reports).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from semcodec.errors import OutputError

__all__ = ["atomic_write", "atomic_write_bytes", "fsync_directory"]


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
