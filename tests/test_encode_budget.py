"""The encoder's analysis-by-synthesis passes (semcodec.encode_budget): what the round-trip
repair measured is not measured again by the onset alignment that follows it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from semcodec import encode_budget, roundtrip
from semcodec.container import SmcFile
from semcodec.decoder import DecodeOptions
from semcodec.events import Note, Score, Track

SR = roundtrip.MEASURE_SR


def _file(seconds: float = 3.0) -> SmcFile:
    """A solo whose notes each have one an octave below (the repair measures its decode)."""
    notes = []
    for k in range(6):
        t = 0.2 + 0.4 * k
        notes += [Note(t, t + 0.3, 48, 100), Note(t, t + 0.3, 60, 60)]
    return SmcFile(duration=seconds, sample_rate=SR, channels=1, n_samples=int(seconds * SR),
                   loudness_lufs=-20.0, score=Score(tracks=(Track("t").with_notes(notes),)))


@pytest.fixture
def counted(monkeypatch):
    """Fake decodes (a tone per note) and transcriptions (the score's notes, on time), counted."""
    calls = {"decode": 0, "heard": 0}

    def decode(c, opts):
        calls["decode"] += 1
        y = np.zeros(c.n_samples * opts.sample_rate // c.sample_rate, np.float32)
        t = np.arange(y.shape[0]) / opts.sample_rate
        for n in c.score.tracks[0].notes:
            on = (t >= n.onset) & (t < n.offset)
            y[on] += n.velocity / 1270.0 * np.sin(2 * np.pi * 440 * 2 ** ((n.pitch - 69) / 12)
                                                   * t[on])
        return y, opts.sample_rate

    def transcribe_back(y, sr):
        calls["heard"] += 1
        return current["notes"]

    current = {"notes": ()}
    monkeypatch.setattr(encode_budget, "decode", decode)
    monkeypatch.setattr(roundtrip, "transcribe_back", transcribe_back)
    calls["current"] = current
    return calls


def test_the_alignment_after_the_repair_neither_decodes_nor_hears_the_same_file_again(counted):
    c = _file()
    counted["current"]["notes"] = c.score.tracks[0].notes  # nothing masked, nothing late
    original = np.zeros(c.n_samples, np.float32)
    measured = encode_budget.Measured()
    cleared = encode_budget._with_clear_notes(c, original, measured=measured)
    assert cleared is c and counted["decode"] == 1 and counted["heard"] == 1
    out = encode_budget._with_aligned_onsets(cleared, original, measured=measured)
    assert out is c
    assert counted["decode"] == 1 and counted["heard"] == 1  # both kept from the repair
    # on its own (or on another file), the alignment measures its decode itself
    encode_budget._with_aligned_onsets(cleared, original)
    assert counted["decode"] == 2 and counted["heard"] == 2
    louder = replace(c, score=replace(c.score, tracks=roundtrip.scaled(
        c.score.tracks, {(0, 1)}, 1.5)))
    encode_budget._with_aligned_onsets(louder, original, measured=measured)
    assert counted["decode"] == 3 and counted["heard"] == 3


def test_measured_decodes_are_kept_per_tracks_options_and_file(counted):
    c = _file()
    m = encode_budget.Measured()
    opts = DecodeOptions(residual=False, channels=1, max_duration_s=None, sample_rate=SR)
    n = c.n_samples
    y = m.decode(c, c.score.tracks, opts, n)
    assert not y.flags.writeable and y.shape == (n,)
    assert m.decode(c, c.score.tracks, opts, n) is y and counted["decode"] == 1
    # other tracks, other options, another length or another file: decoded
    quiet = roundtrip.scaled(c.score.tracks, {(0, 0)}, 0.5)
    assert m.decode(c, quiet, opts, n) is not y
    assert m.decode(c, c.score.tracks, replace(opts, sample_rate=SR // 2), n) is not y
    assert m.decode(c, c.score.tracks, opts, n - 5).shape == (n - 5,)
    assert m.decode(replace(c, residual=b"x"), c.score.tracks, opts, n) is not y
    assert counted["decode"] == 5
    # the same decode is heard once; an equal copy of it is heard again (kept by identity)
    assert m.hear(y, SR) == m.hear(y, SR) and counted["heard"] == 1
    m.hear(y.copy(), SR)
    assert counted["heard"] == 2


def test_the_alignment_takes_the_repairs_hearing_of_the_candidate_it_kept(monkeypatch):
    """The repair keeps a candidate, transcribed around its changed notes only: the alignment
    that follows measures that very decode and does not transcribe it again."""
    from semcodec import sampleuse

    # 20 s of clear notes and one octave pair at 10 s whose upper note is too quiet: the
    # candidate is transcribed around that pair only
    notes = [Note(0.5 + k, 0.9 + k, 72, 90) for k in range(18) if k != 9]
    notes += [Note(10.0, 10.4, 48, 100), Note(10.0, 10.4, 60, 60)]
    c = replace(_file(20.0), score=Score(tracks=(Track("t").with_notes(
        sorted(notes, key=lambda n: (n.onset, n.pitch))),)))
    last: dict = {}
    calls = {"decode": 0, "heard": []}

    def decode(cc, opts):  # "clock" audio: each sample holds its time (s)
        calls["decode"] += 1
        last["tracks"] = cc.score.tracks
        n = cc.n_samples * opts.sample_rate // cc.sample_rate
        return (np.arange(n) / opts.sample_rate).astype(np.float32), opts.sample_rate

    def transcribe_back(y, sr):  # the upper notes are heard once loud enough, on time
        t0, dur = float(y[0]), len(y) / sr
        calls["heard"].append(dur)
        return tuple(replace(n, onset=n.onset - t0, offset=n.offset - t0)
                     for n in last["tracks"][0].notes
                     if (n.pitch != 60 or n.velocity >= 70) and t0 <= n.onset < t0 + dur)

    monkeypatch.setattr(encode_budget, "decode", decode)
    monkeypatch.setattr(roundtrip, "transcribe_back", transcribe_back)
    monkeypatch.setattr(sampleuse, "mel_distance", lambda ref, y, sr: 0.1)
    original = np.zeros(c.n_samples, np.float32)
    measured = encode_budget.Measured()
    cleared = encode_budget._with_clear_notes(c, original, measured=measured)
    assert cleared.score != c.score  # the upper notes raised
    # the decode whole; the first candidate (accepted: the second is not measured) around
    # the pair only
    assert len(calls["heard"]) == 2 and calls["heard"][0] == pytest.approx(20.0)
    assert all(d < 10.0 for d in calls["heard"][1:])
    done = (calls["decode"], len(calls["heard"]))
    out = encode_budget._with_aligned_onsets(cleared, original, measured=measured)
    assert out is cleared  # heard on time
    assert (calls["decode"], len(calls["heard"])) == done
    # without what the repair kept, the alignment decodes and hears it itself
    assert encode_budget._with_aligned_onsets(cleared, original) is cleared
    assert calls["decode"] == done[0] + 1 and len(calls["heard"]) == done[1] + 1


def _decoded_once():
    """(file, its Measured, the decode options, its decode, notes to tell it was heard)."""
    c = _file()
    m = encode_budget.Measured()
    opts = DecodeOptions(residual=False, channels=1, max_duration_s=None, sample_rate=SR)
    return c, m, opts, m.decode(c, c.score.tracks, opts, c.n_samples), (Note(0.2, 0.5, 60, 90),)


def test_measured_keeps_what_it_is_told_was_heard_by_the_decode_array(counted):
    _, m, _, y, told = _decoded_once()
    m.remember(y, SR, told)
    assert m.hear(y, SR) == told and counted["heard"] == 0
    m.remember(y, SR, ())  # what was heard first stays
    assert m.hear(y, SR) == told
    assert m.hear(y, SR // 2) == () and counted["heard"] == 1  # another rate: heard
    m.hear(y.copy(), SR)
    assert counted["heard"] == 2


def test_measured_takes_what_the_chosen_renders_check_heard_in_the_same_audio(counted):
    from semcodec import sampleuse

    c, m, opts, y, told = _decoded_once()
    sampleuse.forget_target()
    try:
        sampleuse._keep_heard(y + np.float32(1e-6))(told)  # the check's mix: the same audio
        assert m.hear(y, SR) == told and counted["heard"] == 0
        louder = m.decode(c, roundtrip.scaled(c.score.tracks, {(0, 0), (0, 1)}, 1.5), opts,
                          c.n_samples)
        m.hear(louder, SR)  # another audio: transcribed
        assert counted["heard"] == 1
    finally:
        sampleuse.forget_target()


@pytest.mark.parametrize("same", [True, False])
def test_the_mix_loudness_measured_before_the_residual_serves_the_file_with_it(monkeypatch,
                                                                               same):
    """synth_lufs does not hear the residual: the measure of the file without it (made while
    the residual is coded) is the final file's, unless its notes changed since."""
    measured: list = []

    def synth_lufs(c):
        measured.append(c)
        return -30.0

    monkeypatch.setattr(encode_budget, "_synth_lufs", synth_lufs)
    from semcodec import residual

    before = _file()
    nf = residual.n_grid_frames(before.duration, residual.DEFAULT_PERIOD_S)
    shape = (residual.DEFAULT_BANDS, nf)
    payload = residual.encode_envelope(residual.Envelope(
        levels=np.full(shape, -20), mask=np.ones(shape, bool),
        period_s=residual.DEFAULT_PERIOD_S, step_db=residual.DEFAULT_STEP_DB))
    after = replace(before, residual=payload)
    if not same:  # the notes led again after the residual
        t = before.score.tracks[0]
        after = replace(after, score=replace(before.score, tracks=(t.with_notes(
            [replace(n, onset=n.onset - 0.01) for n in t.notes]),)))
    out = encode_budget._with_synth_loudness(after, 1000.0, (before, lambda: -25.0))
    assert out.synth_lufs == (-25.0 if same else -30.0)
    assert measured == ([] if same else [after])
    assert out.residual == payload
