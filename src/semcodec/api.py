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

import logging
import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Generator, Iterable, Iterator, cast

import numpy as np

from semcodec import __version__
from semcodec import container as _container
from semcodec.audio import AudioInput, from_array, read_audio
from semcodec.constants import (
    DEFAULT_MAX_DECODE_S,
    GM_PROGRAM_MAX,
    GM_PROGRAM_MIN,
    MAX_TRACKS,
    TEMPO_FACTOR_MAX,
    TEMPO_FACTOR_MIN,
    TRANSPOSE_MAX_SEMITONES,
    VOICE_PROGRAMS,
    is_voice_name,
)
from semcodec.errors import (
    InputError,
    OutputTooLargeError,
    OutputTooLongError,
    SynthError,
    UsageError,
)
from semcodec.events import Note, Sample, Score, Track, TrackRender
from semcodec.score import estimate_key, estimate_tempo, write_midi, write_musicxml
from semcodec.synth import dsp
from semcodec.synth.engine import ENGINES, Engine, available_engines, make_engine, reblock
from semcodec.transcribe import TranscribeOptions, transcribe

log = logging.getLogger(__name__)

__all__ = ["ENGINES", "Container", "DecodeOptions", "DecodeStream", "EncodeOptions", "Engine",
           "available_engines", "decode", "decode_stream", "decode_tracks", "encode",
           "encode_stems", "load", "make_engine", "parse_program_map"]

#: ``progress(stage, fraction)``: ``stage`` is one of the names of :data:`ENCODE_STAGES` /
#: :data:`DECODE_STAGES`, followed by `` track K/N`` for the per-track stages; ``fraction``
#: (0..1) is the part of that stage (of that track) done.
Progress = Callable[[str, float], None]
#: The stages :func:`encode` reports, in order, with their typical share of its time (measured
#: on 30-s clips; for an overall fraction and ETA, see :func:`progress_fraction`).
#: The stages :func:`decode` / :func:`decode_tracks` report: ``engine`` (loading the
#: synthesizer: torch and the model, ~4 s), ``render track K/N`` per sounding track,
#: ``loudness``; "write" is the caller's (the CLI reports writing the file under that name).
#: Weights measured on a 30-s clip; rendering grows with the length, loading does not.
DECODE_STAGES = (("engine", 0.40), ("render", 0.40), ("loudness", 0.05), ("residual", 0.05),
                 ("write", 0.10))
ENCODE_STAGES = (("loudness", 0.04), ("drums", 0.07), ("transcribe", 0.13), ("split", 0.08),
                 ("samples", 0.01), ("fit", 0.47), ("residual", 0.20))


