"""The Python API of semcodec; the CLI is a thin layer over these functions.

    import semcodec
    c = semcodec.encode("song.wav")          # -> semcodec.Container
    c.save("song.smc")
    audio, sr = semcodec.decode(semcodec.load("song.smc"))
    c.to_midi("song.mid")

Audio arrays are float32 mono ``(n_samples,)`` (or ``(n, channels)`` on input, downmixed),
sample rates in Hz, times in seconds.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from semcodec import __version__
from semcodec import container as _container
from semcodec.audio import AudioInput, from_array, read_audio
from semcodec.errors import InputError, SynthError, UsageError
from semcodec.events import Score, Track
from semcodec.score import estimate_key, estimate_tempo, write_midi, write_musicxml
from semcodec.synth import dsp
from semcodec.transcribe import TranscribeOptions, transcribe

log = logging.getLogger(__name__)

ENGINES = ("auto", "neural", "fluidsynth")
Progress = Callable[[str, float], None]


class Container(_container.Container):
    """A decoded ``.smc`` file with the conveniences of the API (exports, decoding)."""

    def to_midi(self, path: str | os.PathLike | None = None):
        """The score as ``pretty_midi.PrettyMIDI``; also written to ``path`` when given."""
        from semcodec.score import to_pretty_midi

        if path is not None:
            write_midi(self.score, path)
        return to_pretty_midi(self.score)

    def to_musicxml(self, path: str | os.PathLike) -> None:
        """Write the score as quantized MusicXML (readable sheet music) to ``path``."""
        write_musicxml(self.score, path)

    def decode(self, **kwargs) -> tuple[np.ndarray, int]:
        """Shortcut for :func:`decode` on this container."""
        return decode(self, **kwargs)


@dataclass(frozen=True)
class EncodeOptions:
    """Encoder settings: transcription thresholds, timbre fitting and samples."""

    transcribe: TranscribeOptions = field(default_factory=TranscribeOptions)
    fit_timbre: bool = True  # fit neural timbre + GM program (when torch and weights exist)
    samples: bool = True  # keep short Opus samples of the cleanest notes
    fit_budget_s: float | None = None  # wall-clock cap of the whole timbre fit (s); None = auto
    #: Samples are kept only while the whole container stays within this bitrate (kbps); the
    #: score and timbres are always kept.
    max_kbps: float = 1.0
    tags: dict[str, str] = field(default_factory=dict)


def load(path: str | os.PathLike) -> Container:
    """Read a ``.smc`` file (raises ContainerError / InputError)."""
    return Container.load(path)


def _as_input(source: str | os.PathLike | np.ndarray | AudioInput, sr: int | None) -> AudioInput:
    if isinstance(source, AudioInput):
        return source
    if isinstance(source, np.ndarray):
        if sr is None:
            raise UsageError("encode(array) needs sr= (sample rate in Hz)")
        return from_array(source, sr)
    return read_audio(source)


def encode(source: str | os.PathLike | np.ndarray | AudioInput, sr: int | None = None, *,
           options: EncodeOptions | None = None, progress: Progress | None = None) -> Container:
    """Encode a recording (file path, ``-`` for stdin, or array with ``sr``) into a Container.

    Steps: read + downmix, measure loudness, transcribe (basic-pitch), estimate tempo/key,
    fit timbre and GM program per track, cut short samples.
    """
    opts = options or EncodeOptions()
    inp = _as_input(source, sr)
    report = progress or (lambda stage, frac: None)
    if opts.fit_timbre:
        _prefetch("torch", "numba")  # ~3 s of imports overlap the loudness and transcription
    loudness = dsp.integrated_loudness(inp.audio, inp.sample_rate)
    notes: tuple = ()
    if loudness is not None:
        notes = transcribe(inp.audio, inp.sample_rate, opts.transcribe,
                           progress=lambda f: report("transcribe", f))
    report("transcribe", 1.0)
    tracks = (Track(name="track1", program=0, notes=tuple(notes)),) if notes else ()
    score = Score(tracks=tracks, tempo_bpm=estimate_tempo(notes), key=estimate_key(notes))
    timbres: tuple = ()
    samples: tuple = ()
    extra: dict = {}
    if tracks and (opts.fit_timbre or opts.samples):
        timbres, samples, score, extra = _fit(inp, score, opts, report)
    report("timbre", 1.0)
    c = Container(
        duration=inp.duration,
        sample_rate=inp.sample_rate,
        channels=inp.channels,
        n_samples=inp.n_samples,
        loudness_lufs=None if loudness is None else round(loudness, 2),
        score=score,
        timbres=timbres,
        tags=dict(opts.tags),
        encoder=f"semcodec {__version__}",
        extra=extra,
    )
    if samples:
        c = replace(c, samples=_samples_within(c, samples, opts.max_kbps))
    return c


def _samples_within(c: Container, samples: tuple, max_kbps: float) -> tuple:
    """The samples (in order) that fit into ``max_kbps`` on top of the rest of ``c``."""
    budget = max_kbps * 1000.0 / 8.0 * c.duration - len(c.to_bytes())
    kept = []
    for smp in samples:
        cost = len(smp.data) + 24  # per-sample fields in the SAMP chunk, plus its framing
        if cost <= budget:
            kept.append(smp)
            budget -= cost
        else:
            log.info("sample of track %d (%d bytes) dropped: over the %.2f kbps budget",
                     smp.track + 1, len(smp.data), max_kbps)
    return tuple(kept)


def _prefetch(*modules: str) -> None:
    """Import ``modules`` in a background thread (a pure speed-up: errors are ignored here and
    surface, if at all, where the modules are really used)."""
    import importlib
    import threading

    def work() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - optional; the real import reports problems
                return

    threading.Thread(target=work, name="semcodec-prefetch", daemon=True).start()


def _fit(inp: AudioInput, score: Score, opts: EncodeOptions, report: Progress):
    """Timbre, GM program and samples per track; skipped (with a log line) without torch."""
    try:
        from semcodec import timbre
    except ImportError as exc:
        log.info("timbre fitting unavailable (%s); storing the score only", exc)
        return (), (), score, {}
    samples = ()
    if opts.samples:
        samples = timbre.extract_samples(inp.audio, inp.sample_rate, score)
    timbres: tuple = ()
    programs: dict[int, int] = {}
    if opts.fit_timbre:
        try:
            timbres, programs = timbre.fit_timbres(inp.audio, inp.sample_rate, score,
                                                   samples=samples, budget_s=opts.fit_budget_s)
        except SynthError as exc:
            log.warning("timbre fitting skipped: %s", exc)
    tracks = tuple(replace(t, program=programs.get(i, t.program)) for i, t in enumerate(score.tracks))
    return timbres, samples, replace(score, tracks=tracks), {}


def available_engines() -> list[str]:
    """Engines usable on this machine, best first."""
    names = []
    try:
        from semcodec.synth import neural

        if neural.weights_available():
            names.append("neural")
    except ImportError:
        pass
    names.append("fluidsynth")
    return names


def make_engine(name: str = "auto", *, device: str = "auto", soundfont: str | None = None):
    """An engine object with ``render(score, sr, n_samples, **edits)``."""
    if name not in ENGINES:
        raise UsageError(f"unknown engine '{name}' (choose from {', '.join(ENGINES)})")
    if name == "auto":
        name = available_engines()[0]
    if name == "neural":
        try:
            from semcodec.synth.neural import NeuralEngine
        except ImportError as exc:
            raise SynthError(f"the neural engine is unavailable ({exc})") from None
        return NeuralEngine(device=device)
    from semcodec.synth.fluid import FluidsynthEngine

    return FluidsynthEngine(soundfont)


def decode(c: _container.Container, *, engine: str = "auto", sample_rate: int | None = None,
           device: str = "auto", soundfont: str | None = None,
           programs: dict[int, int] | None = None, transpose: int = 0,
           tempo: float = 1.0) -> tuple[np.ndarray, int]:
    """Synthesize a container: returns mono float32 audio and its sample rate (Hz).

    The output has the original's duration to the sample (divided by ``tempo`` when it is not
    1), its sample rate unless ``sample_rate`` is given, and its integrated loudness.
    ``programs`` maps track index → GM program (re-orchestration), ``transpose`` shifts pitched
    tracks by semitones, ``tempo`` > 1 plays faster.
    """
    from semcodec.audio import check_sample_rate

    sr = check_sample_rate(sample_rate or c.sample_rate, "--sample-rate")
    if not (0.25 <= tempo <= 4.0):
        raise UsageError(f"tempo factor {tempo} out of range (0.25..4)")
    if not -48 <= transpose <= 48:
        raise UsageError(f"transpose {transpose} out of range (-48..48 semitones)")
    for idx, prog in (programs or {}).items():
        if not 0 <= idx < len(c.score.tracks):
            raise UsageError(f"no track {idx + 1} (the file has {len(c.score.tracks)})")
        if not 0 <= prog <= 127:
            raise UsageError(f"GM program {prog} out of range (0..127)")
    n_out = int(round(c.n_samples * sr / c.sample_rate / tempo))
    _check_memory(n_out, sr)
    if c.score.n_notes == 0 or c.loudness_lufs is None:
        return np.zeros(n_out, dtype=np.float32), sr
    eng = make_engine(engine, device=device, soundfont=soundfont)
    audio = eng.render(c.score, sr, n_out, timbres=c.timbres, samples=c.samples,
                       programs=programs, transpose=transpose, tempo=tempo)
    audio = dsp.match_loudness(dsp.fit_length(np.asarray(audio, np.float32), n_out), sr,
                               c.loudness_lufs)
    return audio.astype(np.float32, copy=False), sr


#: Bytes of memory decoding needs per output sample (float32 output, engine and loudness buffers).
DECODE_BYTES_PER_SAMPLE = 12


def _check_memory(n_out: int, sr: int) -> None:
    """Refuse (one clean error) an output that cannot fit in this machine's memory."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on this platform: do not guess
        return
    need = n_out * DECODE_BYTES_PER_SAMPLE
    if need > total:
        raise SynthError(
            f"decoding {n_out / sr:.0f} s at {sr} Hz needs about {need / 2**30:.1f} GiB of memory, "
            f"more than this machine has ({total / 2**30:.1f} GiB); try a lower --sample-rate"
        )


def parse_program_map(items: list[str] | tuple[str, ...], n_tracks: int,
                      names: list[str] | None = None) -> dict[int, int]:
    """Parse ``TRACK=PROGRAM`` items (TRACK: 1-based number or name) into {index: program}."""
    out: dict[int, int] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--program {item!r}: expected TRACK=GM_PROGRAM")
        try:
            prog = int(value)
        except ValueError:
            raise UsageError(f"--program {item!r}: program must be a number 0..127") from None
        if key.isdigit():
            idx = int(key) - 1
        elif names and key in names:
            idx = names.index(key)
        else:
            raise UsageError(f"--program {item!r}: unknown track {key!r}")
        if not 0 <= idx < n_tracks:
            raise UsageError(f"--program {item!r}: no track {key} (the file has {n_tracks})")
        if not 0 <= prog <= 127:
            raise UsageError(f"--program {item!r}: program must be 0..127")
        out[idx] = prog
    return out
