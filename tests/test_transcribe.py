"""Behaviour of semcodec.transcribe (basic-pitch on onnxruntime) on synthesized audio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
if __import__("importlib").util.find_spec("basic_pitch") is None:
    pytest.skip("basic-pitch (its ONNX model) is not installed", allow_module_level=True)

from semcodec import constants  # noqa: E402
from semcodec.errors import InputError, UsageError  # noqa: E402
from semcodec.events import Note  # noqa: E402
from semcodec.transcribe import TranscribeOptions, compact_bends, transcribe  # noqa: E402

SR = 22050
FRAME_S = 1.0 / constants.BP_FRAMES_PER_S


def tone(midi: float, dur: float, sr: int = SR, amp: float = 0.3, vibrato: float = 0.0,
         vibrato_hz: float = 5.0, decay: float = 1.0) -> np.ndarray:
    """A harmonic tone (4 partials) with a 10 ms attack, exponential decay and short release."""
    t = np.arange(int(round(dur * sr))) / sr
    semis = midi + vibrato * np.sin(2 * np.pi * vibrato_hz * t)
    phase = 2 * np.pi * np.cumsum(440.0 * 2.0 ** ((semis - 69) / 12.0)) / sr
    env = np.minimum(1.0, t / 0.01) * np.minimum(1.0, (dur - t) / 0.03) * np.exp(-decay * t)
    return (amp * env * sum(np.sin(h * phase) / h for h in range(1, 5))).astype(np.float32)


def mix(total_s: float, events, sr: int = SR) -> np.ndarray:
    """Sum of (onset_s, tone array) events into a silent buffer of total_s seconds."""
    out = np.zeros(int(round(total_s * sr)), dtype=np.float32)
    for onset, y in events:
        i = int(round(onset * sr))
        out[i : i + len(y)] += y[: len(out) - i]
    return out


# a melody with a few two-note chords: (onset s, duration s, MIDI pitch)
SCORE = [
    (0.5, 0.4, 60), (1.0, 0.4, 62), (1.5, 0.4, 64), (2.0, 0.8, 67), (2.0, 0.8, 60),
    (3.0, 0.3, 65), (3.4, 0.3, 64), (3.8, 0.3, 62), (4.2, 0.9, 55), (4.2, 0.9, 71),
    (5.5, 0.5, 72), (6.1, 0.5, 48), (6.7, 0.6, 69), (7.4, 0.4, 57), (7.9, 0.6, 76),
]


@pytest.fixture(scope="module")
def melody() -> np.ndarray:
    return mix(9.0, [(o, tone(p, d)) for o, d, p in SCORE])


@pytest.fixture(scope="module")
def melody_notes(melody) -> tuple[Note, ...]:
    return transcribe(melody, SR)


def onset_f1(notes, score) -> float:
    import mir_eval

    ref = np.array(score, dtype=float)
    ref_int = np.stack([ref[:, 0], ref[:, 0] + ref[:, 1]], axis=1)
    est_int = np.array([[n.onset, n.offset] for n in notes], dtype=float).reshape(-1, 2)
    est_p = np.array([n.pitch for n in notes], dtype=float)
    _, _, f1, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_int, mir_eval.util.midi_to_hz(ref[:, 2]), est_int, mir_eval.util.midi_to_hz(est_p),
        onset_tolerance=0.05, offset_ratio=None,
    )
    return f1


def test_harmonic_tones_transcribed(melody_notes):
    assert onset_f1(melody_notes, SCORE) >= 0.8
    for n in melody_notes:
        assert isinstance(n, Note)
        assert 0.0 <= n.onset < n.offset
        assert constants.BP_MIDI_MIN <= n.pitch <= constants.BP_MIDI_MAX
        assert 1 <= n.velocity <= 127
    onsets = [n.onset for n in melody_notes]
    assert onsets == sorted(onsets)


def test_other_sample_rate_and_dtype(melody_notes):
    import soxr

    x44 = soxr.resample(mix(9.0, [(o, tone(p, d)) for o, d, p in SCORE]), SR, 44100)
    notes = transcribe(x44.astype(np.float64), 44100)
    assert onset_f1(notes, SCORE) >= 0.8


def test_silence_and_empty():
    assert transcribe(np.zeros(SR * 3, dtype=np.float32), SR) == ()
    assert transcribe(np.zeros(0, dtype=np.float32), SR) == ()


def test_very_short_input():
    for n_samples in (1, 100, int(0.05 * SR)):
        x = tone(69, n_samples / SR) if n_samples > 1 else np.ones(1, np.float32) * 0.1
        notes = transcribe(x, SR)
        assert isinstance(notes, tuple)
    # a short note is still found in a 0.3 s clip
    notes = transcribe(mix(0.3, [(0.02, tone(69, 0.25, decay=0.0))]), SR)
    assert [n.pitch for n in notes].count(69) == 1


def test_bad_input_rejected():
    with pytest.raises(InputError):
        transcribe(np.zeros((100, 2), np.float32), SR)
    with pytest.raises(InputError):
        transcribe(np.full(1000, np.nan, np.float32), SR)
    with pytest.raises(UsageError):
        TranscribeOptions(onset_threshold=1.5)


def test_progress_called_per_window(melody):
    seen: list[float] = []
    transcribe(melody, SR, TranscribeOptions(window_s=3.0), progress=seen.append)
    # after each of the 3 windows, and within each as the model runs through it
    for k in (1, 2, 3):
        assert any(f == pytest.approx(k / 3) for f in seen)
    assert len(seen) > 3
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)


def test_windowed_matches_single_window(melody, melody_notes):
    small = transcribe(melody, SR, TranscribeOptions(window_s=3.0))
    assert len(small) == len(melody_notes)
    for a, b in zip(small, melody_notes):
        assert a.pitch == b.pitch
        assert abs(a.onset - b.onset) <= 1.5 * FRAME_S
        assert abs(a.offset - b.offset) <= 1.5 * FRAME_S


def test_held_note_across_window_edges_is_one_note():
    # a 7.5 s note from 1.0 s crosses the edges at 3, 6 (and 9 minus context) with window_s=3
    x = mix(10.0, [(1.0, tone(57, 7.5, decay=0.1))])
    for window_s in (60.0, 3.0):
        found = transcribe(x, SR, TranscribeOptions(window_s=window_s))
        notes = [n for n in found if n.pitch == 57]
        assert len(notes) == 1, (window_s, notes)
        assert abs(notes[0].onset - 1.0) < 0.03
        assert abs(notes[0].offset - 8.5) < 0.15


def test_vibrato_gets_bends_steady_tone_does_not():
    x = mix(5.0, [(0.3, tone(64, 1.6, vibrato=0.6, decay=0.2)), (2.6, tone(60, 1.6, decay=0.2))])
    notes = transcribe(x, SR)
    vib = [n for n in notes if n.onset < 2.4 and n.pitch in (63, 64, 65)]
    steady = [n for n in notes if n.onset > 2.4 and n.pitch == 60]
    assert vib and steady
    assert any(len(n.bends) >= 4 for n in vib)
    for n in vib:
        for b in n.bends:
            assert 0.0 <= b.time < n.duration + FRAME_S
            assert abs(b.semitones) <= 1.5
            assert b.semitones * 8 == round(b.semitones * 8)  # 1/8-semitone steps
    points_per_s = sum(len(n.bends) for n in vib) / sum(n.duration for n in vib)
    assert points_per_s < 25
    assert all(n.bends == () for n in steady)
    assert all(n.bends == () for n in transcribe(x, SR, TranscribeOptions(keep_bends=False)))


def test_compact_bends():
    assert compact_bends(np.zeros(50, np.float32)) == ()
    assert compact_bends(np.full(50, 0.1, np.float32)) == ()
    slide = np.concatenate([np.zeros(20), np.linspace(0, 1, 10), np.ones(30)]).astype(np.float32)
    points = compact_bends(slide)
    assert points[0].time == 0.0 and points[0].semitones == 0.0
    assert points[-1].semitones == pytest.approx(1.0)
    assert len(points) <= 6
    assert all(b.time < a.time for b, a in zip(points, points[1:]))
    assert all(b.semitones != a.semitones for b, a in zip(points, points[1:]))


def test_louder_tone_gets_higher_velocity():
    x = mix(6.0, [(0.5, tone(62, 1.0, amp=0.5)), (3.0, tone(62, 1.0, amp=0.05))])
    notes = [n for n in transcribe(x, SR) if n.pitch == 62]
    assert len(notes) == 2
    loud, quiet = sorted(notes, key=lambda n: n.onset)
    assert loud.velocity > quiet.velocity + 10


def test_tensorflow_never_imported(tmp_path: Path):
    script = tmp_path / "probe.py"
    script.write_text(
        "import sys, numpy as np\n"
        "from semcodec.transcribe import transcribe\n"
        "t = np.arange(22050) / 22050\n"
        "transcribe((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 22050)\n"
        "banned = ('tensorflow', 'basic_pitch', 'tflite_runtime')\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in banned]\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**__import__("os").environ, "PYTHONPATH": str(src)}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_giving_the_model_arena_back_changes_no_activation(melody):
    """A long input's last batch shrinks onnxruntime's memory arena: memory only."""
    from semcodec.transcribe import _resample, model_activations

    x = _resample(melody[: 3 * SR], SR)
    kept = model_activations(x)
    shrunk = model_activations(x, shrink=True)
    again = model_activations(x)  # the arena regrows
    for a, b, c in zip(kept, shrunk, again):
        assert np.array_equal(a, b) and np.array_equal(a, c)
