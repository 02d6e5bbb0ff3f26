"""Recognisability of a rendering: do its notes come back when it is transcribed again?

The encoder picks how each track is played (engine, sampler, eq, ...) by analysis by
synthesis under a spectral (log-mel / STFT) distance.  A rendering can be close under that
distance and still hide its notes from a listener or a transcriber: a timbre with a strong
sub-octave (an organ's 16' stop) makes every note heard an octave low, a pad without attack
merges repeated notes.  :func:`agreement` measures that with the transcriber the encoder
already runs (:mod:`semcodec.transcribe`): the onset-only note F1 of the rendering's
transcription against the notes it was rendered from.  :func:`keeps_notes` is the acceptance
rule the choices use: a rendering may replace a safer one only if it keeps the notes about
as recognisable.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from semcodec.events import Note

log = logging.getLogger(__name__)

#: Onset tolerance of a match (s): that of the benchmark's note F1 (mir_eval's default).
ONSET_TOLERANCE_S = 0.05
#: The transcriber's settings for the check: basic-pitch's published defaults (onset 0.5,
#: frame 0.3, notes of >= 127.7 ms, the melodia trick on), i.e. how a generic listener
#: transcribes, not the encoder's own tuned settings (which hear more notes than it does).
CHECK_ONSET = 0.5
CHECK_FRAME = 0.3
CHECK_MIN_NOTE_S = 0.1277


def check_options():
    """:class:`semcodec.transcribe.TranscribeOptions` of the round-trip check."""
    from semcodec.transcribe import TranscribeOptions  # noqa: PLC0415

    return TranscribeOptions(onset_threshold=CHECK_ONSET, frame_threshold=CHECK_FRAME,
                             min_note_s=CHECK_MIN_NOTE_S, melodia_trick=True, keep_bends=False)


def transcribe_back(audio: np.ndarray, sr: int) -> tuple[Note, ...]:
    """The notes the check's transcriber hears in ``audio`` (mono float32 at ``sr`` Hz)."""
    from semcodec import transcribe as tr  # noqa: PLC0415 - looked up at call time (tests)

    return tuple(tr.transcribe(np.asarray(audio, np.float32), sr, check_options()))


#: How much lower (note F1, 0..1) a rendering's agreement may be than the safer rendering's
#: before it is refused, whatever its spectral gain.
MAX_F1_LOSS = 0.05


def note_f1(ref: Sequence[tuple[float, int]], est: Sequence[tuple[float, int]],
            tol_s: float = ONSET_TOLERANCE_S) -> float:
    """Onset-only note F1 (0..1) of ``est`` against ``ref``, both ``(onset s, MIDI pitch)``
    lists: a match is the same pitch with onsets at most ``tol_s`` apart, each note matched at
    most once (greedy, closest onsets first).  1.0 when both are empty, 0.0 when one is."""
    if not ref and not est:
        return 1.0
    if not ref or not est:
        return 0.0
    pairs = sorted((abs(r[0] - e[0]), i, j) for i, r in enumerate(ref) for j, e in enumerate(est)
                   if r[1] == e[1] and abs(r[0] - e[0]) <= tol_s)
    used_r: set[int] = set()
    used_e: set[int] = set()
    for _, i, j in pairs:
        if i not in used_r and j not in used_e:
            used_r.add(i)
            used_e.add(j)
    hits = len(used_r)
    return 2.0 * hits / (len(ref) + len(est))


def agreement(audio: np.ndarray, sr: int, notes: Iterable[Note],
              heard_into: Callable[[tuple[Note, ...]], None] | None = None) -> float | None:
    """Note F1 (0..1) between ``notes`` and the transcription of ``audio`` (mono float32 at
    ``sr`` Hz, the rendering of those notes); None when the transcriber is unavailable or
    there are no notes to find.  ``heard_into(notes heard)``, when given, gets the
    transcription (not called when there was none)."""
    ref = [(float(n.onset), int(n.pitch)) for n in notes]
    if not ref:
        return None
    from semcodec.errors import SemcodecError  # noqa: PLC0415

    try:
        heard = transcribe_back(audio, sr)
    except SemcodecError as exc:  # no onnxruntime / model: the check is skipped
        log.info("round-trip check skipped: %s", exc)
        return None
    if heard_into is not None:
        heard_into(tuple(heard))
    return note_f1(ref, [(float(n.onset), int(n.pitch)) for n in heard])


