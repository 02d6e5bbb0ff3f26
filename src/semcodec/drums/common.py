"""What the drum modules share: the drum classes with their General MIDI keys, the input
check and a running median (numpy only)."""

from __future__ import annotations

from typing import Literal

import numpy as np

#: The drum classes the detector reports, in order, with their General MIDI drum keys.
GM_DRUM_CLASSES: dict[str, int] = {
    "kick": 36,
    "snare": 38,
    "closed_hat": 42,
    "open_hat": 46,
    "low_tom": 45,
    "mid_tom": 47,
    "high_tom": 50,
    "crash": 49,
    "ride": 51,
}
KICK, SNARE, CLOSED_HAT, OPEN_HAT = 36, 38, 42, 46
LOW_TOM, MID_TOM, HIGH_TOM, CRASH, RIDE = 45, 47, 50, 49, 51


def _median_filter(x: np.ndarray, k: int, axis: int,
                   mode: Literal["edge", "symmetric"] = "edge") -> np.ndarray:
    """Running median of length ``k`` (odd) along ``axis`` of 2-D ``x``.

    ``mode`` is numpy's padding at the ends: "edge" repeats the end values, "symmetric" mirrors
    them (scipy.ndimage's and so librosa's "reflect").
    """
    from numpy.lib.stride_tricks import sliding_window_view  # noqa: PLC0415

    h = k // 2
    xt = x if axis == 1 else x.T
    xp = np.pad(xt, ((0, 0), (h, h)), mode=mode)
    out = np.empty(xt.shape, dtype=x.dtype)
    step = max(1, (1 << 21) // max(1, xt.shape[1] * k))  # rows per block: ~8 MB of windows
    for s in range(0, xt.shape[0], step):
        w = sliding_window_view(xp[s:s + step], k, axis=1)
        out[s:s + step] = np.partition(w, h, axis=-1)[..., h]
    return out if axis == 1 else np.ascontiguousarray(out.T)



def _check(audio: np.ndarray, sr: int) -> np.ndarray:
    a = np.asarray(audio)
    if a.ndim != 1:
        raise ValueError(f"drum detection expects mono audio (n,), got shape {a.shape}")
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ValueError(f"sample rate must be a positive integer, got {sr!r}")
    return a.astype(np.float32, copy=False)
