"""Pure signal functions shared by the engines and the encoder.

Every function takes and returns numpy arrays; audio is float32, mono, shape ``(n_samples,)``
unless stated, sample rates are in Hz and loudness in LUFS (ITU-R BS.1770 via pyloudnorm).
Nothing here keeps state or touches files.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from semcodec.constants import SILENCE_LUFS


def downmix(audio: np.ndarray) -> np.ndarray:
    """Average the channels of ``audio`` (shape ``(n,)`` or ``(n, channels)``) to mono float32."""
    audio = np.asarray(audio)
    if audio.ndim == 1:
        return audio.astype(np.float32, copy=False)
    if audio.ndim != 2:
        raise ValueError(f"audio must be 1-D or 2-D, got shape {audio.shape}")
    if audio.shape[1] == 1:
        return audio[:, 0].astype(np.float32, copy=False)
    out = np.zeros(audio.shape[0], dtype=np.float32)
    for ch in range(audio.shape[1]):  # channel by channel: no float64 copy of the whole file
        out += audio[:, ch].astype(np.float32, copy=False)
    out /= audio.shape[1]
    return out


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample mono ``audio`` from ``sr_in`` to ``sr_out`` Hz (polyphase, float32 out)."""
    if sr_in == sr_out or audio.size == 0:
        return audio.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = math.gcd(int(sr_in), int(sr_out))
    return resample_poly(audio, sr_out // g, sr_in // g).astype(np.float32)


def integrated_loudness(audio: np.ndarray, sr: int) -> float | None:
    """Integrated loudness of mono ``audio`` in LUFS, or ``None`` for silence/too-short input."""
    import pyloudnorm

    if audio.size < int(0.4 * sr) + 1:
        audio = np.pad(audio, (0, int(0.4 * sr) + 1 - audio.size))
    if not np.any(audio):
        return None
    meter = pyloudnorm.Meter(sr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(meter.integrated_loudness(audio.astype(np.float64, copy=False)))
    if not math.isfinite(value) or value < SILENCE_LUFS:
        return None
    return value


def soft_clip(audio: np.ndarray, threshold: float = 0.9) -> np.ndarray:
    """Leave samples below ``threshold`` untouched and bend the rest smoothly under 1.0."""
    a = np.abs(audio)
    over = a > threshold
    if not np.any(over):
        return audio
    out = audio.copy()
    room = 1.0 - threshold
    out[over] = np.sign(audio[over]) * (threshold + room * np.tanh((a[over] - threshold) / room))
    return out


def match_loudness(audio: np.ndarray, sr: int, target_lufs: float | None) -> np.ndarray:
    """Scale mono ``audio`` to ``target_lufs`` (``None`` = the original was silent → silence).

    Peaks that the gain pushes over 0.9 are soft-clipped so the result stays within ±1.
    """
    if target_lufs is None:
        return np.zeros_like(audio)
    current = integrated_loudness(audio, sr)
    if current is None:
        return audio
    gain = 10.0 ** ((target_lufs - current) / 20.0)
    return soft_clip((audio * gain).astype(np.float32))


def fit_length(audio: np.ndarray, n_samples: int) -> np.ndarray:
    """Cut or zero-pad ``audio`` to exactly ``n_samples`` samples."""
    if audio.shape[0] >= n_samples:
        return audio[:n_samples]
    return np.pad(audio, (0, n_samples - audio.shape[0]))


def fade_edges(audio: np.ndarray, sr: int, seconds: float = 0.005) -> np.ndarray:
    """Apply a short raised-cosine fade-in and fade-out (no clicks at the ends)."""
    n = min(int(seconds * sr), audio.shape[0] // 2)
    if n <= 0:
        return audio
    ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n))).astype(audio.dtype)
    out = audio.copy()
    out[:n] *= ramp
    out[-n:] *= ramp[::-1]
    return out
