"""semcodec.runtime: the C heap's handling around an encode, OpenBLAS's threads."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from semcodec import runtime
from semcodec.synth import dsp


def test_keep_freed_holds_the_trims_until_the_end(monkeypatch):
    trims: list[int] = []
    monkeypatch.setattr(runtime, "_TRIM", lambda pad: trims.append(pad))
    runtime.release_free_memory()
    assert trims == [0]
    with runtime.keep_freed():
        with runtime.keep_freed():  # nested (two encodes on two threads)
            runtime.release_free_memory()
            dsp.release_free_memory()
        dsp.release_free_memory()
        assert trims == [0]  # nothing given back while a block holds
        # allocations work as before meanwhile
        a = np.ones(1 << 22, np.float32)
        assert float(a.sum()) == float(1 << 22)
    assert trims == [0, 0]  # given back once, when the outer block ends
    runtime.release_free_memory()
    assert trims == [0, 0, 0]


def _blas_threads() -> list[int]:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import scipy.linalg  # noqa: F401  (loads scipy's OpenBLAS too)

    found = [d["num_threads"] for d in threadpoolctl.threadpool_info()
             if d["internal_api"] == "openblas"]
    if not found:
        pytest.skip("no OpenBLAS in this process")
    return found


def test_blas_one_thread_limits_every_openblas_and_restores_them(monkeypatch):
    monkeypatch.setattr(runtime, "blas_one_thread", runtime._BlasOneThread())  # a fresh scan
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = _blas_threads()
    with threadpoolctl.threadpool_limits(2, user_api="blas"):  # two threads to start from
        start = _blas_threads()
        with runtime.blas_one_thread:
            assert _blas_threads() == [1] * len(start)  # numpy's and scipy's
            done = threading.Event()

            def other() -> None:  # another holder meanwhile: the count stays one
                with runtime.blas_one_thread:
                    done.set()

            t = threading.Thread(target=other)
            t.start()
            t.join()
            assert done.is_set() and _blas_threads() == [1] * len(start)
        assert _blas_threads() == start
    assert _blas_threads() == before


def test_an_encode_runs_on_one_blas_thread(monkeypatch):
    from semcodec import api

    seen: list[list[int]] = []
    monkeypatch.setattr(runtime, "blas_one_thread", runtime._BlasOneThread())
    monkeypatch.setattr(api, "blas_one_thread", runtime.blas_one_thread)
    monkeypatch.setattr(api, "_encode", lambda *a: seen.append(_blas_threads()) or "file")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    audio = np.zeros(22050, np.float32)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        assert all(n == 2 for n in _blas_threads())
        assert api.encode(audio, 22050) == "file"
        assert all(n == 2 for n in _blas_threads())  # given back after the encode
    assert seen and all(n == 1 for n in seen[0])


def test_the_command_line_leaves_openblas_one_thread_unless_told_otherwise():
    code = "import os, semcodec.cli; print(os.environ.get('OPENBLAS_NUM_THREADS'))"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "1"
    env["OPENBLAS_NUM_THREADS"] = "3"  # the user's own setting is kept
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "3"


def test_work_threads_follow_the_environment_then_the_cores(monkeypatch):
    monkeypatch.delenv(runtime.WORK_THREADS_ENV, raising=False)
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 2)
    assert runtime.work_threads(5) == 2 and runtime.work_threads(1) == 1
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 16)
    assert runtime.work_threads(8) == 4  # at most 4 by default
    monkeypatch.setenv(runtime.WORK_THREADS_ENV, "1")  # a batch worker's share, say
    assert runtime.work_threads(8) == 1
    monkeypatch.setenv(runtime.WORK_THREADS_ENV, "6")
    assert runtime.work_threads(8) == 6 and runtime.work_threads(3) == 3
    monkeypatch.setenv(runtime.WORK_THREADS_ENV, "many")  # unreadable: the default
    assert runtime.work_threads(8) == 4
