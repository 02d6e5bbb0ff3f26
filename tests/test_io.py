"""semcodec.io: stale temporary files of a killed run are swept (issue 13, item 11)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np

from semcodec import io as sio

HOUR = 3600.0


def _age(path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_sweep_removes_only_old_temp_files_of_semcodec_outputs(tmp_path):
    stale = tmp_path / ".song.wav.k2j3h4g5.tmp"
    fresh = tmp_path / ".song.smc.a1b2c3d4.tmp"  # a writer at work right now
    foreign = tmp_path / ".notes.doc.a1b2c3d4.tmp"  # not a name semcodec writes
    plain = tmp_path / "song.wav.k2j3h4g5.tmp"  # not hidden: not ours either
    for p in (stale, fresh, foreign, plain):
        p.write_bytes(b"x" * 100)
    for p in (stale, foreign, plain):
        _age(p, 2 * HOUR)
    target = tmp_path / "elsewhere.wav"
    target.write_bytes(b"keep")
    link = tmp_path / ".link.wav.zzzzzzzz.tmp"  # a link is never followed nor removed
    link.symlink_to(target)
    os.utime(link, (time.time() - 2 * HOUR,) * 2, follow_symlinks=False)
    removed = sio.sweep_stale_temp_files(tmp_path)
    assert removed == [str(stale)]
    assert not stale.exists()
    assert fresh.exists() and foreign.exists() and plain.exists() and link.is_symlink()
    assert target.read_bytes() == b"keep"
    assert sio.sweep_stale_temp_files(tmp_path / "missing") == []


_KILLED_WRITER = """
import os, signal, sys
from semcodec import io as sio

def write(fh):
    fh.write(b"partial" * 1000)
    fh.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # no clean-up can run

sio.atomic_write(sys.argv[1], write)
"""


def test_a_later_write_sweeps_what_sigkill_left(tmp_path):
    out = tmp_path / "o.smc"
    p = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(out)], timeout=60)
    assert p.returncode == -signal.SIGKILL
    left = [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    assert len(left) == 1 and left[0].startswith(".o.smc.") and not out.exists()
    sio._swept.clear()  # noqa: SLF001 - a new run
    sio.atomic_write_bytes(tmp_path / "other.smc", b"data")  # young: kept (could be live)
    assert (tmp_path / left[0]).exists()
    _age(tmp_path / left[0], sio.STALE_TEMP_AGE_S + 60)
    sio._swept.clear()  # noqa: SLF001
    from semcodec.audio import write_audio

    write_audio(tmp_path / "a.wav", np.zeros(100, np.float32), 8000)
    assert sorted(os.listdir(tmp_path)) == ["a.wav", "other.smc"]
