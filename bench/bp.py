"""basic-pitch (Spotify, ICASSP 2022) run on onnxruntime through ``basic_pitch.inference.predict``.

The ONNX model inside the installed ``basic_pitch`` package is used; TensorFlow is never
needed.  ``predict`` is called with its default thresholds.  The session is limited to
``BENCH_ORT_THREADS`` intra-op threads (default 1) because the benchmark runs two workers on
two cores.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path

_MODEL = None


def onnx_model_path() -> Path:
    """Path of ``nmp.onnx`` inside the installed basic_pitch package."""
    import importlib.util

    spec = importlib.util.find_spec("basic_pitch")
    if spec is None or not spec.origin:
        raise RuntimeError("basic_pitch is not installed")
    p = Path(spec.origin).parent / "saved_models" / "icassp_2022" / "nmp.onnx"
    if not p.exists():
        raise RuntimeError(f"basic-pitch ONNX model not found at {p}")
    return p


def _quiet_import():
    # basic_pitch logs warnings about missing TF/CoreML/TFLite backends at import time
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        from basic_pitch import inference  # noqa: F401
    finally:
        root.setLevel(level)
    return inference


def model():
    """A basic_pitch ``Model`` on onnxruntime (cached per process)."""
    global _MODEL
    if _MODEL is None:
        inference = _quiet_import()
        import onnxruntime as ort

        path = onnx_model_path()
        m = inference.Model(str(path))
        threads = int(os.environ.get("BENCH_ORT_THREADS", "1"))
        if threads > 0:
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            m.model = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
        _MODEL = m
    return _MODEL


def transcribe(audio_path: str | Path):
    """(note list [(onset_s, offset_s, pitch, amplitude)], PrettyMIDI) of an audio file."""
    inference = _quiet_import()
    with contextlib.redirect_stdout(io.StringIO()):
        _, midi, events = inference.predict(str(audio_path), model())
    notes = [(float(e[0]), float(e[1]), int(e[2]), float(e[3])) for e in events]
    notes.sort()
    return notes, midi
