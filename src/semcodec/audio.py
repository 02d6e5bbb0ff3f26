"""Reading and writing audio files: format by extension, checks, atomic writes.

Audio inside semcodec is mono float32, shape ``(n_samples,)``; multichannel input is
downmixed by averaging its channels.  Sample rates are in Hz.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from semcodec import constants
from semcodec.constants import MAX_CHANNELS, MAX_INPUT_PEAK, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from semcodec.errors import ContainerError, InputError, OutputError, UsageError
from semcodec.events import Sample
from semcodec.io import atomic_write
from semcodec.synth import dsp

log = logging.getLogger(__name__)

#: Output formats by file extension: (soundfile format, subtype).
OUTPUT_FORMATS = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".opus": ("OGG", "OPUS"),
}


_MP3 = ("MP3", "MPEG_LAYER_III")
_mp3_ok: bool | None = None


def output_formats() -> dict[str, tuple[str, str]]:
    """:data:`OUTPUT_FORMATS`, plus ``.mp3`` where the installed libsndfile writes MPEG layer
    III (libsndfile >= 1.1)."""
    global _mp3_ok
    if _mp3_ok is None:
        try:
            import soundfile as sf  # noqa: PLC0415 - 50 ms of cffi, only when writing audio

            _mp3_ok = "MPEG_LAYER_III" in sf.available_subtypes("MP3")
        except Exception:  # noqa: BLE001 - no soundfile/libsndfile: the read path reports it
            _mp3_ok = False
    return {**OUTPUT_FORMATS, ".mp3": _MP3} if _mp3_ok else dict(OUTPUT_FORMATS)


#: Sample rates (Hz) a subtype can be written at; audio at another rate is resampled to the
#: nearest higher one (else the highest) on writing.
SUBTYPE_RATES = {
    "OPUS": (8000, 12000, 16000, 24000, 48000),
    "MPEG_LAYER_III": (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000),
}

#: Extensions of audio files: ``encode`` refuses to write its ``.smc`` output under one of them.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au",
                    ".snd", ".caf", ".w64", ".rf64", ".m4a", ".aac", ".wma", ".wv", ".ape")


def extension_of(fmt: tuple[str, str]) -> str:
    """The file extension (``.wav``, ...) of an output format from :data:`OUTPUT_FORMATS`."""
    for ext, f in output_formats().items():
        if f == fmt:
            return ext
    raise UsageError(f"unknown output format {fmt}")


def written_rate(fmt: tuple[str, str], sr: int) -> int:
    """The sample rate (Hz) audio at ``sr`` is written at in ``fmt`` (Opus and MP3 take only
    some rates; the audio is resampled to the nearest higher one, else the highest)."""
    rates = SUBTYPE_RATES.get(fmt[1])
    if not rates or sr in rates:
        return int(sr)
    return min((r for r in rates if r >= sr), default=max(rates))


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
    if np.issubdtype(arr.dtype, np.floating):
        _check_peak(arr, name)
    side = None
    if channels == 2:
        side = np.ascontiguousarray((arr[:, 0] - arr[:, 1]) * 0.5, dtype=np.float32)
    return AudioInput(np.ascontiguousarray(mono, dtype=np.float32), sr, channels, name, side)


def _check_peak(block: np.ndarray, name: str) -> None:
    """Refuse samples beyond ±:data:`MAX_INPUT_PEAK` (a float file at ±1e30 is not audio)."""
    with np.errstate(invalid="ignore", over="ignore"):
        peak = float(np.max(np.abs(block))) if block.size else 0.0
    if peak > MAX_INPUT_PEAK:
        raise InputError(f"{name}: input samples out of range (peak {peak:.3g}; semcodec takes "
                         f"samples within ±{MAX_INPUT_PEAK:g}, 1.0 being full scale)")


def read_bounded(stream, limit: int, name: str, what: str) -> bytes:
    """Read ``stream`` (binary) to its end, refusing more than ``limit`` bytes (InputError)
    before the excess is held in memory."""
    parts, total = [], 0
    while True:
        chunk = stream.read(min(1 << 20, limit + 1 - total))
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
        if total > limit:
            raise InputError(f"{name}: more than {limit >> 20} MiB of {what} on stdin (the "
                             f"most semcodec reads from a pipe); write it to a file and pass "
                             f"the file")
    return b"".join(parts)


def describe_special(mode: int) -> str | None:
    """Why a path of ``st_mode`` ``mode`` is not read as an input file (FIFO, device, ...),
    or None for a regular file."""
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO), not a file (give - and redirect the pipe to stdin)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not an audio file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not an audio file"
    if not stat.S_ISREG(mode):
        return "is not a regular file"
    return None


def read_audio(path: str | os.PathLike) -> AudioInput:
    """Read an audio file (WAV, FLAC, OGG, MP3, AIFF, ... as libsndfile reads) or ``-`` (stdin,
    at most :data:`semcodec.constants.MAX_STDIN_AUDIO_BYTES`)."""
    name = os.fspath(path)
    if name == "-":
        data = read_bounded(sys.stdin.buffer, constants.MAX_STDIN_AUDIO_BYTES, "<stdin>", "audio")
        return read_audio_bytes(data, "<stdin>")
    p = Path(name)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot read ({exc.strerror or exc})") from None
    if p.is_dir():
        raise InputError(f"{name}: is a directory")
    special = describe_special(st.st_mode)
    if special:
        raise InputError(f"{name}: {special}")
    try:
        with open(name, "rb") as fh:
            head = fh.read(64)
    except PermissionError:
        raise InputError(f"{name}: permission denied (cannot open the file for reading)") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot read ({exc.strerror or exc})") from None
    if st.st_size == 0 and not head:
        raise InputError(f"{name}: empty file")
    return _read(name, name, head, st.st_size)


def read_audio_bytes(data: bytes, name: str = "<stdin>") -> AudioInput:
    """Read audio from the bytes of a file (format detected from its header)."""
    if not data:
        raise InputError(f"{name}: empty input")
    return _read(io.BytesIO(data), name, data[:64], len(data))


def _no_samples(name: str, head: bytes, size: int) -> InputError:
    """The error for a file libsndfile opens but reads no frame from: a header that declares
    more audio than the file holds is named as such."""
    if len(head) >= 24 and head[:4] == b".snd":  # Sun/NeXT AU: big-endian offset, data size
        offset, declared = struct.unpack(">II", head[4:12])
        if declared != 0xFFFFFFFF and offset + declared > size:
            return InputError(f"{name}: truncated or corrupt AU file: its header declares "
                              f"{declared} bytes of audio, the file holds "
                              f"{max(0, size - offset)}")
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        declared = int.from_bytes(head[4:8], "little") + 8
        if head[:4] == b"RIFF" and declared > size:
            return InputError(f"{name}: truncated or corrupt WAV file: its header declares "
                              f"{declared} bytes, the file holds {size}")
    return InputError(f"{name}: contains no audio samples")


def _read(source: object, name: str, head: bytes = b"", size: int = 0) -> AudioInput:
    import soundfile as sf  # noqa: PLC0415

    try:
        with sf.SoundFile(source) as f:
            sr, channels, frames = f.samplerate, f.channels, f.frames
            check_sample_rate(sr, name)
            if channels > MAX_CHANNELS:
                raise InputError(f"{name}: {channels} channels (semcodec takes 1..{MAX_CHANNELS})")
            if frames == 0:
                raise _no_samples(name, head, size)
            mono = np.zeros(max(frames, 0), dtype=np.float32)
            side = np.zeros(max(frames, 0), dtype=np.float32) if channels == 2 else None
            pos = 0
            for block in f.blocks(blocksize=1 << 18, dtype="float32", always_2d=True):
                mono_block = dsp.downmix(block)
                if not np.all(np.isfinite(mono_block)):  # per block: no full-length mask
                    raise InputError(f"{name}: contains NaN or infinite samples")
                _check_peak(block, name)
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
        raise _no_samples(name, head, size)
    return AudioInput(mono, int(sr), int(channels), name, side)


#: Longest audio a container's sample may decode to (s): excerpts are 2 s, one-shots < 1 s.
MAX_SAMPLE_AUDIO_S = 10.0
#: Decoded length a sample may exceed its declared ``duration`` by (s).
SAMPLE_LENGTH_SLACK_S = 0.1
#: Channels a container's sample may decode to.
MAX_SAMPLE_CHANNELS = 2
#: Codecs of container samples this decoder plays, as (codec name, libsndfile format, subtype).
SAMPLE_CODECS = {"opus": ("OGG", "OPUS")}


def read_sample(sample: Sample) -> tuple[np.ndarray, int]:
    """Decode a container's audio ``sample``: ``(float32 (frames, channels), rate Hz)``.

    The one place where a sample's opaque payload is decoded; every user of samples calls it.
    Before any audio is decoded it checks what the payload declares: the codec is one this
    decoder knows and the payload really is that format (Ogg Opus for ``"opus"``), the rate is
    within ``MIN_SAMPLE_RATE..MAX_SAMPLE_RATE``, there are 1..MAX_SAMPLE_CHANNELS channels, and
    the length is at most the sample's declared ``duration`` + SAMPLE_LENGTH_SLACK_S and at
    most MAX_SAMPLE_AUDIO_S; the decoded samples must be finite.  Anything else raises
    :class:`ContainerError` (callers skip the sample with a warning).
    """
    import soundfile as sf  # noqa: PLC0415

    what = f"sample of track {sample.track + 1}"
    if sample.codec not in SAMPLE_CODECS:
        raise ContainerError(f"{what}: codec {sample.codec!r} is not supported "
                             f"({', '.join(SAMPLE_CODECS)})")
    want = SAMPLE_CODECS[sample.codec]
    try:
        with sf.SoundFile(io.BytesIO(bytes(sample.data))) as f:
            if (f.format, f.subtype) != want:
                raise ContainerError(f"{what}: payload is {f.format}/{f.subtype}, "
                                     f"not {sample.codec}")
            rate, channels, frames = int(f.samplerate), int(f.channels), int(f.frames)
            if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
                raise ContainerError(f"{what}: sample rate {rate} Hz outside "
                                     f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}")
            if not 1 <= channels <= MAX_SAMPLE_CHANNELS:
                raise ContainerError(f"{what}: {channels} channels "
                                     f"(at most {MAX_SAMPLE_CHANNELS})")
            max_frames = int(rate * min(MAX_SAMPLE_AUDIO_S,
                                        max(0.0, sample.duration) + SAMPLE_LENGTH_SLACK_S))
            if frames > max_frames:
                raise ContainerError(f"{what}: {frames} frames at {rate} Hz, longer than "
                                     f"its declared {sample.duration:.3f} s")
            data = f.read(max_frames + 1, dtype="float32", always_2d=True)
    except ContainerError:
        raise
    except Exception as exc:  # noqa: BLE001 - libsndfile raises several types
        raise ContainerError(f"{what}: cannot be decoded ({str(exc).splitlines()[0]})") from None
    if data.shape[0] > max_frames:
        raise ContainerError(f"{what}: longer than its declared {sample.duration:.3f} s")
    if not np.all(np.isfinite(data)):
        raise ContainerError(f"{what}: NaN or infinite samples")
    return data, rate


def output_format(path: str | os.PathLike, fmt: str | None = None) -> tuple[str, str]:
    """The (soundfile format, subtype) for ``path``'s extension, or for ``fmt`` ("wav", ...)."""
    ext = f".{fmt.lower().lstrip('.')}" if fmt else Path(os.fspath(path)).suffix.lower()
    formats = output_formats()
    if ext not in formats:
        raise UsageError(
            f"{os.fspath(path)}: unsupported output format '{ext or '(none)'}' "
            f"(use {', '.join(formats)})"
        )
    return formats[ext]


