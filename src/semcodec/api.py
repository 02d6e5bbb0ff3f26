"""The Python API of semcodec; the CLI is a thin layer over these functions.

    import semcodec
    c = semcodec.encode("song.wav")          # -> semcodec.Container
    c.save("song.smc")
    audio, sr = semcodec.decode(semcodec.load("song.smc"))
    mix, sr, tracks = semcodec.decode_tracks(c)   # tracks: [(name, audio), ...]
    c.to_midi("song.mid")

Audio arrays are float32 mono ``(n_samples,)`` (or ``(n, channels)`` on input, downmixed),
sample rates in Hz, times in seconds.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sys
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from semcodec import __version__
from semcodec import container as _container
from semcodec.audio import AudioInput, from_array, read_audio
from semcodec.background import in_background, prefetch
from semcodec.constants import (
    MAX_TRACKS,
    VOICE_PROGRAMS,
    is_voice_name,
)
from semcodec.decoder import (
    DecodeOptions as DecodeOptions,
    DecodeStream as DecodeStream,
    decode as decode,
    decode_stream as decode_stream,
    decode_tracks as decode_tracks,
    output_shape as output_shape,
    parse_program_map as parse_program_map,
    STREAM_BLOCK as STREAM_BLOCK,
    STREAM_INTERNAL_BLOCK as STREAM_INTERNAL_BLOCK,
    STREAM_EXACT_S as STREAM_EXACT_S,
    SPOOL_MEMORY_BYTES as SPOOL_MEMORY_BYTES,
    DECODE_BYTES_PER_SAMPLE as DECODE_BYTES_PER_SAMPLE,
)
from semcodec.errors import (
    InputError,
    SynthError,
    UsageError,
)
from semcodec.encode_budget import (
    MEASURE_WHOLE_MAX_S,
    SAMPLE_FIELD_BYTES as SAMPLE_FIELD_BYTES,
    Measured,
    _bytes_left,
    _spend,
    _with_aligned_onsets,
    _with_clear_notes,
    _with_residual,
    _synth_lufs,
    _with_synth_loudness,
)
from semcodec.events import Note, Sample, Score, Track
from semcodec.progress import (
    DECODE_STAGES as DECODE_STAGES,
    ENCODE_STAGES as ENCODE_STAGES,
    Progress as Progress,
    progress_fraction as progress_fraction,
)
from semcodec.runtime import blas_one_thread, keep_freed, release_free_memory, return_large_blocks
from semcodec.score import estimate_key, estimate_tempo, write_midi, write_musicxml
from semcodec.synth import dsp
from semcodec.synth.engine import ENGINES, Engine, available_engines, make_engine
from semcodec.synth.weights import LEGACY_NEURAL_MODEL, current_model
from semcodec.transcribe import TranscribeOptions, transcribe

log = logging.getLogger(__name__)

__all__ = ["ENGINES", "Container", "DecodeOptions", "DecodeStream", "EncodeOptions", "Engine",
           "available_engines", "decode", "decode_stream", "decode_tracks", "encode",
           "encode_stems", "load", "make_engine", "parse_program_map"]


def _neural_model_key() -> str:
    """The header's ``neural_model`` for a new file: the model its timbres are fitted to, ""
    for the legacy model (files that name none decode with it) or when there is none."""
    model = current_model()
    return "" if model == LEGACY_NEURAL_MODEL else model


class Container(_container.SmcFile):
    """A decoded ``.smc`` file with the conveniences of the API (exports, decoding)."""

    def to_midi(self, path: str | os.PathLike | None = None):
        """The score as ``pretty_midi.PrettyMIDI``; also written to ``path`` when given."""
        from semcodec.score import to_pretty_midi

        if path is not None:
            write_midi(self.score, path)
        return to_pretty_midi(self.score)

    def to_musicxml(self, path: str | os.PathLike, *, title: str | None = None) -> None:
        """Write the score as quantized MusicXML (readable sheet music) to ``path``.

        The title is the ``title`` tag, else ``title``, else ``path``'s file name; the
        composer the ``artist`` (or ``composer``) tag."""
        write_musicxml(self.score, path, self.texts.get("lyrics"),
                       title=self.tags.get("title") or title,
                       composer=self.tags.get("artist") or self.tags.get("composer", ""))

    def decode(self, options: DecodeOptions | None = None,
               **overrides: Any) -> tuple[np.ndarray, int]:
        """Shortcut for :func:`decode` on this container."""
        return decode(self, options, **overrides)

    def decode_tracks(self, options: DecodeOptions | None = None, **overrides: Any
                      ) -> tuple[np.ndarray, int, list[tuple[str, np.ndarray]]]:
        """Shortcut for :func:`decode_tracks` on this container."""
        return decode_tracks(self, options, **overrides)


@dataclass(frozen=True)
class EncodeOptions:
    """Encoder settings: transcription thresholds, timbre fitting and samples."""

    transcribe: TranscribeOptions = field(default_factory=TranscribeOptions)
    fit_timbre: bool = True  # fit neural timbre + GM program (when torch and weights exist)
    samples: bool = True  # keep short Opus samples of the cleanest notes
    fit_budget_s: float | None = None  # wall-clock cap of the whole timbre fit (s); None = auto
    #: The bitrate target (kbit/s): the file is filled, part by part in order of measured
    #: benefit per byte (semcodec.budget), up to and never beyond it; the header, score and
    #: timbres are always kept (a file that needs more than the target for them exceeds it).
    kbps: float = 1.0
    #: Old name of ``kbps`` (when given, it wins).
    max_kbps: float | None = None
    #: Measure, per pitched track, how its excerpt and a spectral correction are best played
    #: (semcodec.sampleuse) and store the choice; False: excerpts are stored unplayed, as in
    #: format 1.2.
    track_renders: bool = True
    tags: dict[str, str] = field(default_factory=dict)
    #: Instrument tracks to split a mix into: None = automatic (1 for a solo), or a number.
    tracks: int | None = None
    #: Drum detection: "auto" (a drum track when drums are found) or "off".
    drums: str = "auto"
    #: Lyrics text stored in the container (TAGS chunk, key "lyrics"); exported to MusicXML.
    lyrics: str | None = None
    #: Code what the decode still misses (the RESD chunk, :mod:`semcodec.residual`) with the
    #: bytes the budget leaves.
    residual: bool = True

    @property
    def target_kbps(self) -> float:
        """The bitrate target in kbit/s (``max_kbps`` when given, else ``kbps``)."""
        return float(self.kbps if self.max_kbps is None else self.max_kbps)

    def __post_init__(self) -> None:
        if not 0.0 <= self.target_kbps <= 1000.0:
            raise UsageError(f"kbps must be 0..1000, got {self.target_kbps}")
        if self.tracks is not None and not 1 <= self.tracks <= MAX_TRACKS:
            raise UsageError(f"tracks must be 1..{MAX_TRACKS} or auto, got {self.tracks}")
        if self.drums not in ("auto", "off"):
            raise UsageError(f"drums must be 'auto' or 'off', got {self.drums!r}")


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


def _blas_on_one_thread(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` run with OpenBLAS on one thread (:data:`semcodec.runtime.blas_one_thread`): the
    encoder's stages work on two threads of their own, and OpenBLAS's spinning workers cost
    CPU without gain (5-min solo, whole process, in turns with and without: 60.8 -> 55.6 s of
    CPU, 34.4 -> 33.3 s wall, the same bytes)."""
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with blas_one_thread:
            return fn(*args, **kwargs)

    return run


