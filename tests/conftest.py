"""Shared fixtures: small audio the tests make themselves (sinusoids, fluidsynth renders)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

SR = 44100


def tone(pitch: int, seconds: float, sr: int = SR, amp: float = 0.3, harmonics: int = 6) -> np.ndarray:
    """A harmonic tone at MIDI ``pitch`` with a short attack and exponential decay."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    sig = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, harmonics + 1) if f0 * k < sr / 2)
    env = np.minimum(1.0, t / 0.01) * np.exp(-t * 1.5)
    return (amp * env * sig).astype(np.float32)


@pytest.fixture(scope="session")
def chorale(tmp_path_factory):
    """A 12-s Bach chorale excerpt (music21 corpus) rendered with fluidsynth on piano.

    Returns (path to a 44.1 kHz mono WAV, Score with the ground-truth notes).
    """
    import music21

    from semcodec.score import score_from_music21
    from semcodec.synth.fluid import render_score

    seconds = 12.0
    score = score_from_music21(music21.corpus.parse("bach/bwv66.6"), tempo_bpm=90, programs=[0],
                               max_seconds=seconds - 1.0)
    audio = render_score(score, SR, int(seconds * SR))
    audio = 0.5 * audio / np.abs(audio).max()
    path = tmp_path_factory.mktemp("chorale") / "chorale.wav"
    sf.write(path, audio, SR, subtype="PCM_16")
    return path, score


@pytest.fixture(scope="session")
def encoded_chorale(chorale, tmp_path_factory):
    """The chorale encoded once with the default pipeline: (wav path, smc path, truth Score)."""
    import semcodec

    wav, truth = chorale
    c = semcodec.encode(wav)
    smc = tmp_path_factory.mktemp("enc") / "chorale.smc"
    c.save(smc)
    return wav, smc, truth


@pytest.fixture()
def short_wav(tmp_path):
    """A 2-s WAV with three tones (C4, E4, G4 in sequence)."""
    audio = np.concatenate([tone(60, 0.6), tone(64, 0.6), tone(67, 0.8)])
    path = tmp_path / "short.wav"
    sf.write(path, audio, SR, subtype="PCM_16")
    return path


@pytest.fixture()
def pipelined_renders(monkeypatch):
    """The ``pipelined`` flag of every neural TrackRenderer made while the test runs, in
    order (a list the test reads)."""
    from semcodec.synth import ddsp_np

    seen: list[bool] = []
    init = ddsp_np.TrackRenderer.__init__

    def spy(self, *a, **k):
        seen.append(bool(k.get("pipelined")))
        init(self, *a, **k)

    monkeypatch.setattr(ddsp_np.TrackRenderer, "__init__", spy)
    return seen