def progress_fraction(stage: str, frac: float,
                      stages: tuple[tuple[str, float], ...] = ENCODE_STAGES) -> float | None:
    """The overall fraction (0..1) of a job at ``progress(stage, frac)``; None for a stage
    that is not in ``stages``.  ``fit track 2/4`` at 0.5 counts as 1.5 of the 4 tracks."""
    name, _, rest = stage.partition(" ")
    frac = min(max(float(frac), 0.0), 1.0)
    if rest.startswith("track "):
        k, _, n = rest[len("track "):].partition("/")
        try:
            frac = min(1.0, (int(k) - 1 + frac) / max(1, int(n)))
        except ValueError:
            pass
    start = 0.0
    total = sum(w for _, w in stages)
    for n_, w in stages:
        if n_ == name:
            return min(1.0, (start + w * frac) / total)
        start += w
    return None


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
    report = progress or (lambda _stage, _frac: None)
    # ~4 s of imports (torch for the timbre fit, scikit-learn for the track split)
    # overlap the loudness and the transcription (onnxruntime runs without the GIL)
    _prefetch(*(("torch",) if opts.fit_timbre else ()),
              *(("sklearn.mixture",) if opts.tracks != 1 else ()))
    report("loudness", 0.0)
    loudness = dsp.integrated_loudness(inp.audio, inp.sample_rate)
    report("loudness", 1.0)
    tracks: list[Track] = []
    drum_samples: tuple[Sample, ...] = ()
    pitched = inp  # the audio of the pitched tracks
    if loudness is not None:
        report("drums", 0.0)
        drum, drum_samples = _drums(inp.audio, inp.sample_rate, opts)
        report("drums", 1.0)
        if drum is not None:
            # the pitched tracks are transcribed and fitted without the drum hits: they would
            # come out as short spurious notes, mask real ones and colour the timbres (bench
            # band clip: note F1 0.725 -> 0.797, neural mel 0.415 -> 0.343).  The track split
            # still measures its attack features on the original, transients included.
            from semcodec.drums import suppress_percussion

            pitched = replace(inp, audio=suppress_percussion(inp.audio, inp.sample_rate))
        report("transcribe", 0.0)
        notes = transcribe(pitched.audio, pitched.sample_rate, opts.transcribe,
                           progress=lambda f: report("transcribe", f))
        report("transcribe", 1.0)
        report("split", 0.0)
        tracks = _split_tracks(inp, tuple(notes), opts.tracks)
        if drum is not None:
            tracks.append(drum)
        tracks = _placed(tracks, inp)
        report("split", 1.0)
    return _assemble(inp, loudness, tracks,
                     {i: inp.audio if t.is_drum else pitched.audio for i, t in enumerate(tracks)},
                     drum_samples, opts, report)


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
        _prefetch("torch")  # overlap the stems' transcription
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
    if loudness is not None:
        score = _with_tempo_map(score, inp)
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
    score = replace(score, tracks=tuple(
        replace(t, program=programs.get(i, t.program),
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
    )
    c = _spend(c, [audio_of[m[0]] for m in groups.values()], list(groups.values()),
               inp.sample_rate, tuple(samples), opts)
    if opts.residual and c.loudness_lufs is not None:
        # the residual is coded last, against the final decode, with the bytes left
        report("residual", 0.0)
        c = _with_residual(c, inp.audio, _bytes_left(c, opts.target_kbps))
        report("residual", 1.0)
    return c


#: Bytes of a chunk's framing (type, length, CRC32).
_CHUNK_FRAMING = 12


def _bytes_left(c: Container, max_kbps: float) -> int:
    """Bytes ``c`` may still grow by within ``max_kbps``."""
    return int(max_kbps * 1000.0 / 8.0 * c.duration) - len(c.to_bytes())


def _with_residual(c: Container, original: np.ndarray, max_bytes: int) -> Container:
    """``c`` with a RESD chunk of at most ``max_bytes`` (framing included) coding what its
    default decode still misses of ``original`` (mono float32 at ``c.sample_rate``); ``c``
    unchanged when nothing helps, nothing fits or the decode fails."""
    from semcodec import residual

    room = max_bytes - _CHUNK_FRAMING
    if room < 8:
        log.info("residual: no room left in the budget (%d bytes)", max_bytes)
        return c
    try:
        decoded, _ = decode(c, DecodeOptions(residual=False, channels=1, max_duration_s=None))
    except SynthError as exc:
        log.warning("residual skipped: the decode failed (%s)", exc)
        return c
    payload = residual.encode_residual(original, decoded, c.sample_rate, max_bytes=room)
    log.info("residual: %d bytes of the %d left in the budget", len(payload), max_bytes)
    return replace(c, residual=payload) if payload else c


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


#: Bytes a sample adds to the SAMP chunk besides its data (track, times, rate, codec name).
SAMPLE_FIELD_BYTES = 24


def _spend(c: Container, audios: list[np.ndarray], groups: list[list[int]], sr: int,
           samples: tuple[Sample, ...], opts: EncodeOptions,
           residual_for: Callable[[Container], Any] | None = None) -> Container:
    """``c`` completed within the bitrate target: each pitched track gets the render the
    encoder measured best (semcodec.sampleuse), and the candidate ``samples`` (excerpts of
    the tracks of ``groups``, whose audio at ``sr`` is ``audios``; drum one-shots) are kept
    in order of measured benefit per byte while they fit (semcodec.budget).

    ``residual_for(base)`` is the seam of the residual layer (issue 10 item 1): given the file
    without excerpts, it returns a :class:`semcodec.budget.ResidualCoder` (``code(max_bytes)``,
    ``benefit(payload)``) over the original and that file's decode, or None; an excerpt is
    then kept only if it gains more than the residual would with its bytes.  The residual
    itself is coded afterwards against the final decode with the bytes left (not in this
    module).  None (the default here, until the residual layer is in this build): excerpts
    compete with each other only."""
    from semcodec import budget

    total = budget.budget_bytes(opts.target_kbps, c.duration)
    first: dict[int, Sample] = {}
    for s in samples:
        if s.key is None:
            first.setdefault(s.track, s)
    several = len(first) < sum(1 for s in samples if s.key is None)
    # each track's first (best) excerpt is measured alone; a track with several is measured
    # with all of them too, offered as an upgrade (the increment over the first)
    one = {}
    choices = {}
    if opts.track_renders:
        one = _measure_renders(c, audios, groups, sr, tuple(first.values()))
        choices = (_measure_renders(c, audios, groups, sr, samples) if several else one)
    # the renders that need no excerpt belong to the base file; a track's excerpt, when kept,
    # brings its own render
    base_score = replace(c.score, tracks=tuple(
        replace(t, render=one[i].plain) if i in one else t
        for i, t in enumerate(c.score.tracks)))
    base = replace(c, score=base_score, samples=())
    base_bytes = len(base.to_bytes())
    parts = [budget.Part("base", "score", base_bytes, required=True)]
    for k, smp in enumerate(samples):
        if smp.key is not None:
            parts.append(budget.Part(f"oneshot{k}", "oneshot", len(smp.data) + SAMPLE_FIELD_BYTES))

    def render_bytes(i: int, render) -> int:  # header bytes the track's render adds
        tracks = tuple(replace(t, render=render) if j == i else t
                       for j, t in enumerate(base.score.tracks))
        return max(0, len(replace(base, score=replace(base.score, tracks=tracks)).to_bytes())
                   - base_bytes)

    variants: dict[str, tuple[int, TrackRender | None, tuple[Sample, ...]]] = {}
    for i, ch in one.items():
        if i not in first:
            continue
        base_kept = ch.uses_sample
        if base_kept:
            cost = len(first[i].data) + SAMPLE_FIELD_BYTES + render_bytes(i, ch.render)
            variants[f"sample{i}"] = (i, ch.render, (first[i],))
            parts.append(budget.Part(f"sample{i}", "sample", cost, ch.sample_benefit))
        more = choices.get(i)
        mine = tuple(s for s in samples if s.track == i and s.key is None)
        if more is None or more is ch or not more.uses_sample or len(mine) < 2:
            continue
        variants[f"sample{i}+"] = (i, more.render, mine)
        full = sum(len(s.data) + SAMPLE_FIELD_BYTES for s in mine) + render_bytes(i, more.render)
        if base_kept:  # an upgrade: the increment over the first excerpt
            parts.append(budget.Part(f"sample{i}+", "sample", max(0, full - parts[-1].nbytes),
                                     more.sample_benefit - ch.sample_benefit,
                                     requires=f"sample{i}"))
        else:  # only the excerpts together pay
            parts.append(budget.Part(f"sample{i}+", "sample", full, more.sample_benefit))
    if not opts.track_renders:  # excerpts stored unplayed (format 1.2): by the old order
        for k, smp in enumerate(samples):
            if smp.key is None:
                parts.append(budget.Part(f"excerpt{k}", "sample",
                                         len(smp.data) + SAMPLE_FIELD_BYTES, 1e-9))
    coder = residual_for(base) if residual_for is not None else None
    alloc = budget.allocate(total, parts,
                            residual=coder.code if coder is not None else None,
                            residual_benefit=coder.benefit if coder is not None else None)

    def build(keep: set[str]) -> Container:
        tracks = list(base.score.tracks)
        kept = [s for k, s in enumerate(samples)
                if f"oneshot{k}" in keep or f"excerpt{k}" in keep]
        for name in sorted(keep & set(variants)):
            i, render, excerpts = variants[name]
            if name.endswith("+") or f"sample{i}+" not in keep:
                tracks[i] = replace(tracks[i], render=render)
                kept += list(excerpts)
        kept.sort(key=lambda s: (s.track, s.key is not None, s.start))
        return replace(base, score=replace(base.score, tracks=tuple(tracks)),
                       samples=tuple(kept))

    keep = {p.name for p in alloc.kept}
    out = build(keep)
    # the estimates above leave out a few bytes of chunk framing: drop the least useful part
    # (an upgrade before its base) until the file is within the target (never beyond it)
    optional = sorted((p for p in alloc.kept if not p.required),
                      key=lambda p: (p.requires is None, p.density))
    while len(out.to_bytes()) > total and optional:
        keep.discard(optional.pop(0).name)
        out = build(keep)
    return out


def _measure_renders(c: Container, audios: list[np.ndarray], groups: list[list[int]], sr: int,
                     samples: tuple[Sample, ...]) -> dict:
    """{track: sampleuse.Choice} for the pitched tracks of ``groups`` (empty when the
    engines are unavailable or the file is silent)."""
    from semcodec import sampleuse

    if c.loudness_lufs is None or not groups:
        return {}
    m_sr = sampleuse.MEASURE_SR
    n = int(round(c.n_samples * m_sr / c.sample_rate))
    try:
        shape = _DecodeShape(m_sr, n, 1)
        renderer = _Renderer(c, DecodeOptions(sample_rate=m_sr, channels=1,
                                              track_renders=False), shape)
    except SynthError as exc:
        log.info("track renders not measured: %s", exc)
        return {}

    def engine(i: int, track: Track) -> np.ndarray:
        tracks = tuple(track if j == i else replace(t, notes=())
                       for j, t in enumerate(c.score.tracks))
        return renderer.render(replace(c.score, tracks=tracks))

    out = {}
    for audio, members in zip(audios, groups):
        try:
            for ch in sampleuse.choose(audio, sr, c.score, members, samples, engine):
                out[ch.track] = ch
        except SynthError as exc:
            log.warning("track renders of tracks %s not measured: %s",
                        ", ".join(str(i + 1) for i in members), exc)
    return out


def _prefetch(*modules: str) -> None:
    """Import ``modules`` in a background thread (a pure speed-up: errors are ignored here and
    surface, if at all, where the modules are really used)."""
    if not modules:
        return
    import importlib
    import threading

    def work() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - optional; the real import reports problems
                return

    threading.Thread(target=work, name="semcodec-prefetch", daemon=True).start()


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
                progress=fit_progress)
        except SynthError as exc:
            log.warning("timbre fitting skipped: %s", exc)
    return timbres, samples, _instrument_programs(programs, guesses, timbres, engines), engines


def _instrument_programs(programs: dict[int, int], guesses: dict, timbres: tuple,
                         engines: dict) -> dict[int, int]:
    """The stored GM program per track (the MIDI/MusicXML instrument, the fluidsynth patch):
    the instrument classifier's where no timbre was fitted; where one was, the fit's program
    unless the classifier finds another family much likelier
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
        elif engines.get(i, ("",))[0] != "fluidsynth" and instrument.overrides(g, out[i]):
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
    out = {}
    try:
        for i in todo:
            g = instrument.classify_track(inp.audio, inp.sample_rate, score.tracks[i].notes)
            if g is not None:
                out[i] = g
                log.info("track %d: instrument %s (%s, p %.2f)", i,
                         instrument.program_name(g.program), instrument.FAMILY_NAMES[g.family],
                         g.family_p)
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


@dataclass(frozen=True)
class DecodeOptions:
    """Decoder settings: the engine, the output format and the decode-time edits.

    ``engine``: "auto", "neural" or "fluidsynth" (auto: neural when available, except the
    tracks the encoder found closer with fluidsynth); ``device``: where the neural engine runs;
    ``soundfont``: the fluidsynth soundfont (None: the default one); ``sample_rate``: output
    rate in Hz (None: the original's); ``channels``: 1, 2 or None (two channels when the
    original had two or more); ``programs``: track index -> GM program (re-orchestration);
    ``transpose``: semitones for the pitched tracks; ``tempo``: > 1 plays faster;
    ``max_duration_s``: longest output rendered (s, after ``tempo``; None: no limit), longer
    ones raise :class:`~semcodec.errors.OutputTooLongError` before any work;
    ``residual``: add the file's residual (RESD chunk: shaped noise where the synthesis lacks
    energy, attenuation where it has too much); it follows a tempo change and ignores
    ``programs``/``transpose``.  Values are checked when a container is decoded.
    """

    engine: str = "auto"
    device: str = "auto"
    soundfont: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    programs: dict[int, int] | None = None
    transpose: int = 0
    tempo: float = 1.0
    max_duration_s: float | None = DEFAULT_MAX_DECODE_S
    residual: bool = True
    #: Play each track as its stored ``render`` says (its excerpt as a sampler or a voice, its
    #: spectral correction and room; format 1.4); False: the engines alone.  Only with the
    #: automatic engine choice (they were measured with it): an explicitly chosen engine, or a
    #: track whose program is overridden by ``programs``, is played by the engines alone.
    track_renders: bool = True


def decode(c: _container.SmcFile, options: DecodeOptions | None = None, *,
           progress: Progress | None = None, **overrides: Any) -> tuple[np.ndarray, int]:
    """Synthesize a container: returns float32 audio and its sample rate (Hz).

    Settings come from ``options`` (:class:`DecodeOptions`), any field of which may also be
    given (or overridden) as a keyword: ``decode(c, engine="fluidsynth", transpose=2)``.

    The audio is mono ``(n,)``, or ``(n, 2)`` for ``channels=2``.  In stereo every track is
    placed at its stored pan (:func:`semcodec.synth.dsp.pan_stereo`); the downmix
    ``(left + right) / 2`` is the mono output.  The output has the original's duration to the
    sample (divided by ``tempo`` when it is not 1), its sample rate unless ``sample_rate`` is
    given, and its integrated loudness (of the downmix).

    ``progress(stage, fraction)`` is called as it goes: ``render track K/N`` (each sounding
    track), then ``loudness`` (:data:`DECODE_STAGES`).
    """
    opts = _decode_options(options, overrides)
    report = progress or (lambda _stage, _frac: None)
    out = _DecodeShape.of(c, opts, per_track=False)
    if _is_silent(c):  # no notes: the residual (if any) is all there is
        return _add_residual(c, opts, out.place(out.silence()), out.sr, report), out.sr
    renderer = _Renderer(c, opts, out, report)
    pans = out.pans(c)
    if not any(pans):
        mono = renderer.render(c.score)
        report("loudness", 0.0)
        mono = dsp.flush_tiny(dsp.match_loudness(mono, out.sr, c.loudness_lufs))
        report("loudness", 1.0)
        mix = out.place(mono)
    else:
        mix = dsp.flush_tiny(_mix_by_position(c, renderer, pans, out.sr, report))
    return _add_residual(c, opts, mix, out.sr, report), out.sr


def _add_residual(c: _container.SmcFile, opts: DecodeOptions, mix: np.ndarray, sr: int,
                  report: Progress) -> np.ndarray:
    """``mix`` (the decode at ``sr`` Hz, mono or stereo) with ``c``'s residual, when it has one
    and ``opts.residual``."""
    if not (opts.residual and c.residual):
        return mix
    from semcodec import residual

    report("residual", 0.0)
    env = residual.decode_envelope(c.residual, c.duration)
    out = dsp.flush_tiny(dsp.soft_clip(residual.apply(mix, sr, env, c.sample_rate,
                                                      tempo=opts.tempo)))
    report("residual", 1.0)
    return out


def decode_tracks(c: _container.SmcFile, options: DecodeOptions | None = None, *,
                  progress: Progress | None = None,
                  **overrides: Any) -> tuple[np.ndarray, int, list[tuple[str, np.ndarray]]]:
    """Synthesize a container track by track: ``(mix, sr, [(track name, audio), ...])``.

    Each track is rendered alone (the other tracks muted) and scaled by the mix's loudness
    gain, so the tracks add up to the mix (before the mix's soft clipping and its residual,
    which is in the mix only).  Settings and shapes as for :func:`decode`.
    """
    opts = _decode_options(options, overrides)
    report = progress or (lambda _stage, _frac: None)
    out = _DecodeShape.of(c, opts, per_track=True)
    silent = out.silence()
    if _is_silent(c):
        placed_silence = out.place(silent)
        return (_add_residual(c, opts, placed_silence, out.sr, report), out.sr,
                [(t.name, placed_silence) for t in c.score.tracks])
    renderer = _Renderer(c, opts, out, report)
    pans = out.pans(c)
    parts = [renderer.render(_muted(c.score, {i})) if t.notes else silent
             for i, t in enumerate(c.score.tracks)]
    mono = _sum(parts) if parts else silent
    report("loudness", 0.0)
    gain = dsp.loudness_gain(mono, out.sr, c.loudness_lufs)
    report("loudness", 1.0)
    placed = [out.place((p * gain).astype(np.float32), pan) for p, pan in zip(parts, pans)]
    mix = _sum(placed) if placed else out.place(silent)
    tracks = [(t.name, dsp.flush_tiny(dsp.soft_clip(p))) for t, p in zip(c.score.tracks, placed)]
    return (_add_residual(c, opts, dsp.flush_tiny(dsp.soft_clip(mix)), out.sr, report), out.sr,
            tracks)


def output_shape(c: _container.SmcFile, options: DecodeOptions) -> tuple[int, int, int]:
    """``(sample rate in Hz, samples, channels)`` of what decoding ``c`` with ``options`` gives
    (the options are not checked here)."""
    sr = int(options.sample_rate or c.sample_rate)
    channels = options.channels
    if channels is None:
        channels = 2 if c.channels >= 2 else 1
    return sr, int(round(c.n_samples * sr / c.sample_rate / options.tempo)), channels


def _decode_options(options: DecodeOptions | None, overrides: dict[str, Any]) -> DecodeOptions:
    if "per_track" in overrides:
        raise TypeError("decode(per_track=...) is gone: decode_tracks() returns the tracks")
    return replace(options or DecodeOptions(), **overrides)


def _is_silent(c: _container.SmcFile) -> bool:
    return c.score.n_notes == 0 or c.loudness_lufs is None


@dataclass(frozen=True)
class _DecodeShape:
    """The output of one decoding: sample rate (Hz), length (samples) and channels."""

    sr: int
    n_out: int
    channels: int

    @classmethod
    def of(cls, c: _container.SmcFile, opts: DecodeOptions, per_track: bool) -> "_DecodeShape":
        """Check ``opts`` against ``c`` (UsageError / InputError) and the memory it needs."""
        from semcodec.audio import check_sample_rate

        check_sample_rate(opts.sample_rate or c.sample_rate, "sample_rate")
        if opts.channels not in (None, 1, 2):
            raise UsageError(f"channels must be 1 or 2, got {opts.channels}")
        if not (TEMPO_FACTOR_MIN <= opts.tempo <= TEMPO_FACTOR_MAX):
            raise UsageError(f"tempo factor {opts.tempo} out of range "
                             f"({TEMPO_FACTOR_MIN:g}..{TEMPO_FACTOR_MAX:g})")
        if not -TRANSPOSE_MAX_SEMITONES <= opts.transpose <= TRANSPOSE_MAX_SEMITONES:
            raise UsageError(f"transpose {opts.transpose} out of range "
                             f"(-{TRANSPOSE_MAX_SEMITONES}..{TRANSPOSE_MAX_SEMITONES} semitones)")
        for idx, prog in (opts.programs or {}).items():
            if not 0 <= idx < len(c.score.tracks):
                raise UsageError(f"no track {idx + 1} (the file has {len(c.score.tracks)})")
            if not GM_PROGRAM_MIN <= prog <= GM_PROGRAM_MAX:
                raise UsageError(f"GM program {prog} out of range "
                                 f"({GM_PROGRAM_MIN}..{GM_PROGRAM_MAX})")
        sr, n_out, channels = output_shape(c, opts)
        limit = opts.max_duration_s
        if limit is not None and n_out / sr > limit:  # a tiny file may declare a day
            raise OutputTooLongError(f"the file declares {n_out / sr:.0f} s of audio, more than "
                                     f"the decoding limit of {limit:g} s; raise the limit")
        _check_memory(n_out * channels * (2 if per_track else 1), sr)
        return cls(sr, n_out, channels)

    def silence(self) -> np.ndarray:
        return np.zeros(self.n_out, dtype=np.float32)

    def place(self, x: np.ndarray, pan: float = 0.0) -> np.ndarray:
        """Mono ``x`` as the output's channels (at stereo position ``pan``)."""
        return x if self.channels == 1 else dsp.pan_stereo(x, pan)

    def pans(self, c: _container.SmcFile) -> list[float]:
        """Every track's stereo position in this output (0 in mono)."""
        return [t.pan if self.channels == 2 else 0.0 for t in c.score.tracks]


