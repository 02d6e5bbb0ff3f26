"""Reading and writing audio files: format by extension, checks, atomic writes.

Audio inside semcodec is mono float32, shape ``(n_samples,)``; multichannel input is
downmixed by averaging its channels.  Sample rates are in Hz.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semcodec.constants import MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from semcodec.container import atomic_write_bytes
from semcodec.errors import InputError, OutputError, UsageError
from semcodec.synth import dsp

log = logging.getLogger(__name__)

#: Output formats by file extension: (soundfile format, subtype).
OUTPUT_FORMATS = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
}


@dataclass(frozen=True)
class AudioInput:
    """Decoded input audio: mono float32 ``audio`` (n,), ``sample_rate`` Hz, original ``channels``."""

    audio: np.ndarray
    sample_rate: int
    channels: int
    name: str

    @property
    def n_samples(self) -> int:
        """Number of samples per channel."""
        return int(self.audio.shape[0])

    @property
    def duration(self) -> float:
        """Duration in seconds."""
        return self.n_samples / self.sample_rate


def check_sample_rate(sr: int, name: str) -> int:
    """Return ``sr`` as int if it is usable, else raise :class:`InputError` naming ``name``."""
    if not isinstance(sr, (int, np.integer)) or not MIN_SAMPLE_RATE <= int(sr) <= MAX_SAMPLE_RATE:
        raise InputError(
            f"{name}: unusable sample rate {sr} Hz (semcodec handles {MIN_SAMPLE_RATE}"
            f"..{MAX_SAMPLE_RATE} Hz)"
        )
    return int(sr)


def from_array(audio: np.ndarray, sr: int, name: str = "<array>") -> AudioInput:
    """Check and downmix an in-memory signal: ``audio`` (n,) or (n, channels) float, ``sr`` Hz."""
    sr = check_sample_rate(sr, name)
    arr = np.asarray(audio)
    if arr.ndim not in (1, 2) or arr.size == 0 and arr.ndim == 0:
        raise InputError(f"{name}: audio must have shape (n,) or (n, channels), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{name}: audio must be numeric, got dtype {arr.dtype}")
    channels = 1 if arr.ndim == 1 else int(arr.shape[1])
    if channels < 1 or channels > MAX_CHANNELS:
        raise InputError(f"{name}: {channels} channels (semcodec takes 1..{MAX_CHANNELS})")
    if arr.shape[0] == 0:
        raise InputError(f"{name}: contains no audio samples")
    if np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    mono = dsp.downmix(arr)
    if not np.all(np.isfinite(mono)):
        raise InputError(f"{name}: contains NaN or infinite samples")
    return AudioInput(np.ascontiguousarray(mono, dtype=np.float32), sr, channels, name)


def read_audio(path: str | os.PathLike) -> AudioInput:
    """Read an audio file (WAV, FLAC, OGG, MP3, AIFF, ... as libsndfile reads) or ``-`` (stdin)."""
    name = os.fspath(path)
    if name == "-":
        return read_audio_bytes(sys.stdin.buffer.read(), "<stdin>")
    p = Path(name)
    if not p.exists():
        raise InputError(f"{name}: no such file")
    if p.is_dir():
        raise InputError(f"{name}: is a directory")
    if p.stat().st_size == 0:
        raise InputError(f"{name}: empty file")
    return _read(name, name)


def read_audio_bytes(data: bytes, name: str = "<stdin>") -> AudioInput:
    """Read audio from the bytes of a file (format detected from its header)."""
    if not data:
        raise InputError(f"{name}: empty input")
    return _read(io.BytesIO(data), name)


def _read(source: object, name: str) -> AudioInput:
    import soundfile as sf

    try:
        with sf.SoundFile(source) as f:
            sr, channels, frames = f.samplerate, f.channels, f.frames
            check_sample_rate(sr, name)
            if channels > MAX_CHANNELS:
                raise InputError(f"{name}: {channels} channels (semcodec takes 1..{MAX_CHANNELS})")
            if frames == 0:
                raise InputError(f"{name}: contains no audio samples")
            mono = np.zeros(max(frames, 0), dtype=np.float32)
            pos = 0
            for block in f.blocks(blocksize=1 << 18, dtype="float32", always_2d=True):
                mono_block = dsp.downmix(block)
                if pos + mono_block.shape[0] > mono.shape[0]:  # frames can be an estimate (MP3)
                    mono = np.concatenate([mono, np.zeros(mono_block.shape[0], np.float32)])
                mono[pos:pos + mono_block.shape[0]] = mono_block
                pos += mono_block.shape[0]
            mono = mono[:pos]
    except InputError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, EOFError) as exc:
        msg = str(exc).split("\n")[0]
        if "Error opening" in msg or "Format not recognised" in msg or "unknown format" in msg.lower():
            msg = "not a readable audio file"
        raise InputError(f"{name}: {msg}") from None
    if pos == 0:
        raise InputError(f"{name}: contains no audio samples")
    if not np.all(np.isfinite(mono)):
        raise InputError(f"{name}: contains NaN or infinite samples")
    return AudioInput(mono, int(sr), int(channels), name)


def output_format(path: str | os.PathLike, fmt: str | None = None) -> tuple[str, str]:
    """The (soundfile format, subtype) for ``path``'s extension, or for ``fmt`` ("wav", ...)."""
    ext = f".{fmt.lower().lstrip('.')}" if fmt else Path(os.fspath(path)).suffix.lower()
    if ext not in OUTPUT_FORMATS:
        raise UsageError(
            f"{os.fspath(path)}: unsupported output format '{ext or '(none)'}' "
            f"(use {', '.join(OUTPUT_FORMATS)})"
        )
    return OUTPUT_FORMATS[ext]


def encode_audio(audio: np.ndarray, sr: int, fmt: tuple[str, str]) -> bytes:
    """Encode mono float32 ``audio`` at ``sr`` Hz into file bytes of format ``fmt``."""
    import soundfile as sf

    buf = io.BytesIO()
    try:
        sf.write(buf, np.clip(audio, -1.0, 1.0), sr, format=fmt[0], subtype=fmt[1])
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise OutputError(f"cannot encode {fmt[0]} at {sr} Hz: {exc}") from None
    return buf.getvalue()


def write_audio(path: str | os.PathLike, audio: np.ndarray, sr: int, fmt: str | None = None) -> None:
    """Write mono ``audio`` to ``path`` atomically (temporary file, then rename)."""
    data = encode_audio(audio, sr, output_format(path, fmt))
    atomic_write_bytes(path, data)
