"""The encoder's bitrate budget: what a file keeps within its target (the track renders the
encoder measured best, the excerpts and one-shots by benefit per byte, then the residual with
the bytes left).  Internal to :func:`semcodec.api.encode`; sizes in bytes, rates in Hz."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import numpy as np

from semcodec import budget, digest
from semcodec.container import SmcFile
from semcodec.decoder import DecodeOptions, _DecodeShape, _Renderer, decode, synth_loudness
from semcodec.errors import SynthError
from semcodec.runtime import release_free_memory
from semcodec.events import Sample, Track, TrackRender

if TYPE_CHECKING:
    from semcodec.api import EncodeOptions

log = logging.getLogger(__name__)

#: A container (the API's :class:`semcodec.api.Container` or the format's SmcFile): the
#: steps return the class they were given.
_C = TypeVar("_C", bound=SmcFile)


#: Bytes of a chunk's framing (type, length, CRC32).
_CHUNK_FRAMING = 12


#: Bytes the header's ``synth_lufs`` takes at most (``,"synth_lufs":-99.999``): kept free for
#: it by :func:`_bytes_left` while it is not measured yet.
SYNTH_LUFS_BYTES = 21


def _bytes_left(c: SmcFile, max_kbps: float) -> int:
    """Bytes ``c`` may still grow by within ``max_kbps`` (SYNTH_LUFS_BYTES kept for the
    header's ``synth_lufs`` when it is still to be stored)."""
    reserve = SYNTH_LUFS_BYTES if c.synth_lufs is None and c.loudness_lufs is not None else 0
    return budget.budget_bytes(max_kbps, c.duration) - len(c.to_bytes()) - reserve


def _with_residual(c: _C, original: np.ndarray, max_bytes: int,
                   stop: Callable[[], bool] | None = None,
                   on_synth_lufs: Callable[[float | None], None] | None = None) -> _C:
    """``c`` with a residual (RESD or, for a long file, RESS chunk) of at most ``max_bytes``
    (framing included) coding what its default decode still misses of ``original`` (mono
    float32 at ``c.sample_rate``); ``c`` unchanged when nothing helps, nothing fits or the
    decode fails, and as soon as ``stop()`` is found true (checked between the steps: the
    caller cancelled it).

    ``on_synth_lufs(value)``, when given, is called with ``c``'s :func:`_synth_lufs` (the
    header's ``synth_lufs`` of ``c``, as stored) when the residual of an input longer than
    MEASURE_WHOLE_MAX_S measures it on the way (:func:`_decode_measured`: one rendering of
    the mix for both), and the residual is then coded against the decode at the gain that
    value gives, as the decoder will play the file; not called otherwise."""
    from semcodec import residual

    room = max_bytes - _CHUNK_FRAMING
    if room < 8:
        log.info("residual: no room left in the budget (%d bytes)", max_bytes)
        return c
    from semcodec import residual_spans

    def hz(tracks) -> list[tuple[float, float, float]]:
        return [(n.onset, n.offset, 440.0 * 2.0 ** ((n.pitch - 69) / 12.0))
                for t in tracks if not t.is_drum for n in t.notes]

    notes = hz(c.score.tracks)
    # a sung line's cuts are not eased: its spectral envelope moves with the vowels (bench
    # singing: eased, mel 0.327 -> 0.345)
    held = hz(t for t in c.score.tracks if t.render is None or t.render.use != "voice")
    opts = DecodeOptions(residual=False, channels=1, max_duration_s=None)
    span = residual_spans.span_samples(c.sample_rate)
    # coded against the decode of the file as it will be read (the in-memory file's decode
    # differs: S07 mel 0.015)
    stored = _as_stored(c)
    try:
        if c.duration > residual_spans.LONG_RESIDUAL_S and span is not None:
            # a long input: decoded and coded span by span, never whole, at the gain of the
            # synth_lufs stored (measured first, block by block: the decoder's gain)
            synth = _measured_synth_lufs(stored) if on_synth_lufs is not None else None
            if on_synth_lufs is not None:
                on_synth_lufs(synth)
            payload = residual_spans.SpanCoder(
                original, _span_decoder(stored if synth is None
                                        else replace(stored, synth_lufs=synth), opts),
                c.n_samples, c.sample_rate, span, notes=notes, stop=stop,
                held_notes=held).code(room)
        else:
            if on_synth_lufs is not None and c.duration > MEASURE_WHOLE_MAX_S:
                decoded, synth = _decode_measured(stored, opts)
                on_synth_lufs(synth)
            else:
                decoded, _ = decode(stored, opts)
            if stop is not None and stop():
                return c
            payload = residual.encode_residual(original, decoded, c.sample_rate,
                                               max_bytes=room, notes=notes, stop=stop,
                                               hears=_transcriber(stop), held_notes=held)
    except SynthError as exc:
        log.warning("residual skipped: the decode failed (%s)", exc)
        return c
    if stop is not None and stop():
        return c
    log.info("residual: %d bytes of the %d left in the budget", len(payload), max_bytes)
    return replace(c, residual=payload) if payload else c


def _as_stored(c: _C) -> _C:
    """``c`` as a reader will get it: its note times rounded to score ticks, its values
    rounded as the container stores them."""
    return type(c).from_bytes(c.to_bytes())


def _measured_synth_lufs(stored: SmcFile) -> float | None:
    """:func:`semcodec.decoder.synth_loudness` of ``stored`` (a file as read back), rounded
    as the header stores it (raises SynthError)."""
    synth = synth_loudness(stored)
    return None if synth is None else _as_stored(replace(stored, synth_lufs=synth)).synth_lufs


def _decode_measured(stored: SmcFile, opts: DecodeOptions) -> tuple[np.ndarray, float | None]:
    """``(decode, synth_lufs)`` of ``stored`` (a file as read back) from one rendering of its
    mix: the header's ``synth_lufs`` (:func:`semcodec.decoder.synth_loudness`: the loudness
    of the mix before the gain, rounded as stored; None when it is not stored) and the decode
    with ``opts`` (mono, without the residual) at the gain that value gives, as the decoder
    plays the file that stores it (the gain measured on the decode itself without one).
    Raises SynthError."""
    from semcodec.decoder import _is_silent, stored_gain
    from semcodec.synth import dsp

    if _is_silent(stored):
        return decode(stored, opts)[0], None
    out = _DecodeShape.of(stored, opts, per_track=False)
    renderer = _Renderer(stored, opts, out)
    raw = renderer.render(stored.score)
    synth = dsp.integrated_loudness(raw, out.sr) if renderer.as_encoded else None
    if synth is not None:
        synth = _as_stored(replace(stored, synth_lufs=synth)).synth_lufs
    gain = stored_gain(replace(stored, synth_lufs=synth), opts, renderer.as_encoded)
    mono = (dsp.match_loudness(raw, out.sr, stored.loudness_lufs) if gain is None
            else dsp.apply_gain(raw, gain))
    return dsp.flush_tiny(mono), synth


def _synth_lufs(c: SmcFile) -> float | None:
    """:func:`semcodec.decoder.synth_loudness` of ``c`` as it will be read
    (:func:`_as_stored`): its mix rendered once more, block by block (raises SynthError)."""
    return synth_loudness(_as_stored(c))


def _with_synth_loudness(c: _C, max_kbps: float,
                         early: tuple[SmcFile, Callable[[], float | None]] | None = None) -> _C:
    """``c`` with the header's ``synth_lufs``: the loudness of its default decode's mix before
    the gain, measured on the file as it will be read (its values rounded as stored), so
    that the decoder knows the gain before rendering; without it when it would not fit
    ``max_kbps`` or cannot be measured.  ``early``: (a file, the result of its
    :func:`_synth_lufs` measured meanwhile), used when ``c`` is that file but for its
    residual (which the mix measured does not play): the same number."""
    c = replace(c, synth_lufs=None)
    if c.loudness_lufs is None:
        return c
    try:
        if early is not None and replace(early[0], residual=c.residual, synth_lufs=None) == c:
            synth = early[1]()
        else:
            synth = _synth_lufs(c)
    except SynthError as exc:
        log.info("decode loudness not stored: %s", exc)
        return c
    c = replace(c, synth_lufs=synth)
    if c.synth_lufs is not None and len(c.to_bytes()) > budget.budget_bytes(max_kbps, c.duration):
        log.info("decode loudness not stored: no room left in the budget")
        c = replace(c, synth_lufs=None)
    return c


def _transcriber(stop: Callable[[], bool] | None) -> Callable[[np.ndarray, int], tuple]:
    """The round-trip check's transcriber (:func:`semcodec.roundtrip.transcribe_back`) for the
    residual's check of the notes heard, given up (an exception) at its next model batch once
    ``stop()`` is true."""
    from semcodec import roundtrip
    from semcodec import transcribe as tr

    def check(_fraction: float) -> None:
        if stop is not None and stop():
            raise InterruptedError("residual cancelled")

    def hears(audio: np.ndarray, sr: int) -> tuple:
        return tuple(tr.transcribe(np.asarray(audio, np.float32), sr, roundtrip.check_options(),
                                   progress=check))

    return hears


#: Seconds of the piece before a span that its rendering starts from (notes sounding into
#: the span, a room's tail), for :func:`_span_decoder`.
SPAN_LEAD_S = 5.0


def _span_decoder(c: SmcFile, opts: DecodeOptions) -> Callable[[int, int], np.ndarray]:
    """``read(a, b)``: samples ``a .. b`` of ``c``'s decode (mono float32 at
    ``c.sample_rate``, ``opts`` without the residual), each call rendered from a file cut
    around the span (SPAN_LEAD_S before it, and the excerpts' surroundings so that a sampler
    plays as in the whole decode) at the loudness gain of the decoder: the one ``c``'s
    ``synth_lufs`` gives (:func:`semcodec.decoder.stored_gain`), else the one
    :func:`semcodec.decoder.decode_stream` estimates for a long file: memory holds one span,
    never the whole decode (whose track renders are made whole: an hour's took the encoder
    to 4 GB)."""
    from semcodec.decoder import _estimated_gain, stored_gain
    from semcodec.synth import dsp

    sr = c.sample_rate
    known = stored_gain(c, opts)
    gain = np.float32(_estimated_gain(c, opts, _DecodeShape.of(c, opts, per_track=False))
                      if known is None else known)

    def read(a: int, b: int) -> np.ndarray:
        t0 = a / sr
        dg = digest.around(c, max(0.0, t0 - SPAN_LEAD_S), b / sr)
        sub = dg.container(c, samples=True)
        y = _Renderer(sub, opts, _DecodeShape(sr, dg.n, 1)).render(sub.score)
        at = dg.time(t0)
        o = 0 if at is None else int(round(at * sr))
        return dsp.flush_tiny(dsp.soft_clip(np.asarray(y[o:o + (b - a)], np.float32) * gain))

    return read


#: A long input (over digest.LONG_MEASURE_S) is repaired span by span, spans this long (s).
REPAIR_SPAN_S = 120.0
#: Inputs longer than this (s), though measured whole otherwise, have the choice of how
#: their tracks are played (:func:`_spend`) measured on their digest, and the lag their
#: residual adds (the encoder's second onset alignment) on their first REPAIR_SPAN_S, as the
#: long inputs do: both hold for the whole piece, and measured whole they took a 5-min mix's
#: encode ~60 s of CPU (two passes over every track, two decodes and transcriptions).
MEASURE_WHOLE_MAX_S = 150.0
#: ... and their round-trip repair (up to digest.LONG_MEASURE_S) makes this many rounds
#: (roundtrip.MAX_ROUNDS otherwise): each round decodes and transcribes its input twice (a
#: 5-min mix measured whole: ~20 s of CPU), and the first round repairs most of the masked
#: notes (that mix: 237 of them, then 72; mel 0.464 -> 0.463 in the second).
LONG_REPAIR_ROUNDS = 1
#: ... and their round-trip repair and first onset alignment measured on their digest
#: (:func:`_measure_digest`) rather than whole: the repair raises the masked notes of the
#: windows only (those elsewhere are left as transcribed), the leads hold for the whole
#: piece.  Whole, they decoded and transcribed a 5-min mix ~5 times at the measuring rate.
DIGEST_REPAIR = True


def _measure_digest(c: SmcFile) -> digest.Digest | None:
    """The digest on which the round-trip repair and the first onset alignment of ``c``
    are measured (its DIGEST_WINDOWS evenly spaced windows and its excerpts'
    surroundings, :func:`semcodec.digest.windows`, as the track renders' measure): an input
    over MEASURE_WHOLE_MAX_S and up to digest.LONG_MEASURE_S when DIGEST_REPAIR; None
    otherwise (measured whole, or span by span)."""
    if not DIGEST_REPAIR or not MEASURE_WHOLE_MAX_S < c.duration <= digest.LONG_MEASURE_S:
        return None
    return digest.Digest(digest.windows(c.duration, c.samples), c.sample_rate)


def _repaired_back(c: _C, dg: digest.Digest, fixed: SmcFile,
                   span: tuple[float, float] | None = None) -> tuple[_C, int]:
    """``c`` with the velocities that ``fixed`` (``dg.container(c)`` repaired) changed, of
    its notes that start in ``span`` (s; default anywhere), and how many changed."""
    tracks = [list(t.notes) for t in c.score.tracks]
    changed = 0
    for ti, t in enumerate(c.score.tracks):
        for (k, note), new in zip(dg.kept(t.notes), fixed.score.tracks[ti].notes):
            if ((span is None or span[0] <= t.notes[k].onset < span[1])
                    and new.velocity != note.velocity):
                tracks[ti][k] = replace(tracks[ti][k], velocity=new.velocity)
                changed += 1
    if not changed:
        return c, 0
    return replace(c, score=replace(c.score, tracks=tuple(
        replace(t, notes=tuple(ns)) for t, ns in zip(c.score.tracks, tracks)))), changed


class Measured:
    """The decodes at the measuring rate that the round-trip repair and the onset alignment
    make of variants of one file (its tracks changed, all else equal), and the check
    transcriptions of them, kept for the passes that follow within one encode: the
    alignment's first measure decodes the very tracks the repair ended with (the same
    samples: made once), and when the repair changed nothing it transcribed that decode
    whole too (heard once).  The KEEP latest of each are kept; not thread-safe (the passes
    run one after the other)."""

    KEEP = 3

    def __init__(self) -> None:
        #: [(file without its tracks, tracks, decode options, length, decode)]
        self._decodes: list[tuple[Any, tuple, DecodeOptions, int, np.ndarray]] = []
        #: [(decode, rate, notes heard)]: by the decode array itself (the one kept above)
        self._heard: list[tuple[np.ndarray, int, tuple]] = []

    def decode(self, c: SmcFile, tracks: tuple, opts: DecodeOptions, n: int) -> np.ndarray:
        """``c`` with ``tracks`` decoded with ``opts`` (mono), cut or padded to ``n`` samples,
        float32, read-only; the array kept when the same was asked for before."""
        from semcodec.synth import dsp

        rest = replace(c, score=replace(c.score, tracks=()))
        for r, ts, o, k, y in self._decodes:
            if k == n and o == opts and ts == tracks and r == rest:
                return y
        y, _ = decode(replace(c, score=replace(c.score, tracks=tracks)), opts)
        y = np.asarray(dsp.fit_length(np.asarray(y, np.float32), n), np.float32)
        y.setflags(write=False)
        self._decodes = [*self._decodes[1 - self.KEEP:], (rest, tracks, opts, n, y)]
        return y

    def hear(self, y: np.ndarray, sr: int) -> tuple:
        """:func:`semcodec.roundtrip.transcribe_back` of ``y``: again for the same array;
        what the chosen render's round-trip check heard when ``y`` is that same audio
        (:func:`semcodec.sampleuse.heard_like`: the first decode of a solo is its chosen
        render, up to float rounding)."""
        from semcodec import roundtrip, sampleuse

        for a, r, heard in self._heard:
            if a is y and r == sr:
                return heard
        # the chosen render's round-trip check heard the same audio (semcodec.sampleuse)
        like = sampleuse.heard_like(y, sr)
        heard = like if like is not None else roundtrip.transcribe_back(y, sr)
        self.remember(y, sr, heard)
        return heard

    def remember(self, y: np.ndarray, sr: int, heard: tuple) -> None:
        """Keep ``heard``, the notes heard in ``y`` (a decode kept here), for :meth:`hear`:
        the round-trip repair's transcription of a candidate made around its changed notes
        only (:func:`semcodec.roundtrip.transcribe_spans`, the notes elsewhere those of the
        decode it differs from), which the alignment then takes for that decode's."""
        if any(a is y and r == sr for a, r, _ in self._heard):
            return
        self._heard = [*self._heard[1 - self.KEEP:], (y, sr, tuple(heard))]


def _with_clear_notes(c: _C, original: np.ndarray,
                      on_candidate: Callable[[_C], None] | None = None,
                      measured: Measured | None = None,
                      on_verdict: Callable[[_C, bool], None] | None = None) -> _C:
    """``c`` with the velocities of the notes its decode hides under a note an octave below
    raised (:func:`semcodec.roundtrip.repair`, measured on the decode without the residual
    at the transcriber's rate against ``original``, float32 at ``c.sample_rate``); ``c``
    unchanged when nothing is masked, nothing is accepted or the decode fails.

    An input over MEASURE_WHOLE_MAX_S (up to digest.LONG_MEASURE_S) is repaired on its
    digest (:func:`_measure_digest`, one round): the notes of its windows only.  A long
    input is repaired span by span (REPAIR_SPAN_S), each as its own small file with
    the surroundings of the excerpts (so that a sampler plays as it will): memory and each
    measure stay bounded, and a span's notes are judged by that span's decode.

    ``on_candidate(file)`` (an input measured whole only) is called with the first candidate
    file of each round of the repair (:func:`semcodec.roundtrip.repair`), before it is
    measured, as it would be returned when kept.  ``measured``: the decodes and
    transcriptions of an input measured whole are kept there (for :func:`_with_aligned_onsets`
    next).  ``on_verdict(file, accepted)`` (an input measured whole only): each candidate
    file as soon as it is measured, and whether the repair accepts it
    (:func:`semcodec.roundtrip.repair`)."""
    dg = _measure_digest(c)
    if dg is not None:
        sub = dg.container(c, samples=True)
        log.info("round-trip repair measured on %.0f s of the %.0f s", dg.n / dg.sr, c.duration)
        fixed = _clear_notes(sub, dg.audio(original), measured=measured,
                             max_rounds=LONG_REPAIR_ROUNDS)
        if fixed is sub:
            return c
        out, changed = _repaired_back(c, dg, fixed)
        out, more = _extended_repair(out, dg, sub, fixed)
        log.info("round-trip repair: %d note velocities changed in the digest, %d elsewhere",
                 changed, more)
        return out
    if c.duration <= digest.LONG_MEASURE_S:
        return _clear_notes(c, original, on_candidate, measured=measured, on_verdict=on_verdict,
                            max_rounds=(LONG_REPAIR_ROUNDS if c.duration > MEASURE_WHOLE_MAX_S
                                        else None))
    out, changed = c, 0
    for w0 in np.arange(0.0, c.duration, REPAIR_SPAN_S):
        span = (float(w0), float(min(c.duration, w0 + REPAIR_SPAN_S)))
        dg = digest.around(c, *span)
        sub = dg.container(c, samples=True)
        fixed = _clear_notes(sub, dg.audio(original))
        release_free_memory()  # the span's renders and measures, freed
        if fixed is sub:
            continue
        out, n = _repaired_back(out, dg, fixed, span)
        changed += n
    if not changed:
        return c
    log.info("round-trip repair: %d note velocities changed over %d spans", changed,
             int(np.ceil(c.duration / REPAIR_SPAN_S)))
    return out


#: A track whose notes stacked over a lower one the digest's repair raised at least this
#: share of has its stacked notes outside the digest's windows raised alike (when the repair
#: changed anything).  The 5-min mix (docs/BENCHMARKS.md, 2026-11-30 21:40): 0.5 raised few
#: (round-trip F1 0.361), 0 all of them (0.417; the repair measured whole: 0.389).
EXTEND_MIN_SHARE = 0.0


def _stacked(tracks: tuple) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """:func:`semcodec.roundtrip.stacked` of the notes of the pitched ``tracks``."""
    from semcodec import roundtrip

    return list(roundtrip.stacked([(ti, k, n) for ti, t in enumerate(tracks) if not t.is_drum
                                   for k, n in enumerate(t.notes)]))


def _extended_repair(c: _C, dg: digest.Digest, sub: SmcFile, fixed: SmcFile) -> tuple[_C, int]:
    """``c`` (its windows' notes repaired from ``fixed``, ``sub`` repaired) with the notes
    outside ``dg``'s windows that are stacked over a lower one (:func:`_stacked`) raised by
    roundtrip.RAISE_FACTOR, in the tracks where the digest's repair raised EXTEND_MIN_SHARE
    of such notes at least; their lower notes scaled by roundtrip.LOWER_FACTOR when the
    repair lowered maskers.  And how many notes changed."""
    from semcodec import roundtrip

    up, down = set(), set()
    for ti, (a, b) in enumerate(zip(sub.score.tracks, fixed.score.tracks)):
        for k, (x, y) in enumerate(zip(a.notes, b.notes)):
            if y.velocity > x.velocity:
                up.add((ti, k))
            elif y.velocity < x.velocity:
                down.add((ti, k))
    stacked_sub = {hi for hi, _ in _stacked(sub.score.tracks)}
    tracks_up = set()
    for ti in {hi[0] for hi in stacked_sub}:
        mine = [h for h in stacked_sub if h[0] == ti]
        if sum(h in up for h in mine) >= EXTEND_MIN_SHARE * len(mine):
            tracks_up.add(ti)
    inside = {(ti, k) for ti, t in enumerate(c.score.tracks) for k, _ in dg.kept(t.notes)}
    raise_, lower = set(), set()
    for hi, lo in _stacked(c.score.tracks):
        if hi[0] in tracks_up and hi not in inside:
            raise_.add(hi)
            if down and lo not in inside:
                lower.add(lo)
    if not raise_:
        return c, 0
    tracks = roundtrip.scaled(c.score.tracks, raise_, roundtrip.RAISE_FACTOR)
    if lower:
        tracks = roundtrip.scaled(tracks, lower - raise_, roundtrip.LOWER_FACTOR)
    return replace(c, score=replace(c.score, tracks=tracks)), len(raise_ | lower)


def _clear_notes(c: _C, original: np.ndarray,
                 on_candidate: Callable[[_C], None] | None = None,
                 measured: Measured | None = None,
                 on_verdict: Callable[[_C, bool], None] | None = None,
                 max_rounds: int | None = None) -> _C:
    """:func:`_with_clear_notes` of ``c`` measured whole (``max_rounds``: the repair's rounds
    at most, default roundtrip.MAX_ROUNDS)."""
    from semcodec import roundtrip, sampleuse
    from semcodec.errors import SemcodecError
    from semcodec.synth import dsp

    sr = roundtrip.MEASURE_SR
    mono = np.asarray(original, np.float32)
    # the same original as the track renders were measured against (a solo): its measures
    kept = sampleuse.kept_target(mono, c.sample_rate) if sr == sampleuse.MEASURE_SR else None
    if kept is not None:
        target, mels, _ = kept
    else:  # the log-mels are made by the repair only when a note can be masked
        target = dsp.resample(mono if mono.ndim == 1 else mono.mean(axis=1), c.sample_rate, sr)
        mels = None
    opts = DecodeOptions(residual=False, channels=1, max_duration_s=None, sample_rate=sr)
    measured = Measured() if measured is None else measured

    def render(tracks: tuple) -> np.ndarray:
        return measured.decode(c, tracks, opts, target.shape[0])

    def with_tracks(tracks: tuple) -> _C:
        return c if tracks == c.score.tracks else replace(c, score=replace(c.score,
                                                                           tracks=tracks))

    def candidate(tracks: tuple) -> None:
        if on_candidate is not None:
            on_candidate(with_tracks(tracks))

    def verdict(tracks: tuple, accepted: bool) -> None:
        if on_verdict is not None:
            on_verdict(with_tracks(tracks), accepted)

    try:
        tracks = roundtrip.repair(c.score.tracks, target, sr, render,
                                  on_candidate=None if on_candidate is None else candidate,
                                  original_mels=mels, hear=measured.hear,
                                  on_verdict=None if on_verdict is None else verdict,
                                  on_heard=measured.remember,
                                  max_rounds=roundtrip.MAX_ROUNDS if max_rounds is None
                                  else max_rounds)
    except SemcodecError as exc:
        log.warning("round-trip repair skipped: %s", exc)
        return c
    return with_tracks(tracks)


def _with_aligned_onsets(c: _C, original: np.ndarray, reference: tuple | None = None,
                         measured: Measured | None = None,
                         on_leads: Callable[[dict[int, float]], None] | None = None,
                         whole_max_s: float | None = None) -> _C:
    """``c`` with each pitched track's notes started earlier by the lag with which a
    transcription of its decode hears them (:func:`semcodec.roundtrip.align_onsets`,
    measured on its default decode, residual included when it has one, at the transcriber's
    rate against ``original``, float32 at ``c.sample_rate``); ``c`` unchanged when no lag is
    found, the shift is not accepted or the decode fails.  ``reference``: ``c``'s tracks
    before an earlier shift (where the notes should be heard; default: ``c``'s own).  A long
    input (over digest.LONG_MEASURE_S) is measured on its first REPAIR_SPAN_S (a lag belongs
    to a track's sound, not to a passage), one over MEASURE_WHOLE_MAX_S on the digest the
    repair measured (:func:`_measure_digest`); ``whole_max_s``: an input over it measured
    on its first REPAIR_SPAN_S instead.  ``measured``: the decodes and transcriptions
    :func:`_with_clear_notes` kept (those of ``c``'s own decode are not made again).
    ``on_leads``: as for :func:`semcodec.roundtrip.align_onsets` (the leads found, whether
    the shift is then kept or not)."""
    from semcodec import roundtrip, sampleuse
    from semcodec.errors import SemcodecError
    from semcodec.synth import dsp

    m, audio = c, original
    ref = c.score.tracks if reference is None else reference
    dg = _measure_digest(c) if whole_max_s is None else None
    if dg is None and c.duration > (digest.LONG_MEASURE_S if whole_max_s is None
                                    else whole_max_s):
        dg = digest.around(c, 0.0, REPAIR_SPAN_S)
    if dg is not None:
        m, audio = dg.container(c, samples=True), dg.audio(original)
        ref = dg.container(replace(c, score=replace(c.score, tracks=ref))).score.tracks
    sr = roundtrip.MEASURE_SR
    mono = np.asarray(audio, np.float32)
    # the same original as the track renders were measured against (a solo): its measures
    kept = sampleuse.kept_target(mono, m.sample_rate) if sr == sampleuse.MEASURE_SR else None
    if kept is not None:
        target, mels, _ = kept
    else:
        target = dsp.resample(mono if mono.ndim == 1 else mono.mean(axis=1), m.sample_rate, sr)
        mels = None
    opts = DecodeOptions(residual=bool(m.residual), channels=1, max_duration_s=None,
                         sample_rate=sr)
    measured = Measured() if measured is None else measured

    def render(tracks: tuple) -> np.ndarray:
        return measured.decode(m, tracks, opts, target.shape[0])

    try:
        leads = roundtrip.align_onsets(m.score.tracks, target, sr, render, reference=ref,
                                       original_mels=mels, hear=measured.hear,
                                       on_leads=on_leads)
    except SemcodecError as exc:
        log.warning("onset alignment skipped: %s", exc)
        return c
    if not leads:
        return c
    log.info("onset alignment: %s", ", ".join(f"track {i + 1} {1000 * v:+.0f} ms earlier"
                                              for i, v in sorted(leads.items())))
    return replace(c, score=replace(c.score, tracks=roundtrip.shifted(c.score.tracks, leads)))


def _samples_within(c: SmcFile, samples: tuple, max_kbps: float) -> tuple:
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


def _spend(c: _C, audios: list[np.ndarray], groups: list[list[int]], sr: int,
           samples: tuple[Sample, ...], opts: EncodeOptions,
           residual_for: Callable[[_C], Any] | None = None) -> _C:
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
        rendered: dict = {}  # the tracks' engine renders, made once for both measures
        m_c, m_audios, m_samples = c, audios, samples
        m_first = tuple(first.values())
        if c.duration > MEASURE_WHOLE_MAX_S and sr == c.sample_rate:
            # a long input: measured on its digest (a few windows), in bounded memory
            dg = digest.Digest(digest.windows(c.duration, samples), sr)
            m_c, m_audios = dg.container(c), [dg.audio(a) for a in audios]
            m_samples, m_first = dg.samples(samples), dg.samples(m_first)
            log.info("track renders measured on %.0f s of the %.0f s", dg.n / sr, c.duration)
        one = _measure_renders(m_c, m_audios, groups, sr, m_first, rendered)
        choices = (_measure_renders(m_c, m_audios, groups, sr, m_samples, rendered) if several
                   else one)
        del m_audios
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

    variants = _excerpt_parts(base, base_bytes, samples, first, one, choices,
                              opts.track_renders, parts)
    coder = residual_for(base) if residual_for is not None else None
    alloc = budget.allocate(total, parts,
                            residual=coder.code if coder is not None else None,
                            residual_benefit=coder.benefit if coder is not None else None)

    keep = {p.name for p in alloc.kept}
    out = _build(base, samples, variants, keep)
    # the estimates above leave out a few bytes of chunk framing: drop the least useful part
    # (an upgrade before its base) until the file is within the target (never beyond it)
    optional = sorted((p for p in alloc.kept if not p.required),
                      key=lambda p: (p.requires is None, p.density))
    while len(out.to_bytes()) > total and optional:
        keep.discard(optional.pop(0).name)
        out = _build(base, samples, variants, keep)
    return out


#: What a kept sample part brings: (track, its render, its excerpts).
_Variant = tuple[int, TrackRender | None, tuple[Sample, ...]]


def _excerpt_parts(base: SmcFile, base_bytes: int, samples: tuple[Sample, ...],
                   first: dict[int, Sample], one: dict, choices: dict, track_renders: bool,
                   parts: list) -> dict[str, _Variant]:
    """Append to ``parts`` the budget parts of the excerpts (``sample{i}``: a track's first
    excerpt with its render; ``sample{i}+``: all its excerpts, as an upgrade or alone;
    ``excerpt{k}``: unplayed, without track renders) and return what each brings."""

    def render_bytes(i: int, render) -> int:  # header bytes the track's render adds
        tracks = tuple(replace(t, render=render) if j == i else t
                       for j, t in enumerate(base.score.tracks))
        return max(0, len(replace(base, score=replace(base.score, tracks=tracks)).to_bytes())
                   - base_bytes)

    variants: dict[str, _Variant] = {}
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
    if not track_renders:  # excerpts stored unplayed (format 1.2): by the old order
        for k, smp in enumerate(samples):
            if smp.key is None:
                parts.append(budget.Part(f"excerpt{k}", "sample",
                                         len(smp.data) + SAMPLE_FIELD_BYTES, 1e-9))
    return variants


def _build(base: _C, samples: tuple[Sample, ...], variants: dict[str, _Variant],
           keep: set[str]) -> _C:
    """``base`` with the kept parts' samples and renders."""
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


def _measure_renders(c: SmcFile, audios: list[np.ndarray], groups: list[list[int]], sr: int,
                     samples: tuple[Sample, ...], rendered: dict | None = None) -> dict:
    """{track: sampleuse.Choice} for the pitched tracks of ``groups`` (empty when the
    engines are unavailable or the file is silent).  ``rendered`` keeps each whole track's
    engine render (read-only) for a later call on the same file: made once, not per call."""
    rendered = {} if rendered is None else rendered
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
        whole = track == c.score.tracks[i]
        if whole and i in rendered:
            return rendered[i]
        tracks = tuple(track if j == i else replace(t, notes=())
                       for j, t in enumerate(c.score.tracks))
        y = renderer.render(replace(c.score, tracks=tracks))
        if whole:
            y.setflags(write=False)  # shared between the calls: nobody may change it
            rendered[i] = y
        return y

    out = {}
    for audio, members in zip(audios, groups):
        try:
            memo = rendered.setdefault(("memo", tuple(members)), {})
            for ch in sampleuse.choose(audio, sr, c.score, members, samples, engine, memo=memo):
                out[ch.track] = ch
        except SynthError as exc:
            log.warning("track renders of tracks %s not measured: %s",
                        ", ".join(str(i + 1) for i in members), exc)
    return out
