"""A sung line from its own voice: the stored excerpt's spectral envelope over a
harmonic-plus-noise source that follows the score's pitch and bends.

Analysis (:func:`analyze`): in the excerpt's voiced frames (where the score has a note; f0 from
the note's pitch and bends, refined within ±50 cents on the spectrum), the magnitudes of the
harmonics sample the voice's spectral envelope at ``k · f0``; the spread of f0 over the excerpt
fills it in.  Per band of a log-frequency grid, the median of those samples (each frame
normalised to its own level) is the harmonic envelope (formants, tilt), and the level between
the harmonics relative to it is the aperiodicity (breathiness).

Synthesis (:func:`render`): each note is a sum of harmonics whose f0 follows the note's pitch and
its smoothed bends (vibrato, glides), with amplitudes read off the envelope at their current
frequency, plus noise shaped by envelope × aperiodicity; an attack/release envelope per note
and a level of ``(velocity / 127) ** 2``.

Pure numpy (no torch/librosa/scipy); mono float32, times in seconds, MIDI pitches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from semcodec.events import Note, Track
from semcodec.synth.sampler import (ANALYSIS_SR, HOP, N_FFT, midi_hz, pitch_contour,
                                    resample_linear, shape_noise, stft_mag)

#: Envelope grid: N_GRID log-spaced frequencies from GRID_LO_HZ to GRID_HI_HZ.
N_GRID = 48
GRID_LO_HZ = 70.0
GRID_HI_HZ = 10000.0
#: Points of the stored model (``VoiceModel.to_params``): envelope and aperiodicity each.
N_STORED = 24
#: Harmonics analysed / synthesized at most.
MAX_HARM = 80
#: Attack and release of a sung note (s).
ATTACK_S = 0.04
RELEASE_S = 0.08


@dataclass(frozen=True)
class VoiceModel:
    """A singer's timbre: envelope (dB, relative) and aperiodicity (dB re. the envelope) on
    the log-spaced grid ``freqs`` (Hz), and the highest frequency the excerpt has (Hz)."""

    freqs: np.ndarray
    env_db: np.ndarray
    aper_db: np.ndarray
    top_hz: float

    def envelope(self, f: np.ndarray) -> np.ndarray:
        """Linear harmonic amplitude at frequencies ``f`` (Hz); 0 above ``top_hz``."""
        lf = np.log(np.maximum(f, 1.0))
        db = np.interp(lf, np.log(self.freqs), self.env_db)
        return np.where(f < self.top_hz, 10.0 ** (db / 20.0), 0.0)

    def to_params(self, n: int = N_STORED) -> tuple[float, ...]:
        """The model as ``2 n`` numbers for the file (a track's ``render`` "voice" key): the
        envelope then the aperiodicity (dB, whole numbers) at ``n`` log-spaced frequencies from
        GRID_LO_HZ to GRID_HI_HZ, the envelope's maximum at 0 dB (-120 dB above ``top_hz``)."""
        grid = np.geomspace(GRID_LO_HZ, GRID_HI_HZ, n)
        lg = np.log(grid)
        env = np.interp(lg, np.log(self.freqs), self.env_db)
        env = np.where(grid <= self.top_hz * 1.001, env - env.max(), -120.0)
        aper = np.interp(lg, np.log(self.freqs), self.aper_db)
        q = np.round(np.concatenate([np.clip(env, -120.0, 0.0), np.clip(aper, -60.0, 60.0)]))
        return tuple(float(v) + 0.0 for v in q)

    @classmethod
    def from_params(cls, params: "tuple[float, ...] | list[float]",
                    top_hz: float = GRID_HI_HZ) -> "VoiceModel":
        """The model stored by :meth:`to_params`."""
        p = np.asarray(params, np.float64)
        n = p.shape[0] // 2
        return cls(freqs=np.geomspace(GRID_LO_HZ, top_hz, n), env_db=p[:n], aper_db=p[n:2 * n],
                   top_hz=float(top_hz))

    def noise(self, f: np.ndarray) -> np.ndarray:
        """Linear noise amplitude (per harmonic-spacing, see :func:`render`) at ``f`` (Hz)."""
        lf = np.log(np.maximum(f, 1.0))
        db = np.interp(lf, np.log(self.freqs), self.env_db + self.aper_db)
        return np.where(f < self.top_hz, 10.0 ** (db / 20.0), 0.0)


def _frame_f0(notes: list[Note], start: float, n_frames: int) -> np.ndarray:
    """Score f0 (Hz) per analysis frame of an excerpt beginning at ``start`` (0 = unvoiced);
    the first and last 40 ms of each note are left out (onsets, releases)."""
    f0 = np.zeros(n_frames)
    t = start + np.arange(n_frames) * HOP / ANALYSIS_SR
    for n in notes:
        sel = (t >= n.onset + 0.04) & (t <= n.offset - 0.04)
        if sel.any():
            f0[sel] = midi_hz(pitch_contour(n, t[sel] - n.onset))
    return f0


def _frame_harmonics(spec: np.ndarray, f0_guess: float, cents: np.ndarray, bin_hz: float,
                     top_hz: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """One voiced frame's harmonics (magnitude spectrum ``spec``, the score's f0 ``f0_guess``
    Hz refined within ``cents``): their frequencies (Hz), levels (dB re. the frame's harmonic
    energy) and aperiodicity (dB); None with fewer than two harmonics under ``top_hz``."""
    # refine f0: the candidate whose first harmonics sit on the largest magnitudes
    best, best_v = f0_guess, -np.inf
    for c in cents:
        f = f0_guess * 2 ** (c / 1200)
        k = np.arange(1, 7) * f / bin_hz
        k = k[k < spec.shape[0] - 1]
        v = float(np.log(spec[np.round(k).astype(int)] + 1e-9).sum())
        if v > best_v:
            best, best_v = f, v
    f0 = best
    kk = np.arange(1, MAX_HARM + 1)
    fk = kk * f0
    fk = fk[fk < top_hz]
    if fk.shape[0] < 2:
        return None
    b = np.round(fk / bin_hz).astype(int)
    w = max(1, int(0.15 * f0 / bin_hz))
    lo, hi = np.maximum(b - w, 0), np.minimum(b + w + 1, spec.shape[0])
    peaks = np.array([spec[a:e].max() for a, e in zip(lo, hi)])
    # between two harmonics: the RMS magnitude around the midpoint (noise floor), as an
    # amplitude ratio per harmonic spacing (white noise of std s windowed by Hann(N) has
    # RMS |X| = s·sqrt(3N/8); a sinusoid of amplitude A peaks at A·N/4)
    mid = (fk + 0.5 * f0) / bin_hz
    mw = max(1, int(0.25 * f0 / bin_hz))
    mi = np.round(mid).astype(int)
    troughs = np.array([np.sqrt(np.mean(spec[max(0, m - mw):m + mw + 1] ** 2))
                        if m + mw < spec.shape[0] else np.nan for m in mi])
    ratio = troughs / (peaks + 1e-12) / math.sqrt(1.5 * ANALYSIS_SR / (N_FFT * f0))
    norm = math.sqrt(float((peaks ** 2).sum())) + 1e-12
    ok = np.isfinite(ratio)
    return fk[ok], 20 * np.log10(peaks[ok] / norm + 1e-9), 20 * np.log10(ratio[ok] + 1e-9)


def analyze(excerpt: np.ndarray, sr: int, notes: list[Note], start: float) -> VoiceModel | None:
    """The :class:`VoiceModel` of a sung excerpt (mono at ``sr`` Hz, beginning at ``start``
    s of the original) with the score's ``notes`` over it; None when it has no usable voiced
    frame."""
    x = resample_linear(np.asarray(excerpt, np.float64), sr, ANALYSIS_SR)
    mag = stft_mag(x)
    n_fr = mag.shape[0]
    f0s = _frame_f0(notes, start, n_fr)
    top_hz = min(GRID_HI_HZ, sr / 2.0 * 0.95)
    bin_hz = ANALYSIS_SR / N_FFT
    level = (mag ** 2).sum(axis=1)
    loud = level > level.max() * 10 ** -4.0 if n_fr else np.zeros(0, bool)
    fs, hs, ns = [], [], []
    cents = np.linspace(-50, 50, 11)
    for j in np.nonzero((f0s > 0) & loud)[0]:
        got = _frame_harmonics(mag[j], f0s[j], cents, bin_hz, top_hz)
        if got is None:
            continue
        fs.append(got[0])
        hs.append(got[1])
        ns.append(got[2])
    if not fs:
        return None
    fa, ha, na = np.concatenate(fs), np.concatenate(hs), np.concatenate(ns)
    grid = np.geomspace(GRID_LO_HZ, top_hz, N_GRID)
    lg = np.log(grid)
    half = (lg[1] - lg[0]) * 1.0
    env = np.full(N_GRID, np.nan)
    aper = np.full(N_GRID, np.nan)
    lf = np.log(fa)
    for g in range(N_GRID):
        sel = np.abs(lf - lg[g]) <= half
        if sel.sum() >= 2:
            env[g] = float(np.median(ha[sel]))
            aper[g] = float(np.median(na[sel]))
    ok = np.isfinite(env)
    if not ok.any():
        return None
    env = np.interp(lg, lg[ok], env[ok])
    aper = np.interp(lg, lg[ok], aper[ok])
    # above the excerpt's bandwidth (a low-rate excerpt is band-limited; the coder's cutoff is
    # where the long-term spectrum falls 55 dB under its peak) the envelope goes on at the
    # level of the octave below, falling 6 dB / octave, as noise: the encoder's EQ then
    # corrects its colour from the original
    lts = 10 * np.log10((mag ** 2).mean(axis=0) + 1e-20)
    fb = np.arange(lts.shape[0]) * bin_hz
    sm = np.convolve(lts, np.ones(9) / 9, mode="same")
    above = np.nonzero((sm > sm.max() - 55.0) & (fb > 500))[0]
    cut = float(fb[above[-1]]) if above.size else top_hz
    if cut < top_hz * 0.9:
        ref_sel = (grid > cut / 2) & (grid <= cut)
        lvl = float(np.median(env[ref_sel])) if ref_sel.any() else float(env.min())
        hi = grid > cut
        env[hi] = lvl - 6.0 * np.log2(grid[hi] / cut)
        aper[hi] = 0.0
    # below the lowest analysed harmonic the envelope falls off (12 dB / octave)
    f_lo = float(fa.min())
    below = grid < f_lo * 0.9
    env[below] -= 12.0 * np.log2(f_lo / grid[below])
    aper = np.clip(aper, -40.0, 6.0)
    return VoiceModel(freqs=grid, env_db=env, aper_db=aper, top_hz=float(top_hz))


def analyze_excerpts(excerpts: list[tuple[np.ndarray, float]], sr: int,
                     track: Track) -> VoiceModel | None:
    """One :class:`VoiceModel` from several excerpts ``[(audio at sr, start s), ...]`` of
    ``track`` (their analyses averaged in dB); None when none has a voiced frame."""
    from semcodec.synth.sampler import notes_in  # noqa: PLC0415

    models = [m for x, st in excerpts
              if (m := analyze(x, sr, notes_in(track, st, x.shape[0] / sr), st)) is not None]
    if not models:
        return None
    if len(models) == 1:
        return models[0]
    return VoiceModel(freqs=models[0].freqs,
                      env_db=np.mean([m.env_db for m in models], axis=0),
                      aper_db=np.mean([m.aper_db for m in models], axis=0),
                      top_hz=max(m.top_hz for m in models))


def _note_env(n: int, sr: float, dur: float) -> np.ndarray:
    """Attack / sustain / release gain of a note of ``dur`` s rendered over ``n`` samples."""
    t = np.arange(n) / sr
    att = np.clip(t / ATTACK_S, 0.0, 1.0)
    rel = np.clip(1.0 - (t - dur) / RELEASE_S, 0.0, 1.0)
    return att * rel


def render(model: VoiceModel, track: Track, sr: int, n_samples: int, *, transpose: int = 0,
           tempo: float = 1.0, seed: int = 0) -> np.ndarray:
    """Mono float32 ``(n_samples,)`` at ``sr`` Hz: ``track``'s notes sung with ``model``.

    Note times are divided by ``tempo``, pitches shifted by ``transpose`` semitones.  The level
    is relative (the caller matches loudness); deterministic for a given ``seed``.
    """
    n_samples = int(n_samples)
    harm = np.zeros(n_samples, np.float64)
    ctrl_hop = 64
    # noise: per STFT frame a target magnitude, filled in by the notes
    n_fft, hop = 1024, 256
    n_fr = n_samples // hop + 2
    noise_mag = np.zeros((n_fr, n_fft // 2 + 1))
    fbins = np.fft.rfftfreq(n_fft, 1.0 / sr)
    nyq = sr / 2.0
    for n in track.notes:
        onset = n.onset / tempo
        dur = max(0.02, n.duration / tempo)
        s = int(round(onset * sr))
        if s >= n_samples or s < 0:
            continue
        length = min(n_samples - s, int((dur + RELEASE_S) * sr) + 1)
        amp = (max(1, n.velocity) / 127.0) ** 2
        # control rate: pitch and harmonic amplitudes every ctrl_hop samples
        tc = np.arange(0, length + ctrl_hop, ctrl_hop) / sr
        f0c = np.asarray(midi_hz(pitch_contour(n, tc * tempo, transpose)), np.float64)
        t = np.arange(length) / sr
        f0 = np.interp(t, tc, f0c)
        phase = 2 * np.pi * np.cumsum(f0) / sr
        env = _note_env(length, sr, dur) * amp
        k_max = int(min(MAX_HARM, (min(model.top_hz, nyq * 0.95)) // max(f0c.min(), 20.0)))
        acc = np.zeros(length)
        for k in range(1, k_max + 1):
            a = model.envelope(k * f0c) * (k * f0c < nyq * 0.95)
            if not a.any():
                continue
            acc += np.interp(t, tc, a) * np.sin(k * phase)
        harm[s:s + length] += acc * env
        # noise frames of this note: envelope × aperiodicity, scaled per harmonic spacing
        fr0, fr1 = s // hop, min(n_fr, (s + length) // hop + 1)
        if fr1 > fr0:
            tf = (np.arange(fr0, fr1) * hop - s) / sr
            f0f = np.interp(tf, tc, f0c)
            envf = _note_env(fr1 - fr0, 1.0 / (hop / sr), dur)
            # noise of std s has power s² · f0 / (sr / 2) in one harmonic spacing; it must
            # hold aper² · A² / 2, so s = aper · A · sqrt(sr / (4 f0))
            scale = 1.41 * np.sqrt(sr / (4.0 * np.maximum(f0f, 20.0)))  # 1.41: measured
            nm = model.noise(fbins)[None, :] * scale[:, None]
            noise_mag[fr0:fr1] += (nm * (envf * amp)[:, None]) ** 2
    out = harm
    if noise_mag.any():
        out = harm + shape_noise(np.sqrt(noise_mag), n_fft, hop, n_samples, seed)
    return np.nan_to_num(out).astype(np.float32)
