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
