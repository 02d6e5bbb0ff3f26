"""Decoding: a container to audio (:func:`decode`, :func:`decode_tracks`, the streamed
:func:`decode_stream`) over :class:`DecodeOptions`; re-exported by :mod:`semcodec.api`.

Audio arrays are float32 ``(n,)`` mono or ``(n, 2)`` stereo, sample rates in Hz, times in
seconds.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from typing import Any, Callable, Generator, Iterable, Iterator, cast

import numpy as np

from semcodec import container as _container
from semcodec.constants import (
    DEFAULT_MAX_DECODE_S,
    GM_PROGRAM_MAX,
    GM_PROGRAM_MIN,
    TEMPO_FACTOR_MAX,
    TEMPO_FACTOR_MIN,
    TRANSPOSE_MAX_SEMITONES,
)
from semcodec.errors import (
    OutputTooLargeError,
    OutputTooLongError,
    UsageError,
)
from semcodec.events import Score, Track
from semcodec.progress import Progress
from semcodec.synth import dsp
from semcodec.synth.engine import make_engine, reblock
from semcodec.synth.weights import current_model, weights_for_model

log = logging.getLogger(__name__)


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
    known = stored_gain(c, opts, renderer.as_encoded)
    pans = out.pans(c)
    if not any(pans):
        mono = renderer.render(c.score)
        report("loudness", 0.0)
        mono = dsp.flush_tiny(dsp.match_loudness(mono, out.sr, c.loudness_lufs) if known is None
                              else dsp.apply_gain(mono, known))
        report("loudness", 1.0)
        mix = out.place(mono)
    else:
        mix = dsp.flush_tiny(_mix_by_position(c, renderer, pans, out.sr, report, known))
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


def _alone(score: Score, i: int, track: Track) -> Score:
    """``score`` with ``track`` (some of track ``i``'s notes) in place of track ``i`` and the
    other tracks muted (indices kept for timbres/samples)."""
    return replace(score, tracks=tuple(track if j == i else replace(t, notes=())
                                       for j, t in enumerate(score.tracks)))


def _neural_weights(c: _container.SmcFile, engine: str):
    """The weights of the neural model ``c``'s timbres were fitted to (format 1.6's
    ``neural_model``; none named: the legacy model), or None (the current model) when this
    installation lacks it — then with a warning, the timbres being another model's — or when
    the neural engine is not asked for or has no weights at all."""
    if engine == "fluidsynth" or not current_model():
        return None
    path = weights_for_model(c.neural_model)
    if path is None:
        log.warning("neural model %s of this file not found: decoding with the current model "
                    "(its timbres may sound off)", c.neural_model or "(legacy)")
    return path


def stored_gain(c: _container.SmcFile, opts: DecodeOptions, as_encoded: bool = True
                ) -> float | None:
    """The linear loudness gain of ``c``'s decode with ``opts`` from the header's
    ``synth_lufs`` (format 1.8: the loudness the encoder measured of its default decode's mix
    before the gain), or None when it must be measured: none stored, or ``opts`` changes what
    is rendered (another engine, soundfont, rate, program, transposition or tempo, the track
    renders off) or ``as_encoded`` is false (the decoding engines are not the encoder's).
    The channels do not matter: the downmix of the panned tracks is their mono sum."""
    if c.synth_lufs is None or c.loudness_lufs is None or not as_encoded:
        return None
    if not _renders_as_stored(c, opts):
        return None
    return float(10.0 ** ((c.loudness_lufs - c.synth_lufs) / 20.0))


def _renders_as_stored(c: _container.SmcFile, opts: DecodeOptions) -> bool:
    """Whether ``opts`` renders ``c``'s mix as its default decode does (whatever the channels
    and the residual): the mix ``synth_lufs`` is measured on."""
    return (opts.engine == "auto" and opts.soundfont is None and not opts.programs
            and opts.transpose == 0 and opts.tempo == 1.0 and opts.track_renders
            and opts.sample_rate in (None, c.sample_rate))


def synth_loudness(c: _container.SmcFile) -> float | None:
    """What the header's ``synth_lufs`` records: the integrated loudness (LUFS) of ``c``'s
    default decode's mix before its loudness gain, measured block by block as
    :func:`decode_stream` renders it (bounded memory, any length); None for a silent file or
    mix, or when this installation's engines are not those of the file (the neural model it
    names)."""
    if _is_silent(c) or c.loudness_lufs is None:
        return None
    opts = DecodeOptions(channels=1, residual=False, max_duration_s=None)
    out = _DecodeShape.of(c, opts, per_track=False)
    renderer = _Renderer(c, opts, out)
    if not renderer.as_encoded:
        return None
    meter = dsp.LoudnessMeter(out.n_out, out.sr)
    for block in _raw_mix_blocks(c, renderer, out):
        meter.push(block)
    return meter.result()


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
        weights = _neural_weights(c, opts.engine)
        self.engine = make_engine(opts.engine, device=opts.device, soundfont=opts.soundfont,
                                  neural_weights=weights)
        #: the engines are those of the encoder's measure of the file's loudness (``synth_lufs``):
        #: the neural one with the model the file names
        self.as_encoded = self.engine.name == "neural" and weights is not None
        self.fallback = None
        if opts.engine == "auto" and self.engine.name == "neural" and any(
                t.engine == "fluidsynth" and t.notes and not t.is_drum for t in c.score.tracks):
            self.fallback = make_engine("fluidsynth", soundfont=opts.soundfont)
        self.report("engine", 1.0)

    def _tracks_done(self, x: float) -> None:
        n = self.n_sounding
        k = min(n - 1, int(x))
        self.report(f"render track {k + 1}/{n}", min(1.0, x - k))

    def track_blocks(self, i: int, block: int | None = None, whole_renders: bool = True):
        """(blocks of track ``i`` alone at the output's rate and length, linear gain), or
        None for a silent track: the per-track step of the block pipeline.  ``block``: the
        neural engine's internal block (shorter: the first audio comes sooner).
        ``whole_renders`` false: a stored render that is the engine's with its room and EQ
        alone (no sampler, no voice) is rendered block by block at any length, the same
        samples (to rounding) sooner."""
        c = self.c
        t = c.score.tracks[i]
        if not t.notes:
            return None
        if self._has_render(i, t):  # a track render (format 1.4)
            if self.n_out <= TRACK_RENDER_WHOLE_S * self.sr and (
                    whole_renders or (t.render is not None and t.render.use)):
                # made whole, one block
                return iter([self._track_render(c.score, i)]), 1.0
            return self._track_render_blocks(i, block), 1.0
        return self._engine_blocks(c.score, i, block)

    def _engine_blocks(self, score: Score, i: int, block: int | None):
        """(blocks of track ``i`` of ``score`` played by its engine, linear gain) or None."""
        o = self.opts
        t = score.tracks[i]
        use_fallback = (self.fallback is not None and not t.is_drum
                        and t.engine == "fluidsynth")
        eng = self.fallback if use_fallback and self.fallback is not None else self.engine
        gain = 10.0 ** (t.engine_gain_db / 20.0) if use_fallback else 1.0
        if hasattr(eng, "track_blocks"):
            from semcodec.synth.neural import render_workers  # noqa: PLC0415

            # a lone track's notes evaluated on a second core (the neural engine's pipeline;
            # the same samples): nothing else renders beside it
            it = eng.track_blocks(score, i, self.sr, self.n_out, block=block,
                                  timbres=self.c.timbres, samples=self.c.samples,
                                  programs=o.programs, transpose=o.transpose, tempo=o.tempo,
                                  pipelined=self.n_sounding == 1 and render_workers(2) > 1)
            if it is None:
                return None
        else:
            it = eng.blocks(_muted(score, {i}), self.sr, self.n_out, timbres=self.c.timbres,
                            samples=self.c.samples, programs=o.programs, transpose=o.transpose,
                            tempo=o.tempo)
        return it, gain

    def _track_render_blocks(self, i: int, block: int | None) -> Iterator[np.ndarray]:
        """Track ``i``'s stored render as blocks with bounded memory (long outputs):
        :func:`semcodec.synth.trackstream.render_track_blocks`."""
        from semcodec.synth import trackstream  # noqa: PLC0415

        score = self.c.score

        def engine_blocks(track: Track) -> Iterator[np.ndarray] | None:
            tb = self._engine_blocks(_alone(score, i, track), i, block)
            if tb is None:
                return None
            it, gain = tb
            return it if gain == 1.0 else (y * np.float32(gain) for y in it)

        return trackstream.render_track_blocks(
            score.tracks[i], self._excerpts(i), self.sr, self.n_out, engine_blocks,
            transpose=self.opts.transpose, tempo=self.opts.tempo, seed=i)

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

        excerpts = self._excerpts(i)

        def engine(track: Track) -> np.ndarray:
            return self._engines(_alone(score, i, track))

        y = sampler.render_track(score.tracks[i], excerpts, self.sr, self.n_out, engine,
                                 transpose=self.opts.transpose, tempo=self.opts.tempo, seed=i)
        return dsp.fit_length(np.asarray(y, np.float32), self.n_out)

    def _excerpts(self, i: int) -> list[tuple[np.ndarray, float]]:
        """Track ``i``'s stored pitched excerpts decoded at the output's rate, with their start
        times (s); the unreadable ones are left out."""
        from semcodec.synth import sampler  # noqa: PLC0415

        excerpts = []
        for smp in self.c.samples:
            if smp.track == i and smp.key is None:
                x = sampler.decode_excerpt(smp, self.sr)
                if x is not None and x.size:
                    excerpts.append((x, smp.start))
        return excerpts

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


#: A track's stored render is made whole up to this output duration (s), the same as
#: :func:`decode`'s; beyond it the block pipeline renders it block by block
#: (:mod:`semcodec.synth.trackstream`: bounded memory, the same chain).
TRACK_RENDER_WHOLE_S = 300.0
#: Output samples per block of :func:`decode_stream`.
STREAM_BLOCK = 1 << 15
#: The neural engine's internal block (samples at 22.05 kHz) when streaming with an estimated
#: gain: short, so that the first block comes at once.
STREAM_INTERNAL_BLOCK = 1 << 15
#: decode_stream(exact=None) measures the loudness exactly (render all, then play) up to this
#: output duration (s); longer outputs get an estimated gain and start at once.
STREAM_EXACT_S = 40.0
#: STFT frames per block of a residual applied in one pass (after a stored or estimated
#: gain): ~3 s at 44.1 kHz, so the first audio comes after ~6 s of the decode are rendered
#: (the noise does not depend on the blocks: the same samples as the whole decode's).
STREAM_RESIDUAL_FRAMES = 256
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
    it is the file's stored one (format 1.8's ``synth_lufs``, when the decode renders the
    default mix) or was measured on the whole rendering (the output then equals
    :func:`decode`'s, to the rounding of the blocks), or was estimated from windows of it
    (streams longer than :data:`STREAM_EXACT_S` without a stored loudness).  A file with a
    residual (played) gets it block by block: after the exact gain
    (:func:`semcodec.residual.apply_stream`) the output equals :func:`decode`'s; after an
    estimated one it is applied in one pass (:func:`semcodec.residual.apply_stream_once`,
    the same cells measured on the gained mix), so the stream starts at once.
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

    The loudness gain needs the whole decoding's loudness.  A file that stores it
    (``synth_lufs``, see :func:`stored_gain`) starts at once with the exact gain whatever
    ``exact`` says: every track rendered block by block (a track render with a sampler or a
    voice made whole), the residual applied in one pass of :data:`STREAM_RESIDUAL_FRAMES`
    frames per block.  Otherwise ``exact=True`` renders in two
    passes: every block once (the raw mix kept in memory, or spooled to a temporary file when
    over :data:`SPOOL_MEMORY_BYTES`) while a streaming BS.1770 meter measures it, then the
    gained blocks; the first block comes after the whole rendering.  ``exact=False`` starts
    at once: the gain is measured on :data:`GAIN_WINDOWS` windows of :data:`WINDOW_S` s spread
    over the piece (each rendered alone with :data:`WARMUP_S` s of lead-in), an estimate of
    the whole's loudness.  ``exact=None`` (default): exact up to :data:`STREAM_EXACT_S` s of
    output, estimated beyond.  With the exact gain a played residual takes two more passes
    over the kept raw mix (its measure, then its synthesis); with an estimated one, one pass
    that measures each residual block with the next one ahead.
    ``progress(stage, fraction)`` reports ``engine``, ``render`` (the first pass of an exact
    gain) and ``loudness``, as for :func:`decode`.
    """
    opts = _decode_options(options, overrides)
    # the same output-size limit as decode() (memory here stays bounded, but an output that
    # large would not be usable either)
    out = _DecodeShape.of(c, opts, per_track=False)
    n, ch = out.n_out, out.channels
    report = progress or (lambda _stage, _frac: None)
    played = opts.residual and bool(c.residual)
    if _is_silent(c):
        shape = (STREAM_BLOCK,) if ch == 1 else (STREAM_BLOCK, 2)

        def silence() -> Iterator[np.ndarray]:
            for s in range(0, n, STREAM_BLOCK):
                yield np.zeros((min(STREAM_BLOCK, n - s),) + shape[1:], np.float32)

        if played:  # as decode(): the residual is all there is
            return DecodeStream(out.sr, ch, n, _with_residual(c, opts, silence, n, out.sr),
                                0.0, True)
        return DecodeStream(out.sr, ch, n, silence(), 0.0, True)
    renderer = _Renderer(c, opts, out, report)
    known = stored_gain(c, opts, renderer.as_encoded)
    if exact is None:
        exact = n <= STREAM_EXACT_S * out.sr
    if exact and known is None:
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
        if played:  # two more passes over the kept raw mix: the residual's measure, its synthesis
            blocks = _with_residual(c, opts, lambda: _gained(spool.read(ch, keep=True), gain),
                                    n, out.sr)
            return DecodeStream(out.sr, ch, n, blocks, gain, True)
        return DecodeStream(out.sr, ch, n, _gained(spool.read(ch), gain), gain, True)
    # the gain known before anything is rendered (stored: decode()'s samples, the blocks'
    # rounding apart) or estimated: the stream starts at once, every track block by block
    report("loudness", 0.0)
    gain = _estimated_gain(c, opts, out) if known is None else known
    report("loudness", 1.0)
    blocks = _gained(_raw_mix_blocks(c, renderer, out, internal_block=STREAM_INTERNAL_BLOCK,
                                     whole_renders=False), gain)
    if played:  # one pass: each residual block measured with the next one ahead
        blocks = _with_residual_once(c, opts, blocks, n, out.sr)
    return DecodeStream(out.sr, ch, n, blocks, gain, known is not None)


def _with_residual(c: _container.SmcFile, opts: DecodeOptions,
                   read: Callable[[], Iterator[np.ndarray]], n: int, sr: int
                   ) -> Iterator[np.ndarray]:
    """The blocks of :func:`_add_residual` (the same samples): ``read()`` hands out the mix
    (``n`` samples at ``sr`` Hz) and is called twice (:func:`semcodec.residual.apply_stream`)."""
    from semcodec import residual

    env = residual.decode_envelope(c.residual, c.duration)
    for b in residual.apply_stream(read, n, sr, env, c.sample_rate, tempo=opts.tempo):
        yield dsp.flush_tiny(dsp.soft_clip(b))


def _with_residual_once(c: _container.SmcFile, opts: DecodeOptions, blocks: Iterator[np.ndarray],
                        n: int, sr: int) -> Iterator[np.ndarray]:
    """The blocks of the gained mix ``blocks`` (``n`` samples at ``sr`` Hz) with ``c``'s
    residual, in one pass (:func:`semcodec.residual.apply_stream_once`): the stream starts
    after two residual blocks instead of a whole rendering."""
    from semcodec import residual

    env = residual.stream_envelope(c.residual, c.duration)  # segments decoded when reached
    for b in residual.apply_stream_once(blocks, n, sr, env, c.sample_rate, tempo=opts.tempo,
                                        block_frames=STREAM_RESIDUAL_FRAMES):
        yield dsp.flush_tiny(dsp.soft_clip(b))


def _gained(blocks: Iterator[np.ndarray], gain: float) -> Iterator[np.ndarray]:
    g = np.float32(gain)
    for b in blocks:
        if gain == 1.0:
            yield dsp.flush_tiny(b)  # as match_loudness: a unit gain leaves the audio as it is
        else:
            yield dsp.flush_tiny(dsp.soft_clip((b * g).astype(np.float32)))


def _raw_mix_blocks(c: _container.SmcFile, renderer: "_Renderer", out: "_DecodeShape",
                    internal_block: int | None = None, whole_renders: bool = True
                    ) -> Iterator[np.ndarray]:
    """The mix before the loudness gain, in STREAM_BLOCK blocks (stereo: tracks panned).

    Every track is rendered alone (``_Renderer.track_blocks``) in a thread of its own a few
    blocks ahead, then the blocks are summed in track order (the result does not depend on
    the threads); a post-step per track or on the mix belongs here.
    """
    n, ch = out.n_out, out.channels
    pans = out.pans(c)
    parts = []
    for i in range(len(c.score.tracks)):
        tb = renderer.track_blocks(i, internal_block, whole_renders)
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

    def read(self, channels: int, keep: bool = False) -> Iterator[np.ndarray]:
        """The blocks written, in order; ``keep``: they may be read again (else they are
        released as they go)."""
        if self.mem is not None:
            if keep:
                yield from list(self.mem)
                return
            while self.mem:
                yield self.mem.pop(0)
            return
        self.fh.seek(0)
        try:
            for m in self.sizes:
                b = np.fromfile(self.fh, np.float32, count=m * channels)
                yield b if channels == 1 else b.reshape(m, 2)
        finally:
            if not keep:
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
                     sr: int, report: Progress, gain: float | None = None) -> np.ndarray:
    """The stereo mix: one rendering per stereo position, with the downmix's loudness gain
    (``gain``, when known: :func:`stored_gain`)."""
    by_pan: dict[float, list[int]] = {}
    for i, t in enumerate(c.score.tracks):
        if t.notes:
            by_pan.setdefault(pans[i], []).append(i)
    parts = [(pan, renderer.render(_muted(c.score, set(idx)))) for pan, idx in by_pan.items()]
    report("loudness", 0.0)
    if gain is None:
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