#: Frames converted and written per step when writing audio (float32, ~1 MB).
_WRITE_BLOCK = 1 << 18
#: Above this many bytes of samples (counted at 4 bytes each, the widest subtype written)
#: WAV output switches to RF64, the 64-bit-size WAV that libsndfile and most tools read.
_WAV_MAX_BYTES = 0xFFFFFFFF - 1024
#: encode_audio keeps files up to this size in memory while encoding, bigger ones spill to disk.
_SPOOL_BYTES = 32 * 1024 * 1024


class _Sink:
    """A binary file handed to libsndfile's virtual-I/O callbacks that never raises into them.

    An exception raised inside a cffi callback cannot reach the caller: cffi prints it
    ("Exception ignored from cffi callback ... Traceback") and libsndfile then fails with an
    unrelated error.  The sink keeps the first OSError (disk full, file too large, ...),
    answers it with a short write (0 bytes), and :func:`_write_blocks` raises it afterwards.
    """

    def __init__(self, fh) -> None:
        self.fh = fh
        self.error: OSError | None = None

    def write(self, data) -> int:
        if self.error is not None:
            return 0
        try:
            n = self.fh.write(data)
        except OSError as exc:
            self.error = exc
            return 0
        return len(data) if n is None else n

    def read(self, n: int = -1) -> bytes:
        try:
            return self.fh.read(n)
        except OSError as exc:
            self.error = self.error or exc
            return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        try:
            return self.fh.seek(offset, whence)
        except OSError as exc:
            self.error = self.error or exc
            return self.tell()

    def tell(self) -> int:
        try:
            return self.fh.tell()
        except OSError as exc:
            self.error = self.error or exc
            return 0


