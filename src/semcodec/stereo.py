"""Stereo positions of tracks, measured from a two-channel recording.

A track's *pan* is a number in -1 (left) .. 0 (centre) .. 1 (right).  The decoder plays a
track ``x`` (rendered to match the mono downmix) as ``left = (1 - pan) x``, ``right = (1 +
pan) x`` (:func:`semcodec.synth.dsp.pan_stereo`): the linear law that inverts the downmix
``(left + right) / 2`` of an amplitude-panned source exactly, so the decoded downmix is the
same whatever the pans.

The measurement compares the magnitudes of the left and right channels over the
time-frequency cells a track owns: the first ``NOTE_MAX_S`` of each pitched note at its first
``N_HARMONICS`` harmonics, and the ``DRUM_WINDOW_S`` after each drum hit across the band.  A
cell claimed by two tracks is left out, so a chord shared by two instruments does not pull
them to the middle.  ``pan = (A_R - A_L) / (A_R + A_L)`` with ``A`` the summed magnitudes is
exact for a source panned by gains ``g_L = 1 - pan``, ``g_R = 1 + pan``.

Audio is mono float32 ``(n,)`` at ``sr`` Hz; times are seconds, pitches MIDI numbers.
"""

from __future__ import annotations

import math

import numpy as np

from semcodec.constants import ANALYSIS_SAMPLE_RATE
from semcodec.events import Track
from semcodec.synth import dsp

#: Rate (Hz), FFT size and hop (samples) of the measurement: 93 ms windows, 46 ms hop.
ANALYSIS_SR = ANALYSIS_SAMPLE_RATE
N_FFT = 2048
HOP = 1024
#: Harmonics of a pitched note that are looked at, up to MAX_HZ.
N_HARMONICS = 8
MAX_HZ = 8000.0
#: Bins either side of a harmonic's bin.
HARMONIC_HALF_WIDTH = 1
#: Only the first this-many seconds of a long note (its attack and body).
NOTE_MAX_S = 1.0
#: Seconds after a drum hit, and its band (Hz).
DRUM_WINDOW_S = 0.08
DRUM_BAND_HZ = (150.0, 10000.0)
#: A pan closer to the centre than this is stored as centre (0).
CENTRE = 0.03
#: Frames per block: memory stays bounded on long inputs.
BLOCK_FRAMES = 2048


def _cells(track: Track, f0: int, f1: int, n_bins: int) -> list[tuple[int, int, int, int]]:
    """(frame_start, frame_end, bin_start, bin_end) rectangles of ``track`` in frames [f0, f1)."""
    fps = ANALYSIS_SR / HOP
    hz_per_bin = ANALYSIS_SR / N_FFT
    out = []
    for n in track.notes:
        a = int(math.floor(n.onset * fps))
        if track.is_drum:
            b = int(math.ceil((n.onset + DRUM_WINDOW_S) * fps)) + 1
        else:
            b = int(math.ceil(min(n.offset, n.onset + NOTE_MAX_S) * fps)) + 1
        a, b = max(a, f0), min(b, f1)
        if a >= b:
            continue
        if track.is_drum:
            lo = int(DRUM_BAND_HZ[0] / hz_per_bin)
            hi = min(n_bins, int(DRUM_BAND_HZ[1] / hz_per_bin) + 1)
            out.append((a - f0, b - f0, lo, hi))
            continue
        hz = 440.0 * 2.0 ** ((n.pitch - 69) / 12.0)
        for k in range(1, N_HARMONICS + 1):
            if k * hz > min(MAX_HZ, ANALYSIS_SR / 2):
                break
            c = int(round(k * hz / hz_per_bin))
            lo, hi = max(0, c - HARMONIC_HALF_WIDTH), min(n_bins, c + HARMONIC_HALF_WIDTH + 1)
            if lo < hi:
                out.append((a - f0, b - f0, lo, hi))
    return out


def measure_pans(mid: np.ndarray, side: np.ndarray, sr: int,
                 tracks: list[Track] | tuple[Track, ...]) -> list[float]:
    """The pan (-1..1, rounded to 0.01; 0 within ``CENTRE``) of each of ``tracks``.

    ``mid`` = ``(left + right) / 2`` and ``side`` = ``(left - right) / 2``, float32 ``(n,)`` at
    ``sr`` Hz.  A track with no cell of its own (no notes, or all shared) is centred.
    """
    mid = np.asarray(mid, np.float32)
    side = np.asarray(side, np.float32)
    if mid.shape != side.shape or mid.ndim != 1:
        raise ValueError(f"mid and side must be (n,) of one length, got {mid.shape}, {side.shape}")
    if not tracks:
        return []
    # both channels at the analysis rate, zero-padded (frame f is centred on f * HOP samples);
    # built from the resampled mid and side so that no full-rate left/right copy is made
    m = dsp.resample(mid, int(sr), ANALYSIS_SR)
    s = dsp.resample(side, int(sr), ANALYSIS_SR)
    pad = N_FFT // 2
    left = np.zeros(m.shape[0] + 2 * pad + N_FFT, np.float32)
    right = np.zeros_like(left)
    np.add(m, s, out=left[pad:pad + m.shape[0]])
    np.subtract(m, s, out=right[pad:pad + m.shape[0]])
    del m, s
    n_frames = 1 + (left.shape[0] - N_FFT) // HOP
    n_bins = N_FFT // 2 + 1
    win = np.hanning(N_FFT + 1)[:-1].astype(np.float32)
    from numpy.lib.stride_tricks import sliding_window_view  # noqa: PLC0415

    fl = sliding_window_view(left, N_FFT)[::HOP]
    fr = sliding_window_view(right, N_FFT)[::HOP]
    acc = np.zeros((len(tracks), 2))
    for f0 in range(0, n_frames, BLOCK_FRAMES):
        f1 = min(n_frames, f0 + BLOCK_FRAMES)
        owner = np.full((f1 - f0, n_bins), -1, np.int16)
        for t, track in enumerate(tracks):
            for a, b, lo, hi in _cells(track, f0, f1, n_bins):
                cell = owner[a:b, lo:hi]
                cell[(cell != -1) & (cell != t)] = -2  # claimed by another track: nobody's
                cell[cell == -1] = t
        if not np.any(owner >= 0):
            continue
        mag_l = np.abs(np.fft.rfft(fl[f0:f1] * win, axis=1))
        mag_r = np.abs(np.fft.rfft(fr[f0:f1] * win, axis=1))
        for t in range(len(tracks)):
            mine = owner == t
            if np.any(mine):
                acc[t, 0] += float(mag_l[mine].sum())
                acc[t, 1] += float(mag_r[mine].sum())
    pans = []
    for a_l, a_r in acc:
        total = a_l + a_r
        pan = 0.0 if total <= 1e-9 else float((a_r - a_l) / total)
        pan = round(max(-1.0, min(1.0, pan)), 2)
        pans.append(0.0 if abs(pan) < CENTRE else float(pan))
    return pans
