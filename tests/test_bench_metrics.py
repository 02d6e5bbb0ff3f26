"""The benchmark's metric functions on synthetic signals with known answers."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

# bench/ lives at the repository root, next to tests/
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from bench import metrics  # noqa: E402

SR = metrics.SR


def _tone(freqs, seconds=2.0, amp=0.3):
    t = np.arange(int(seconds * SR)) / SR
    return (amp * sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)).astype(np.float32)


@pytest.fixture(scope="module")
def chord():
    # a C major triad with harmonics up to ~8 kHz and a slow amplitude envelope
    rng = np.random.default_rng(0)
    x = _tone([261.63, 329.63, 392.0, 523.25, 1046.5, 2093.0, 4186.0, 7902.0])
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * np.arange(len(x)) / SR)
    return (x * env + 1e-3 * rng.standard_normal(len(x))).astype(np.float32)


def test_identical_signals(chord):
    assert metrics.mel_distance(chord, chord) == pytest.approx(0.0, abs=1e-9)
    assert metrics.chroma_similarity(chord, chord) == pytest.approx(1.0, abs=1e-6)


def test_lowpass_is_worse_than_scaling(chord):
    from scipy.signal import butter, sosfiltfilt

    sos = butter(8, 1000.0, btype="low", fs=SR, output="sos")
    lowpassed = sosfiltfilt(sos, chord).astype(np.float32)
    scaled = (0.9 * chord).astype(np.float32)
    d_scaled = metrics.mel_distance(chord, scaled)
    d_low = metrics.mel_distance(chord, lowpassed)
    assert d_scaled == pytest.approx(abs(np.log10(0.9)), rel=0.05)
    assert d_low > 2 * d_scaled


def test_silence_vs_tone_is_far(chord):
    silence = np.zeros_like(chord)
    assert metrics.mel_distance(chord, silence) > 1.5
    # silence has no chroma: every counted frame scores 0
    assert metrics.chroma_similarity(chord, silence) == pytest.approx(0.0, abs=1e-9)
    # a silent reference has no frame to count
    assert metrics.chroma_similarity(silence, chord) is None


def test_different_chord_has_lower_chroma_similarity(chord):
    other = _tone([277.18, 349.23, 415.30])  # C# major
    assert metrics.chroma_similarity(chord, other) < 0.7


def test_lengths_are_zero_padded(chord):
    shorter = chord[: len(chord) // 2]
    assert metrics.mel_distance(chord, shorter) > 0.5
    assert metrics.mel_distance(chord, shorter) == pytest.approx(metrics.mel_distance(shorter, chord))


def test_reference_cache_gives_same_answer(chord):
    other = (0.5 * chord).astype(np.float32)
    cache: dict = {}
    a = metrics.mel_distance(chord, other, ref_cache=cache)
    b = metrics.mel_distance(chord, other, ref_cache=cache)
    assert a == b == metrics.mel_distance(chord, other)
    assert metrics.chroma_similarity(chord, other, ref_cache=cache) == pytest.approx(
        metrics.chroma_similarity(chord, other))


def test_note_f1():
    ref = [(0.0, 0.5, 60), (0.5, 1.0, 64), (1.0, 1.5, 67), (1.5, 2.0, 72)]
    assert metrics.note_f1(ref, ref) == pytest.approx(1.0)
    # disjoint in pitch
    assert metrics.note_f1(ref, [(a, b, p + 5) for a, b, p in ref]) == pytest.approx(0.0)
    # disjoint in time (onsets 0.2 s late, beyond the 50 ms tolerance)
    assert metrics.note_f1(ref, [(a + 0.2, b + 0.2, p) for a, b, p in ref]) == pytest.approx(0.0)
    # within tolerance, offsets ignored
    assert metrics.note_f1(ref, [(a + 0.03, a + 0.1, p) for a, b, p in ref]) == pytest.approx(1.0)
    # half the notes: precision 1, recall 0.5
    p, r, f = metrics.note_prf(ref, ref[:2])
    assert (p, r) == pytest.approx((1.0, 0.5)) and f == pytest.approx(2 / 3)
    assert metrics.note_f1(ref, []) == 0.0
    assert metrics.note_f1([], ref) is None


def test_bitrate_and_speed():
    assert metrics.bitrate_kbps(1000, 8.0) == pytest.approx(1.0)
    assert metrics.bitrate_kbps(3750, 30.0) == pytest.approx(1.0)
    assert metrics.bitrate_kbps(0, 1.0) == 0.0
    with pytest.raises(ValueError):
        metrics.bitrate_kbps(10, 0.0)
    assert metrics.realtime_factor(30.0, 3.0) == pytest.approx(10.0)
    assert metrics.realtime_factor(30.0, 0.0) is None
    assert metrics.mean_or_none([1.0, None, 3.0]) == pytest.approx(2.0)
    assert metrics.mean_or_none([None]) is None


def test_drum_onset_f1():
    ref = [(0.0, 0.1, 36), (0.0, 0.1, 42), (0.5, 0.6, 38), (0.5, 0.6, 42), (1.0, 1.1, 49)]
    assert metrics.drum_onset_f1(ref, ref) == pytest.approx(1.0)
    # within a class, closed/open/pedal hats are one class, crash and ride another, toms another
    same_class = [(0.02, 0.1, 36), (0.0, 0.1, 46), (0.48, 0.6, 38), (0.5, 0.6, 44), (1.0, 1.1, 51)]
    assert metrics.drum_onset_f1(ref, same_class) == pytest.approx(1.0)
    assert metrics.drum_onset_f1([(0.0, 0.1, 45)], [(0.0, 0.1, 50)]) == pytest.approx(1.0)
    # the right time but the wrong class: no match
    assert metrics.drum_onset_f1(ref, [(a, b, 38 if k == 36 else k) for a, b, k in ref]) == \
        pytest.approx(2 * 0.8 * 0.8 / 1.6)
    # beyond the 50 ms tolerance
    assert metrics.drum_onset_f1(ref, [(a + 0.06, b, k) for a, b, k in ref]) == pytest.approx(0.0)
    # one-to-one: two estimates near one reference hit match it once
    p, r, f = metrics.drum_onset_prf([(0.0, 0.1, 36)], [(0.0, 0.1, 36), (0.03, 0.1, 36)])
    assert (p, r) == pytest.approx((0.5, 1.0)) and f == pytest.approx(2 / 3)
    # the matching is maximal, not closest-first: 0.03 is closest to 0.05, but taking it there
    # would leave 0.095 unmatched
    p, r, f = metrics.drum_onset_prf([(0.0, 0.1, 38), (0.05, 0.1, 38)], [(0.03, 0.1, 38), (0.095, 0.1, 38)])
    assert (p, r) == pytest.approx((1.0, 1.0))
    assert metrics.drum_onset_f1(ref, []) == 0.0
    assert metrics.drum_onset_f1([], ref) is None
    assert metrics.drum_class(42) == metrics.drum_class(46) == "hihat"
    assert metrics.drum_class(56) == "other:56"


def test_median_run_summary_and_paired_ratio():
    assert metrics.median([3.0, None, 1.0, 2.0]) == 2.0
    assert metrics.median([4.0, 1.0]) == 2.5
    assert metrics.median([None]) is None
    runs = [dict(wall_s=2.0, cpu_s=3.0, rss_mb=100.0), dict(wall_s=4.0, cpu_s=5.0, rss_mb=300.0),
            dict(wall_s=3.0, cpu_s=4.0, rss_mb=200.0)]
    s = metrics.run_summary(runs, 30.0)
    assert s == dict(wall_s=3.0, cpu_s=4.0, rss_mb=300.0, x_rt=10.0, n=3)
    # pair by pair: a machine twice as slow in round 2 slows both commands alike
    assert metrics.paired_ratio([10.0, 20.0, 11.0], [1.0, 2.0, 0.5]) == pytest.approx(10.0)
    assert metrics.paired_ratio([1.0], [0.0]) is None


def test_speed_rounds_time_whole_processes(tmp_path):
    """bench.speed on stand-in commands: each step runs once per round, in turn, and its wall,
    CPU and peak RSS come back; a command that burns CPU shows it, a failing one is reported."""
    from bench import speed

    clip = tmp_path / "clip.flac"
    clip.write_bytes(b"x")
    log = tmp_path / "order.txt"
    busy = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.2: pass\n"

    def cmd(tag, code=""):
        return lambda src, w: [sys.executable, "-c",
                               f"open({str(log)!r},'a').write({tag!r}+'\\n')\n{code}"]

    commands = {("encode", "semcodec"): cmd("se", busy), ("encode", "opus"): cmd("oe"),
                ("decode", "semcodec"): cmd("sd"), ("decode", "opus"): cmd("od")}
    r = speed.measure_clip(clip, 30.0, runs=2, commands=commands)
    assert log.read_text().split() == ["se", "oe", "sd", "od"] * 2
    enc = r["steps"]["encode"]
    assert enc["semcodec"]["n"] == 2 and enc["semcodec"]["cpu_s"] >= 0.2
    assert enc["semcodec"]["wall_s"] >= enc["semcodec"]["cpu_s"] * 0.5
    assert enc["opus"]["rss_mb"] > 1.0 and enc["semcodec"]["x_rt"] == pytest.approx(
        30.0 / enc["semcodec"]["wall_s"])
    assert enc["ratio"] > 1.0  # the busy stand-in is slower than the idle one
    md = "\n".join(speed.section(dict(runs=2, opus_kbps=12, opus_tool="opus-tools",
                                      loadavg_start=0.5, loadavg_end=0.7,
                                      clips={"clip": dict(r, duration_s=30.0)})))
    assert "| clip (30 s) | encode |" in md and "| clip (30 s) | decode |" in md
    commands[("decode", "opus")] = lambda src, w: [sys.executable, "-c", "raise SystemExit(3)"]
    assert "opus decode" in speed.measure_clip(clip, 30.0, runs=1, commands=commands)["error"]


def test_speed_waits_for_the_load_to_fall_before_timing(monkeypatch):
    from bench import speed

    loads = iter([3.2, 3.2, 2.1, 0.8, 0.8, 0.8])
    slept: list[float] = []
    clock = [0.0]
    monkeypatch.setattr(speed.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(speed.os, "getloadavg", lambda: (next(loads), 0.0, 0.0))
    monkeypatch.setattr(speed.time, "monotonic", lambda: clock[0])

    def sleep(s: float) -> None:
        slept.append(s)
        clock[0] += s

    monkeypatch.setattr(speed.time, "sleep", sleep)
    got = speed.settle(max_s=120)
    assert got == dict(load_before=3.2, waited_s=10.0) and slept == [5.0, 5.0]  # 0.8 < 1.0
    loads = iter([3.0] * 100)
    clock[0] = 0.0
    slept.clear()
    assert speed.settle(max_s=12)["waited_s"] == 12.0  # never settles: gives up at max_s
    assert sum(slept) == pytest.approx(12.0)
    side = dict(wall_s=1.0, cpu_s=1.0, x_rt=30.0, rss_mb=50.0)
    md = "\n".join(speed.section(dict(runs=1, opus_kbps=12, opus_tool="opus-tools",
                                      settle=dict(load_before=3.2, waited_s=10.0),
                                      loadavg_start=0.8, loadavg_end=1.1,
                                      clips={"c": {"duration_s": 30.0, "steps": {
                                          step: dict(semcodec=side, opus=side, ratio=1.0,
                                                     ratio_cpu=1.0)
                                          for step in ("encode", "decode")}}})))
    assert "waited 10 s for the machine to settle (1-min load average 3.2 then)" in md