@_blas_on_one_thread
def encode(source: str | os.PathLike | np.ndarray | AudioInput, sr: int | None = None, *,
           options: EncodeOptions | None = None, progress: Progress | None = None) -> Container:
    """Encode a recording (file path, ``-`` for stdin, or array with ``sr``) into a Container.

    Steps: read + downmix, measure loudness, detect drums, transcribe (basic-pitch), split the
    notes into instrument tracks (a mix), estimate tempo/key, fit timbre and GM program per
    track, cut short samples (and one drum one-shot per drum class).  When there are drums, the
    pitched steps work on the audio with the drum hits suppressed.
    """
    opts = options or EncodeOptions()
    inp = _as_input(source, sr)
    if inp.duration > RETURN_BLOCKS_INPUT_S:  # numpy's large temporaries: freed back to the system
        return_large_blocks()
    # a short input's stages reuse the pages the stages before freed (no page faults)
    with keep_freed() if inp.duration <= KEEP_FREED_INPUT_S else contextlib.nullcontext():
        return _encode(inp, opts, progress)


def _encode(inp: AudioInput, opts: EncodeOptions, progress: Progress | None) -> Container:
    """:func:`encode` of the input read."""
    report = progress or (lambda _stage, _frac: None)
    # ~2 s of imports (torch for the timbre fit, scipy's FFT for the analyses) overlap the
    # loudness, the drums and the transcription
    # (onnxruntime runs without the GIL); scikit-learn, for the split of a mix only, is
    # imported when the split knows it needs it (semcodec.separate)
    prefetch(*(("torch",) if opts.fit_timbre else ()), *_ANALYSIS_MODULES)
    report("loudness", 0.0)
    found = None  # the drums' result when it came with the loudness
    if opts.drums != "off" and inp.duration > EARLY_TRANSCRIPTION_MAX_S:
        loudness, found = _loudness_beside_drums(inp, opts)
    else:
        loudness = dsp.integrated_loudness(inp.audio, inp.sample_rate)
    report("loudness", 1.0)
    tracks: list[Track] = []
    drum_samples: tuple[Sample, ...] = ()
    pitched = inp  # the audio of the pitched tracks
    if loudness is not None:
        # a short input is transcribed whole while its drums are looked for (onnxruntime on
        # one thread, numpy on the other): kept when it has none, as most have
        cancel = threading.Event()

        def cancelled(_frac: float) -> None:  # between the transcriber's model batches
            if cancel.is_set():
                raise _Cancelled

        early = (in_background(transcribe, inp.audio, inp.sample_rate, opts.transcribe,
                               progress=cancelled)
                 if opts.drums != "off" and inp.duration <= EARLY_TRANSCRIPTION_MAX_S else None)
        try:
            report("drums", 0.0)
            drum, drum_samples = (found if found is not None
                                  else _drums(inp.audio, inp.sample_rate, opts))
            report("drums", 1.0)
            notes = early() if early is not None and drum is None else None
        except BaseException:
            # (an interrupt): the transcription stops at its next model batch and is joined
            # before this goes on; a process must not exit while onnxruntime runs on a thread
            if early is not None:
                cancel.set()
                _join_discarded(early)
            raise
        if drum is not None:
            # the pitched tracks are transcribed and fitted without the drum hits: they would
            # come out as short spurious notes, mask real ones and colour the timbres (bench
            # band clip: note F1 0.725 -> 0.797, neural mel 0.415 -> 0.343).  The track split
            # still measures its attack features on the original, transients included.
            from semcodec.drums import suppress_percussion

            pitched = replace(inp, audio=suppress_percussion(inp.audio, inp.sample_rate))
        report("transcribe", 0.0)
        if notes is None:
            if early is not None:  # the audio with the drums: not the one transcribed
                cancel.set()
                _join_discarded(early)
            notes = transcribe(pitched.audio, pitched.sample_rate, opts.transcribe,
                               progress=lambda f: report("transcribe", f))
        report("transcribe", 1.0)
        release_free_memory()  # the transcription's freed buffers: not under the stages after
        report("split", 0.0)
        tracks = _split_tracks(inp, tuple(notes), opts.tracks)
        if drum is not None:
            tracks.append(drum)
        tracks = _placed(tracks, inp)
        report("split", 1.0)
    return _assemble(inp, loudness, tracks,
                     {i: inp.audio if t.is_drum else pitched.audio for i, t in enumerate(tracks)},
                     drum_samples, opts, report)