#: ... or than this many notes' worth of F1 on few notes (3 / n_notes): a note or two missed
#: at an excerpt's edges is no evidence against a rendering.
MIN_NOTES_LOST = 3.0


def keeps_notes(candidate: float | None, safer: float | None, n_notes: int = 0,
                max_loss: float = MAX_F1_LOSS) -> bool:
    """The acceptance rule: True unless both agreements are known and ``candidate``'s is more
    than ``max_loss`` (or, on ``n_notes`` reference notes, MIN_NOTES_LOST / n_notes) below
    ``safer``'s."""
    if candidate is None or safer is None:
        return True
    margin = max(max_loss, MIN_NOTES_LOST / n_notes) if n_notes > 0 else max_loss
    return candidate >= safer - margin


# ------------------------------------------------------------------------------------------
# repair: notes masked by a note an octave below
# ------------------------------------------------------------------------------------------

#: Intervals (semitones) of a lower note that can mask a note: its 2nd and 4th harmonics
#: fall on the masked note's fundamental.
MASKING_INTERVALS = (12, 24)
#: Velocity factors tried, in turn, on the masked notes (and, second, on their maskers).
RAISE_FACTOR = 1.5
LOWER_FACTOR = 0.7
#: A repair may cost at most this much of the measured mel distance (sampleuse's
#: 64-band log-mel distance at 22.05 kHz, before the residual).
MAX_MEL_COST = 0.01
#: ... and must raise the agreement by at least this much (note F1).
MIN_F1_GAIN = 0.02
#: The second candidate of a round (the maskers lowered too) is not measured when the first
#: (the masked notes raised alone) is accepted and its decode leaves no note masked: one
#: decode and transcription less (S07: ~2 s of the encode's wall clock).  A first candidate
#: that leaves notes masked still meets the second (Slakh Track00001 S10: 0.867 against
#: 0.951 when 26 of 48 stay masked).
SKIP_SECOND_WHEN_CLEAR = True


def masked_notes(score_notes: Sequence[tuple[int, int, Note]], heard: Sequence[Note],
                 tol_s: float = ONSET_TOLERANCE_S) -> tuple[set, set]:
    """(masked, maskers): keys ``(track, index)`` of the notes of ``score_notes`` (``(track,
    index, note)``) that the transcription ``heard`` missed while it heard, at the same onset
    (within ``tol_s``), a score note MASKING_INTERVALS below; and of those lower notes."""
    import bisect  # noqa: PLC0415

    def by_pitch(items) -> dict[int, tuple[list[float], list]]:
        out: dict[int, tuple[list[float], list]] = {}
        for onset, pitch, key in sorted(items, key=lambda r: r[0]):
            ons, keys = out.setdefault(pitch, ([], []))
            ons.append(onset)
            keys.append(key)
        return out

    def near(table, pitch: int, t: float) -> list:
        ons, keys = table.get(pitch, ([], []))
        lo, hi = bisect.bisect_left(ons, t - tol_s), bisect.bisect_right(ons, t + tol_s)
        return keys[lo:hi]

    heard_t = by_pitch((float(h.onset), int(h.pitch), None) for h in heard)
    score_t = by_pitch((float(n.onset), int(n.pitch), (ti, k, n)) for ti, k, n in score_notes)
    masked: set = set()
    maskers: set = set()
    for ti, k, n in score_notes:
        if near(heard_t, int(n.pitch), float(n.onset)):
            continue
        for iv in MASKING_INTERVALS:
            for tj, j, m in near(score_t, int(n.pitch) - iv, float(n.onset)):
                if near(heard_t, int(m.pitch), float(m.onset)):
                    masked.add((ti, k))
                    maskers.add((tj, j))
    return masked, maskers