def _muted(score: Score, keep: set[int]) -> Score:
    """``score`` with the tracks not in ``keep`` muted (indices kept for timbres/samples)."""
    return replace(score, tracks=tuple(t if j in keep else replace(t, notes=())
                                       for j, t in enumerate(score.tracks)))


class _Renderer:
    """Renders scores of one container with the chosen engine; the automatic choice renders
    the tracks the encoder found closer with fluidsynth with that engine instead."""

    def __init__(self, c: _container.SmcFile, opts: DecodeOptions, out: _DecodeShape,
                 report: Progress | None = None) -> None:
        self.c, self.opts, self.n_out, self.sr = c, opts, out.n_out, out.sr
        self.report = report or (lambda _stage, _frac: None)
        # progress: "render track K/N" over the sounding tracks, in the order they render
        self.n_sounding = max(1, sum(1 for t in c.score.tracks if t.notes))
        self.n_rendered = 0
        self.report("engine", 0.0)
        self.engine = make_engine(opts.engine, device=opts.device, soundfont=opts.soundfont)
        self.fallback = None
        if opts.engine == "auto" and self.engine.name == "neural" and any(
                t.engine == "fluidsynth" and t.notes and not t.is_drum for t in c.score.tracks):
            self.fallback = make_engine("fluidsynth", soundfont=opts.soundfont)
        self.report("engine", 1.0)

    def _tracks_done(self, x: float) -> None:
        n = self.n_sounding
        k = min(n - 1, int(x))
        self.report(f"render track {k + 1}/{n}", min(1.0, x - k))

    def track_blocks(self, i: int, block: int | None = None):
        """(blocks of track ``i`` alone at the output's rate and length, linear gain), or
        None for a silent track: the per-track step of the block pipeline.  ``block``: the
        neural engine's internal block (shorter: the first audio comes sooner)."""
        o, c = self.opts, self.c
        t = c.score.tracks[i]
        if not t.notes:
            return None
        if self._has_render(i, t):  # a track render (format 1.4) is made whole, one block
            return iter([self._track_render(c.score, i)]), 1.0
        use_fallback = (self.fallback is not None and not t.is_drum
                        and t.engine == "fluidsynth")
        eng = self.fallback if use_fallback and self.fallback is not None else self.engine
        gain = 10.0 ** (t.engine_gain_db / 20.0) if use_fallback else 1.0
        if hasattr(eng, "track_blocks"):
            it = eng.track_blocks(c.score, i, self.sr, self.n_out, block=block,
                                  timbres=c.timbres, samples=c.samples, programs=o.programs,
                                  transpose=o.transpose, tempo=o.tempo)
            if it is None:
                return None
        else:
            it = eng.blocks(_muted(c.score, {i}), self.sr, self.n_out, timbres=c.timbres,
                            samples=c.samples, programs=o.programs, transpose=o.transpose,
                            tempo=o.tempo)
        return it, gain

    def _with(self, engine: Any, score: Score) -> np.ndarray:
        o, c = self.opts, self.c
        m, done = sum(1 for t in score.tracks if t.notes), self.n_rendered
        self._tracks_done(done)
        out = engine.render(score, self.sr, self.n_out, timbres=c.timbres, samples=c.samples,
                            programs=o.programs, transpose=o.transpose, tempo=o.tempo,
                            progress=lambda f: self._tracks_done(done + f * m))
        self.n_rendered += m
        self._tracks_done(self.n_rendered)
        return dsp.fit_length(np.asarray(out, np.float32), self.n_out)

    def render(self, score: Score) -> np.ndarray:
        """``score`` rendered at the output's rate and length, mono float32."""
        # --- track renders (format 1.3): the tracks with a stored ``render`` are played by
        # semcodec.synth.sampler.render_track on top of (or instead of) the engines ---
        special = {i for i, t in enumerate(score.tracks) if self._has_render(i, t)}
        if not special:
            return self._engines(score)
        rest = _muted(score, set(range(len(score.tracks))) - special)
        out = self._engines(rest) if rest.n_notes else np.zeros(self.n_out, np.float32)
        for i in sorted(special):
            out += self._track_render(score, i)
        return out

    def _has_render(self, i: int, t: Track) -> bool:
        # the renders were measured with the automatic engine choice: an explicitly chosen
        # engine (or program) plays the track alone, as the user asked
        return (self.opts.track_renders and self.opts.engine == "auto" and t.render is not None
                and bool(t.notes) and not t.is_drum and i not in (self.opts.programs or {}))

    def _track_render(self, score: Score, i: int) -> np.ndarray:
        from semcodec.synth import sampler  # noqa: PLC0415

        excerpts = []
        for smp in self.c.samples:
            if smp.track == i and smp.key is None:
                x = sampler.decode_excerpt(smp, self.sr)
                if x is not None and x.size:
                    excerpts.append((x, smp.start))

        def engine(track: Track) -> np.ndarray:
            tracks = tuple(track if j == i else replace(t, notes=())
                           for j, t in enumerate(score.tracks))
            return self._engines(replace(score, tracks=tracks))

        y = sampler.render_track(score.tracks[i], excerpts, self.sr, self.n_out, engine,
                                 transpose=self.opts.transpose, tempo=self.opts.tempo, seed=i)
        return dsp.fit_length(np.asarray(y, np.float32), self.n_out)

    def _engines(self, score: Score) -> np.ndarray:
        """``score`` rendered by the engines alone."""
        pref = {i for i, t in enumerate(score.tracks) if self.fallback is not None
                and t.notes and not t.is_drum and t.engine == "fluidsynth"}
        if not pref:
            return self._with(self.engine, score)
        rest = _muted(score, set(range(len(score.tracks))) - pref)
        out = self._with(self.engine, rest) if rest.n_notes else np.zeros(self.n_out, np.float32)
        for i in sorted(pref):
            gain = np.float32(10.0 ** (score.tracks[i].engine_gain_db / 20.0))
            out += self._with(self.fallback, _muted(score, {i})) * gain
        return out