#: Inputs longer than this (s) make the process return large freed blocks to the system at
#: once (:func:`semcodec.runtime.return_large_blocks`): their stages' peaks stand on the
#: temporaries of the stages before them otherwise.  Its price is CPU (page faults: +37 % on a
#: 10-min encode, +46 % on a 60-min one), and only long inputs need it to stay under 1.5 GB
#: (measured without it, docs/ROBUSTNESS.md: 10 min 1067 MB, 60 min 1641 MB; with it 60 min
#: 1487 MB), so it starts at 30 min, between the two measured lengths.
RETURN_BLOCKS_INPUT_S = 1800.0
#: Inputs up to this long (s) are encoded with the C heap keeping what the stages free
#: (:func:`semcodec.runtime.keep_freed`): 30-s stem, CPU 14.3 -> 13.5 s (system time 2.1 ->
#: 1.0 s), peak resident memory ~906 -> ~1046 MB.  Longer ones give it back, for their peaks.
KEEP_FREED_INPUT_S = 60.0


class _Cancelled(Exception):
    """Raised in background work whose result is no longer wanted, to stop it."""


#: Inputs up to this long (s) are transcribed during the drum detection, on a second thread;
#: longer ones after it (their memory peaks do not add up, and the transcription reports
#: its progress).
EARLY_TRANSCRIPTION_MAX_S = 120.0


@_blas_on_one_thread
def encode_stems(stems: list[tuple[str, str | os.PathLike | AudioInput]], *,
                 options: EncodeOptions | None = None,
                 progress: Progress | None = None) -> Container:
    """Encode separate stems (``[(name, file or AudioInput), ...]``) as one named track each.

    The stems are mixed (summed) for the container's length and loudness; a stem whose name
    says drums (``drums``, ``percussion``, ...) becomes a drum track, one whose name says
    voice (``vocals``, ``voice``, ...) is fitted with the voice programs as candidates.  Stems
    may differ in length (the longest sets the duration) but must share one sample rate.
    """
    opts = options or EncodeOptions()
    if not stems:
        raise UsageError("no stems given")
    if len(stems) > MAX_TRACKS:
        raise UsageError(f"at most {MAX_TRACKS} stems, got {len(stems)}")
    names = [name for name, _ in stems]
    for name in names:
        if not name or len(name) > 64:
            raise UsageError(f"stem name {name!r} must be 1..64 characters")
    if len(set(names)) != len(names):
        raise UsageError(f"stem names must differ: {', '.join(names)}")
    report = progress or (lambda _stage, _frac: None)
    if opts.fit_timbre:
        prefetch("torch")  # overlap the stems' transcription
    inputs = [_as_input(src, None) for _, src in stems]
    rate = inputs[0].sample_rate
    for (name, _), inp in zip(stems, inputs):
        if inp.sample_rate != rate:
            raise InputError(f"{inp.name}: stem '{name}' is at {inp.sample_rate} Hz, the first "
                             f"stem at {rate} Hz (stems must share one sample rate)")
    n = max(inp.n_samples for inp in inputs)
    mix = np.zeros(n, np.float32)
    for inp in inputs:
        mix[:inp.n_samples] += inp.audio
    mixed = replace(inputs[0], audio=mix, channels=max(i.channels for i in inputs),
                    name="+".join(i.name for i in inputs), side=None)
    if mixed.duration > RETURN_BLOCKS_INPUT_S:  # as encode()
        return_large_blocks()
    loudness = dsp.integrated_loudness(mix, rate)
    tracks: list[Track] = []
    audio_of: dict[int, np.ndarray] = {}
    drum_samples: tuple[Sample, ...] = ()
    for k, ((name, _), inp) in enumerate(zip(stems, inputs)):
        stem_audio = dsp.fit_length(inp.audio, n)
        if _is_drum_name(name):
            report("drums", 0.0)
            drum, shots = _drums(stem_audio, rate, replace(opts, drums="auto"))
            report("drums", 1.0)
            if drum is None:
                log.warning("stem '%s': no drum hits found; kept as an empty drum track", name)
                tracks.append(Track(name=name, is_drum=True))
                continue
            drum_samples += tuple(replace(s, track=len(tracks)) for s in shots)
            tracks += _placed([replace(drum, name=name)], inp)
            continue
        if dsp.integrated_loudness(stem_audio, rate) is None:
            tracks.append(Track(name=name))
            continue
        report("transcribe", k / len(stems))

        def transcribed(f: float, k: int = k) -> None:
            report("transcribe", (k + f) / len(stems))

        notes = transcribe(stem_audio, rate, opts.transcribe, progress=transcribed)
        program = VOICE_PROGRAMS[0] if is_voice_name(name) else 0
        tracks += _placed([Track(name=name, program=program).with_notes(tuple(notes))], inp)
        audio_of[len(tracks) - 1] = stem_audio
    report("transcribe", 1.0)
    # drum samples were numbered against the drum track's final index already
    return _assemble(mixed, loudness, tracks, audio_of, drum_samples, opts, report,
                     drum_indexed=True)