def stacked(score_notes: Sequence[tuple[int, int, Note]],
            tol_s: float = ONSET_TOLERANCE_S) -> Iterator[tuple[tuple[int, int], tuple[int, int]]]:
    """``((track, index), (track, index))`` of each note of ``score_notes`` (``(track,
    index, note)``) with a score note MASKING_INTERVALS below it at the same onset (within
    ``tol_s``), and that lower note: the pairs :func:`masked_notes` may find masked."""
    import bisect  # noqa: PLC0415

    by: dict[int, list[tuple[float, int, int]]] = {}
    for ti, k, n in score_notes:
        by.setdefault(int(n.pitch), []).append((float(n.onset), ti, k))
    for v in by.values():
        v.sort()
    for ti, k, n in score_notes:
        t = float(n.onset)
        for iv in MASKING_INTERVALS:
            low = by.get(int(n.pitch) - iv, [])
            i = bisect.bisect_left(low, (t - tol_s, -1, -1))
            while i < len(low) and low[i][0] <= t + tol_s:
                yield (ti, k), (low[i][1], low[i][2])
                i += 1


def may_mask(score_notes: Sequence[tuple[int, int, Note]],
             tol_s: float = ONSET_TOLERANCE_S) -> bool:
    """Whether any note of ``score_notes`` (``(track, index, note)``) has a score note
    MASKING_INTERVALS below it at the same onset (within ``tol_s``): else
    :func:`masked_notes` finds nothing, whatever a transcription hears."""
    return next(stacked(score_notes, tol_s), None) is not None


def scaled(tracks: Sequence, keys: set, factor: float) -> tuple:
    """``tracks`` (:class:`semcodec.events.Track`) with the velocity of the notes ``keys``
    (``(track, index)``) multiplied by ``factor`` (rounded, kept within 1..127)."""
    from dataclasses import replace  # noqa: PLC0415

    out = []
    for ti, t in enumerate(tracks):
        if not any(key[0] == ti for key in keys):
            out.append(t)
            continue
        notes = tuple(replace(n, velocity=int(min(127, max(1, round(n.velocity * factor)))))
                      if (ti, k) in keys else n for k, n in enumerate(t.notes))
        out.append(replace(t, notes=notes))
    return tuple(out)


#: Rate of :func:`repair`'s renderings and measurements (Hz): the transcriber's.
MEASURE_SR = 22050
#: Rounds of :func:`repair` at most (each renders and transcribes two candidates).
MAX_ROUNDS = 2
#: A candidate of :func:`repair` changes the velocities of a few notes: its decode is
#: transcribed again only from this long (s) before their onsets to this long after their
#: ends (where they still ring) ...
SPAN_BEFORE_S = 0.5
SPAN_AFTER_S = 1.0
#: ... with this much (s) of the transcriber's context on either side; the notes heard
#: elsewhere are those of the decode it was made from (the decode's loudness match scales
#: the rest by a fraction of a dB).  Two transcriptions of a 30-s decode become two of ~6 s.
SPAN_CONTEXT_S = 2.0
#: When the spans cover more than this share of the decode, it is transcribed whole.
MAX_SPAN_SHARE = 0.6


def changed_spans(notes: Sequence[Note], duration: float) -> list[tuple[float, float]]:
    """The merged time spans (s, sorted) where notes ``notes`` sound in a decode of
    ``duration`` s: from SPAN_BEFORE_S before each onset to SPAN_AFTER_S after its end."""
    spans: list[list[float]] = []
    for a, b in sorted((max(0.0, float(n.onset) - SPAN_BEFORE_S),
                        min(duration, float(n.offset) + SPAN_AFTER_S)) for n in notes):
        if spans and a <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], b)
        else:
            spans.append([a, b])
    return [(a, b) for a, b in spans]


def transcribe_spans(audio: np.ndarray, sr: int, spans: Sequence[tuple[float, float]],
                     elsewhere: Sequence[Note]) -> tuple[Note, ...]:
    """The notes the check's transcriber hears in ``audio`` (mono float32 at ``sr`` Hz),
    transcribing only ``spans`` (s, sorted, disjoint; each with SPAN_CONTEXT_S of context,
    the context's start on the grid of basic-pitch's model windows) and taking the notes
    with onsets outside them from ``elsewhere`` (a transcription of audio that differs from
    ``audio`` only within the spans).  Sorted by onset."""
    from dataclasses import replace  # noqa: PLC0415

    from semcodec.transcribe import _MODEL_STEP_S  # noqa: PLC0415

    def inside(t: float) -> bool:
        return any(a <= t < b for a, b in spans)

    out = [n for n in elsewhere if not inside(float(n.onset))]
    n_samples = audio.shape[0]
    for a, b in spans:
        start = max(0.0, np.floor((a - SPAN_CONTEXT_S) / _MODEL_STEP_S) * _MODEL_STEP_S)
        s0 = int(round(start * sr))
        s1 = min(n_samples, int(round((b + SPAN_CONTEXT_S) * sr)))
        t0 = s0 / sr
        for n in transcribe_back(audio[s0:s1], sr):
            onset = float(n.onset) + t0
            if a <= onset < b:
                out.append(replace(n, onset=onset, offset=float(n.offset) + t0))
    return tuple(sorted(out, key=lambda n: (n.onset, n.pitch)))