#: Output samples per block of :func:`decode_stream`.
STREAM_BLOCK = 1 << 15
#: The neural engine's internal block (samples at 22.05 kHz) when streaming with an estimated
#: gain: short, so that the first block comes at once.
STREAM_INTERNAL_BLOCK = 1 << 15
#: decode_stream(exact=None) measures the loudness exactly (render all, then play) up to this
#: output duration (s); longer outputs get an estimated gain and start at once.
STREAM_EXACT_S = 40.0
#: Raw mixes up to this size (bytes) are kept in memory between the two passes of the exact
#: gain; larger ones are spooled to a temporary file.
SPOOL_MEMORY_BYTES = 128 * 1024 * 1024
#: The estimated gain renders this many windows of WINDOW_S seconds (after WARMUP_S of lead-in)
#: at GAIN_RATE Hz (at most; nothing the K-weighted loudness needs lies above 11 kHz).
GAIN_WINDOWS, WINDOW_S, WARMUP_S, GAIN_RATE = 8, 2.5, 1.5, 22050


@dataclass
class DecodeStream:
    """A decoding rendered block by block (bounded memory).

    ``blocks`` yields float32 blocks of ``(m,)`` (mono) or ``(m, 2)`` samples adding up to
    ``n_samples`` at ``sr`` Hz, with the loudness gain applied and soft-clipped as
    :func:`decode` does.  ``gain`` is the linear loudness gain; ``exact_gain`` says whether
    it was measured on the whole rendering (the output then equals :func:`decode`'s) or
    estimated from windows of it (streams longer than :data:`STREAM_EXACT_S`).  A file with a
    residual (played) is decoded whole by :func:`decode` and handed out in blocks (``gain``
    NaN: not measured separately).
    """

    sr: int
    channels: int
    n_samples: int
    blocks: Iterator[np.ndarray]
    gain: float
    exact_gain: bool