def _placed(tracks: list[Track], inp: AudioInput) -> list[Track]:
    """``tracks`` with their stereo positions measured in ``inp`` (unchanged for mono input)."""
    if inp.side is None or not tracks:
        return list(tracks)
    from semcodec.stereo import measure_pans

    pans = measure_pans(inp.audio, inp.side, inp.sample_rate, tracks)
    return [replace(t, pan=p) for t, p in zip(tracks, pans)]


def _is_drum_name(name: str) -> bool:
    low = name.lower()
    return any(w in low for w in ("drum", "perc", "kit", "beat"))


def _split_tracks(inp: AudioInput, notes: tuple[Note, ...], n_tracks: int | None) -> list[Track]:
    """The transcribed notes as one track, or split into instrument tracks (a mix)."""
    if not notes:
        return []
    if n_tracks == 1:
        return [Track(name="track1").with_notes(notes)]
    from semcodec.separate import assign_tracks

    a = assign_tracks(inp.audio, inp.sample_rate, notes, n_tracks, side=inp.side)
    out = []
    for k in range(a.n_tracks):
        mine = [notes[i] for i in np.nonzero(a.labels == k)[0]]
        bent = sum(1 for m in mine if m.bends) / max(1, len(mine))
        mid = float(np.median([m.pitch for m in mine])) if mine else 0.0
        # a sung line: most notes carry pitch bends (vibrato, glides) in a singing register
        voice = a.n_tracks > 1 and bent >= 0.5 and 50 <= mid <= 80
        out.append(Track(name="voice" if voice else f"track{k + 1}",
                         program=VOICE_PROGRAMS[0] if voice else 0).with_notes(mine))
    return out


#: The names :func:`_split_tracks` gives the tracks of a split mix before their instruments
#: are known.
_SPLIT_NAME = re.compile(r"track\d+")


def _part_names(tracks: list[Track], programs: dict[int, int]) -> list[str]:
    """Track names for the file (and the MIDI/MusicXML parts): the tracks a mix was split into
    are named by the GM family of their stored program (``bass``, ``piano``, ``piano 2``...);
    a single track, stems and voices keep their names."""
    from semcodec.instrument import FAMILY_NAMES, family_of

    auto = [i for i, t in enumerate(tracks) if not t.is_drum and _SPLIT_NAME.fullmatch(t.name)]
    names = [t.name for t in tracks]
    if len(auto) < 2:
        return names
    seen: dict[str, int] = {}
    for i in auto:
        base = FAMILY_NAMES[family_of(programs.get(i, tracks[i].program))].lower()
        seen[base] = seen.get(base, 0) + 1
        names[i] = base if seen[base] == 1 else f"{base} {seen[base]}"
    return names


def _drums(audio: np.ndarray, sr: int, opts: EncodeOptions):
    """(drum Track or None, its one-shot samples numbered for track 0)."""
    if opts.drums == "off":
        return None, ()
    try:
        from semcodec import drums
    except ImportError as exc:  # pragma: no cover - librosa is a dependency
        log.info("drum detection unavailable (%s)", exc)
        return None, ()
    track, shots = drums.encode_drums(audio, sr, max_bytes=None)
    return track, (shots if opts.samples and track is not None else ())


def _loudness_beside_drums(inp: AudioInput, opts: EncodeOptions) -> tuple[float | None, Any]:
    """``(integrated loudness (LUFS) or None, _drums' result or None)`` of ``inp``: the
    loudness measured on a second thread while the drums are looked for (each takes one
    core: a 5-min input's ~1 s of loudness is hidden).  The drums' result is None for a silent
    input (whose drums the encoder does not look for): an error of the detection on it is
    dropped too."""
    measured = in_background(dsp.integrated_loudness, inp.audio, inp.sample_rate)
    try:
        found = _drums(inp.audio, inp.sample_rate, opts)
    except Exception:
        if measured() is None:
            return None, None
        raise
    except BaseException:  # an interrupt: the measurement is joined before it goes on
        _join_discarded(measured)
        raise
    loudness = measured()
    return loudness, (found if loudness is not None else None)


