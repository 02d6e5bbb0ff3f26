"""A long input's digest (semcodec.digest) and the encoder measuring track renders on it."""

from __future__ import annotations

import numpy as np

from semcodec import digest
from semcodec.container import SmcFile
from semcodec.events import Note, Sample, Score, Track


def _sample(track: int, start: float, key=None) -> Sample:
    return Sample(track=track, start=start, duration=2.0, sample_rate=22050, codec="opus",
                  data=b"x", key=key)


def test_windows_are_spread_merged_and_cover_the_excerpts():
    wins = digest.windows(600.0, (_sample(0, 49.0), _sample(0, 300.0), _sample(0, 10.0, key=36)))
    assert wins == sorted(wins)
    assert all(b > a for a, b in wins) and all(b1 < a2 for (_, b1), (a2, _) in zip(wins, wins[1:]))
    covered = lambda t: any(a <= t < b for a, b in wins)  # noqa: E731
    for centre in (50.0, 150.0, 250.0, 350.0, 450.0, 550.0):
        assert covered(centre)
    assert covered(47.5) and covered(52.5)  # the excerpt at 49 s with its margins
    assert not covered(10.5)  # a one-shot (drum key) does not add a window
    total = sum(b - a for a, b in wins)
    assert total <= digest.DIGEST_WINDOWS * digest.DIGEST_WINDOW_S + 2 * 6.0
    assert digest.windows(90.0) == [(0.0, 90.0)]  # short: all of it


def test_digest_moves_notes_audio_and_samples_together():
    sr = 1000
    wins = [(10.0, 12.0), (30.0, 31.5)]
    dg = digest.Digest(wins, sr)
    assert dg.n == 3500 and dg.offsets == [0.0, 2.0]
    x = np.arange(40 * sr, dtype=np.float32)
    y = dg.audio(x)
    assert y.shape == (3500,) and y[0] == 10 * sr and y[2000] == 30 * sr
    notes = (Note(10.5, 11.0, 60, 90), Note(11.8, 13.0, 62, 90), Note(20.0, 21.0, 64, 90),
             Note(29.9, 30.2, 65, 90), Note(30.5, 30.7, 67, 90))
    c = SmcFile(duration=40.0, sample_rate=sr, n_samples=40 * sr,
                score=Score(tracks=(Track(name="t", program=0, notes=notes),)), samples=(_sample(0, 30.2),),
                residual=b"abc")
    d = dg.container(c)
    got = [(round(n.onset, 6), round(n.offset, 6), n.pitch) for n in d.score.tracks[0].notes]
    # kept: notes starting in a window, moved there, cut at its end
    assert got == [(0.5, 1.0, 60), (1.8, 2.0, 62), (2.5, 2.7, 67)]
    assert d.n_samples == 3500 and d.duration == 3.5 and d.samples == () and d.residual == b""
    assert [round(s.start, 6) for s in dg.samples(c.samples + (_sample(0, 20.0),))] == [2.2]
    # each moved note sits over the same audio as in the original
    for orig, moved in ((notes[0], d.score.tracks[0].notes[0]),
                        (notes[4], d.score.tracks[0].notes[2])):
        assert y[int(round(moved.onset * sr))] == x[int(round(orig.onset * sr))]


def test_a_long_input_is_measured_on_its_digest(monkeypatch):
    """The encoder's budget step hands the track-render measurement a digest (shorter
    container and audio, excerpts moved into it), and the choices come back by track."""
    from semcodec import encode_budget
    from semcodec.api import EncodeOptions

    sr = 8000
    dur = 400.0
    notes = tuple(Note(t, t + 0.4, 60 + int(t) % 12, 90) for t in np.arange(0.5, dur - 1, 1.0))
    c = SmcFile(duration=dur, sample_rate=sr, n_samples=int(dur * sr), loudness_lufs=-20.0,
                score=Score(tracks=(Track(name="t", program=0, notes=notes),)))
    audio = np.zeros(int(dur * sr), np.float32)
    samples = (_sample(0, 123.0),)
    seen = []

    def measure(mc, audios, groups, m_sr, m_samples, rendered=None):
        seen.append((mc.n_samples, [len(a) for a in audios], [s.start for s in m_samples]))
        return {}

    monkeypatch.setattr(encode_budget, "_measure_renders", measure)
    encode_budget._spend(c, [audio], [[0]], sr, samples, EncodeOptions())
    (n, lens, starts), = seen
    wins = digest.windows(dur, samples)
    assert n == lens[0] == round(sum(b - a for a, b in wins) * sr) < 0.4 * dur * sr
    assert len(starts) == 1 and 0 < starts[0] < n / sr


def test_a_long_input_is_repaired_span_by_span(monkeypatch):
    """The round-trip repair of a long input runs on spans (each with the excerpts'
    surroundings) and every note's change lands once, on the note itself."""
    from dataclasses import replace

    from semcodec import encode_budget

    sr = 1000
    dur = 400.0
    notes = tuple(Note(t, t + 0.5, 60, 50) for t in np.arange(0.25, dur - 1, 0.75))
    c = SmcFile(duration=dur, sample_rate=sr, n_samples=int(dur * sr), loudness_lufs=-20.0,
                score=Score(tracks=(Track(name="t", program=0, notes=notes),)),
                samples=(_sample(0, 250.0),))
    audio = np.arange(int(dur * sr), dtype=np.float32)
    seen = []

    def raise_all(sub, original, on_candidate=None, **_):  # a stand-in repair: all 1 step louder
        seen.append((sub.duration, len(original), [s.start for s in sub.samples]))
        assert len(original) == sub.n_samples
        tracks = tuple(replace(t, notes=tuple(replace(n, velocity=n.velocity + 1)
                                               for n in t.notes)) for t in sub.score.tracks)
        return replace(sub, score=replace(sub.score, tracks=tracks))

    monkeypatch.setattr(encode_budget, "_clear_notes", raise_all)
    monkeypatch.setattr(encode_budget, "REPAIR_SPAN_S", 100.0)
    out = encode_budget._with_clear_notes(c, audio)
    assert len(seen) == 4
    for duration, _, starts in seen:  # each span: 100 s and the excerpt's 6 s, or fewer
        assert duration <= 106.0 + 1e-6 and len(starts) == 1
    assert [n.velocity for n in out.score.tracks[0].notes] == [51] * len(notes)
    assert [(n.onset, n.offset) for n in out.score.tracks[0].notes] == \
        [(n.onset, n.offset) for n in notes]
    # a short input is measured whole
    short = replace(c, duration=60.0, n_samples=60 * sr, samples=())
    seen.clear()
    encode_budget._with_clear_notes(short, audio[:60 * sr])
    assert len(seen) == 1 and seen[0][0] == 60.0
