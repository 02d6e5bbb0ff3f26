"""The round-trip checks of the encoder (semcodec.roundtrip): note F1, the acceptance rule,
masked-note detection, the velocity repair, and the engine choice's refusal of a rendering
that hides its notes."""

from __future__ import annotations

import numpy as np
import pytest

from semcodec import roundtrip
from semcodec.events import Note, Track

SR = roundtrip.MEASURE_SR


def _pairs(n: int = 6, low: int = 48, gap: float = 0.5, v_low: int = 100, v_up: int = 60):
    """``n`` octave pairs: a loud note and a quieter one an octave above, same onsets."""
    notes = []
    for k in range(n):
        t = 0.2 + k * gap
        notes += [Note(t, t + 0.4, low, v_low), Note(t, t + 0.4, low + 12, v_up)]
    return (Track("t", 0, notes=tuple(sorted(notes, key=lambda x: (x.onset, x.pitch)))),)


def test_note_f1_matches_pitch_and_onset_within_tolerance():
    ref = [(0.0, 60), (1.0, 62), (2.0, 64)]
    assert roundtrip.note_f1(ref, ref) == 1.0
    assert roundtrip.note_f1(ref, [(0.04, 60), (1.0, 62), (2.0, 64)]) == 1.0
    # a late onset or an octave error is a miss (and a false note)
    assert roundtrip.note_f1(ref, [(0.06, 60), (1.0, 50), (2.0, 64)]) == pytest.approx(1 / 3)
    # one estimate matches one reference only
    assert roundtrip.note_f1([(0.0, 60), (0.01, 60)], [(0.0, 60)]) == pytest.approx(2 / 3)
    assert roundtrip.note_f1([], []) == 1.0
    assert roundtrip.note_f1(ref, []) == 0.0


def test_acceptance_rule():
    assert roundtrip.keeps_notes(0.80, 0.82)
    assert not roundtrip.keeps_notes(0.10, 0.80)
    assert roundtrip.keeps_notes(None, 0.80)  # unknown: no refusal
    assert roundtrip.keeps_notes(0.10, None)
    # on few notes, a note or two missed is no evidence: 9 notes, 2 missed (F1 0.78) passes
    assert roundtrip.keeps_notes(0.78, 1.0, n_notes=9)
    assert not roundtrip.keeps_notes(0.89, 1.0, n_notes=100)
    assert not roundtrip.keeps_notes(0.40, 1.0, n_notes=9)


def test_masked_notes_are_those_missed_under_a_heard_lower_octave():
    tracks = _pairs(3)
    keyed = [(0, k, n) for k, n in enumerate(tracks[0].notes)]
    lows = [n for n in tracks[0].notes if n.pitch == 48]
    masked, maskers = roundtrip.masked_notes(keyed, lows)  # only the low notes heard
    assert {tracks[0].notes[k].pitch for _, k in masked} == {60}
    assert len(masked) == 3 and {tracks[0].notes[k].pitch for _, k in maskers} == {48}
    # all heard: nothing is masked; the lower note not heard either: not masked by it
    assert roundtrip.masked_notes(keyed, tracks[0].notes) == (set(), set())
    assert roundtrip.masked_notes(keyed, []) == (set(), set())


def test_scaled_keeps_velocities_in_range():
    t = _pairs(1, v_up=100)
    up = {(0, k) for k, n in enumerate(t[0].notes) if n.pitch == 60}
    out = roundtrip.scaled(t, up, 1.5)
    assert [n.velocity for n in out[0].notes] == [100, 127]
    assert roundtrip.scaled(t, up, 0.0)[0].notes[1].velocity == 1


def _fake_transcriber(monkeypatch, ratio: float = 0.8):
    """A transcriber that hears the upper note of an octave pair only when its velocity is at
    least ``ratio`` times the lower's (the velocities are read from the last rendering)."""
    last: dict = {}

    def render(tracks):
        last["tracks"] = tracks
        rng = np.random.default_rng(0)
        return (0.05 * rng.standard_normal(SR * 4)).astype(np.float32)

    def transcribe(audio, sr, options=None):  # noqa: ARG001
        notes = last["tracks"][0].notes
        heard = []
        for n in notes:
            lower = [m for m in notes if m.pitch == n.pitch - 12 and m.onset == n.onset]
            if not lower or n.velocity >= ratio * lower[0].velocity:
                heard.append(n)
        return tuple(heard)

    monkeypatch.setattr("semcodec.transcribe.transcribe", transcribe)
    return render