def _with_tempo_map(score: Score, inp: AudioInput) -> Score:
    """``score`` with the beats, downbeats and meter found in the audio (semcodec.beats;
    ~0.3 s per 30 s): its tempo becomes the beats' in quarter notes per minute."""
    from semcodec.beats import analyze

    tm = analyze(inp.audio, inp.sample_rate)
    if tm is None:
        return score
    return replace(score, tempo_map=tm, time_signature=tm.time_signature,
                   tempo_bpm=round(tm.tempo_bpm * tm.quarters_per_beat, 2))


def _assemble(inp: AudioInput, loudness: float | None, tracks: list[Track],
              audio_of: dict[int, np.ndarray], drum_samples: tuple[Sample, ...],
              opts: EncodeOptions, report: Progress, drum_indexed: bool = False) -> Container:
    """Fit every pitched track against its own audio (the mix, or its stem) and build the file."""
    if not drum_indexed:
        drum_at = [i for i, t in enumerate(tracks) if t.is_drum]
        drum_samples = tuple(replace(s, track=drum_at[0]) for s in drum_samples) if drum_at else ()
    all_notes = tuple(n for t in tracks if not t.is_drum for n in t.notes)
    score = Score(tracks=tuple(tracks), tempo_bpm=estimate_tempo(all_notes),
                  key=estimate_key(all_notes))
    # the beats (numpy, librosa's STFT) are found on a second thread while the timbres are
    # fitted (torch on one thread): the same tempo map, ~0.5 s less per 30 s on two cores
    tempo_of = in_background(_with_tempo_map, score, inp) if loudness is not None else None
    timbres: list = []
    samples: list = list(drum_samples)
    programs = {i: t.program for i, t in enumerate(tracks)}
    engines: dict[int, tuple[str, float]] = {}
    # tracks that share one audio array (the tracks of a mix) are fitted together, so that each
    # is fitted against its own part of the mix; a stem is fitted alone against its own audio
    groups: dict[int, list[int]] = {}
    for i, t in enumerate(tracks):
        if not t.is_drum and t.notes:
            groups.setdefault(id(audio_of[i]), []).append(i)
    n_fit = sum(len(m) for m in groups.values())
    from semcodec import sampleuse

    # the measures of the one audio the tracks are fitted against, which the track renders'
    # choice and the round trip then measure against (sampleuse.target_measures keeps them),
    # are made on the second thread during the fit (torch on one thread)
    measured = (in_background(sampleuse.target_measures,
                              audio_of[next(iter(groups.values()))[0]], inp.sample_rate)
                if opts.track_renders and loudness is not None and len(groups) == 1
                and inp.duration <= sampleuse.TARGET_KEEP_MAX_S else None)
    # so are the original's log-mels that the residuals' judges measure against
    # (semcodec.residual_judge keeps them), for an input whose residual is coded whole
    judged = None
    if (opts.residual and loudness is not None
            and inp.duration <= SPECULATIVE_RESIDUAL_MAX_S):
        from semcodec import residual_judge

        judged = in_background(residual_judge.prepare_reference, inp.audio, inp.sample_rate)
    if groups and (opts.fit_timbre or opts.samples):
        done = 0
        for members in groups.values():
            sub = Score(tracks=tuple(tracks[i] for i in members))

            def fit_progress(frac: float, first: int = done, n: int = len(members)) -> None:
                # this group's fraction -> "fit track K/N" over all the fitted tracks
                k = min(n - 1, int(frac * n))
                report(f"fit track {first + k + 1}/{n_fit}", frac * n - k)

            def samples_progress(frac: float, first: int = done, n: int = len(members)) -> None:
                report("samples", (first + frac * n) / n_fit)

            tb, smp, progs, engs = _fit(AudioInput(audio=audio_of[members[0]],
                                                   sample_rate=inp.sample_rate, channels=1,
                                                   name=inp.name), sub, opts,
                                        samples_progress, fit_progress)
            done += len(members)
            timbres += [replace(t, track=members[t.track]) for t in tb]
            samples += [replace(x, track=members[x.track]) for x in smp]
            programs.update({members[j]: p for j, p in progs.items()})
            engines.update({members[j]: e for j, e in engs.items()})
    if tempo_of is not None:
        score = tempo_of()
    names = _part_names(tracks, programs)
    score = replace(score, tracks=tuple(
        replace(t, name=names[i], program=programs.get(i, t.program),
                engine=engines.get(i, ("", 0.0))[0],
                engine_gain_db=round(float(engines.get(i, ("", 0.0))[1]), 2))
        for i, t in enumerate(tracks)))
    texts = {"lyrics": opts.lyrics} if opts.lyrics else {}
    c = Container(
        duration=inp.duration,
        sample_rate=inp.sample_rate,
        channels=inp.channels,
        n_samples=inp.n_samples,
        loudness_lufs=None if loudness is None else round(loudness, 2),
        score=score,
        timbres=tuple(sorted(timbres, key=lambda t: t.track)),
        tags=dict(opts.tags),
        texts=texts,
        encoder=f"semcodec {__version__}",
        neural_model=_neural_model_key(),
    )
    release_free_memory()  # the fit's and the beats' freed temporaries
    synth: list[tuple[Container, Callable[[], Any]]] = []
    try:
        if measured is not None:
            measured()
        if judged is not None:
            _join_discarded(judged)
        c = _spend(c, [audio_of[m[0]] for m in groups.values()], list(groups.values()),
                   inp.sample_rate, tuple(samples), opts)
        # the mix's loudness (synth_lufs) of the file whose residual is waited for, measured
        # meanwhile (the main thread's core is idle then): the final file's unless the notes
        # are led again after the residual
        c = _clear_notes_and_residual(
            c, inp, opts, report,
            on_repaired=lambda cc: synth.append((cc, in_background(_synth_lufs, cc))),
            on_synth_lufs=lambda cc, v: synth.append((cc, lambda: v)))
        return _with_synth_loudness(c, opts.target_kbps, synth[0] if synth else None)
    finally:
        for _, pending in synth:  # joined (its error, if any, surfaces where it is used)
            _join_discarded(pending)
        sampleuse.forget_target()  # the measures of this input, kept for its two measures
        judge = sys.modules.get("semcodec.residual_judge")  # (imported by the residual only)
        if judge is not None:
            judge.forget_reference()  # the original's log-mels, shared by its residuals' judges
        resid = sys.modules.get("semcodec.residual")
        if resid is not None:
            resid.forget_noise()  # the noise spectra its residuals' analyses shared