def repair(tracks: Sequence, original: np.ndarray, sr: int,
           render: Callable[[tuple], np.ndarray],
           on_candidate: Callable[[tuple], None] | None = None,
           original_mels: list[np.ndarray] | None = None,
           hear: Callable[[np.ndarray, int], tuple[Note, ...]] | None = None,
           on_verdict: Callable[[tuple, bool], None] | None = None,
           on_heard: Callable[[np.ndarray, int, tuple[Note, ...]], None] | None = None,
           max_rounds: int = MAX_ROUNDS) -> tuple:
    """``tracks`` with the velocities of notes that a note an octave (or two) below masks
    raised, so that the decode lets them be heard; ``tracks`` unchanged when nothing is
    masked or no change is accepted.

    ``render(tracks)`` is the decode of those tracks (mono float32 at ``sr`` Hz, the length of
    ``original``, the mono original at ``sr``).  The decode is transcribed again
    (:func:`agreement`'s transcriber); the score notes it misses while it hears, at their
    onset, a score note 12 or 24 semitones below are *masked* (that lower note's harmonics
    cover them).  Each round tries the masked notes' velocities times RAISE_FACTOR, then
    (unless that is accepted and leaves no note masked: SKIP_SECOND_WHEN_CLEAR) that with
    their maskers' times LOWER_FACTOR, and keeps the candidate that raises the agreement
    most (by MIN_F1_GAIN at least) while the mel distance to ``original`` grows by at most
    MAX_MEL_COST over the unrepaired decode's.  A candidate's decode is transcribed around
    its changed notes only (:func:`transcribe_spans`).  ``on_candidate(tracks)``, when given,
    is called with the first candidate of each round before it is measured (the caller may
    start work on it meanwhile: the encoder codes the residual of this likely result).
    ``original_mels``: ``original``'s :func:`semcodec.sampleuse.log_mels` when the caller has
    them (else they are computed).  ``hear(y, sr)``: the transcription of a whole decode
    (default :func:`transcribe_back`; the encoder's keeps what it heard for a later pass).
    ``on_verdict(candidate, accepted)``, when given, is called as soon as each candidate is
    measured: ``accepted`` when it passes the rule above (the tracks returned are then not
    ``tracks``: it or a better candidate), else it is not the result (the caller may drop
    work it started on either).  ``on_heard(y, sr, notes)``, when given, is called with each
    decode that was transcribed (the array ``render`` returned) and the notes heard in it,
    whole or around its changed notes (the encoder's onset alignment measures the tracks the
    repair ends with: their decode need not be heard again).  ``max_rounds``: rounds at
    most.
    """
    from semcodec.sampleuse import log_mels, mel_distance  # noqa: PLC0415

    tracks = tuple(tracks)

    def notes_of(ts: tuple) -> list[tuple[int, int, Note]]:
        return [(ti, k, n) for ti, t in enumerate(ts) if not t.is_drum
                for k, n in enumerate(t.notes)]

    def measure(ts: tuple, max_mel: float = np.inf, changed: set | None = None,
                before: tuple[Note, ...] = ()) -> tuple[float, float, tuple[Note, ...]]:
        """(note F1, mel distance, notes heard) of ``ts``'s decode; not transcribed (F1 0,
        nothing heard) when its mel distance is over ``max_mel``: it cannot be accepted.
        ``changed``: the keys of the notes whose velocities differ from the decode whose
        transcription is ``before`` (transcribed again around them only)."""
        y = np.asarray(render(ts), np.float32)
        mel = mel_distance(ref_mels, y, sr)
        if mel > max_mel:
            return 0.0, mel, ()
        duration = y.shape[0] / sr
        spans = [] if changed is None else changed_spans(
            [n for ti, k, n in notes_of(ts) if (ti, k) in changed], duration)
        if changed is None or sum(b - a for a, b in spans) > MAX_SPAN_SHARE * duration:
            heard = (hear or transcribe_back)(y, sr)
        else:
            heard = transcribe_spans(y, sr, spans, before)
        if on_heard is not None:
            on_heard(y, sr, heard)
        ref = [(float(n.onset), int(n.pitch)) for _, _, n in notes_of(ts)]
        return note_f1(ref, [(float(h.onset), int(h.pitch)) for h in heard]), mel, heard

    if not notes_of(tracks) or not may_mask(notes_of(tracks)):
        return tracks  # nothing can be masked: the decode need not be rendered nor heard
    ref_mels = (log_mels(np.asarray(original, np.float32), sr) if original_mels is None
                else original_mels)
    f1, mel0, heard = measure(tracks)
    log.info("round trip of the decode: note F1 %.3f, mel %.3f", f1, mel0)
    for _ in range(max_rounds):
        masked, maskers = masked_notes(notes_of(tracks), heard)
        if not masked:
            break
        raised = scaled(tracks, masked, RAISE_FACTOR)
        best = None
        clear = False
        for cand, changed in ((raised, masked),
                              (scaled(raised, maskers, LOWER_FACTOR), masked | maskers)):
            if clear:
                break  # the masked notes raised alone are all heard: the maskers left alone
            if on_candidate is not None and cand is raised:
                on_candidate(cand)
            f1c, melc, heardc = measure(cand, mel0 + MAX_MEL_COST, changed, heard)
            log.info("%d masked notes, candidate: note F1 %.3f, mel %.3f", len(masked), f1c, melc)
            accepted = f1c >= f1 + MIN_F1_GAIN and melc <= mel0 + MAX_MEL_COST
            if on_verdict is not None:
                on_verdict(cand, accepted)
            if accepted and (best is None or f1c > best[0]):
                best = (f1c, cand, heardc)
                clear = SKIP_SECOND_WHEN_CLEAR and not masked_notes(notes_of(cand), heardc)[0]
        if best is None:
            break
        f1, tracks, heard = best
    return tracks


