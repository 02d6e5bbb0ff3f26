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
from typing import BinaryIO

import numpy as np

from semcodec.constants import MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from semcodec.errors import InputError, OutputError, UsageError
from semcodec.io import atomic_write
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
    """Decoded input audio: mono float32 ``audio`` (n,), ``sample_rate`` Hz, original ``channels``.

    ``side`` is ``(left - right) / 2`` (float32 (n,)) for a two-channel input, else None: with
    ``audio`` = ``(left + right) / 2`` it gives back both channels, for the tracks' stereo
    positions.
    """

    audio: np.ndarray
    sample_rate: int
    channels: int
    name: str
    side: np.ndarray | None = None

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
    side = None
    if channels == 2:
        side = np.ascontiguousarray((arr[:, 0] - arr[:, 1]) * 0.5, dtype=np.float32)
    return AudioInput(np.ascontiguousarray(mono, dtype=np.float32), sr, channels, name, side)


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
    import soundfile as sf  # noqa: PLC0415

    try:
        with sf.SoundFile(source) as f:
            sr, channels, frames = f.samplerate, f.channels, f.frames
            check_sample_rate(sr, name)
            if channels > MAX_CHANNELS:
                raise InputError(f"{name}: {channels} channels (semcodec takes 1..{MAX_CHANNELS})")
            if frames == 0:
                raise InputError(f"{name}: contains no audio samples")
            mono = np.zeros(max(frames, 0), dtype=np.float32)
            side = np.zeros(max(frames, 0), dtype=np.float32) if channels == 2 else None
            pos = 0
            for block in f.blocks(blocksize=1 << 18, dtype="float32", always_2d=True):
                mono_block = dsp.downmix(block)
                if not np.all(np.isfinite(mono_block)):  # per block: no full-length mask
                    raise InputError(f"{name}: contains NaN or infinite samples")
                if pos + mono_block.shape[0] > mono.shape[0]:  # frames can be an estimate (MP3)
                    grow = np.zeros(mono_block.shape[0], np.float32)
                    mono = np.concatenate([mono, grow])
                    side = None if side is None else np.concatenate([side, grow])
                mono[pos:pos + mono_block.shape[0]] = mono_block
                if side is not None:
                    side[pos:pos + mono_block.shape[0]] = (block[:, 0] - block[:, 1]) * 0.5
                pos += mono_block.shape[0]
            mono = mono[:pos]
            side = None if side is None else side[:pos]
    except InputError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, EOFError) as exc:
        msg = str(exc).split("\n")[0]
        if "Error opening" in msg or "Format not recognised" in msg or "unknown format" in msg.lower():
            msg = "not a readable audio file"
        raise InputError(f"{name}: {msg}") from None
    if pos == 0:
        raise InputError(f"{name}: contains no audio samples")
    return AudioInput(mono, int(sr), int(channels), name, side)


def output_format(path: str | os.PathLike, fmt: str | None = None) -> tuple[str, str]:
    """The (soundfile format, subtype) for ``path``'s extension, or for ``fmt`` ("wav", ...)."""
    ext = f".{fmt.lower().lstrip('.')}" if fmt else Path(os.fspath(path)).suffix.lower()
    if ext not in OUTPUT_FORMATS:
        raise UsageError(
            f"{os.fspath(path)}: unsupported output format '{ext or '(none)'}' "
            f"(use {', '.join(OUTPUT_FORMATS)})"
        )
    return OUTPUT_FORMATS[ext]


#: Frames converted and written per step when writing audio (float32, ~1 MB).
_WRITE_BLOCK = 1 << 18
#: Above this many bytes of samples (counted at 4 bytes each, the widest subtype written)
#: WAV output switches to RF64, the 64-bit-size WAV that libsndfile and most tools read.
_WAV_MAX_BYTES = 0xFFFFFFFF - 1024
#: encode_audio keeps files up to this size in memory while encoding, bigger ones spill to disk.
_SPOOL_BYTES = 32 * 1024 * 1024


def _write_blocks(target: object, audio: np.ndarray, sr: int, fmt: tuple[str, str]) -> None:
    """Write ``audio`` (mono ``(n,)`` or stereo ``(n, 2)``) to ``target`` (path or binary file
    object) block by block, each block clipped to ±1, so that no full-length copy is made."""
    import soundfile as sf  # noqa: PLC0415

    audio = np.asarray(audio)
    if audio.ndim != 1 and not (audio.ndim == 2 and audio.shape[1] == 2):
        raise OutputError(f"cannot write audio of shape {audio.shape} (expected (n,) or (n, 2))")
    channels = 1 if audio.ndim == 1 else 2
    if not isinstance(sr, (int, np.integer)) or not MIN_SAMPLE_RATE <= int(sr) <= MAX_SAMPLE_RATE:
        # libvorbis crashes the process on absurd rates: refuse before libsndfile sees them
        raise OutputError(f"cannot write audio at {sr} Hz (semcodec writes {MIN_SAMPLE_RATE}"
                          f"..{MAX_SAMPLE_RATE} Hz)")
    fmt_name = fmt[0]
    if fmt_name == "WAV" and audio.shape[0] * 4 * channels >= _WAV_MAX_BYTES:
        fmt_name = "RF64"  # a RIFF WAV cannot hold 4 GiB of data (≈ 6.7 h at 44.1 kHz, 16 bit)
    with sf.SoundFile(target, "w", samplerate=int(sr), channels=channels, format=fmt_name,
                      subtype=fmt[1]) as f:
        for s in range(0, audio.shape[0], _WRITE_BLOCK):
            block = np.clip(audio[s:s + _WRITE_BLOCK], -1.0, 1.0)
            f.write(block.astype(np.float32, copy=False))