def test_repair_raises_the_masked_notes(monkeypatch):
    render = _fake_transcriber(monkeypatch)
    tracks = _pairs(6)
    target = render(tracks)
    out = roundtrip.repair(tracks, target, SR, render)
    before = {n.pitch: n.velocity for n in tracks[0].notes}
    after = {n.pitch: n.velocity for n in out[0].notes}
    assert after[60] > before[60]
    assert after[60] >= 0.8 * after[48]  # now heard
    assert after[48] <= before[48]


def test_repair_lowers_the_maskers_unless_raising_alone_makes_all_heard(monkeypatch):
    """The second candidate (maskers lowered) is measured when the first is refused or leaves
    notes masked; not when the first is accepted and every note is heard in its decode."""
    rendered: list = []
    half = (Track("t", 0, notes=tuple(sorted(
        [n for k, (lo, up) in enumerate(zip(_pairs(6)[0].notes[::2], _pairs(6)[0].notes[1::2]))
         for n in (lo, Note(up.onset, up.offset, up.pitch, 60 if k % 2 else 40))],
        key=lambda x: (x.onset, x.pitch)))),)
    # raised 60 -> 90 against 100 is heard at 0.8, not at 0.95; 40 -> 60 not at 0.8
    for tracks, ratio, lowered in ((_pairs(6), 0.8, False), (_pairs(6), 0.95, True),
                                   (half, 0.8, True)):
        render = _fake_transcriber(monkeypatch, ratio)
        target = render(tracks)
        rendered.clear()
        out = roundtrip.repair(tracks, target, SR, lambda ts, r=render: rendered.append(ts) or r(ts))
        lows = [n.velocity for ts in rendered for n in ts[0].notes if n.pitch == 48]
        assert (min(lows) < 100) is lowered  # the second candidate rendered or not
        assert out != tracks


def test_repair_shows_each_rounds_first_candidate_and_returns_the_same(monkeypatch):
    render = _fake_transcriber(monkeypatch)
    tracks = _pairs(6)
    target = render(tracks)
    plain = roundtrip.repair(tracks, target, SR, render)
    shown: list = []
    out = roundtrip.repair(tracks, target, SR, render, on_candidate=shown.append)
    assert out == plain != tracks  # the hook changes nothing
    # shown before it is measured, one per round, and the round's raised masked notes
    assert 1 <= len(shown) <= roundtrip.MAX_ROUNDS
    assert shown[0] == roundtrip.scaled(tracks, roundtrip.masked_notes(
        [(0, k, n) for k, n in enumerate(tracks[0].notes)],
        [n for n in tracks[0].notes if n.pitch == 48])[0], roundtrip.RAISE_FACTOR)
    assert out in shown or out == roundtrip.scaled(shown[-1], {
        (0, k) for k, n in enumerate(tracks[0].notes) if n.pitch == 48}, roundtrip.LOWER_FACTOR)
    # a decode with nothing masked shows none
    shown.clear()
    roundtrip.repair(out, render(out), SR, render, on_candidate=shown.append)
    assert shown == []


def test_repair_with_the_originals_mels_given_gives_the_same(monkeypatch):
    from semcodec import sampleuse

    render = _fake_transcriber(monkeypatch, ratio=0.8)
    tracks = _pairs(6)
    target = render(tracks) * np.float32(1.3)
    plain = roundtrip.repair(tracks, target, SR, render)
    given = roundtrip.repair(tracks, target, SR, render,
                             original_mels=sampleuse.log_mels(target, SR))
    assert given == plain != tracks
    # the original's are not made again: one log-mel per rendering only
    mels = sampleuse.log_mels(target, SR)
    seen: list = []
    real = sampleuse.log_mels
    monkeypatch.setattr(sampleuse, "log_mels", lambda x, sr=SR: seen.append(x) or real(x, sr))
    roundtrip.repair(tracks, target, SR, render, original_mels=mels)
    n_given = len(seen)
    seen.clear()
    roundtrip.repair(tracks, target, SR, render)
    assert len(seen) == n_given + 1 and np.array_equal(seen[0], target)