# ------------------------------------------------------------------------------------------
# alignment: onsets the decode makes heard late
# ------------------------------------------------------------------------------------------

#: A heard note of the same pitch whose onset is at most this far (s) from a score note's is
#: that note's hearing, for :func:`onset_lags`.
LAG_WINDOW_S = 0.15
#: A track's lag is measured on at least this many heard notes; a track with fewer takes
#: the lag of all the tracks' notes together (or none, when they are fewer too).
MIN_LAG_NOTES = 5
#: Lags (s) smaller than this are left alone; larger ones are limited to MAX_LAG_S.
MIN_LAG_S = 0.005
MAX_LAG_S = 0.12
#: A shift is kept when the lags it leaves are at most this share of those it corrects, or
#: its note F1 against the score rises by MIN_F1_GAIN (and, either way, the notes
#: transcribe back about as well: :func:`keeps_notes`).  The lag alone suffices: a lag of
#: 10-25 ms barely changes an F1 at 50-ms tolerance against the score, but it adds to the
#: transcription's own late onsets and puts the decode's notes beyond the tolerance against
#: the truth (bench brass ensemble: 12 ms measured, round-trip F1 0.413 -> 0.475).
LAG_KEPT = 0.5
#: The onsets of a shifted score are on the score's tick (SCORE_TICK_S of the format).
LAG_STEP_S = 0.005
#: How much earlier (s) than the score's onsets the alignment aims the decode's notes to be
#: heard.  The score has the original's onsets as its transcription hears them, already late
#: (bench, against the truth: violin median 16 ms, winds ensemble 20 ms); a decode heard
#: exactly there has a late tail past the 50-ms tolerance (violin: 33% of the notes against
#: 17% for the original).  Aiming 10 ms early, bench round-trip note F1 (2026-11-30): violin
#: 0.432 -> 0.516, winds ensemble 0.592 -> 0.621, flute 0.744 -> 0.796, Slakh mix 0.483 ->
#: 0.505, brass ensemble 0.500 -> 0.548.  Only a track heard MIN_LAG_S or more off the score
#: is led, and one heard less than AIM_EARLY_S late (a quick attack) is only put on the
#: score (Slakh stems, guitar: unchanged).
AIM_EARLY_S = 0.010