#: Ogg stream serial number written by :func:`canonical_ogg` (libsndfile picks a random one).
OGG_SERIAL = 0x534D4331  # "SMC1"
_BIT_REVERSE = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _ogg_crc(page: bytes) -> int:
    """Ogg's page CRC (polynomial 0x04C11DB7, not reflected, init 0, no final xor), computed
    with zlib's reflected CRC-32 on bit-reversed bytes."""
    import zlib  # noqa: PLC0415

    raw = zlib.crc32(page.translate(_BIT_REVERSE)) ^ zlib.crc32(bytes(len(page)))
    return int(f"{raw:032b}"[::-1], 2)


def canonical_ogg(data: bytes) -> bytes:
    """``data`` (an Ogg file) with every stream serial number replaced by a fixed one and the
    page CRCs recomputed, so that encoding the same audio twice gives the same bytes.

    libsndfile seeds the serial number from the clock; the audio is unchanged.  Data that is
    not a well-formed single-stream Ogg file is returned as it is.
    """
    import struct  # noqa: PLC0415

    out = bytearray(_minimal_opus_tags(data))
    pos = 0
    serial = None
    while pos < len(out):
        if out[pos:pos + 4] != b"OggS" or pos + 27 > len(out):
            return bytes(data)
        n_seg = out[pos + 26]
        if pos + 27 + n_seg > len(out):
            return bytes(data)
        size = 27 + n_seg + sum(out[pos + 27:pos + 27 + n_seg])
        if pos + size > len(out):
            return bytes(data)
        page_serial = struct.unpack_from("<I", out, pos + 14)[0]
        if serial is None:
            serial = page_serial
        elif page_serial != serial:
            return bytes(data)  # several logical streams: leave alone
        struct.pack_into("<II", out, pos + 14, OGG_SERIAL, struct.unpack_from("<I", out, pos + 18)[0])
        struct.pack_into("<I", out, pos + 22, 0)
        struct.pack_into("<I", out, pos + 22, _ogg_crc(bytes(out[pos:pos + size])))
        pos += size
    return bytes(out)


#: An OpusTags packet with an empty vendor string and no comments (RFC 7845, section 5.2).
MINIMAL_OPUS_TAGS = b"OpusTags" + bytes(8)


def _minimal_opus_tags(data: bytes) -> bytes:
    """``data`` with the Ogg/Opus comment header replaced by :data:`MINIMAL_OPUS_TAGS`.

    libsndfile writes a vendor string and ~750 bytes of padding into OpusTags, more than the
    audio of a short one-shot; the decoder ignores all of it.  Only a stream whose second page
    holds exactly one complete OpusTags packet is changed (its CRC is recomputed by the caller).
    """
    if data[:4] != b"OggS" or len(data) < 28:
        return data
    first = 27 + data[26] + sum(data[27:27 + data[26]])
    if len(data) < first + 27 or data[first:first + 4] != b"OggS":
        return data
    n_seg = data[first + 26]
    lacing = data[first + 27:first + 27 + n_seg]
    body = first + 27 + n_seg
    size = sum(lacing)
    if (not lacing or lacing[-1] == 255 or any(v != 255 for v in lacing[:-1])
            or data[body:body + 8] != b"OpusTags" or len(data) < body + size):
        return data
    page = bytearray(data[first:first + 26]) + bytes([1, len(MINIMAL_OPUS_TAGS)]) + MINIMAL_OPUS_TAGS
    return data[:first] + bytes(page) + data[body + size:]


def encode_audio(audio: np.ndarray, sr: int, fmt: tuple[str, str]) -> bytes:
    """Encode mono float32 ``audio`` at ``sr`` Hz into file bytes of format ``fmt``."""
    import soundfile as sf  # noqa: PLC0415

    import tempfile  # noqa: PLC0415

    # in memory up to _SPOOL_BYTES, then in a temporary file: the bytes returned are then
    # the only full-size copy (a growing BytesIO would briefly hold two)
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as buf:
        try:
            _write_blocks(buf, audio, sr, fmt)
        except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
            raise OutputError(f"cannot encode {fmt[0]} at {sr} Hz: {exc}") from None
        except OSError as exc:
            raise OutputError(f"cannot encode {fmt[0]} at {sr} Hz: {exc.strerror or exc}") from None
        buf.seek(0)
        data = buf.read()
    if fmt[0] == "OGG":
        return canonical_ogg(data)
    return data


def write_audio(path: str | os.PathLike, audio: np.ndarray, sr: int, fmt: str | None = None) -> None:
    """Write mono ``audio`` to ``path`` atomically (temporary file, then rename).

    The samples are encoded block by block straight into a temporary file in the output's
    folder, which is fsynced and renamed over ``path``; memory does not grow with the length.
    On any failure or interrupt the temporary file is removed and an existing ``path`` is
    left untouched; problems become :class:`OutputError`.
    """
    import soundfile as sf  # noqa: PLC0415

    audio_fmt = output_format(path, fmt)

    def write(fh: BinaryIO) -> None:
        _write_blocks(fh, audio, sr, audio_fmt)
        if audio_fmt[0] == "OGG":  # a few MB at most: make the bytes reproducible
            fh.seek(0)
            data = canonical_ogg(fh.read())
            fh.seek(0)
            fh.write(data)
            fh.truncate()

    try:
        atomic_write(path, write)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        target = Path(os.fspath(path))
        raise OutputError(f"cannot encode {target} ({audio_fmt[0]} at {sr} Hz): {exc}") from None