def test_repair_refused_when_it_costs_mel(monkeypatch):
    _fake_transcriber(monkeypatch)
    tracks = _pairs(6)
    rng = np.random.default_rng(0)
    target = (0.05 * rng.standard_normal(SR * 4)).astype(np.float32)

    def render(ts):  # a repaired score plays 20 dB too loud: the mel distance forbids it
        loud = ts != tracks
        y = target * (10.0 if loud else 1.0)
        _fake_state["tracks"] = ts
        return y

    _fake_state: dict = {}
    monkeypatch.setattr("semcodec.transcribe.transcribe", lambda audio, sr, options=None: tuple(
        n for n in _fake_state["tracks"][0].notes if n.pitch == 48
        or n.velocity >= 0.8 * 100))
    assert roundtrip.repair(tracks, target, SR, render) == tracks


def test_repair_leaves_a_clear_decode_alone(monkeypatch):
    render = _fake_transcriber(monkeypatch, ratio=0.1)
    tracks = _pairs(4)
    assert roundtrip.repair(tracks, render(tracks), SR, render) == tracks


def test_engine_choice_refuses_a_rendering_that_hides_its_notes(monkeypatch):
    from semcodec import timbre

    renders = {"notes": [Note(0.1 + k, 0.5 + k, 60, 90) for k in range(40)], "neural": np.zeros(SR, np.float32),
               "fluidsynth": np.ones(SR, np.float32)}
    f1 = {"neural": 0.9, "fluidsynth": 0.2}
    monkeypatch.setattr(roundtrip, "agreement",
                        lambda y, sr, notes: f1["fluidsynth" if y[0] else "neural"])
    assert not timbre._fluid_keeps_notes(0, renders)
    f1["fluidsynth"] = 0.88
    assert timbre._fluid_keeps_notes(0, renders)
    assert timbre._fluid_keeps_notes(0, {"notes": []})  # nothing to compare: no refusal


def test_render_check_compares_with_the_engine_or_the_original_if_that_is_less_clear(monkeypatch):
    from semcodec import sampleuse
    from semcodec.events import TrackRender

    engine, original, cand = (np.full(SR, v, np.float32) for v in (1.0, 2.0, 3.0))
    f1 = {1.0: 1.0, 2.0: 0.9, 3.0: 0.5}
    monkeypatch.setattr(roundtrip, "agreement",
                        lambda y, sr, notes, heard_into=None: f1[float(y[0])])
    notes = [Note(0.1 + k, 0.5 + k, 60, 90) for k in range(40)]
    tried: dict = {}
    check = sampleuse._NoteCheck(0, engine, original, lambda i, y: y, notes, tried)
    render = TrackRender(use="sampler")
    assert not check((0.1, render, cand))  # 0.5: far below the original's 0.9
    f1[3.0] = 0.87  # within 0.05 of the original's (less clear than the engine's 1.0)
    assert check((0.1, render, cand))
    assert tried["engine F1"] == 1.0 and tried["original F1"] == 0.9


def test_render_check_transcribes_the_original_only_when_it_can_change_the_outcome(monkeypatch):
    from semcodec import sampleuse
    from semcodec.events import TrackRender

    engine, original, cand = (np.full(SR, v, np.float32) for v in (1.0, 2.0, 3.0))
    f1 = {1.0: 0.8, 2.0: 0.9, 3.0: 0.79}
    heard: list[float] = []

    def agreement(y, sr, notes, heard_into=None):
        heard.append(float(y[0]))
        return f1[float(y[0])]

    monkeypatch.setattr(roundtrip, "agreement", agreement)
    notes = [Note(0.1 + k, 0.5 + k, 60, 90) for k in range(40)]
    tried: dict = {}
    check = sampleuse._NoteCheck(0, engine, original, lambda i, y: y, notes, tried)
    assert check((0.1, TrackRender(use="sampler"), cand))  # kept against the engine alone
    assert 2.0 not in heard and "original F1" not in tried
    f1[3.0] = 0.5  # refused against the engine: the original (clearer) cannot save it
    assert not check((0.1, TrackRender(use="sampler"), cand))
    assert heard.count(2.0) == 1 and tried["original F1"] == 0.9