def decode_stream(c: _container.SmcFile, options: DecodeOptions | None = None, *,
                  exact: bool | None = None, progress: Progress | None = None,
                  **overrides: Any) -> DecodeStream:
    """Decode ``c`` block by block: see :class:`DecodeStream`.

    The loudness gain needs the whole decoding's loudness.  ``exact=True`` renders in two
    passes: every block once (the raw mix kept in memory, or spooled to a temporary file when
    over :data:`SPOOL_MEMORY_BYTES`) while a streaming BS.1770 meter measures it, then the
    gained blocks; the first block comes after the whole rendering.  ``exact=False`` starts
    at once: the gain is measured on :data:`GAIN_WINDOWS` windows of :data:`WINDOW_S` s spread
    over the piece (each rendered alone with :data:`WARMUP_S` s of lead-in), an estimate of
    the whole's loudness.  ``exact=None`` (default): exact up to :data:`STREAM_EXACT_S` s of
    output, estimated beyond.  ``progress(stage, fraction)`` reports ``engine``, ``render``
    (the first pass of an exact gain) and ``loudness``, as for :func:`decode`.
    """
    opts = _decode_options(options, overrides)
    # the same output-size limit as decode() (memory here stays bounded, but an output that
    # large would not be usable either)
    out = _DecodeShape.of(c, opts, per_track=False)
    n, ch = out.n_out, out.channels
    if _is_silent(c):
        shape = (STREAM_BLOCK,) if ch == 1 else (STREAM_BLOCK, 2)

        def silence() -> Iterator[np.ndarray]:
            for s in range(0, n, STREAM_BLOCK):
                yield np.zeros((min(STREAM_BLOCK, n - s),) + shape[1:], np.float32)

        return DecodeStream(out.sr, ch, n, silence(), 0.0, True)
    if opts.residual and c.residual:
        # the residual measures the decode's band energy over whole cells: the decoding is
        # rendered whole (as decode() does) and handed out in blocks; memory is not bounded
        audio, sr = decode(c, opts, progress=progress)

        def whole() -> Iterator[np.ndarray]:
            for s in range(0, audio.shape[0], STREAM_BLOCK):
                yield audio[s:s + STREAM_BLOCK]

        return DecodeStream(sr, ch, audio.shape[0], whole(), float("nan"), True)
    report = progress or (lambda _stage, _frac: None)
    renderer = _Renderer(c, opts, out, report)
    if exact is None:
        exact = n <= STREAM_EXACT_S * out.sr
    if exact:
        meter = dsp.LoudnessMeter(n, out.sr)
        spool = _Spool(n * ch * 4)
        done = 0
        for block in _raw_mix_blocks(c, renderer, out):
            meter.push(block if ch == 1 else block.mean(axis=1))
            spool.write(block)
            done += block.shape[0]
            report("render", done / max(1, n))
        report("loudness", 0.0)
        loud = meter.result()
        report("loudness", 1.0)
        gain = 0.0 if c.loudness_lufs is None else (
            1.0 if loud is None else float(10.0 ** ((c.loudness_lufs - loud) / 20.0)))
        return DecodeStream(out.sr, ch, n, _gained(spool.read(ch), gain), gain, True)
    report("loudness", 0.0)
    gain = _estimated_gain(c, opts, out)
    report("loudness", 1.0)
    blocks = _raw_mix_blocks(c, renderer, out, internal_block=STREAM_INTERNAL_BLOCK)
    return DecodeStream(out.sr, ch, n, _gained(blocks, gain), gain, False)