def _write_blocks(target: object, audio: np.ndarray, sr: int, fmt: tuple[str, str],
                  progress: Callable[[float], None] | None = None) -> None:
    """Write ``audio`` (mono ``(n,)`` or stereo ``(n, 2)``) to ``target`` (a binary file
    object) block by block, each block clipped to ±1, so that no full-length copy is made.
    An OS error while writing (disk full...) is raised as that OSError, nothing printed."""

    audio = np.asarray(audio)
    if audio.ndim != 1 and not (audio.ndim == 2 and audio.shape[1] == 2):
        raise OutputError(f"cannot write audio of shape {audio.shape} (expected (n,) or (n, 2))")
    channels = 1 if audio.ndim == 1 else 2
    if not isinstance(sr, (int, np.integer)) or not MIN_SAMPLE_RATE <= int(sr) <= MAX_SAMPLE_RATE:
        # libvorbis crashes the process on absurd rates: refuse before libsndfile sees them
        raise OutputError(f"cannot write audio at {sr} Hz (semcodec writes {MIN_SAMPLE_RATE}"
                          f"..{MAX_SAMPLE_RATE} Hz)")
    rate = written_rate(fmt, int(sr))
    if rate != sr:  # Opus / MP3 at a rate they do not take
        log.info("writing %s at %d Hz (resampled from %d Hz)", fmt[1], rate, sr)
        if audio.ndim == 1:
            audio = dsp.resample(audio, int(sr), rate)
        else:
            audio = np.stack([dsp.resample(audio[:, c], int(sr), rate) for c in range(channels)],
                             axis=1)
        sr = rate
    fmt_name = fmt[0]
    if fmt_name == "WAV" and audio.shape[0] * 4 * channels >= _WAV_MAX_BYTES:
        fmt_name = "RF64"  # a RIFF WAV cannot hold 4 GiB of data (≈ 6.7 h at 44.1 kHz, 16 bit)
    blocks = (audio[s:s + _WRITE_BLOCK] for s in range(0, audio.shape[0], _WRITE_BLOCK))
    _encode_blocks(target, blocks, int(sr), channels, (fmt_name, fmt[1]), audio.shape[0], progress)


