"""Singing from its own voice: the excerpt's formants shape a line that follows the score."""

from __future__ import annotations

import numpy as np

from semcodec.events import BendPoint, Note, Track
from semcodec.synth import voice

SR = 24000


def _sing(f0: np.ndarray, formant_hz: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    """A synthetic singer: harmonics of the per-sample ``f0`` under one resonance at
    ``formant_hz`` (bandwidth ~250 Hz) plus a little breath noise."""
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = np.zeros(f0.shape[0])
    for k in range(1, 60):
        fk = k * f0
        amp = 1.0 / (1.0 + ((fk - formant_hz) / 250.0) ** 2) + 0.02 / k
        y += np.where(fk < sr / 2 - 500, amp, 0.0) * np.sin(k * phase)
    y += 0.002 * np.random.default_rng(seed).standard_normal(y.shape[0])
    return (0.1 * y / np.abs(y).max()).astype(np.float32)


def _excerpt(formant_hz: float):
    """A 2-s excerpt: three notes (A3, C4, D4) with vibrato, and its score notes."""
    notes, f0 = [], np.zeros(2 * SR)
    for k, p in enumerate((57, 60, 62)):
        on, off = 0.05 + 0.65 * k, 0.05 + 0.65 * k + 0.6
        notes.append(Note(on, off, p, 100))
        a, b = int(on * SR), int(off * SR)
        t = np.arange(b - a) / SR
        f0[a:b] = 440 * 2 ** ((p - 69 + 0.2 * np.sin(2 * np.pi * 5.5 * t)) / 12)
    f0[f0 == 0] = 1.0  # silence between notes: a 1-Hz "pitch" whose harmonics are cut below
    y = _sing(f0, formant_hz)
    y[f0 <= 1.0] = 0.0
    return y, notes


def _peak_hz(y: np.ndarray, sr: int, lo: float = 400.0, hi: float = 4000.0) -> float:
    """Frequency of the strongest partial of the averaged spectrum within lo..hi Hz."""
    n = 4096
    frames = [np.abs(np.fft.rfft(y[s:s + n] * np.hanning(n)))
              for s in range(0, y.shape[0] - n, n // 2)]
    spec = np.mean(frames, axis=0)
    f = np.fft.rfftfreq(n, 1 / sr)
    sel = (f >= lo) & (f <= hi)
    # smooth over ~300 Hz so the envelope's peak, not one harmonic, is found
    w = int(300 / (sr / n))
    env = np.convolve(spec, np.ones(w) / w, mode="same")
    return float(f[sel][np.argmax(env[sel])])


def test_the_sung_line_has_the_singers_formant():
    line = Track("vocals", notes=(Note(0.1, 1.4, 55, 100), Note(1.5, 2.9, 64, 100)))
    peaks = {}
    for formant in (900.0, 2200.0):
        x, notes = _excerpt(formant)
        model = voice.analyze(x, SR, notes, 0.0)
        assert model is not None
        y = voice.render(model, line, SR, 3 * SR)
        assert y.dtype == np.float32 and y.shape == (3 * SR,) and np.isfinite(y).all()
        peaks[formant] = _peak_hz(y, SR)
    assert abs(peaks[900.0] - 900.0) < 250.0
    assert abs(peaks[2200.0] - 2200.0) < 400.0


def test_bends_are_followed():
    x, notes = _excerpt(1200.0)
    model = voice.analyze(x, SR, notes, 0.0)
    # a glide of +2 semitones after 0.5 s
    note = Note(0.0, 1.0, 57, 100, bends=(BendPoint(0.0, 0.0), BendPoint(0.5, 2.0)))
    y = voice.render(model, Track("v", notes=(note,)), SR, SR)
    n = 8192

    def f0_of(seg):
        spec = np.abs(np.fft.rfft(seg[:n] * np.hanning(n)))
        f = np.fft.rfftfreq(n, 1 / SR)
        sel = (f > 150) & (f < 300)  # the fundamental of A3 (220 Hz) and B3 (247 Hz)
        return f[sel][np.argmax(spec[sel])]

    assert abs(f0_of(y[int(0.1 * SR):]) - 220.0) < 4.0
    assert abs(f0_of(y[int(0.6 * SR):]) - 246.9) < 4.0


def test_breathiness_is_measured():
    x, notes = _excerpt(1200.0)
    clean = voice.analyze(x, SR, notes, 0.0)
    breathy = voice.analyze(x + 0.01 * np.random.default_rng(3).standard_normal(x.shape[0])
                            .astype(np.float32) * (x != 0), SR, notes, 0.0)
    band = (clean.freqs > 1000) & (clean.freqs < 5000)
    assert breathy.aper_db[band].mean() > clean.aper_db[band].mean() + 6.0


def test_no_voiced_frame_gives_none():
    assert voice.analyze(np.zeros(SR, np.float32), SR, [Note(0.1, 0.9, 60, 90)], 0.0) is None
    assert voice.analyze(np.ones(SR, np.float32) * 0.1, SR, [], 0.0) is None


def test_stored_parameters_play_the_same_voice():
    x, notes = _excerpt(900.0)
    model = voice.analyze(x, SR, notes, 0.0)
    params = model.to_params()
    assert len(params) == 2 * voice.N_STORED and all(float(v).is_integer() for v in params)
    assert max(params[:voice.N_STORED]) == 0.0  # the envelope's peak at 0 dB
    back = voice.VoiceModel.from_params(params)
    line = Track("vocals", notes=(Note(0.1, 1.4, 55, 100),))
    y = voice.render(back, line, SR, int(1.5 * SR))
    assert abs(_peak_hz(y, SR) - 900.0) < 250.0
    # a track render with the stored voice needs no excerpt
    from dataclasses import replace

    from semcodec.events import TrackRender
    from semcodec.synth import sampler

    sung = replace(line, render=TrackRender(use="voice", voice=params))
    z = sampler.render_track(sung, [], SR, int(1.5 * SR), lambda t: np.zeros(int(1.5 * SR)))
    assert np.sqrt(np.mean(z ** 2)) > 0 and abs(_peak_hz(z, SR) - 900.0) < 250.0


def test_the_encoder_sings_a_sung_line_from_its_own_voice():
    import pytest

    pytest.importorskip("librosa")
    from semcodec import sampleuse
    from semcodec.events import Score

    x, notes = _excerpt(900.0)  # the singer: one resonance at 900 Hz
    score = Score(tracks=(Track("vocals").with_notes(notes),))

    def engine(i, track):  # an engine whose "voice" has its resonance at 2500 Hz
        f0 = np.ones(x.shape[0])
        for n in track.notes:
            f0[int(n.onset * SR):int(n.offset * SR)] = 440 * 2 ** ((n.pitch - 69) / 12)
        y = _sing(f0, 2500.0)
        y[f0 <= 1.0] = 0.0
        return y

    (choice,) = sampleuse.choose(x, SR, score, [0], (), engine, -20.0)
    assert choice.render is not None and choice.render.use == "voice" and choice.render.voice
    # chosen because it measured closer than the engine (and the eq); stored as ~50 numbers,
    # not as an excerpt
    assert not choice.uses_sample