#: Share of the onset differences left out at either end by :func:`onset_lags`' mean.
LAG_TRIM = 0.25


def _central_mean(values: Sequence[float]) -> float:
    """Mean of the middle of ``values`` (LAG_TRIM of them left out at either end): the
    transcriber's onsets fall on its ~11.6-ms frames, so a median is one of a few values,
    while this mean resolves a lag between them and ignores stray matches."""
    v = np.sort(np.asarray(values, np.float64))
    k = int(len(v) * LAG_TRIM)
    return float(v[k:len(v) - k].mean())


def onset_lags(score_notes: Sequence[tuple[int, int, Note]], heard: Sequence[Note],
               window_s: float = LAG_WINDOW_S) -> dict[int, float]:
    """``{track: lag}``: how late (s; negative: early) the transcription ``heard`` of a
    decode hears the notes of each track of ``score_notes`` (``(track, index, note)``), the
    :func:`_central_mean` of the onset differences, each note matched to the heard note of
    its pitch with the closest onset within ``window_s``.  A track with fewer than
    MIN_LAG_NOTES matches gets the lag of all the tracks' matches; none when those are fewer
    too (the track is then absent)."""
    import bisect  # noqa: PLC0415

    by_pitch: dict[int, list[float]] = {}
    for h in heard:
        by_pitch.setdefault(int(h.pitch), []).append(float(h.onset))
    for ons in by_pitch.values():
        ons.sort()
    diffs: dict[int, list[float]] = {}
    for ti, _, n in score_notes:
        ons = by_pitch.get(int(n.pitch), [])
        t = float(n.onset)
        i = bisect.bisect_left(ons, t - window_s)
        near = [o - t for o in ons[i:i + 8] if abs(o - t) <= window_s]
        if near:
            diffs.setdefault(ti, []).append(min(near, key=abs))
    every = [d for ds in diffs.values() for d in ds]
    overall = _central_mean(every) if len(every) >= MIN_LAG_NOTES else None
    out = {}
    for ti in {ti for ti, _, _ in score_notes}:
        mine = diffs.get(ti, [])
        lag = _central_mean(mine) if len(mine) >= MIN_LAG_NOTES else overall
        if lag is not None:
            out[ti] = lag
    return out


def shifted(tracks: Sequence, leads: dict[int, float]) -> tuple:
    """``tracks`` with the notes of track ``i`` played ``leads[i]`` s earlier (onset and
    offset; an onset stays >= 0, a note at least LAG_STEP_S long)."""
    from dataclasses import replace  # noqa: PLC0415

    out = []
    for ti, t in enumerate(tracks):
        lead = leads.get(ti, 0.0)
        if not lead:
            out.append(t)
            continue
        notes = []
        for n in t.notes:
            on = max(0.0, float(n.onset) - lead)
            off = max(on + LAG_STEP_S, float(n.offset) - lead)
            notes.append(replace(n, onset=on, offset=off))
        out.append(t.with_notes(notes))
    return tuple(out)


