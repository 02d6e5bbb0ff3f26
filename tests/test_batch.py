"""``semcodec batch encode|decode``: tree mirroring, resume, --force, failures, report, exit codes.

The end-to-end test drives the real CLI in subprocesses (local process pool); the planning and
option checks run in-process through ``semcodec.cli.main``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import SR, tone
from semcodec import batch
from semcodec.container import SmcFile as Container

CLI = [sys.executable, "-m", "semcodec"]


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _mtimes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns
            for p in root.rglob("*") if p.is_file()}


def _make_tree(src: Path) -> None:
    (src / "sub" / "deep").mkdir(parents=True)
    sf.write(src / "a.wav", np.concatenate([tone(60, 0.5), tone(64, 0.5)]), SR)
    b = np.concatenate([tone(67, 0.5), tone(72, 0.5)])
    sf.write(src / "sub" / "b.flac", np.stack([0.6 * b, 1.4 * b], axis=1), SR)  # stereo, right
    sf.write(src / "sub" / "deep" / "c.OGG", tone(55, 0.8, 22050), 22050)
    (src / "bad.wav").write_bytes(b"definitely not audio\n" * 20)
    (src / "readme.txt").write_text("not an input")
    sf.write(src / ".hidden.wav", tone(60, 0.3), SR)  # hidden: ignored
    (src / ".cache").mkdir()
    sf.write(src / ".cache" / "x.wav", tone(60, 0.3), SR)  # hidden folder: ignored


def test_batch_encode_decode_resume_force(tmp_path):
    src, smc, wav = tmp_path / "src", tmp_path / "smc", tmp_path / "wav"
    _make_tree(src)
    before = {p: (src / p).read_bytes() for p in _files(src)}

    # 1. encode: mirrored tree, the bad file reported, the others done, exit 2
    # (--no-timbre: the neural timbre fit is slow and not what this test is about)
    r = _run("batch", "encode", str(src), str(smc), "-j", "2", "--no-timbre",
             "--report", str(tmp_path / "r.json"))
    assert r.returncode == 2, r.stderr
    assert _files(smc) == ["a.smc", "sub/b.smc", "sub/deep/c.smc"]
    assert "bad.wav" in r.stderr and "not a readable audio file" in r.stderr
    assert "4 file(s): 3 ok, 0 skipped, 1 failed" in r.stderr
    assert "Traceback" not in r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert (rep["files"], rep["ok"], rep["skipped"], rep["failed"]) == (4, 3, 0, 1)
    by_rel = {f["rel"]: f for f in rep["results"]}
    assert by_rel["bad.wav"]["status"] == "failed" and by_rel["bad.wav"]["reason"]
    sizes = sum((smc / p).stat().st_size for p in _files(smc))
    assert rep["total_smc_bytes"] == sizes
    assert rep["total_duration_s"] == pytest.approx(1.0 + 1.0 + 0.8, abs=1e-3)
    assert rep["bitrate_kbps"] == pytest.approx(sizes * 8 / 2.8 / 1000, rel=1e-3)
    assert f"= {rep['bitrate_kbps']:.3f} kbps" in r.stderr
    for p in _files(smc):
        Container.load(smc / p)  # complete, valid containers

    # 2. resume: a changed input and a damaged output are redone, the rest is skipped
    t_smc = _mtimes(smc)
    future = time.time() + 5
    os.utime(src / "a.wav", (future, future))
    damaged = (smc / "sub" / "b.smc").read_bytes()
    (smc / "sub" / "b.smc").write_bytes(damaged[: len(damaged) // 2])
    r = _run("batch", "encode", str(src), str(smc), "-j", "1", "-q", "--no-timbre")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"semcodec: error: {src / 'bad.wav'}: "
                                             "not a readable audio file"]
    t2 = _mtimes(smc)
    assert t2["sub/deep/c.smc"] == t_smc["sub/deep/c.smc"]
    assert t2["a.smc"] > t_smc["a.smc"]
    assert Container.load(smc / "sub" / "b.smc").n_samples == SR
    os.utime(src / "a.wav", (time.time() - 5, time.time() - 5))

    # 3. decode (with a corrupt .smc among them), then resume = everything skipped
    (smc / "broken.smc").write_bytes(damaged[:40])
    r = _run("batch", "decode", str(smc), str(wav), "-j", "2", "--format", "flac",
             "--engine", "fluidsynth")
    assert r.returncode == 2, r.stderr
    assert "4 file(s): 3 ok, 0 skipped, 1 failed" in r.stderr
    assert "broken.smc" in r.stderr and "truncated" in r.stderr
    assert _files(wav) == ["a.flac", "sub/b.flac", "sub/deep/c.flac"]
    for p, n, rate, ch in (("a.flac", SR, SR, 1), ("sub/b.flac", SR, SR, 2),
                           ("sub/deep/c.flac", 17640, 22050, 1)):
        info = sf.info(wav / p)
        assert (info.frames, info.samplerate, info.channels) == (n, rate, ch)
    assert all(t.pan == pytest.approx(0.4, abs=0.05)
               for t in Container.load(smc / "sub" / "b.smc").score.tracks)
    (smc / "broken.smc").unlink()
    t_wav = _mtimes(wav)
    r = _run("batch", "decode", str(smc), str(wav), "--format", "flac", "--engine", "fluidsynth")
    assert r.returncode == 0, r.stderr
    assert "3 file(s): 0 ok, 3 skipped, 0 failed" in r.stderr
    assert _mtimes(wav) == t_wav

    # 4. --force redoes complete outputs
    r = _run("batch", "decode", str(smc), str(wav), "--format", "flac", "--engine", "fluidsynth",
             "-j", "2", "-f", "--report", str(tmp_path / "d.json"))
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "d.json").read_text())["ok"] == 3
    assert all(t_wav[p] < t for p, t in _mtimes(wav).items())

    # inputs untouched, no temporary files anywhere
    assert {p: (src / p).read_bytes() for p in _files(src)} == before
    for root in (smc, wav):
        assert not [p for p in root.rglob("*") if p.name.startswith(".")]


def test_plan_mirrors_and_reports_conflicts(tmp_path):
    src = tmp_path / "in"
    (src / "x").mkdir(parents=True)
    for name in ("song.wav", "song.flac", "x/one.MP3", "x/two.aiff", "x/three.aif", "x/n.txt"):
        (src / name).write_bytes(b"")
    plan = batch.plan_batch("encode", src, tmp_path / "out")
    assert [j.rel for j in plan.jobs] == ["x/one.MP3", "x/three.aif", "x/two.aiff"]
    assert [Path(j.dst).relative_to(tmp_path / "out").as_posix() for j in plan.jobs] == [
        "x/one.smc", "x/three.smc", "x/two.smc"]
    assert sorted(c.rel for c in plan.conflicts) == ["song.flac", "song.wav"]
    assert all("same output song.smc" in c.reason for c in plan.conflicts)
    # the output tree inside the source tree is not taken as input
    (src / "out").mkdir()
    (src / "out" / "old.smc").write_bytes(b"")
    plan = batch.plan_batch("decode", src / "x", tmp_path / "wavs", "ogg")
    assert plan.jobs == ()


def _main(capsys, *args: str) -> tuple[int, list[str]]:
    from semcodec import cli

    cli.STATE.verbose, cli.STATE.quiet = 0, False
    with pytest.raises(SystemExit) as exc:
        cli.main(list(args))
    return exc.value.code, capsys.readouterr().err.strip().splitlines()


def test_batch_usage_and_input_errors(tmp_path, capsys):
    src = tmp_path / "smc"
    src.mkdir()
    code, err = _main(capsys, "batch", "decode", str(src), str(src / "wav"))
    assert code == 1 and len(err) == 1 and "separate DST_DIR" in err[0]
    code, err = _main(capsys, "batch", "encode", str(tmp_path / "nope"), str(tmp_path / "o"))
    assert code == 2 and err == [f"semcodec: error: {tmp_path / 'nope'}: no such folder"]
    (tmp_path / "file").write_bytes(b"x")
    code, err = _main(capsys, "batch", "encode", str(src), str(tmp_path / "file"))
    assert code == 2 and len(err) == 1 and "not a folder" in err[0]
    code, err = _main(capsys, "batch", "encode", str(src), str(tmp_path / "o"),
                      "--report", str(tmp_path / "no" / "r.json"))
    assert code == 2 and len(err) == 1 and "report" in err[0]
    code, err = _main(capsys, "batch", "encode", str(src), str(tmp_path / "o"), "-j", "0")
    assert code == 1 and len(err) == 1
    code, err = _main(capsys, "batch", "decode", str(src), str(tmp_path / "o"), "--format", "mp3")
    assert code == 1 and len(err) == 1
    # nothing to do is not an error
    code, err = _main(capsys, "batch", "encode", str(src), str(tmp_path / "o"))
    assert code == 0 and "no input files" in err[0]


def test_process_file_never_raises(tmp_path):
    """The task function turns every problem into a failed FileResult (what the workers run)."""
    out = tmp_path / "o"
    job = batch.Job(str(tmp_path / "missing.wav"), str(out / "missing.smc"), "missing.wav", 0)
    res = batch.process_file("encode", job)
    assert res.status == "failed" and res.reason == "no such file"
    (tmp_path / "e.smc").write_bytes(b"")
    job = batch.Job(str(tmp_path / "e.smc"), str(out / "e.wav"), "e.smc", 0)
    res = batch.process_file("decode", job)
    assert res.status == "failed" and "e.smc" not in res.reason
    assert not out.exists() or not any(out.rglob("*"))


def test_links_fifos_and_loops_are_counted_as_skipped(tmp_path, capsys):
    # issue 13 item 12: a link out of SRC is not followed silently; a loop and a FIFO are counted
    src, outside = tmp_path / "in", tmp_path / "elsewhere"
    (src / "sub").mkdir(parents=True)
    outside.mkdir()
    sf.write(src / "a.wav", tone(60, 0.4), SR)
    sf.write(outside / "secret.wav", tone(64, 0.4), SR)
    os.symlink(outside / "secret.wav", src / "out-link.wav")
    os.symlink(src / "a.wav", src / "sub" / "in-link.wav")  # inside SRC: followed
    os.symlink("loop.wav", src / "loop.wav")
    os.symlink(src, src / "sub" / "up")  # a folder link (a loop if it were followed)
    os.mkfifo(src / "pipe.wav")
    plan = batch.plan_batch("encode", src, tmp_path / "out")
    assert [j.rel for j in plan.jobs] == ["a.wav", "sub/in-link.wav"]
    why = {r.rel: r.reason for r in plan.ignored}
    assert sorted(why) == ["loop.wav", "out-link.wav", "pipe.wav", "sub/up"]
    assert "outside the source folder" in why["out-link.wav"]
    assert "loop" in why["loop.wav"] and "FIFO" in why["pipe.wav"] and "folder" in why["sub/up"]
    assert plan.n_files == 6
    followed = batch.plan_batch("encode", src, tmp_path / "out", follow_symlinks=True)
    assert [j.rel for j in followed.jobs] == ["a.wav", "out-link.wav", "sub/in-link.wav"]
    # the CLI counts them in the summary and lists each, exit 0 (nothing failed)
    code, err = _main(capsys, "batch", "encode", str(src), str(tmp_path / "out"), "-j", "1",
                      "--no-timbre", "--no-samples")
    assert code == 0, err
    assert "6 file(s): 2 ok, 4 skipped, 0 failed" in err[0]
    assert any(line.startswith("skipped: out-link.wav: symbolic link to ") for line in err)
    assert not (tmp_path / "out" / "out-link.smc").exists()


def test_files_in_progress_report_their_stage(tmp_path):
    # issue 13 item 14: the local pool reports each file's stage and fraction while it works
    from semcodec.api import ENCODE_STAGES, EncodeOptions

    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "a.wav", np.concatenate([tone(60, 0.5), tone(64, 0.5)]), SR)
    sf.write(src / "b.wav", np.concatenate([tone(67, 0.5), tone(72, 0.5)]), SR)
    plan = batch.plan_batch("encode", src, tmp_path / "out")
    seen: list[tuple[str, str, float]] = []
    report = batch.run_batch(plan, jobs=1, encode_options=EncodeOptions(fit_timbre=False),
                             file_progress=lambda rel, stage, frac: seen.append((rel, stage, frac)))
    assert len(report.ok) == 2
    assert seen, "no progress while the files were encoded"
    names = [n for n, _ in ENCODE_STAGES]
    for rel in {r for r, _, _ in seen}:
        mine = [(stage, frac) for r, stage, frac in seen if r == rel]
        assert rel in ("a.wav", "b.wav")
        assert all(stage in names and 0.0 <= frac <= 1.0 for stage, frac in mine)
        assert [f for _, f in mine] == sorted(f for _, f in mine)  # never goes back


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
def test_workers_exit_when_the_batch_is_killed(tmp_path):
    # issue 13 item 11: SIGKILL of `semcodec batch` left its workers running as orphans
    import signal

    src = tmp_path / "in"
    src.mkdir()
    for k in range(3):
        sf.write(src / f"f{k}.wav", np.tile(tone(60 + k, 1.0), 6), SR)
    p = subprocess.Popen([*CLI, "batch", "encode", str(src), str(tmp_path / "out"), "-j", "2",
                          "-q", "--no-samples"], stderr=subprocess.DEVNULL)
    workers: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(workers) < 2:  # the pool's workers are up
        time.sleep(0.5)
        workers = [c for c in _children(p.pid) if b"spawn_main" in
                   Path(f"/proc/{c}/cmdline").read_bytes()]
    assert len(workers) == 2
    time.sleep(3)  # at work on their first files
    p.send_signal(signal.SIGKILL)
    p.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.5)
    left = [w for w in workers if _alive(w)]
    for w in left:  # do not leak them from the test
        os.kill(w, signal.SIGKILL)
    assert not left, "worker processes outlived the killed batch"
    out = tmp_path / "out"
    if out.exists():  # complete outputs only; an interrupted file left no temporary file
        assert not [f for f in out.rglob("*") if f.name.endswith(".tmp")]
        for smc in out.rglob("*.smc"):
            Container.load(smc)
