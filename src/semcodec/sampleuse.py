"""Encode-time choice of how each pitched track is played: analysis by synthesis.

For every pitched track the encoder renders what the decoder would play and measures, on the
track's own audio (its stem, or the mix with the other tracks' renderings in place), a log-mel
distance for each way of playing it (:mod:`semcodec.synth.sampler`):

* the engine alone;
* the engine with a spectral correction (``eq``) fitted on the whole track — no excerpt needed;
* the ``sampler``: the notes the excerpt covers played from it, the rest by the engine (+ eq);
* the ``voice`` (a track that may be sung): the track sung with the singer's spectral envelope
  and breathiness measured on its own audio and stored in the file (~100 bytes, no excerpt),
  with a room (+ eq).

The excerpt is kept only when the sampler, which plays it, measures closer than the best use
without it by more than :data:`MIN_GAIN`; :class:`Choice` records the measured benefit, which the
bitrate allocator (:mod:`semcodec.budget`) weighs against the excerpt's bytes.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from semcodec.background import in_background
from semcodec.events import Sample, Score, Track, TrackRender
from semcodec.synth import dsp, sampler, voice

log = logging.getLogger(__name__)

#: Sample rate of the measurements (Hz).
MEASURE_SR = 22050
#: A use that plays the excerpt must beat the best use without it by this much (mel distance).
MIN_GAIN = 0.005
#: Rooms tried for the voice: (rt60 s, wet).
VOICE_ROOMS = ((0.0, 0.0), (0.5, 0.3), (1.0, 0.5), (1.5, 0.5))
#: Strengths of the fitted eq tried (fractions of the full correction).
EQ_SCALES = (0.5, 1.0)
#: Quantisation of stored EQ gains (dB).
EQ_STEP_DB = 1.0


_FB: dict[tuple[int, int], np.ndarray] = {}


def log_mels(x: np.ndarray, sr: int = MEASURE_SR) -> list[np.ndarray]:
    """``log10(max(mel, 1e-5))`` (64 bands, magnitude) of ``x`` at n_fft 1024 and 2048 (hop
    n_fft / 4): the features of :func:`mel_distance`."""
    out = []
    for n_fft in (1024, 2048):
        if (sr, n_fft) not in _FB:
            from semcodec import filterbanks  # noqa: PLC0415 - encode side only

            _FB[(sr, n_fft)] = filterbanks.mel(sr=sr, n_fft=n_fft, n_mels=64)
        # block by block (bounded memory on long inputs)
        out.append(np.concatenate([np.log10(np.maximum(mag @ _FB[(sr, n_fft)].T, 1e-5))
                                   for mag in sampler.stft_mag_blocks(x, n_fft, n_fft // 4)]))
    return out


#: Inputs up to this long (s) keep their :func:`target_measures` for a later caller on the
#: same array (the round-trip repair measures against the same original as the track renders).
TARGET_KEEP_MAX_S = 300.0
_TARGET_KEPT: list = []  # [(audio, sr, measures)]: the latest one only
_TARGET_LOCK = threading.Lock()


def target_measures(audio: np.ndarray,
                    sr: int) -> tuple[np.ndarray, list[np.ndarray], float | None]:
    """(``audio`` (mono float32 at ``sr`` Hz) resampled to MEASURE_SR, its :func:`log_mels`,
    its integrated loudness in LUFS or None).  Those of the latest input up to
    TARGET_KEEP_MAX_S long are kept (read-only) and returned again for the same array object
    and rate (the encoder does not change its input), until :func:`forget_target`."""
    kept = kept_target(audio, sr)
    if kept is not None:
        return kept
    target = dsp.resample(np.asarray(audio, np.float32), sr, MEASURE_SR)
    measures = (target, log_mels(target), dsp.integrated_loudness(target, MEASURE_SR))
    if audio.shape[0] <= TARGET_KEEP_MAX_S * sr:
        for a in (target, *measures[1]):
            a.setflags(write=False)
        with _TARGET_LOCK:
            _TARGET_KEPT[:] = [(audio, sr, measures)]
    return measures


def kept_target(audio: np.ndarray, sr: int) -> tuple | None:
    """The :func:`target_measures` kept for this very array and rate, else None (nothing is
    measured)."""
    with _TARGET_LOCK:
        for kept, kept_sr, measures in _TARGET_KEPT:
            if kept is audio and kept_sr == sr:
                return measures
    return None


def forget_target() -> None:
    """Drop the measures :func:`target_measures` keeps and the notes :func:`heard_like`
    finds (the end of an encode)."""
    with _TARGET_LOCK:
        _TARGET_KEPT.clear()
        _HEARD_KEPT.clear()


#: What the round-trip checks of the chosen renders heard (the latest HEARD_KEEP): the
#: encoder's round-trip repair then transcribes its decode, which is the same audio (the
#: group's mix of the renders chosen, matched to the same loudness) up to float rounding of
#: the decoder's own gain and filters (S07: 1.2e-4 at most): heard once.
HEARD_KEEP = 2
#: Largest difference (of the audio's peak) within which :func:`heard_like` takes two
#: audios for the same: -60 dB, below anything a transcriber or a listener tells apart.
HEARD_SAME = 1e-3
_HEARD_KEPT: list = []  # [(audio at MEASURE_SR, notes heard)]


def _keep_heard(audio: np.ndarray) -> Callable[[tuple], None] | None:
    """The ``heard_into`` of :func:`semcodec.roundtrip.agreement` that keeps what was heard
    in ``audio`` (at MEASURE_SR) for :func:`heard_like`; None for an input over
    TARGET_KEEP_MAX_S (not kept)."""
    if audio.shape[0] > TARGET_KEEP_MAX_S * MEASURE_SR:
        return None

    def keep(heard: tuple) -> None:
        with _TARGET_LOCK:
            _HEARD_KEPT[:] = [*_HEARD_KEPT[1 - HEARD_KEEP:], (audio, heard)]

    return keep


def heard_like(y: np.ndarray, sr: int) -> tuple | None:
    """The notes a round-trip check of a render heard in audio that is ``y`` (mono float32
    at ``sr`` Hz) to within HEARD_SAME of its peak, else None."""
    if sr != MEASURE_SR:
        return None
    with _TARGET_LOCK:
        kept = list(_HEARD_KEPT)
    y = np.asarray(y, np.float32)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    for audio, heard in reversed(kept):
        if audio.shape == y.shape and peak > 0 and float(
                np.max(np.abs(audio - y))) <= HEARD_SAME * peak:
            return heard
    return None


def mel_distance(ref, est: np.ndarray, sr: int = MEASURE_SR) -> float:
    """Mean |log10 mel| difference (64 bands; n_fft 1024 and 2048, hop n_fft/4), a cheap
    stand-in for the benchmark's multi-resolution mel distance.  ``ref``: mono audio at
    ``sr`` or its :func:`log_mels` (computed once per target); ``est``: mono audio of the
    same length."""
    la = log_mels(ref, sr) if isinstance(ref, np.ndarray) else ref
    lb = log_mels(est, sr)
    return float(np.mean([np.mean(np.abs(a[:b.shape[0]] - b[:a.shape[0]]))
                          for a, b in zip(la, lb)]))


@dataclass(frozen=True)
class Choice:
    """The measured choice for one track: its ``render`` (None: the engine alone), whether
    its excerpt is played (``uses_sample``), and the mel distances of the group's decode
    with the chosen use (``dist``) and with the best use that needs no excerpt
    (``dist_without_sample``, with render ``plain``)."""

    track: int
    render: TrackRender | None
    uses_sample: bool
    dist: float
    dist_without_sample: float
    #: The best render that needs no excerpt (None: the engine alone): the track's render
    #: when its excerpt is not kept.
    plain: TrackRender | None = None

    @property
    def sample_benefit(self) -> float:
        """How much closer (mel distance) the excerpt makes the decode; 0 when unused."""
        return max(0.0, self.dist_without_sample - self.dist) if self.uses_sample else 0.0


def maybe_sung(track: Track) -> bool:
    """True when ``track`` may be a sung line: named or programmed as a voice, or most of its
    notes carry pitch bends (vibrato, glides) in a singing register (MIDI 40..84)."""
    from semcodec.constants import VOICE_PROGRAMS, is_voice_name  # noqa: PLC0415

    if is_voice_name(track.name) or track.program in VOICE_PROGRAMS:
        return True
    if not track.notes:
        return False
    bent = sum(1 for n in track.notes if n.bends) / len(track.notes)
    mid = float(np.median([n.pitch for n in track.notes]))
    return bent >= 0.5 and 40 <= mid <= 84


#: Audio the voice is measured on: the whole track when it is at most this long (s), else
#: windows of VOICE_WINDOW_S around its excerpts.
VOICE_WHOLE_S = 60.0
VOICE_WINDOW_S = 6.0


def _voice_candidate(i: int, track: Track, target: np.ndarray, starts: list[float], solo: bool,
                     engine_part: np.ndarray, dist_with, finish, tried: dict):
    """(distance, TrackRender, rendering) of track ``i`` sung with the voice measured on its
    own audio ``target`` (at MEASURE_SR), with the best room and eq; None when no voiced
    frame is found.  The model is measured on the whole track when it is short, else on
    windows at the excerpts' ``starts``; it is rendered as the decoder will (from the stored
    parameters)."""
    n = target.shape[0]
    if n <= VOICE_WHOLE_S * MEASURE_SR or not starts:
        segs = [(target[:int(VOICE_WHOLE_S * MEASURE_SR)], 0.0)]
    else:
        segs = [(target[int(st * MEASURE_SR):int((st + VOICE_WINDOW_S) * MEASURE_SR)], st)
                for st in starts]
    model = voice.analyze_excerpts(segs, MEASURE_SR, track)
    if model is None:
        return None
    params = model.to_params()
    v = voice.render(voice.VoiceModel.from_params(params), track, MEASURE_SR, n, seed=i)
    v = dsp.fit_length(v, n)
    ry = dsp.rms(v)
    rr = dsp.rms(engine_part)
    g = 0.0 if solo or ry <= 0 or rr <= 0 else 20.0 * np.log10(rr / ry)
    rooms = []  # the room first (without eq: cheaper), then the eq on the best room
    for rt, wet in VOICE_ROOMS:
        y = sampler.apply_room(v, MEASURE_SR, rt, wet, seed=i)
        d = dist_with(i, y * np.float32(10.0 ** (g / 20.0)))
        tried[f"voice{rt:g}"] = round(d, 4)
        rooms.append((d, rt, wet, y))
    _, rt, wet, y = min(rooms, key=lambda r: r[0])
    d, spec, y = finish(y, "voice", (rt, wet) if wet > 0 else ())
    tried["voice+eq"] = round(d, 4)
    return d, replace(spec, voice=params), y


def _quant(db: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in np.round(np.asarray(db) / EQ_STEP_DB) * EQ_STEP_DB)


def choose(audio: np.ndarray, sr: int, score: Score, members: list[int],
           samples: tuple[Sample, ...], engine: Callable[[int, Track], np.ndarray],
           loudness_lufs: float | None = None, memo: dict | None = None) -> list[Choice]:
    """Choose how to play each of ``members`` (track indices of ``score`` sharing ``audio``,
    mono float32 at ``sr`` Hz: their stem, or the mix they were transcribed from).

    ``engine(i, track)`` renders track ``track`` (track ``i`` or some of its notes) alone as
    the decoder's engine would, mono float32 at MEASURE_SR with ``audio``'s duration.
    ``samples`` are the candidate excerpts (those of these tracks are used).  The decodes are
    matched to ``loudness_lufs`` (None: the loudness of ``audio``), as the decoder matches the
    original's.  The voice is tried only for a track that may be sung (:func:`maybe_sung`).
    Returns one :class:`Choice` per member that has notes.  ``memo`` (a dict kept by the
    caller for further calls on the same ``audio``, ``members`` and ``engine``) keeps what
    does not depend on ``samples``: the target's measures and, for a solo, the candidates
    that need no excerpt (the same numbers, measured once).
    """
    memo = {} if memo is None else memo
    if "target" not in memo:
        memo["target"] = target_measures(audio, sr)
    target, target_mels, own_lufs = memo["target"]
    loudness_lufs = own_lufs if loudness_lufs is None else loudness_lufs
    n = target.shape[0]
    solo = len(members) == 1

    def fit(y: np.ndarray) -> np.ndarray:  # (the array itself when it has the length)
        y = np.asarray(y, np.float32)
        return y if y.shape[0] == n else dsp.fit_length(y, n)

    parts = {i: fit(engine(i, score.tracks[i])) for i in members if score.tracks[i].notes}

    def mix_of(i: int, y: np.ndarray) -> np.ndarray:
        mix = y + sum((p for j, p in parts.items() if j != i), np.zeros(n, np.float32))
        return dsp.match_loudness(mix, MEASURE_SR, loudness_lufs)

    # a solo's round-trip check starts from the engine render's agreement: transcribed on a
    # second thread while the candidates are rendered and measured (the same number; a mix's
    # depends on the other tracks' choices, made one after the other)
    engine_f1 = {}
    for i in parts if solo else ():
        kept = memo.get(("engine F1", i))  # that of an earlier call on the same render
        if kept is None or kept[0] is not parts[i]:
            kept = (parts[i], in_background(_agreement, mix_of(i, parts[i]),
                                            score.tracks[i].notes))
            memo[("engine F1", i)] = kept
        engine_f1[i] = kept[1]

    def dist_with(i: int, y: np.ndarray) -> float:
        return mel_distance(target_mels, mix_of(i, y))

    def finish(y: np.ndarray, use: str, room=()) -> tuple[float, TrackRender, np.ndarray]:
        """The level (a mix: that of the engine's fitted rendering) and, for a solo, the eq
        fitted on the track's own audio at the strength (of EQ_SCALES) that measures best."""
        g = 0.0 if solo else round(_level_db(y, parts[i]), 2)
        y = y * np.float32(10.0 ** (g / 20.0))
        best: tuple[float, tuple[float, ...], np.ndarray] = (dist_with(i, y), (), y)
        if solo:
            full = sampler.eq_correction(target, y, MEASURE_SR)
            for scale in EQ_SCALES:
                eq = _quant(full * scale)
                if not any(eq):
                    continue
                ye = sampler.apply_eq(y, MEASURE_SR, np.asarray(eq))
                d = dist_with(i, ye)
                if d < best[0]:
                    best = (d, eq, ye)
        return best[0], TrackRender(use=use, gain_db=g, eq_db=best[1], room=tuple(room)), best[2]

    out = []
    try:
        for i in parts:
            track = score.tracks[i]
            mine = [s for s in samples if s.track == i and s.key is None]
            # a track measured before (an earlier call) with the same excerpts against the
            # very same renders of the group's tracks: the same choice, not measured again
            # (a mix's tracks that have one excerpt, when the encoder measures the tracks'
            # first excerpts, then all of them)
            ckey = ("choice", i, tuple((s.start, s.data) for s in mine))
            before = memo.get(ckey)
            if before is not None and before[0].keys() == parts.keys() and all(
                    a is parts[j] for j, a in before[0].items()):
                log.info("track %d: as measured before -> %s", i + 1, before[1])
                out.append(before[2])
                parts[i] = before[3]
                continue
            seen = dict(parts)
            # a solo's plain candidates depend on its engine render and audio only (the voice's
            # windows on the excerpts' starts: part of the key); a mix's on the others' choices
            key = ("plain", i, tuple(s.start for s in mine) if maybe_sung(track) else ())
            if not solo or key not in memo:
                memo[key] = _plain(i, track, parts[i], target, mine, solo, dist_with, finish)
            best_plain, tried_plain, base = memo[key]
            tried = dict(tried_plain)
            best = best_plain
            played_by_sampler = _sampler_candidate(i, track, mine, n, engine, fit, finish, tried)
            if played_by_sampler is not None and played_by_sampler[0] < best[0]:
                best = played_by_sampler
            uses = best is not best_plain  # the sampler won: the excerpt is played
            if uses and best[0] > best_plain[0] - MIN_GAIN:
                best, uses = best_plain, False
            if best[1] is not None:  # the round-trip check against the engine alone
                keeps = _NoteCheck(i, parts[i], target, mix_of,
                                   [nt for j in members for nt in score.tracks[j].notes], tried,
                                   engine_f1=engine_f1.get(i),
                                   known=memo.setdefault(("F1", i), []) if solo else None)
                if best_plain[1] is not None and not keeps(best_plain):
                    best_plain = (base, None, parts[i])
                if not uses or not keeps(best):
                    best, uses = best_plain, False
            use = (best[1].use if best[1] is not None and best[1].use else
                   ("eq" if best[1] is not None else "engine"))
            log.info("track %d: mel distances %s -> %s", i + 1, tried, use)
            out.append(Choice(track=i, render=best[1], uses_sample=uses, dist=best[0],
                              dist_without_sample=best_plain[0], plain=best_plain[1]))
            memo[ckey] = (seen, use, out[-1], best[2])
            parts[i] = best[2]  # later tracks are measured against this one as chosen
    finally:
        # each used, or not needed (the engine alone was kept), or an interrupt: joined before
        # this goes on (a process must not exit while onnxruntime runs on a thread)
        for pending in engine_f1.values():
            try:
                pending()
            except Exception:  # noqa: BLE001 - a result nobody asked for
                pass
    return out


def _agreement(mix: np.ndarray, notes) -> float | None:
    """:func:`semcodec.roundtrip.agreement` of ``mix`` (at MEASURE_SR) with ``notes``."""
    from semcodec import roundtrip  # noqa: PLC0415

    return roundtrip.agreement(mix, MEASURE_SR, notes, heard_into=_keep_heard(mix))


def _plain(i: int, track: Track, part: np.ndarray, target: np.ndarray, mine: list[Sample],
           solo: bool, dist_with, finish) -> tuple[tuple, dict[str, float], float]:
    """(the best use of track ``i`` that needs no excerpt, the distances tried, the engine
    render's distance): its engine render ``part`` as it is, with the eq, or (a sung line)
    its own voice."""
    base = dist_with(i, part)
    best_plain: tuple[float, TrackRender | None, np.ndarray] = (base, None, part)
    # a track of a mix has no eq: finished, its engine render is only levelled to itself
    # (0 dB), the same audio and distance, not measured again
    d_eq, spec_eq, y_eq = finish(part, "") if solo else (base, None, part)
    if d_eq < best_plain[0]:
        best_plain = (d_eq, spec_eq, y_eq)
    tried = {"engine": round(base, 4), "eq": round(d_eq, 4)}
    if maybe_sung(track):  # sung from its own voice: the singer's envelope, no excerpt
        sung = _voice_candidate(i, track, target, [s.start for s in mine], solo, part,
                                dist_with, finish, tried)
        if sung is not None and sung[0] < best_plain[0]:
            best_plain = sung
    return best_plain, tried, base


class _NoteCheck:
    """The round-trip check of a track's render (:mod:`semcodec.roundtrip`): a candidate
    ``(distance, render, audio)`` of track ``i`` is kept only if its group mix
    (``mix_of(i, audio)``) lets the group's ``notes`` be transcribed back about as well as the
    engine alone (``engine``, the track's plain rendering) does, or as the ``original`` (the
    group's audio at MEASURE_SR) does when that is lower: a render need not be clearer than
    the original.  A render can be closer in mel and still hide its notes (a sub-octave, an
    excerpt whose other notes cover the played ones).  The agreements are noted in
    ``tried``."""

    def __init__(self, i: int, engine: np.ndarray, original: np.ndarray, mix_of: Callable,
                 notes: list, tried: dict,
                 engine_f1: Callable[[], float | None] | None = None,
                 known: list | None = None) -> None:
        self.i, self.engine, self.mix_of, self.notes, self.tried = i, engine, mix_of, notes, tried
        self.original = original
        #: the engine render's agreement measured meanwhile (its result when asked), or None
        self.engine_f1 = engine_f1
        #: ``[(render, agreement)]`` measured before (a solo's, whose mix is its render's
        #: alone): a render measured again is not transcribed again
        self.known = known
        self._base: float | None = None
        self._measured = False
        self._original_done = False

    def _f1(self, y: np.ndarray) -> float | None:
        from semcodec import roundtrip  # noqa: PLC0415

        for a, f1 in self.known or ():
            if a is y:
                return f1
        mix = self.mix_of(self.i, y)
        f1 = roundtrip.agreement(mix, MEASURE_SR, self.notes, heard_into=_keep_heard(mix))
        if self.known is not None:
            self.known.append((y, f1))
        return f1

    def __call__(self, cand: tuple) -> bool:
        from semcodec import roundtrip  # noqa: PLC0415

        if not self._measured:
            self._base = self.engine_f1() if self.engine_f1 is not None else self._f1(self.engine)
            self._measured = True
            self.tried["engine F1"] = None if self._base is None else round(self._base, 3)
        f1 = self._f1(cand[2])
        self.tried[f"{cand[1].use or 'eq'} F1"] = None if f1 is None else round(f1, 3)
        if roundtrip.keeps_notes(f1, self._base, len(self.notes)):
            return True  # then also against min(engine, original): the original not needed
        if self._base is not None and not self._original_done:
            # the original is transcribed only when it can change the outcome (a candidate
            # that the engine alone would refuse): one transcription less in the usual case
            self._original_done = True
            orig = roundtrip.agreement(self.original, MEASURE_SR, self.notes)
            self.tried["original F1"] = None if orig is None else round(orig, 3)
            self._base = self._base if orig is None else min(self._base, orig)
        return roundtrip.keeps_notes(f1, self._base, len(self.notes))


def _level_db(y: np.ndarray, ref: np.ndarray) -> float:
    """The gain (dB) that brings ``y``'s RMS level to ``ref``'s (0 when either is silent)."""
    ry = dsp.rms(y)
    rr = dsp.rms(ref)
    return 20.0 * np.log10(max(rr, 1e-9) / max(ry, 1e-9)) if ry > 0 and rr > 0 else 0.0


def _sampler_candidate(i: int, track: Track, mine: list[Sample], n: int,
                       engine: Callable[[int, Track], np.ndarray],
                       fit: Callable[[np.ndarray], np.ndarray],
                       finish: Callable[..., tuple[float, TrackRender, np.ndarray]],
                       tried: dict[str, float]) -> tuple[float, TrackRender, np.ndarray] | None:
    """Track ``i`` played by the sampler from its excerpts ``mine`` (the notes no excerpt
    covers by the engine), finished by ``finish`` (level, eq) and measured: ``(mel distance,
    render, audio)``, None without a usable excerpt.  Its distance is noted in ``tried``."""
    excerpts = []
    for s in mine:
        x = sampler.decode_excerpt(s, MEASURE_SR)
        if x is not None and x.size:
            excerpts.append((x, s.start))
    if not excerpts:
        return None
    zs = sampler.excerpt_zones(excerpts, MEASURE_SR, track)
    if not zs:
        return None
    y, played = sampler.render_sampler(track, zs, MEASURE_SR, n)
    rest = [track.notes[k] for k in range(len(track.notes)) if k not in set(played)]
    if rest:
        y = y + fit(engine(i, replace(track, notes=tuple(rest))))
    d, spec, y = finish(fit(y), "sampler")
    tried["sampler"] = round(d, 4)
    return d, spec, y