#: Inputs up to this long (s) have their residual coded on second threads while the
#: round-trip repair runs: that of the file as it is (kept when the repair changes nothing)
#: and that of the repair's latest round's first candidate (kept when the repair ends with
#: it); longer ones one after the other, so that the peaks of memory do not add up.
SPECULATIVE_RESIDUAL_MAX_S = 120.0


def _clear_notes_and_residual(c: Container, inp: AudioInput, opts: EncodeOptions,
                              report: Progress,
                              on_repaired: Callable[[Container], None] | None = None,
                              on_synth_lufs: Callable[[Container, float | None], None]
                              | None = None) -> Container:
    """``c`` with the notes that its decode hides under a note an octave below made audible
    again (:func:`encode_budget._with_clear_notes`) and its tracks' notes started earlier by
    the lag with which its decode makes them heard (:func:`encode_budget._with_aligned_onsets`),
    then its residual coded against that decode with the bytes left, then the notes led
    further by the lag the decode with its residual still has (the residual unchanged: its
    levels are the original's, whatever the decode; not measured when the first alignment
    heard every track on time, nor for an input over MEASURE_WHOLE_MAX_S, whose digest has
    no residual to measure).  The same bytes as one after the other:
    residuals are coded meanwhile on second threads, of the unrepaired ``c`` and of the first
    candidate of each round of the repair as soon as it is made (which cancels that of the
    round before); the one of the file the repair and the alignment return is used, the
    others are cancelled (they stop at their next check) and joined; when none matches, the
    residual is coded after them.  A file the repair rules out is cancelled as soon as it
    does: the unrepaired ``c`` when a candidate is accepted, a candidate when it is refused;
    while a candidate is measured, the unrepaired ``c``'s coding waits (at its next check)
    and goes on if the candidate is refused: the candidate's coding has the second core to
    itself (S07, whose candidate is accepted: ~0.5 s of CPU less).  ``on_repaired(file)``,
    when given, is called with the file whose residual is then waited for (an input whose
    residual is coded speculatively), before the wait.  ``on_synth_lufs(file, value)``, when
    given, is called with the file whose residual is coded and its header's ``synth_lufs``
    when the residual measures it on the way (:func:`encode_budget._with_residual`)."""
    residual = opts.residual and c.loudness_lufs is not None
    speculate = residual and inp.duration <= SPECULATIVE_RESIDUAL_MAX_S
    #: (file, its switches, its residual's result) of each speculative coding, ``c``'s first
    early: list[tuple[Container, _Speculation, Callable[[], Any]]] = []

    def start(cc: Container) -> None:
        cancel = _Speculation()
        early.append((cc, cancel, in_background(
            _with_residual, cc, inp.audio, _bytes_left(cc, opts.target_kbps),
            stop=cancel.check)))

    def on_candidate(cc: Container) -> None:
        for _, cancel, _ in early[1:]:  # an earlier round's candidate is not the result
            cancel.set()
        if early:
            early[0][1].pause()  # ``c``'s waits while the candidate is measured
        start(cc)

    def on_verdict(cc: Container, accepted: bool) -> None:
        # a candidate accepted: the repair does not return the unrepaired ``c``; one refused
        # is not the result: the residuals coded of either stop now (not after the repair)
        for k, (sc, cancel, _) in enumerate(early):
            if ((k == 0 and accepted and cc.score != c.score)
                    or (k > 0 and not accepted and sc.score == cc.score)):
                cancel.set()
        if early and not accepted:
            early[0][1].resume()  # ``c`` may be the result again

    if speculate:
        start(c)
    # the repair's decodes (and its transcription of the unrepaired one) are kept for the
    # alignment's first measure, which decodes (and hears) the tracks the repair ended with
    measured = Measured()
    #: the leads the alignment's first pass found (none when it did not hear the decode)
    first_leads: list[dict[int, float]] = []
    from semcodec import digest
    from semcodec.synth import neural

    # the repair's and the alignment's decodes differ from one another in a few tracks (the
    # notes of some raised, or led): an input they measure whole keeps its tracks' renders
    # meanwhile, the others are not rendered again (a longer one is measured on spans)
    keep = (neural.keep_renders() if inp.duration <= digest.LONG_MEASURE_S
            else contextlib.nullcontext())
    try:
        with keep:
            cleared = _with_clear_notes(c, inp.audio,
                                        on_candidate=on_candidate if speculate else None,
                                        measured=measured,
                                        on_verdict=on_verdict if speculate else None)
            repaired = _with_aligned_onsets(cleared, inp.audio, measured=measured,
                                            on_leads=first_leads.append)
    except BaseException:
        # (an interrupt): the speculative residuals stop at their next check (a transcription
        # of theirs at its next model batch) and are joined before this goes on; a process
        # must not exit while onnxruntime runs on a thread
        for _, cancel, _ in early:
            cancel.set()
        for _, _, result in early:
            _join_discarded(result)
        raise
    del measured
    if residual:
        report("residual", 0.0)
        release_free_memory()  # the repair's freed renders: the residual's peak is the encode's
        kept = next((k for k, (cc, cancel, _) in enumerate(early) if not cancel.is_set()
                     and (cc is repaired or cc.score == repaired.score)), None)
        if speculate and on_repaired is not None:
            on_repaired(repaired)
        # the speculative residuals of files that are not kept stop at their next check
        # (between their analysis passes) instead of taking a core from this
        for k, (_, cancel, _) in enumerate(early):
            if k != kept:
                cancel.set()
        if kept is not None:
            early[kept][1].resume()  # (paused by a candidate whose measure failed)
            repaired = early[kept][2]()
        else:
            measures: dict[str, Any] = ({} if on_synth_lufs is None else
                                        {"on_synth_lufs": functools.partial(on_synth_lufs,
                                                                            repaired)})
            repaired = _with_residual(repaired, inp.audio,
                                      _bytes_left(repaired, opts.target_kbps), **measures)
        for k, (_, _, result) in enumerate(early):
            if k != kept:
                _join_discarded(result)
        report("residual", 1.0)
        if (repaired.residual and not (first_leads and not first_leads[0])
                and inp.duration <= MEASURE_WHOLE_MAX_S):
            # the residual's attenuation of the decode's attacks delays where they are heard
            # again (bench strings ensemble: ~40 ms more): the notes are led by that too;
            # not measured again when the first pass heard every track on time (no lead of
            # MIN_LAG_S or more: ~1 s of CPU for a 30-s stem, bench quality unchanged), nor
            # for a longer input: it would be measured on a digest, and a digest has no
            # residual (encode_budget._with_aligned_onsets), so the pass would only measure
            # again, on a part, the lag the first pass corrected (a 5-min mix: no lead found,
            # ~5 s of CPU)
            repaired = _with_aligned_onsets(repaired, inp.audio, reference=cleared.score.tracks,
                                            whole_max_s=MEASURE_WHOLE_MAX_S)
    return repaired