def test_repair_does_not_transcribe_a_candidate_over_the_mel_cost(monkeypatch):
    from semcodec import sampleuse

    # octave pairs (same onsets)
    notes = tuple(Note(0.5 * (k // 2), 0.5 * (k // 2) + 0.4, 48 + 12 * (k % 2), 90)
                  for k in range(8))
    tracks = (Track(name="t", program=0).with_notes(notes),)
    calls: list[int] = []

    def transcribe(y, sr):
        calls.append(1)
        return tuple(n for n in notes if n.pitch == 48)  # the upper notes masked

    monkeypatch.setattr(roundtrip, "transcribe_back", transcribe)
    dist = iter([0.1, 0.5, 0.5])  # the unrepaired decode, then two candidates far worse
    monkeypatch.setattr(sampleuse, "mel_distance", lambda ref, y, sr: next(dist))
    y = np.zeros(SR, np.float32)
    assert roundtrip.repair(tracks, y, SR, lambda ts: y) == tracks
    assert len(calls) == 1


def test_changed_spans_merge_overlapping_notes_and_stay_within_the_decode():
    notes = [Note(0.2, 0.5, 60, 90), Note(1.0, 1.2, 62, 90), Note(8.0, 9.9, 64, 90)]
    spans = roundtrip.changed_spans(notes, 10.0)
    # 0.2..0.5 and 1.0..1.2 ring into each other (0.5 s before, 1 s after): one span
    assert spans == [(0.0, 2.2), (7.5, 10.0)]
    assert roundtrip.changed_spans([], 10.0) == []


def _clock_transcriber(monkeypatch, heard_of):
    """A transcriber of "clock" audio (each sample holds its time in s): it hears
    ``heard_of(tracks)`` of the last rendering within the audio's time range, with onsets
    relative to its start, and records the length (s) of every audio it gets."""
    last: dict = {}
    lengths: list[float] = []

    def render(tracks):
        last["tracks"] = tracks
        return (np.arange(SR * 20) / SR).astype(np.float32)

    def transcribe(audio, sr, options=None):  # noqa: ARG001
        t0, dur = float(audio[0]), len(audio) / sr
        lengths.append(dur)
        return tuple(Note(n.onset - t0, n.offset - t0, n.pitch, n.velocity)
                     for n in heard_of(last["tracks"]) if t0 <= n.onset < t0 + dur)

    monkeypatch.setattr("semcodec.transcribe.transcribe", transcribe)
    return render, lengths


def test_repair_transcribes_a_candidate_only_around_the_changed_notes(monkeypatch):
    from semcodec import sampleuse

    # 18 clear notes over 20 s and one octave pair at 10 s whose upper note is too quiet
    notes = [Note(0.5 + k, 0.9 + k, 72, 90) for k in range(18) if k != 9]
    notes += [Note(10.0, 10.4, 48, 100), Note(10.0, 10.4, 60, 50)]
    tracks = (Track("t", 0, notes=tuple(sorted(notes, key=lambda n: (n.onset, n.pitch)))),)

    def heard_of(ts):
        ns = ts[0].notes
        return [n for n in ns if n.pitch != 60 or n.velocity >= 0.7 * 100]

    render, lengths = _clock_transcriber(monkeypatch, heard_of)
    monkeypatch.setattr(sampleuse, "mel_distance", lambda ref, y, sr: 0.1)
    out = roundtrip.repair(tracks, render(tracks), SR, render)
    up = [n for n in out[0].notes if n.pitch == 60][0]
    assert up.velocity == 75  # raised 1.5 x (the first candidate, heard now)
    assert lengths[0] == pytest.approx(20.0)  # the decode as it was: whole
    # the candidate (the second is not measured: the first is accepted): from before
    # 10 s - 0.5 s - 2 s of context to 10.4 s + 1 s + 2 s
    assert len(lengths) == 2 and all(4.0 < d < 8.0 for d in lengths[1:])


def test_repair_tells_what_it_heard_in_each_decode_it_transcribed(monkeypatch):
    from semcodec import sampleuse

    notes = [Note(0.5 + k, 0.9 + k, 72, 90) for k in range(18) if k != 9]
    notes += [Note(10.0, 10.4, 48, 100), Note(10.0, 10.4, 60, 50)]
    tracks = (Track("t", 0, notes=tuple(sorted(notes, key=lambda n: (n.onset, n.pitch)))),)

    def heard_of(ts):
        return [n for n in ts[0].notes if n.pitch != 60 or n.velocity >= 0.7 * 100]

    render, lengths = _clock_transcriber(monkeypatch, heard_of)
    monkeypatch.setattr(sampleuse, "mel_distance", lambda ref, y, sr: 0.1)
    decodes: dict = {}

    def rendered(ts):
        decodes[ts] = render(ts)
        return decodes[ts]

    told: list = []
    out = roundtrip.repair(tracks, render(tracks), SR, rendered,
                           on_heard=lambda y, sr, heard: told.append((y, sr, heard)))
    assert out != tracks
    assert out == roundtrip.repair(tracks, render(tracks), SR, render)  # the hook changes nothing
    # the decode whole, then the candidate around its changed notes (accepted: the second
    # is not measured): each told once
    assert len(told) == 2 and all(sr == SR for _, sr, _ in told)
    assert told[0][0] is decodes[tracks]
    mine = [heard for y, _, heard in told if y is decodes[out]]
    assert len(mine) == 1
    assert ([(round(n.onset, 4), n.pitch) for n in mine[0]]
            == [(round(n.onset, 4), n.pitch) for n in heard_of(out)])


def test_transcribe_spans_takes_the_notes_elsewhere_from_the_earlier_transcription(monkeypatch):
    before = (Note(1.0, 1.5, 60, 90), Note(10.2, 10.5, 61, 90), Note(15.0, 15.5, 62, 90))
    now = [Note(1.0, 1.5, 70, 90), Note(10.1, 10.5, 71, 90), Note(15.0, 15.5, 72, 90)]
    render, lengths = _clock_transcriber(monkeypatch, lambda ts: now)
    heard = roundtrip.transcribe_spans(render(()), SR, [(9.5, 11.0)], before)
    assert [(round(n.onset, 3), n.pitch) for n in heard] == [(1.0, 60), (10.1, 71), (15.0, 62)]
    assert len(lengths) == 1 and lengths[0] < 7.0  # 1.5 s + 2 x 2 s of context + the grid


def test_may_mask_only_with_a_note_an_octave_or_two_below_at_the_same_onset():
    def keyed(notes):
        return [(0, k, n) for k, n in enumerate(notes)]

    assert roundtrip.may_mask(keyed(_pairs(2)[0].notes))
    two = [Note(1.0, 1.5, 36, 90), Note(1.04, 1.5, 60, 90)]  # two octaves, 40 ms apart
    assert roundtrip.may_mask(keyed(two))
    assert not roundtrip.may_mask(keyed([Note(1.0, 1.5, 48, 90), Note(1.06, 1.5, 60, 90)]))
    assert not roundtrip.may_mask(keyed([Note(1.0, 1.5, 48, 90), Note(1.0, 1.5, 55, 90)]))
    # masked_notes agrees: nothing to find where may_mask says so
    melody = [Note(0.5 * k, 0.5 * k + 0.4, 60 + k % 5, 90) for k in range(10)]
    assert roundtrip.masked_notes(keyed(melody), []) == (set(), set())


def test_repair_renders_nothing_when_no_note_can_be_masked(monkeypatch):
    melody = tuple(Note(0.5 * k, 0.5 * k + 0.4, 60 + k % 5, 90) for k in range(10))
    tracks = (Track("t", 0, notes=melody),)
    rendered: list = []
    monkeypatch.setattr(roundtrip, "transcribe_back", lambda y, sr: ())
    target = np.zeros(SR, np.float32)
    assert roundtrip.repair(tracks, target, SR, lambda ts: rendered.append(ts) or target) == tracks
    assert rendered == []


# --- onset alignment ----------------------------------------------------------------------

def _two_tracks(n: int = 8):
    """A slow track (pitches 60..) and a quick one (pitches 72..), notes every 0.5 s."""
    slow = tuple(Note(0.3 + 0.5 * k, 0.7 + 0.5 * k, 60 + k % 3, 80) for k in range(n))
    quick = tuple(Note(0.35 + 0.5 * k, 0.6 + 0.5 * k, 72 + k % 4, 80) for k in range(n))
    return Track("slow", 40).with_notes(slow), Track("quick", 0).with_notes(quick)


def _lagging_transcriber(monkeypatch, lags: dict[int, float]):
    """A decode whose transcription hears track ``i``'s notes ``lags[i]`` s late (the notes
    are read from the last rendering)."""
    last: dict = {}

    def render(tracks):
        last["tracks"] = tracks
        return np.zeros(SR * 5, np.float32)

    def transcribe(y, sr):  # noqa: ARG001
        return tuple(Note(n.onset + lags.get(ti, 0.0), n.offset + lags.get(ti, 0.0), n.pitch, 80)
                     for ti, t in enumerate(last["tracks"]) for n in t.notes)

    monkeypatch.setattr(roundtrip, "transcribe_back", transcribe)
    return render


def test_onset_lags_per_track_and_overall_for_a_track_with_few_notes():
    slow, quick = _two_tracks()
    few = Track("few", 0).with_notes((Note(1.0, 1.2, 90, 80),))
    tracks = (slow, quick, few)
    keyed = [(ti, k, n) for ti, t in enumerate(tracks) for k, n in enumerate(t.notes)]
    heard = ([Note(n.onset + 0.06, n.offset, n.pitch, 80) for n in slow.notes]
             + [Note(n.onset + 0.01, n.offset, n.pitch, 80) for n in quick.notes]
             + [Note(1.2, 1.3, 91, 80)])  # the lone note's pitch is not heard
    lags = roundtrip.onset_lags(keyed, heard)
    assert lags[0] == pytest.approx(0.06)
    assert lags[1] == pytest.approx(0.01)
    assert lags[2] == pytest.approx(0.035)  # all the matches: the central half, 4 + 4 notes
    # a heard note of another pitch, or too far away, is no hearing of the note
    assert roundtrip.onset_lags(keyed[:8], [Note(n.onset + 0.3, n.offset, n.pitch, 80)
                                            for n in slow.notes]) == {}


def test_shifted_moves_a_track_earlier_and_keeps_onsets_non_negative():
    slow, quick = _two_tracks()
    first = Note(0.02, 0.4, 60, 80)
    slow = slow.with_notes((first,) + slow.notes)
    out = roundtrip.shifted((slow, quick), {0: 0.05})
    assert out[1] is quick
    assert out[0].notes[0].onset == 0.0 and out[0].notes[0].offset == pytest.approx(0.35)
    assert [n.onset for n in out[0].notes[1:]] == pytest.approx([n.onset - 0.05
                                                                 for n in slow.notes[1:]])
    assert [n.pitch for n in out[0].notes] == [n.pitch for n in slow.notes]


def test_align_onsets_leads_the_lagging_track_only(monkeypatch):
    from semcodec import sampleuse

    monkeypatch.setattr(sampleuse, "mel_distance", lambda ref, y, sr: 0.2)
    render = _lagging_transcriber(monkeypatch, {0: 0.062, 1: 0.004})
    tracks = _two_tracks()
    leads = roundtrip.align_onsets(tracks, render(tracks), SR, render)
    # the lag and the aim (AIM_EARLY_S), on the 5-ms tick; the quick track's 4 ms left
    assert leads == {0: pytest.approx(0.07)}
    out = roundtrip.shifted(tracks, leads)
    assert out[0].notes[0].onset == pytest.approx(tracks[0].notes[0].onset - 0.07)


def test_align_onsets_reports_the_leads_it_found_kept_or_not(monkeypatch):
    from semcodec import sampleuse

    render = _lagging_transcriber(monkeypatch, {0: 0.062, 1: 0.004})
    tracks = _two_tracks()
    found: list = []
    monkeypatch.setattr(sampleuse, "mel_distance", lambda ref, y, sr: 0.2)
    roundtrip.align_onsets(tracks, render(tracks), SR, render, on_leads=found.append)
    assert found == [{0: pytest.approx(0.07)}]
    # refused (the shift costs mel): the lead was found all the same
    mels = iter([0.2, 0.9])
    monkeypatch.setattr(sampleuse, "mel_distance", lambda ref, y, sr: next(mels))
    assert roundtrip.align_onsets(tracks, render(tracks), SR, render,
                                  on_leads=found.append) == {}
    assert found[1] == {0: pytest.approx(0.07)}
    # heard on time (3-4 ms, under MIN_LAG_S): no lead
    render = _lagging_transcriber(monkeypatch, {0: 0.003, 1: 0.004})
    roundtrip.align_onsets(tracks, render(tracks), SR, render, on_leads=found.append)
    assert found[2] == {}


def test_align_onsets_refused_when_it_costs_mel_or_the_lag_stays(monkeypatch):
    from semcodec import sampleuse

    tracks = _two_tracks()
    dist = iter([0.2, 0.3])  # the shifted decode is farther from the original
    monkeypatch.setattr(sampleuse, "mel_distance", lambda ref, y, sr: next(dist))
    render = _lagging_transcriber(monkeypatch, {0: 0.08, 1: 0.08})
    assert roundtrip.align_onsets(tracks, render(tracks), SR, render) == {}
    # a lag the shift does not move (the notes are heard late wherever they are played)
    monkeypatch.setattr(sampleuse, "mel_distance", lambda ref, y, sr: 0.2)
    monkeypatch.setattr(roundtrip, "transcribe_back", lambda y, sr: tuple(
        Note(n.onset + 0.03, n.offset, n.pitch, 80) for t in tracks for n in t.notes))
    assert roundtrip.align_onsets(tracks, np.zeros(SR, np.float32), SR,
                                  lambda ts: np.zeros(SR, np.float32)) == {}
    # a lag within the tolerance that the shift removes is kept, the notes led AIM_EARLY_S
    # past it (the score's onsets are the original's heard late already)
    render = _lagging_transcriber(monkeypatch, {0: 0.03, 1: 0.03})
    assert roundtrip.align_onsets(tracks, render(tracks), SR, render) == {
        0: pytest.approx(0.04), 1: pytest.approx(0.04)}
    # a decode heard on time is not moved (not aimed AIM_EARLY_S early)
    render = _lagging_transcriber(monkeypatch, {0: 0.0, 1: 0.0})
    found: list = []
    assert roundtrip.align_onsets(tracks, render(tracks), SR, render,
                                  on_leads=found.append) == {}
    assert found == [{}]
    # heard at the aim (10 ms early), against the tracks before a shift: no further lead
    render = _lagging_transcriber(monkeypatch, {0: -0.01, 1: -0.01})
    assert roundtrip.align_onsets(tracks, render(tracks), SR, render) == {}
    # a quick attack heard a few ms late (under AIM_EARLY_S) is only put on the score
    render = _lagging_transcriber(monkeypatch, {0: 0.007, 1: 0.0})
    assert roundtrip.align_onsets(tracks, render(tracks), SR, render) == {
        0: pytest.approx(0.005)}


def test_align_onsets_refused_when_notes_are_lost(monkeypatch):
    from semcodec import sampleuse

    monkeypatch.setattr(sampleuse, "mel_distance", lambda ref, y, sr: 0.2)
    tracks = _two_tracks()
    calls: list = []

    def transcribe(y, sr):  # the shifted decode: the right onsets but half the notes lost
        calls.append(1)
        lag = 0.03 if len(calls) == 1 else 0.0
        keep = 1 if len(calls) == 1 else 2
        return tuple(Note(n.onset + lag, n.offset, n.pitch, 80) for t in tracks
                     for k, n in enumerate(t.notes) if k % keep == 0)

    monkeypatch.setattr(roundtrip, "transcribe_back", transcribe)
    y = np.zeros(SR, np.float32)
    assert roundtrip.align_onsets(tracks, y, SR, lambda ts: y) == {}


def test_align_onsets_leaves_tracks_played_from_an_excerpt_and_drums(monkeypatch):
    from semcodec import sampleuse
    from semcodec.events import TrackRender

    monkeypatch.setattr(sampleuse, "mel_distance", lambda ref, y, sr: 0.2)
    slow, quick = _two_tracks()
    sampled = replace_render(slow, TrackRender(use="sampler"))
    drums = Track("drums", 0, is_drum=True, notes=quick.notes)
    render = _lagging_transcriber(monkeypatch, {0: 0.08, 1: 0.08})
    assert roundtrip.align_onsets((sampled, drums), render((sampled, drums)), SR, render) == {}


def replace_render(t: Track, render) -> Track:
    from dataclasses import replace

    return replace(t, render=render)


def test_align_onsets_against_a_reference_gives_the_further_lead(monkeypatch):
    from semcodec import sampleuse

    monkeypatch.setattr(sampleuse, "mel_distance", lambda ref, y, sr: 0.2)
    reference = _two_tracks()
    led = roundtrip.shifted(reference, {0: 0.04, 1: 0.04})  # already 40 ms earlier
    render = _lagging_transcriber(monkeypatch, {0: 0.10, 1: 0.10})  # heard 60 ms late still
    leads = roundtrip.align_onsets(led, render(led), SR, render, reference=reference)
    # (and AIM_EARLY_S, the aim before the score)
    assert leads == {0: pytest.approx(0.07), 1: pytest.approx(0.07)}
    # without the reference, the lag is measured against the led tracks themselves
    assert roundtrip.align_onsets(led, render(led), SR, render) == {
        0: pytest.approx(0.11), 1: pytest.approx(0.11)}


def test_align_onsets_kept_for_a_note_f1_gain_when_part_of_the_lag_stays(monkeypatch):
    from semcodec import sampleuse

    monkeypatch.setattr(sampleuse, "mel_distance", lambda ref, y, sr: 0.2)
    tracks = _two_tracks()
    last: dict = {}

    def render(ts):
        last["tracks"] = ts
        return np.zeros(SR, np.float32)

    def transcribe(y, sr):  # a shift of d s moves the heard onsets by 0.4 d only
        return tuple(Note(r.onset + 0.08 - 0.4 * (r.onset - n.onset), r.offset, r.pitch, 80)
                     for t, u in zip(tracks, last["tracks"]) for r, n in zip(t.notes, u.notes))

    monkeypatch.setattr(roundtrip, "transcribe_back", transcribe)
    # 80 ms late (no note within the tolerance), led 90 ms (AIM_EARLY_S past the lag) -> 44 ms:
    # not halved, but all notes heard
    leads = roundtrip.align_onsets(tracks, render(tracks), SR, render)
    assert leads == {0: pytest.approx(0.09), 1: pytest.approx(0.09)}


def test_repair_tells_each_candidates_verdict_as_soon_as_it_is_measured(monkeypatch):
    render = _fake_transcriber(monkeypatch)
    tracks = _pairs(6)
    target = render(tracks)
    plain = roundtrip.repair(tracks, target, SR, render)
    verdicts: list = []
    out = roundtrip.repair(tracks, target, SR, render,
                           on_verdict=lambda ts, ok: verdicts.append((ts, ok)))
    assert out == plain != tracks  # the hook changes nothing
    assert any(ok for _, ok in verdicts) and out in [ts for ts, ok in verdicts if ok]
    # a transcriber that never hears the masked notes: every candidate is refused
    render = _fake_transcriber(monkeypatch, ratio=100.0)
    verdicts.clear()
    assert roundtrip.repair(tracks, target, SR, render,
                            on_verdict=lambda ts, ok: verdicts.append((ts, ok))) == tracks
    assert len(verdicts) == 2 and not any(ok for _, ok in verdicts)