def _gained(blocks: Iterator[np.ndarray], gain: float) -> Iterator[np.ndarray]:
    g = np.float32(gain)
    for b in blocks:
        if gain == 1.0:
            yield dsp.flush_tiny(b)  # as match_loudness: a unit gain leaves the audio as it is
        else:
            yield dsp.flush_tiny(dsp.soft_clip((b * g).astype(np.float32)))


def _raw_mix_blocks(c: _container.SmcFile, renderer: "_Renderer", out: "_DecodeShape",
                    internal_block: int | None = None) -> Iterator[np.ndarray]:
    """The mix before the loudness gain, in STREAM_BLOCK blocks (stereo: tracks panned).

    Every track is rendered alone (``_Renderer.track_blocks``) in a thread of its own a few
    blocks ahead, then the blocks are summed in track order (the result does not depend on
    the threads); a post-step per track or on the mix belongs here.
    """
    n, ch = out.n_out, out.channels
    pans = out.pans(c)
    parts = []
    for i in range(len(c.score.tracks)):
        tb = renderer.track_blocks(i, internal_block)
        if tb is not None:
            it, gain = tb
            parts.append((_prefetched(reblock(it, n, STREAM_BLOCK)), np.float32(gain), pans[i]))
    try:
        for s in range(0, n, STREAM_BLOCK):
            m = min(STREAM_BLOCK, n - s)
            mix = np.zeros(m if ch == 1 else (m, 2), np.float32)
            for it, g, pan in parts:
                y = next(it)
                y = y if g == 1.0 else y * g
                mix += y if ch == 1 else dsp.pan_stereo(y, pan)
            yield mix
    finally:
        for it, _, _ in parts:
            it.close()