def align_onsets(tracks: Sequence, original: np.ndarray, sr: int,
                 render: Callable[[tuple], np.ndarray],
                 reference: Sequence | None = None,
                 original_mels: list[np.ndarray] | None = None,
                 hear: Callable[[np.ndarray, int], tuple[Note, ...]] | None = None,
                 on_leads: Callable[[dict[int, float]], None] | None = None,
                 ) -> dict[int, float]:
    """``{track: lead}``: how much earlier (s) each track's notes should be played (apply with
    :func:`shifted`) so that the decode's notes are heard where the score has them: the lag
    with which the transcription of their decode hears them (:func:`onset_lags`) and
    AIM_EARLY_S (where they are aimed: before the score's onsets), on the score's tick,
    limited to MAX_LAG_S, for the tracks heard MIN_LAG_S or more off the score; empty when
    no lag is found or the shift is not accepted.

    A slow attack (bowed strings, a pad, a soft wind) is heard tens of ms after the note
    starts: the score, transcribed from the original, already has the original's onsets as
    they are heard; its decode, heard late again, puts them beyond the 50-ms tolerance of a
    transcription (bench, strings ensemble: 44-52 ms late per track, round-trip note F1 0.09
    against 0.46 for the original's transcription).  Tracks played from an excerpt (a
    ``render.use``) and drums are left alone.  ``render(tracks)`` is the decode of those
    tracks (mono float32 at ``sr`` Hz, the length of ``original``, the mono original at
    ``sr``).  The shift is kept only if the transcription of the shifted decode hears the
    led tracks' notes with at most LAG_KEPT of their lags (from the aim) or with a note F1
    higher by
    MIN_F1_GAIN, about as many of them (:func:`keeps_notes`), while the mel distance to
    ``original`` grows by at most MAX_MEL_COST.  ``reference``: where the notes should be
    heard, tracks like ``tracks`` before an earlier shift (default: ``tracks`` themselves);
    the leads are then the further shifts of ``tracks``.  ``original_mels`` and ``hear``: as
    for :func:`repair`.  ``on_leads(leads)``, when given, is called with the leads found
    (before the shift is tried; empty when the decode is heard on time) once the decode is
    heard (not when nothing can be moved or the decode fails).
    """
    from semcodec.sampleuse import log_mels, mel_distance  # noqa: PLC0415

    tracks = tuple(tracks)
    movable = {ti for ti, t in enumerate(tracks) if not t.is_drum and t.notes
               and (t.render is None or not t.render.use)}
    reference = tracks if reference is None else tuple(reference)
    notes = [(ti, k, n) for ti, t in enumerate(reference) if not t.is_drum
             for k, n in enumerate(t.notes)]
    if not movable:
        return {}
    ref = [(float(n.onset), int(n.pitch)) for _, _, n in notes]
    hear = hear or transcribe_back
    y = np.asarray(render(tracks), np.float32)
    heard = hear(y, sr)
    f1 = note_f1(ref, [(float(h.onset), int(h.pitch)) for h in heard])
    off = onset_lags(notes, heard)
    # a track's lag from where its notes should be heard: AIM_EARLY_S before the score, for
    # a track heard that late or more, or early (a quick attack heard a few ms late is only
    # put on the score's onsets: bench guitar, 6 ms late, aimed: mel +0.011)
    aims = {ti: 0.0 if 0.0 <= lag < AIM_EARLY_S else AIM_EARLY_S for ti, lag in off.items()}
    lags = {ti: lag + aims[ti] for ti, lag in off.items()}
    # (only the tracks heard off the score: one heard on time stays where it is)
    leads = {ti: float(np.clip(round(lag / LAG_STEP_S) * LAG_STEP_S, -MAX_LAG_S, MAX_LAG_S))
             for ti, lag in lags.items()
             if ti in movable and abs(lag) >= MIN_LAG_S and abs(off[ti]) >= MIN_LAG_S}
    log.info("onset lags of the decode from the aim (ms): %s; note F1 %.3f",
             ", ".join(f"track {ti + 1}: {1000 * lag:.0f}" for ti, lag in sorted(lags.items())),
             f1)
    if on_leads is not None:
        on_leads(dict(leads))
    if not leads:
        return {}
    ref_mels = (log_mels(np.asarray(original, np.float32), sr) if original_mels is None
                else original_mels)
    mel0 = mel_distance(ref_mels, y, sr)
    cand = shifted(tracks, leads)
    yc = np.asarray(render(cand), np.float32)
    melc = mel_distance(ref_mels, yc, sr)
    if melc > mel0 + MAX_MEL_COST:
        log.info("onset alignment refused: mel %.3f -> %.3f", mel0, melc)
        return {}
    heard_c = hear(yc, sr)
    f1c = note_f1(ref, [(float(h.onset), int(h.pitch)) for h in heard_c])
    lags_c = onset_lags(notes, heard_c)
    before = sum(abs(lags[ti]) for ti in leads)
    after = sum(abs(lags_c[ti] + aims[ti] if ti in lags_c else lags[ti]) for ti in leads)
    log.info("onset alignment: lags %.0f -> %.0f ms (sum), note F1 %.3f -> %.3f, "
             "mel %.3f -> %.3f", 1000 * before, 1000 * after, f1, f1c, mel0, melc)
    ok = (after <= LAG_KEPT * before or f1c >= f1 + MIN_F1_GAIN) and keeps_notes(f1c, f1,
                                                                                len(ref))
    return leads if ok else {}
