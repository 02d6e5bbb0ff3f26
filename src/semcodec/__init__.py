"""semcodec — a semantic music codec.

A recording becomes its score (notes, velocities, pitch bends), a timbre per track and a few
short samples, packed in a compact ``.smc`` container; decoding synthesizes audio back.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Container", "DecodeOptions", "EncodeOptions", "decode", "decode_stream",
           "decode_tracks", "encode", "encode_stems", "load", "__version__"]


def __getattr__(name: str):
    # The API pulls numpy/librosa; import it on first use so `semcodec --version` stays fast.
    if name in {"Container", "DecodeOptions", "EncodeOptions", "decode", "decode_stream",
                "decode_tracks", "encode", "encode_stems", "load", "available_engines"}:
        from semcodec import api

        return getattr(api, name)
    raise AttributeError(f"module 'semcodec' has no attribute {name!r}")