def _prefetched(blocks: Iterator[np.ndarray], depth: int = 4) -> Generator[np.ndarray, None, None]:
    """``blocks`` produced by a background thread up to ``depth`` ahead (numpy releases the
    GIL: the tracks of a mix render in parallel); errors are re-raised in the consumer."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def work() -> None:
        try:
            for b in blocks:
                while not stop.is_set():
                    try:
                        q.put(b, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(exc)

    th = threading.Thread(target=work, name="semcodec-track", daemon=True)
    th.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


class _Spool:
    """Blocks kept for a second pass: in memory up to SPOOL_MEMORY_BYTES, else in a temporary
    file (deleted when read back or collected)."""

    def __init__(self, total_bytes: int) -> None:
        self.mem: list[np.ndarray] | None = [] if total_bytes <= SPOOL_MEMORY_BYTES else None
        self.fh: Any = None
        if self.mem is None:
            import tempfile

            self.fh = tempfile.TemporaryFile(prefix="semcodec-", suffix=".f32")
        self.sizes: list[int] = []

    def write(self, block: np.ndarray) -> None:
        if self.mem is not None:
            self.mem.append(block)
        else:
            np.ascontiguousarray(block, np.float32).tofile(self.fh)
            self.sizes.append(block.shape[0])

    def read(self, channels: int) -> Iterator[np.ndarray]:
        if self.mem is not None:
            while self.mem:
                yield self.mem.pop(0)
            return
        self.fh.seek(0)
        try:
            for m in self.sizes:
                b = np.fromfile(self.fh, np.float32, count=m * channels)
                yield b if channels == 1 else b.reshape(m, 2)
        finally:
            self.fh.close()


def _estimated_gain(c: _container.SmcFile, opts: DecodeOptions, out: "_DecodeShape") -> float:
    """The loudness gain estimated from GAIN_WINDOWS windows of the decoding (mono downmix),
    each rendered from a score cut around it; see :func:`decode_stream`."""
    if c.loudness_lufs is None:
        return 0.0
    dur = out.n_out / out.sr
    sr = min(out.sr, GAIN_RATE)
    tempo = opts.tempo
    win = WINDOW_S if dur > GAIN_WINDOWS * WINDOW_S else dur / GAIN_WINDOWS
    starts = np.linspace(0.0, max(0.0, dur - win), GAIN_WINDOWS)

    def window(u0: float) -> np.ndarray:
        # from the earliest onset of the notes still sounding in the window (a held note
        # counts in full), at least WARMUP_S of lead-in for the room, at most 10 s
        w0, s1 = u0 * tempo, (u0 + win) * tempo  # score time
        s0 = max(0.0, w0 - WARMUP_S * tempo)
        for t in c.score.tracks:
            for nt in t.notes:
                if nt.onset < s0 and nt.offset + 1.0 > w0 and nt.onset >= w0 - 10.0 * tempo:
                    s0 = nt.onset
        lead = u0 - s0 / tempo
        tracks = tuple(replace(t, notes=tuple(
            replace(nt, onset=nt.onset - s0, offset=nt.offset - s0) for nt in t.notes
            if s0 <= nt.onset < s1)) for t in c.score.tracks)
        sub = replace(c, score=replace(c.score, tracks=tracks),
                      samples=tuple(replace(x, start=x.start - s0) for x in c.samples),
                      n_samples=int(round((lead + win) * tempo * c.sample_rate)))
        if sub.score.n_notes == 0:
            return np.zeros(int(round(win * sr)), np.float32)
        shape = _DecodeShape(sr, int(round((lead + win) * sr)), 1)
        y = _Renderer(sub, replace(opts, sample_rate=sr), shape).render(sub.score)
        return y[int(round(lead * sr)):]

    from concurrent.futures import ThreadPoolExecutor

    from semcodec.synth.neural import render_workers

    with ThreadPoolExecutor(render_workers(GAIN_WINDOWS)) as pool:  # numpy frees the GIL
        pieces = list(pool.map(window, [float(u) for u in starts]))
    return dsp.loudness_gain(np.concatenate(pieces), sr, c.loudness_lufs)


def _mix_by_position(c: _container.SmcFile, renderer: _Renderer, pans: list[float],
                     sr: int, report: Progress) -> np.ndarray:
    """The stereo mix: one rendering per stereo position, with the downmix's loudness gain."""
    by_pan: dict[float, list[int]] = {}
    for i, t in enumerate(c.score.tracks):
        if t.notes:
            by_pan.setdefault(pans[i], []).append(i)
    parts = [(pan, renderer.render(_muted(c.score, set(idx)))) for pan, idx in by_pan.items()]
    report("loudness", 0.0)
    gain = dsp.loudness_gain(_sum(p for _, p in parts), sr, c.loudness_lufs)
    report("loudness", 1.0)
    return dsp.soft_clip(_sum(dsp.pan_stereo(p * np.float32(gain), pan) for pan, p in parts))


def _sum(arrays: Iterable[np.ndarray]) -> np.ndarray:
    """The float32 sum of equally shaped arrays."""
    return cast(np.ndarray, np.sum(list(arrays), axis=0, dtype=np.float32))


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
        raise OutputTooLargeError(
            f"decoding {n_out / sr:.0f} s at {sr} Hz needs about {need / 2**30:.1f} GiB of memory, "
            f"more than this machine has ({total / 2**30:.1f} GiB); try a lower sample rate"
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
            raise UsageError(f"--program {item!r}: program must be a number "
                             f"{GM_PROGRAM_MIN}..{GM_PROGRAM_MAX}") from None
        if key.isdigit():
            idx = int(key) - 1
        elif names and key in names:
            idx = names.index(key)
        else:
            raise UsageError(f"--program {item!r}: unknown track {key!r}")
        if not 0 <= idx < n_tracks:
            raise UsageError(f"--program {item!r}: no track {key} (the file has {n_tracks})")
        if not GM_PROGRAM_MIN <= prog <= GM_PROGRAM_MAX:
            raise UsageError(f"--program {item!r}: program must be {GM_PROGRAM_MIN}..{GM_PROGRAM_MAX}")
        out[idx] = prog
    return out
