"""Instrument tracks from a mix: per-note features and the track assignment."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SR
from semcodec import separate
from semcodec.events import Note


def _voice(pitch: int, seconds: float, bright: bool, rng) -> np.ndarray:
    """A pure, slowly decaying low tone, or a bright, buzzy, fast-decaying one."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    if bright:
        sig = sum(np.sin(2 * np.pi * f0 * k * t) * 0.9 ** k for k in range(1, 9) if f0 * k < SR / 2)
        env = np.minimum(1.0, t / 0.003) * np.exp(-t * 6.0)
        sig = sig + 0.05 * rng.standard_normal(t.shape[0])
    else:
        sig = np.sin(2 * np.pi * f0 * t) + 0.05 * np.sin(4 * np.pi * f0 * t)
        env = np.minimum(1.0, t / 0.05) * np.exp(-t * 0.5)
    return (0.2 * env * sig).astype(np.float32)


def _duet(n_each: int = 24):
    """A low pure-tone line and a high bright line playing together; notes with their truth."""
    rng = np.random.default_rng(0)
    audio = np.zeros(int((n_each * 0.5 + 2) * SR), np.float32)
    notes, truth = [], []
    for i in range(n_each):
        for bright, base, step in ((False, 40, 0.5), (True, 72, 0.5)):
            on = 0.1 + i * step + (0.25 if bright else 0.0)
            pitch = base + (i * 5) % 12
            x = _voice(pitch, 0.45, bright, rng)
            a = int(on * SR)
            audio[a:a + x.shape[0]] += x
            notes.append(Note(on, on + 0.45, pitch, 90))
            truth.append(int(bright))
    return audio, notes, np.array(truth)


def test_features_tell_the_two_timbres_apart():
    audio, notes, truth = _duet(12)
    f = separate.note_features(audio, SR, notes)
    assert f.shape == (len(notes), len(separate.FEATURE_NAMES)) and np.isfinite(f).all()
    col = {n: i for i, n in enumerate(separate.FEATURE_NAMES)}
    bright, pure = f[truth == 1], f[truth == 0]
    assert bright[:, col["h3_db"]].mean() > pure[:, col["h3_db"]].mean() + 10  # richer harmonics
    assert bright[:, col["decay_db_s"]].mean() < pure[:, col["decay_db_s"]].mean()  # decays faster


def test_duet_splits_into_two_tracks_matching_the_instruments():
    audio, notes, truth = _duet()
    a = separate.assign_tracks(audio, SR, notes)
    assert a.n_tracks == 2
    agree = max(np.mean(a.labels == truth), np.mean(a.labels != truth))
    assert agree >= 0.95
    assert np.mean(a.labels[truth == 0]) < 0.5  # tracks are ordered low to high


def test_a_single_instrument_stays_one_track():
    rng = np.random.default_rng(1)
    audio = np.zeros(int(16 * SR), np.float32)
    notes = []
    for i in range(40):
        on, pitch = 0.1 + i * 0.37, 48 + (i * 7) % 24  # two octaves of one timbre
        x = _voice(pitch, 0.5, True, rng)
        audio[int(on * SR):int(on * SR) + x.shape[0]] += x
        notes.append(Note(on, on + 0.5, pitch, 90))
    assert separate.assign_tracks(audio, SR, notes).n_tracks == 1


def test_requested_count_few_notes_and_determinism():
    audio, notes, _ = _duet()
    a3 = separate.assign_tracks(audio, SR, notes, 3)
    assert 1 <= a3.n_tracks <= 3
    again = separate.assign_tracks(audio, SR, notes, 3)
    assert np.array_equal(a3.labels, again.labels)
    assert separate.assign_tracks(audio, SR, notes[:5]).n_tracks == 1
    assert separate.assign_tracks(audio, SR, []).n_tracks == 0
    with pytest.raises(ValueError):
        separate.assign_tracks(audio, SR, notes, 0)


def test_features_measured_in_note_groups_equal_the_whole_spectrogram(monkeypatch):
    """note_features takes its STFT group by group of notes (bounded memory on long inputs):
    the features equal those measured on one whole-input spectrogram, whatever the group
    size (a note longer than a group gets a group of its own)."""
    audio, notes, _ = _duet(12)
    notes = notes + [Note(0.3, 5.0, 52, 80)]  # a long note, spanning many groups
    x, n_frames = separate._analysis_signal(audio, SR)
    spec = separate._spectrogram(audio, SR)
    whole = np.stack([separate._note_row(spec, *separate._note_frames(n, n_frames), n)
                      for n in notes])
    blockwise = separate.note_features(audio, SR, notes)
    np.testing.assert_allclose(blockwise, whole, rtol=1e-6, atol=1e-6)
    monkeypatch.setattr(separate, "FEATURE_BLOCK_FRAMES", 40)
    np.testing.assert_allclose(separate.note_features(audio, SR, notes), whole,
                               rtol=1e-5, atol=1e-5)