def _encode_blocks(target: object, blocks, sr: int, channels: int, fmt: tuple[str, str],
                   n_frames: int, progress: Callable[[float], None] | None = None) -> int:
    """Encode float ``blocks`` (``(m,)`` or ``(m, channels)``, each clipped to ±1) into the
    binary file object ``target`` with libsndfile format ``fmt``; returns the frames written.

    libsndfile writes through cffi callbacks: an exception raised there would be printed
    ("Exception ignored from cffi callback ...") instead of reaching the caller, so the file
    goes through a :class:`_Sink`, and an OS error while writing (disk full...) is raised
    here as that OSError, nothing printed."""
    import soundfile as sf  # noqa: PLC0415

    sink = _Sink(target)
    written = 0
    try:
        with sf.SoundFile(sink, "w", samplerate=sr, channels=channels, format=fmt[0],
                          subtype=fmt[1]) as f:
            for block in blocks:
                f.write(np.clip(block, -1.0, 1.0).astype(np.float32, copy=False))
                if sink.error is not None:
                    break
                written += block.shape[0]
                if progress is not None:
                    progress(min(1.0, written / max(1, n_frames)))
    except (AssertionError, sf.LibsndfileError, RuntimeError):
        if sink.error is None:
            raise
    if sink.error is not None:
        raise sink.error
    return written


def write_audio_blocks(path: str | os.PathLike, blocks, sr: int, channels: int, n_frames: int,
                       fmt: str | None = None,
                       progress: Callable[[float], None] | None = None) -> int:
    """Write float32 ``blocks`` (``(m,)`` mono or ``(m, 2)`` stereo, any sizes) to ``path``
    atomically, as :func:`write_audio` does for one array (the same bytes for the same
    samples): memory is one block.  ``n_frames``: the total to come (picks RIFF or RF64).
    ``progress(fraction)`` after each block.  Returns the number of frames written."""

    audio_fmt = output_format(path, fmt)
    if not isinstance(sr, (int, np.integer)) or not MIN_SAMPLE_RATE <= int(sr) <= MAX_SAMPLE_RATE:
        raise OutputError(f"cannot write audio at {sr} Hz (semcodec writes {MIN_SAMPLE_RATE}"
                          f"..{MAX_SAMPLE_RATE} Hz)")
    written = 0

    def write(fh: BinaryIO) -> None:
        nonlocal written
        name = audio_fmt[0]
        if name == "WAV" and n_frames * 4 * channels >= _WAV_MAX_BYTES:
            name = "RF64"  # as _write_blocks
        written = _encode_blocks(fh, blocks, int(sr), int(channels), (name, audio_fmt[1]),
                                 n_frames, progress)

    _atomic_audio(path, audio_fmt, sr, write)
    return written


