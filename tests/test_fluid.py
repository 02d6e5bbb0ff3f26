"""The fluidsynth engine: length, pitch, programs, bends, drums."""

from __future__ import annotations

import numpy as np
import pytest

from semcodec.errors import SynthError
from semcodec.events import BendPoint, Note, Score, Track
from semcodec.synth.fluid import FluidsynthEngine, find_soundfont, render_notes

SR = 44100


def _peak_hz(audio: np.ndarray, sr: int = SR) -> float:
    spec = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    return float(np.argmax(spec) * sr / audio.size)


def test_length_is_exact():
    audio = render_notes([Note(0.0, 0.5, 69, 100)], 0, SR, 12345)
    assert audio.shape == (12345,) and audio.dtype == np.float32


def test_pitch_and_transpose():
    score = Score(tracks=(Track("t", 73, notes=(Note(0.0, 1.0, 69, 100),)),))  # flute A4
    eng = FluidsynthEngine()
    a = eng.render(score, SR, SR)
    b = eng.render(score, SR, SR, transpose=12)
    assert abs(_peak_hz(a[4000:40000]) - 440) < 15
    assert abs(_peak_hz(b[4000:40000]) - 880) < 30


def test_bend_moves_the_pitch():
    bent = Note(0.0, 1.0, 69, 100, (BendPoint(0.0, 2.0),))
    audio = render_notes([bent], 73, SR, SR)
    assert abs(_peak_hz(audio[4000:40000]) - 493.9) < 20


def test_program_changes_the_sound():
    n = [Note(0.0, 1.0, 60, 100)]
    piano = render_notes(n, 0, SR, SR)
    organ = render_notes(n, 19, SR, SR)
    assert np.abs(piano - organ).mean() > 1e-3


def test_drums_play_the_kit():
    score = Score(tracks=(Track("drums", 0, is_drum=True, notes=(Note(0.0, 0.2, 36, 120),)),))
    audio = FluidsynthEngine().render(score, SR, SR // 2)
    assert np.abs(audio).max() > 0.01


def test_tempo_factor_moves_notes():
    score = Score(tracks=(Track("t", 0, notes=(Note(1.0, 1.5, 60, 100),)),))
    audio = FluidsynthEngine().render(score, SR, SR, tempo=2.0)
    onset = np.argmax(np.abs(audio) > 0.01) / SR
    assert 0.45 < onset < 0.55


def test_missing_soundfont(tmp_path):
    with pytest.raises(SynthError, match="not found"):
        find_soundfont(tmp_path / "nope.sf2")


def test_importing_pyfluidsynth_prints_nothing():
    """pyfluidsynth prints where it found the library when $CI is set; semcodec must not."""
    import os
    import subprocess
    import sys

    code = (
        "from semcodec.synth.fluid import import_fluidsynth, render_notes\n"
        "from semcodec.events import Note\n"
        "import_fluidsynth()\n"
        "render_notes([Note(0.0, 0.1, 60, 90)], 0, 8000, 800)\n"
    )
    env = dict(os.environ, CI="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout == ""


_RENDER_AFTER_RAND = """
import ctypes, hashlib, sys
for _ in range(int(sys.argv[1])):
    ctypes.CDLL(None).rand()  # what other libraries in a worker process may have done
from semcodec.events import Note
from semcodec.synth.fluid import render_notes
a = render_notes([Note(0.1, 0.6, 60, 80), Note(0.5, 1.0, 64, 70)], 0, 22050, 30000)
print(hashlib.sha256(a.tobytes()).hexdigest())
"""


def test_output_does_not_depend_on_the_process_rand_state():
    # fluidsynth's 16-bit output path dithers from a table it fills with libc rand() once per
    # process: a process that had called rand() before (a Dask worker after other tasks)
    # rendered different samples (issue 13, item 13)
    import subprocess
    import sys

    digests = {subprocess.run([sys.executable, "-c", _RENDER_AFTER_RAND, str(n)],
                              capture_output=True, text=True, check=True, timeout=120
                              ).stdout.strip() for n in (0, 7, 1000)}
    assert len(digests) == 1, digests
