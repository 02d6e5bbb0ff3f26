"""``semcodec batch --scheduler``: the same batch on a real Dask cluster gives the same bytes.

A ``distributed.LocalCluster`` with 2 worker processes (1 thread each) runs ``batch encode``
and ``batch decode`` through the real CLI (a subprocess that connects to the scheduler); the
outputs must be byte-identical to a local run.

The encodes use ``--no-timbre --no-samples``: the samples are Ogg Opus streams, and libsndfile
gives every Ogg stream a random serial number, so two encodes of one file differ in those
bytes (until ``timbre.extract_samples`` passes its output through
``semcodec.audio.canonical_ogg``); the neural timbre fit is left out as well since torch's
reductions may differ with the thread count.  Decoding uses the fluidsynth engine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import SR, tone

CLI = [sys.executable, "-m", "semcodec"]


def _run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def src_tree(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("dask") / "src"
    (src / "sub").mkdir(parents=True)
    sf.write(src / "a.wav", np.concatenate([tone(60, 0.6), tone(64, 0.6)]), SR)
    sf.write(src / "sub" / "b.flac", np.concatenate([tone(67, 0.5), tone(71, 0.7)]), SR)
    sf.write(src / "sub" / "c.wav", np.concatenate([tone(48, 0.8), tone(55, 0.4)]), 22050)
    (src / "broken.wav").write_bytes(b"RIFF....WAVEfmt " + bytes(30))
    return src


def test_dask_cluster_matches_local_run(src_tree, tmp_path):
    distributed = pytest.importorskip("distributed")
    base = tmp_path
    enc = ["--no-timbre", "--no-samples", "-q"]
    local = _run("batch", "encode", str(src_tree), str(base / "local"), "-j", "2", *enc)
    assert local.returncode == 2, local.stderr  # broken.wav fails, the rest goes on
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None, silence_logs=40) as cluster:
        addr = cluster.scheduler_address
        assert addr.startswith("tcp://")
        remote = _run("batch", "encode", str(src_tree), str(base / "dask"), "--scheduler", addr,
                      "--report", str(base / "dask.json"), *enc)
        assert remote.returncode == 2, remote.stderr
        assert "broken.wav" in remote.stderr
        # decode both trees on the cluster and locally, the local one twice (determinism)
        r1 = _run("batch", "decode", str(base / "dask"), str(base / "dask_wav"),
                  "--scheduler", addr, "--engine", "fluidsynth", "-q")
        assert r1.returncode == 0, r1.stderr
        # a second run on the cluster skips everything (checked on the client)
        r2 = _run("batch", "decode", str(base / "dask"), str(base / "dask_wav"),
                  "--scheduler", addr, "--engine", "fluidsynth")
        assert r2.returncode == 0 and "0 ok, 3 skipped" in r2.stderr, r2.stderr
    r3 = _run("batch", "decode", str(base / "local"), str(base / "local_wav"), "-j", "2",
              "--engine", "fluidsynth", "-q")
    assert r3.returncode == 0, r3.stderr
    smc_local, smc_dask = _tree(base / "local"), _tree(base / "dask")
    assert sorted(smc_local) == ["a.smc", "sub/b.smc", "sub/c.smc"]
    assert smc_local == smc_dask
    wav_local, wav_dask = _tree(base / "local_wav"), _tree(base / "dask_wav")
    assert sorted(wav_local) == ["a.wav", "sub/b.wav", "sub/c.wav"]
    assert wav_local == wav_dask


def test_missing_dask_is_a_one_line_error(src_tree, tmp_path):
    # hide the package even where it is installed
    code = ("import sys; sys.modules['distributed'] = None; from semcodec.cli import main; "
            "main(sys.argv[1:])")
    p = subprocess.run([sys.executable, "-c", code, "batch", "encode", str(src_tree),
                        str(tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:1"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("semcodec: error: ")
    assert "pip install 'semcodec[dask]'" in lines[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


def test_unreachable_scheduler_is_a_one_line_error(src_tree, tmp_path):
    pytest.importorskip("distributed")
    env = dict(os.environ, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="2s")
    p = subprocess.run([*CLI, "batch", "encode", str(src_tree), str(tmp_path / "out"),
                        "--scheduler", "tcp://127.0.0.1:9"], capture_output=True, text=True,
                       timeout=120, env=env)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot connect to the Dask scheduler" in lines[0], p.stderr