class _Speculation:
    """The switches of work done speculatively on a second thread, which calls
    :meth:`check` between its steps: cancelled (:meth:`set`: it stops at its next check) or
    paused (:meth:`pause`: its next check waits until :meth:`resume` or :meth:`set`)."""

    def __init__(self) -> None:
        self._cancel = threading.Event()
        self._go = threading.Event()
        self._go.set()

    def set(self) -> None:
        """Cancel the work (a paused one goes on, to stop at once)."""
        self._cancel.set()
        self._go.set()

    def is_set(self) -> bool:
        """Whether the work was cancelled."""
        return self._cancel.is_set()

    def pause(self) -> None:
        if not self._cancel.is_set():
            self._go.clear()

    def resume(self) -> None:
        self._go.set()

    def check(self) -> bool:
        """The worker's check: waits while paused; True once cancelled."""
        self._go.wait()
        return self._cancel.is_set()


def _join_discarded(result: Callable[[], Any]) -> None:
    """Wait for background work whose result is not used (an error of it is logged only)."""
    try:
        result()
    except Exception as exc:  # noqa: BLE001 - its result, error included, is discarded
        log.debug("cancelled background work ended with %s", exc)


#: Modules the encoder's analyses import (the beats, the residual's judge): prefetched.
#: (Not librosa: its filters and STFT come from semcodec.filterbanks, without its ~1.6 s of
#: imports.)
_ANALYSIS_MODULES = ("scipy.fft",)


#: The program candidates of a track's timbre fit are the common programs of the fewest
#: families the instrument classifier finds likely with this probability in all (and the
#: classifier's program): fewer renderings than all the common programs ...
CLASSIFIER_FAMILY_MASS = 0.95
#: ... when its top family has at least this probability (bench: a solo it gave guitar at
#: 0.40 was best fitted from an alto sax, 0.038 lower mel than from its guitars); all of
#: them when it is less sure.
CLASSIFIER_MIN_FAMILY_P = 0.7


