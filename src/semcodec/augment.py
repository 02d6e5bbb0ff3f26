"""Eval-style degradation of training audio, shared by the training recipes of the neural
synthesizer (:mod:`semcodec.synth.train`) and of the instrument classifier
(:mod:`semcodec.instrument_train`).  Training only (imports scipy)."""

from __future__ import annotations

import numpy as np


def eq_band_limit_room(rng: np.random.Generator, x: np.ndarray, sr: int, *,
                       max_rt60_s: float, max_wet: float) -> np.ndarray:
    """Mono ``x`` (float, ``sr`` Hz) through a random EQ (tilt of -3..3 dB/octave around
    1 kHz and one peak/notch of -8..8 dB), in 30 % of the cases a band limit (4-9 kHz), and in
    70 % a reverb tail (RT60 0.2..``max_rt60_s`` s, 5 %..``max_wet`` wet): float64 ``(n,)``.
    The random numbers are drawn in this order whatever the caller (recipes stay
    reproducible)."""
    from scipy.signal import fftconvolve  # noqa: PLC0415

    n = x.shape[0]
    spec = np.fft.rfft(x.astype(np.float64))
    f = np.maximum(np.fft.rfftfreq(n, 1.0 / sr), 20.0)
    gain_db = rng.uniform(-3.0, 3.0) * np.log2(f / 1000.0)
    fc = np.exp(rng.uniform(np.log(150.0), np.log(6000.0)))
    peak, width = rng.uniform(-8.0, 8.0), rng.uniform(0.3, 1.2)
    gain_db += peak * np.exp(-0.5 * (np.log2(f / fc) / width) ** 2)
    if rng.random() < 0.3:  # a band-limited recording
        gain_db -= 24.0 * np.clip(np.log2(f / rng.uniform(4000.0, 9000.0)), 0.0, None)
    y = np.fft.irfft(spec * 10.0 ** (np.clip(gain_db, -30.0, 15.0) / 20.0), n)
    if rng.random() < 0.7:
        rt60 = rng.uniform(0.2, max_rt60_s)
        t = np.arange(int(rt60 * sr)) / sr
        ir = rng.standard_normal(t.shape[0]) * np.exp(-6.9 * t / rt60)
        ramp = int(0.005 * sr)
        ir[:ramp] *= np.linspace(0.0, 1.0, ramp)
        ir /= np.sqrt((ir ** 2).sum()) + 1e-12
        wet = rng.uniform(0.05, max_wet)
        y = (1.0 - wet) * y + wet * fftconvolve(y, ir)[:n]
    return y
