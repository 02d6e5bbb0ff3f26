"""Percussion suppression: a recording without its strongly percussive part (the drum hits),
on which the encoder transcribes and fits the pitched tracks."""

from __future__ import annotations

import math

import numpy as np

from semcodec.drums.common import _check, _median_filter
from semcodec.synth import dsp

#: Window of the suppression's STFT (s; rounded to a power of two of samples, 2048 at 44.1 and
#: 48 kHz) and its hop (a quarter window).
SUPPRESS_WINDOW_S = 0.046
#: Median lengths (frames across time, bins across frequency) of the suppression's HPSS.
SUPPRESS_KERNEL = 31
#: Only what is this much (amplitude ratio) more percussive than harmonic is taken out: a wide
#: margin removes drum hits but leaves the attacks of pianos and guitars.  Measured with
#: basic-pitch on the bench's band clip (chorale + rock beat): note F1 0.725 -> 0.797 (margin
#: 1, a plain HPSS, gave 0.785 there but cost 0.08 on a drum-free Slakh mix).
SUPPRESS_MARGIN = 2.0
#: Frames per block: memory stays bounded on long inputs.
SUPPRESS_BLOCK = 4096


def suppress_percussion(audio: np.ndarray, sr: int) -> np.ndarray:
    """``audio`` without its strongly percussive part: the pitched instruments of a band.

    ``audio`` is mono float32 ``(n,)`` at ``sr`` Hz; returns float32 ``(n,)`` at ``sr`` Hz.
    HPSS by median filtering (as ``librosa.decompose.hpss`` with ``margin``); the percussive
    part, with a margin of ``SUPPRESS_MARGIN``, is removed with a soft mask and the rest is
    resynthesised by weighted overlap-add.  The encoder transcribes and fits the pitched tracks
    on this, so that drum hits neither become short spurious notes nor colour the timbres.
    """
    from numpy.lib.stride_tricks import sliding_window_view  # noqa: PLC0415

    x = _check(audio, sr)
    n = x.shape[0]
    if n == 0:
        return x.copy()
    nfft = 1 << max(6, int(round(math.log2(SUPPRESS_WINDOW_S * sr))))
    hop = nfft // 4
    pad = nfft // 2
    xp = np.pad(x, (pad, pad + nfft))
    frames_all = sliding_window_view(xp, nfft)[::hop]
    n_frames = min(frames_all.shape[0], (n + 2 * pad - nfft) // hop + 2)
    win = np.hanning(nfft + 1)[:-1].astype(np.float32)
    out = np.zeros(xp.shape[0], np.float32)
    ctx = SUPPRESS_KERNEL // 2
    m2 = SUPPRESS_MARGIN ** 2
    for f0 in range(0, n_frames, SUPPRESS_BLOCK):
        f1 = min(n_frames, f0 + SUPPRESS_BLOCK)
        g0, g1 = max(0, f0 - ctx), min(n_frames, f1 + ctx)
        spec = dsp.rfft_rows(frames_all[g0:g1] * win).T.astype(np.complex64, copy=False)
        mag = np.abs(spec)
        harm = _median_filter(mag, SUPPRESS_KERNEL, axis=1, mode="symmetric")
        perc = _median_filter(mag, SUPPRESS_KERNEL, axis=0, mode="symmetric")
        hh, pp = m2 * harm * harm, perc * perc
        den = hh + pp
        keep = np.where(den > 0, hh / np.where(den > 0, den, 1.0), 1.0)
        sl = slice(f0 - g0, f1 - g0)
        y = np.fft.irfft((spec[:, sl] * keep[:, sl]).T, n=nfft, axis=1).astype(np.float32) * win
        for i, f in enumerate(range(f0, f1)):
            out[f * hop:f * hop + nfft] += y[i]
    # divide by the overlap-added squared window, computed per block (no full-length array):
    # sample p lies in frames p // hop - k, k = 0..3, where those exist
    w2 = win * win
    step = 1 << 20
    for s0 in range(pad, pad + n, step):
        p = np.arange(s0, min(pad + n, s0 + step))
        norm = np.zeros(p.shape[0], np.float32)
        for k in range(nfft // hop):
            frame = p // hop - k
            ok = (frame >= 0) & (frame < n_frames)
            norm += np.where(ok, w2[np.clip(p - frame * hop, 0, nfft - 1)], 0.0).astype(np.float32)
        out[p[0]:p[-1] + 1] /= np.maximum(norm, 1e-3)
    return out[pad:pad + n]