def wav_header(sr: int, channels: int, n_frames: int) -> bytes:
    """The 44-byte header of a 16-bit PCM WAV of ``n_frames`` frames (as libsndfile writes
    it); for data of 4 GiB or more the sizes say 0xFFFFFFFF (streaming readers read on)."""
    data = n_frames * channels * 2
    riff = data + 36
    if data > 0xFFFFFFFF - 36:
        data = riff = 0xFFFFFFFF
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, 1, channels, sr, sr * channels * 2, channels * 2, 16) +
            b"data" + struct.pack("<I", data))


def pcm16_bytes(block: np.ndarray) -> bytes:
    """Float32 samples (``(m,)`` or ``(m, channels)``) as the little-endian 16-bit PCM bytes
    libsndfile writes for them (clipped to ±1)."""
    import soundfile as sf  # noqa: PLC0415 - imported when used, as elsewhere here

    block = np.clip(np.asarray(block, np.float32), -1.0, 1.0)
    ch = 1 if block.ndim == 1 else block.shape[1]
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", samplerate=44100, channels=ch, format="RAW",
                      subtype="PCM_16", endian="LITTLE") as f:
        f.write(block)
    return buf.getvalue()


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


def encode_audio(audio: np.ndarray, sr: int, fmt: tuple[str, str],
                 progress: Callable[[float], None] | None = None) -> bytes:
    """Encode mono float32 ``audio`` at ``sr`` Hz into file bytes of format ``fmt``;
    ``progress(fraction)`` is called after each block."""
    import soundfile as sf  # noqa: PLC0415

    import tempfile  # noqa: PLC0415

    # in memory up to _SPOOL_BYTES, then in a temporary file: the bytes returned are then
    # the only full-size copy (a growing BytesIO would briefly hold two)
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as buf:
        try:
            _write_blocks(buf, audio, sr, fmt, progress)
        except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
            raise OutputError(f"cannot encode {fmt[0]} at {sr} Hz: {exc}") from None
        except OSError as exc:
            raise OutputError(f"cannot encode {fmt[0]} at {sr} Hz: {exc.strerror or exc}") from None
        buf.seek(0)
        data = buf.read()
    if fmt[0] == "OGG":
        return canonical_ogg(data)
    return data


def write_audio(path: str | os.PathLike, audio: np.ndarray, sr: int, fmt: str | None = None,
                progress: Callable[[float], None] | None = None) -> None:
    """Write mono ``audio`` to ``path`` atomically (temporary file, then rename);
    ``progress(fraction)`` is called after each block.

    The samples are encoded block by block straight into a temporary file in the output's
    folder, which is fsynced and renamed over ``path``; memory does not grow with the length.
    On any failure or interrupt the temporary file is removed and an existing ``path`` is
    left untouched; problems become :class:`OutputError`.
    """

    audio_fmt = output_format(path, fmt)

    _atomic_audio(path, audio_fmt, sr, lambda fh: _write_blocks(fh, audio, sr, audio_fmt, progress))


def _atomic_audio(path: str | os.PathLike, audio_fmt: tuple[str, str], sr: int,
                  write: Callable[[BinaryIO], None]) -> None:
    """Run ``write(fh)`` into a temporary file renamed over ``path`` (:func:`atomic_write`);
    an Ogg file (a few MB at most) is then made reproducible (:func:`canonical_ogg`).
    Encoder failures become :class:`OutputError` naming ``path``."""
    import soundfile as sf  # noqa: PLC0415

    def write_file(fh: BinaryIO) -> None:
        write(fh)
        if audio_fmt[0] == "OGG":
            fh.seek(0)
            data = canonical_ogg(fh.read())
            fh.seek(0)
            fh.write(data)
            fh.truncate()

    try:
        atomic_write(path, write_file)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        target = Path(os.fspath(path))
        raise OutputError(f"cannot encode {target} ({audio_fmt[0]} at {sr} Hz): {exc}") from None