def _fit(inp: AudioInput, score: Score, opts: EncodeOptions,
         samples_progress: Callable[[float], None] | None = None,
         fit_progress: Callable[[float], None] | None = None):
    """(timbres, samples, {track: GM program}, {track: (engine, gain dB)}) of ``score``'s
    tracks fitted against ``inp``; without torch, no timbres (a log line), the instrument
    classifier's programs (else the tracks' own) and no engine preferences."""
    guesses = _classify_instruments(inp, score)
    programs = {i: t.program for i, t in enumerate(score.tracks)}
    programs.update({i: g.program for i, g in guesses.items()})  # when nothing is fitted
    engines: dict = {}
    try:
        from semcodec import timbre
    except ImportError as exc:
        log.info("timbre fitting unavailable (%s); storing the score only", exc)
        return (), (), programs, engines
    samples: tuple[Sample, ...] = ()
    if opts.samples:
        if samples_progress is not None:
            samples_progress(0.0)
        samples = timbre.extract_samples(inp.audio, inp.sample_rate, score,
                                         count=_excerpts_per_track(inp, score, opts))
        if samples_progress is not None:
            samples_progress(1.0)
    timbres: tuple = ()
    if opts.fit_timbre:
        if fit_progress is not None:
            fit_progress(0.0)  # loading the model and warming up take seconds
        try:
            timbres, programs, engines = timbre.fit_timbres(
                inp.audio, inp.sample_rate, score, samples=samples, budget_s=opts.fit_budget_s,
                progress=fit_progress, priors={
                    i: (g.program, frozenset(g.top_families(CLASSIFIER_FAMILY_MASS)))
                    for i, g in guesses.items() if g.family_p >= CLASSIFIER_MIN_FAMILY_P})
        except SynthError as exc:
            log.warning("timbre fitting skipped: %s", exc)
    medians = {i: float(np.median([n.pitch for n in t.notes]))
               for i, t in enumerate(score.tracks) if t.notes}
    return (timbres, samples, _instrument_programs(programs, guesses, timbres, engines, medians),
            engines)


def _instrument_programs(programs: dict[int, int], guesses: dict, timbres: tuple,
                         engines: dict, medians: dict[int, float] | None = None
                         ) -> dict[int, int]:
    """The stored GM program per track (the MIDI/MusicXML instrument, the fluidsynth patch):
    the instrument classifier's where no timbre was fitted; where one was, the fit's program
    unless the classifier finds another family much likelier, or, in a bass's register
    (``medians``: each track's median MIDI pitch), names Bass
    (:func:`semcodec.instrument.overrides`), then the classifier's.  A track the fit gave to
    the fluidsynth engine keeps the fit's program (the engine choice was made with it); a track
    the neural engine plays sounds the same with either program (its fitted embedding is used,
    not the program's)."""
    from semcodec import instrument

    fitted = {t.track for t in timbres}
    out = dict(programs)
    for i, g in guesses.items():
        if i not in fitted:
            out[i] = g.program
        elif engines.get(i, ("",))[0] != "fluidsynth" and instrument.overrides(
                g, out[i], (medians or {}).get(i)):
            log.info("track %d: GM program %d (fit) -> %d (instrument classifier)", i, out[i],
                     g.program)
            out[i] = g.program
    return out


def _classify_instruments(inp: AudioInput, score: Score) -> dict:
    """``{track: semcodec.instrument.Guess}`` for the pitched tracks that are not voices;
    empty without the classifier's weights."""
    from semcodec import instrument

    if not instrument.weights_available():
        return {}
    todo = [i for i, t in enumerate(score.tracks) if not t.is_drum and t.notes
            and not is_voice_name(t.name) and t.program not in VOICE_PROGRAMS]
    try:
        # (the tracks of a mix share one audio: its spectrograms are made once for all)
        out = instrument.classify_tracks(inp.audio, inp.sample_rate,
                                         {i: score.tracks[i].notes for i in todo})
        for i, g in out.items():
            if log.isEnabledFor(logging.INFO):  # its name imports pretty_midi (~0.2 s)
                log.info("track %d: instrument %s (%s, p %.2f)", i,
                         instrument.program_name(g.program),
                         instrument.FAMILY_NAMES[g.family], g.family_p)
    except SynthError as exc:
        log.warning("instrument classifier skipped: %s", exc)
        return {}
    return out


#: Bytes of one 2-s Opus excerpt (about), for sizing the candidates to the budget.
EXCERPT_BYTES = 1700


def _excerpts_per_track(inp: AudioInput, score: Score, opts: EncodeOptions) -> int:
    """Candidate excerpts per pitched track: as many as the bitrate target could pay for
    (a long input affords several; 1..8), each then kept only if it measures worth its bytes."""
    from semcodec.budget import budget_bytes

    pitched = sum(1 for t in score.tracks if t.notes and not t.is_drum) or 1
    spare = budget_bytes(opts.target_kbps, inp.duration) - 300 - 8 * score.n_notes
    return int(max(1, min(8, spare // (EXCERPT_BYTES * pitched))))
