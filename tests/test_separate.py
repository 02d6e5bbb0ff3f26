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


def _bright(notes: list[Note], seconds: float, seed: int) -> np.ndarray:
    """``seconds`` of mono audio at SR: each of ``notes`` played by one bright :func:`_voice`,
    in order (one random stream)."""
    rng = np.random.default_rng(seed)
    audio = np.zeros(int(seconds * SR), np.float32)
    for n in notes:
        x = _voice(n.pitch, n.offset - n.onset, True, rng)
        i = int(n.onset * SR)
        audio[i:i + x.shape[0]] += x
    return audio


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
    notes = [Note(0.1 + i * 0.37, 0.6 + i * 0.37, 48 + (i * 7) % 24, 90)  # two octaves, one timbre
             for i in range(40)]
    audio = _bright(notes, 16.0, seed=1)
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


def _strums(n: int = 12) -> list[Note]:
    """Strummed chords, one a second, each ringing 1.8 s (under the next), its strings struck
    8 ms apart low to high, spanning two octaves."""
    return [Note(0.1 + i + 0.008 * k, 1.9 + i, p + (i * 5) % 7, 90) for i in range(n)
            for k, p in enumerate((40, 47, 52, 56, 59, 64))]


def test_ensemble_share_tells_a_band_from_one_instrument():
    band = [Note(0.1 + i, 1.0 + i, 36 + i % 3, 90) for i in range(12)]  # a held bass line
    band += [Note(0.4 + i, 0.8 + i, 64 + i % 5, 90) for i in range(12)]  # a melody over it
    assert separate.ensemble_share(band) >= separate.ENSEMBLE_MIN_SHARE
    # one instrument's chords: the notes start together
    chords = [Note(0.1 + i, 0.9 + i, p + i % 2, 90) for i in range(12) for p in (40, 52, 64)]
    assert separate.ensemble_share(chords) == 0.0
    # a legato line whose notes ring a little into the next, wide leaps included
    legato = [Note(0.1 + 0.37 * i, 0.6 + 0.37 * i, 48 + (i * 7) % 24, 90) for i in range(30)]
    assert separate.ensemble_share(legato) < separate.ENSEMBLE_MIN_SHARE
    # strummed chords that ring on under the next strum: a low and a high string struck
    # together each time, so no note sounds against another part alone
    assert separate.ensemble_share(_strums()) < separate.ENSEMBLE_MIN_SHARE
    # ... while a bass moving under those ringing chords between the strums is a second part
    bass = [Note(0.5 + i, 0.95 + i, 28 + i % 4, 90) for i in range(12)]
    assert separate.ensemble_share(_strums() + bass) >= separate.ENSEMBLE_MIN_SHARE
    assert separate.ensemble_share([]) == 0.0


def test_chords_of_one_timbre_stay_one_track():
    # two-octave chords, every note of a chord starting together
    notes = [Note(0.1 + i, 1.0 + i, pitch + i % 3, 90) for i in range(12)
             for pitch in (40, 52, 64, 67)]
    audio = _bright(notes, 14.0, seed=2)
    assert separate.assign_tracks(audio, SR, notes).n_tracks == 1
    notes = _strums()
    audio = _bright(notes, 14.0, seed=4)
    assert separate.assign_tracks(audio, SR, notes).n_tracks == 1


def test_families_name_each_track():
    audio, notes, _ = _duet()
    a = separate.assign_tracks(audio, SR, notes)
    assert len(a.families) == a.n_tracks
    from semcodec import instrument

    if instrument.weights_available():
        assert all(0 <= f < instrument.N_FAMILIES for f in a.families)
    else:
        assert set(a.families) == {-1}


def test_long_inputs_are_measured_block_by_block_alike():
    rng = np.random.default_rng(3)
    seconds = separate.FEATURE_BLOCK_S + separate.FEATURE_TAIL_S + 20.0
    audio = np.zeros(int(seconds * SR), np.float32)
    notes = []
    for i, on in enumerate(np.arange(0.5, seconds - 2.0, 3.1)):
        pitch = 45 + (i * 5) % 20
        x = _voice(pitch, 0.8, bool(i % 2), rng)
        audio[int(on * SR):int(on * SR) + x.shape[0]] += x
        notes.append(Note(float(on), float(on) + 0.8, pitch, 90))
    whole = separate._note_features(audio, SR, notes)
    blocks = separate.note_features(audio, SR, notes)
    assert blocks.shape == whole.shape
    assert np.allclose(blocks, whole, atol=0.5)  # the same notes, measured on a block


def _buzzy(pitch: int, seconds: float, rng) -> np.ndarray:
    """A distorted tone: a clipped sine (odd harmonics up high) with noise between them."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    sig = np.clip(3.0 * np.sin(2 * np.pi * f0 * t), -1.0, 1.0) + 0.3 * rng.standard_normal(t.shape[0])
    env = np.minimum(1.0, t / 0.01) * np.exp(-t * 1.0)
    return (0.1 * env * sig).astype(np.float32)


def test_a_clean_and_a_distorted_voice_in_one_register_come_apart():
    # a held bass, and over it a clean and a distorted voice taking turns in one register
    rng = np.random.default_rng(5)
    audio = np.zeros(int(17 * SR), np.float32)
    notes, truth = [], []
    for i in range(16):
        x = _voice(36 + i % 4, 0.9, False, rng)
        audio[int((0.1 + i) * SR):int((0.1 + i) * SR) + x.shape[0]] += x
        notes.append(Note(0.1 + i, 1.0 + i, 36 + i % 4, 90))
        truth.append(0)
        for kind, on in ((1, 0.35 + i), (2, 0.7 + i)):
            pitch = 60 + (i * 5 + kind) % 8
            x = _voice(pitch, 0.3, True, rng) * 0.5 if kind == 1 else _buzzy(pitch, 0.3, rng)
            audio[int(on * SR):int(on * SR) + x.shape[0]] += x
            notes.append(Note(on, on + 0.3, pitch, 90))
            truth.append(kind)
    feats, _ = separate._family_log_proba(audio, SR, notes)
    assert feats.shape == (len(notes), len(separate.FEATURE_NAMES) + len(separate.SPECTRUM_FEATURES))
    flat = feats[:, len(separate.FEATURE_NAMES) + separate.SPECTRUM_FEATURES.index("flatness")]
    truth = np.array(truth)
    assert flat[truth == 2].mean() > flat[truth == 1].mean()  # noise between the harmonics
    a = separate.assign_tracks(audio, SR, notes)
    assert a.n_tracks >= 3
    clean, buzzy = a.labels[truth == 1], a.labels[truth == 2]
    top = np.bincount(clean).argmax()
    assert np.mean(clean == top) >= 0.8 and np.mean(buzzy == top) <= 0.3


def test_the_mixtures_are_fitted_on_one_openmp_thread_with_the_same_tracks(monkeypatch):
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_info

    import contextlib

    audio, notes, _ = _duet()
    with monkeypatch.context() as m:  # the threads as scikit-learn chooses them
        m.setattr(separate, "_one_openmp_thread", contextlib.nullcontext)
        plain = separate.assign_tracks(audio, SR, notes)
    seen: list = []
    real = GaussianMixture.fit

    def fit(self, x, *a, **k):
        seen.append({p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp"})
        return real(self, x, *a, **k)

    monkeypatch.setattr(GaussianMixture, "fit", fit)
    limited = separate.assign_tracks(audio, SR, notes)
    assert seen and all(s <= {1} for s in seen)
    assert np.array_equal(limited.labels, plain.labels) and limited.bic == plain.bic
