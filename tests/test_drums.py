"""Drums: detection on GM-kit patterns, no hits on pitched music, one-shots, sampler, engines."""

from __future__ import annotations

import io
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from semcodec import drums
from semcodec.events import Note, Sample, Score, Track
from semcodec.synth import dsp
from semcodec.synth.fluid import find_soundfont, render_notes, render_score

from conftest import tone

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from bench import metrics  # noqa: E402

SR = 44100
BPM = 110.0
#: Four bars of 16 sixteenth-note steps, one string per GM key ("X" loud, "x" normal, "o" soft).
BARS = (
    {49: "X...............", 42: "..x.x.x.x.x.x.x.", 38: "....X.......X...", 36: "X.......X.x....."},
    {42: "x.x.x.x.x.x.x...", 46: "..............x.", 38: "....X.......X...", 36: "X.......X.x....."},
    {42: "x.x.x.x.x.x.x.x.", 38: "....X.......X..o", 36: "X..x....X.x....."},
    {42: "x.x.x.x.x.......", 38: "....X...........", 36: "X.......X.......",
     50: "............X...", 47: ".............X..", 45: "..............X.", 43: "...............X"},
)
VEL = {"X": 115, "x": 90, "o": 60}


def _pattern() -> list[Note]:
    step = 60.0 / BPM / 4
    notes = []
    for b, bar in enumerate(BARS):
        for key, steps in bar.items():
            for s, c in enumerate(steps):
                if c != ".":
                    on = 0.3 + (b * 16 + s) * step
                    notes.append(Note(round(on, 4), round(on + 0.1, 4), key, VEL[c] - (s % 3)))
    return sorted(notes, key=lambda n: (n.onset, n.pitch))


@pytest.fixture(scope="module")
def drum_clip():
    """(audio at SR, ground-truth notes): the pattern played by the default soundfont's GM kit."""
    notes = _pattern()
    n = int((notes[-1].onset + 1.5) * SR)
    track = Track("drums", 0, is_drum=True).with_notes(notes)
    audio = render_score(Score(tracks=(track,)), SR, n, soundfont=find_soundfont())
    return (0.7 * audio / np.abs(audio).max()).astype(np.float32), notes


@pytest.fixture(scope="module")
def detected(drum_clip):
    return drums.detect_drums(drum_clip[0], SR)


def _f1(ref: list[Note], est: list[Note]) -> float:
    return metrics.drum_onset_f1([(n.onset, n.offset, n.pitch) for n in ref],
                                 [(n.onset, n.offset, n.pitch) for n in est])


def test_classes_are_gm_keys():
    assert list(drums.GM_DRUM_CLASSES) == ["kick", "snare", "closed_hat", "open_hat", "low_tom",
                                          "mid_tom", "high_tom", "crash", "ride"]
    assert drums.GM_DRUM_CLASSES["kick"] == 36 and drums.GM_DRUM_CLASSES["ride"] == 51


def test_detects_a_gm_pattern(drum_clip, detected):
    audio, truth = drum_clip
    assert _f1(truth, detected) >= 0.85
    assert all(isinstance(n, Note) and n.pitch in drums.GM_DRUM_CLASSES.values() for n in detected)
    assert all(1 <= n.velocity <= 127 and 0 < n.offset - n.onset <= 0.2 for n in detected)
    assert detected == sorted(detected, key=lambda n: (n.onset, n.pitch))
    # simultaneous hits are all found: kick and hi-hat on the same beat
    both = {round(n.onset, 1) for n in detected if n.pitch == 36} & \
        {round(n.onset, 1) for n in detected if n.pitch == 42}
    assert len(both) >= 3
    # per class: kicks and snares nearly all there
    for key in (36, 38):
        ref = [n for n in truth if n.pitch == key]
        assert _f1(ref, [n for n in detected if n.pitch == key]) >= 0.9


def test_detection_is_deterministic(drum_clip, detected):
    assert drums.detect_drums(drum_clip[0], SR) == detected


def test_analysis_blocks_on_two_threads_give_the_same_numbers(drum_clip, monkeypatch):
    from semcodec.drums import detection

    monkeypatch.setattr(detection, "BLOCK_FRAMES", 300)  # a 3-s block: several here
    threads: set[str] = set()
    median = detection._median_filter

    def watched(*a, **k):
        threads.add(threading.current_thread().name)
        return median(*a, **k)

    monkeypatch.setattr(detection, "_median_filter", watched)
    monkeypatch.setattr(detection, "ANALYSIS_WORKERS", 1)
    one = detection._analyse(drum_clip[0], SR)
    assert threads == {threading.current_thread().name}
    threads.clear()
    monkeypatch.setattr(detection, "ANALYSIS_WORKERS", 2)
    monkeypatch.setenv("SEMCODEC_THREADS", "2")  # whatever the machine's cores
    two = detection._analyse(drum_clip[0], SR)
    assert threads and all(t.startswith("semcodec-drums") for t in threads)
    for a, b in ((one.P, two.P), (one.H, two.H), (one.S, two.S)):
        assert np.array_equal(a, b)


def test_other_sample_rates(drum_clip, detected):
    audio, truth = drum_clip
    y = dsp.resample(audio, SR, 22050)
    assert _f1(truth, drums.detect_drums(y, 22050)) >= 0.75


def test_no_hits_on_pitched_music():
    rng = np.random.default_rng(0)
    melody = np.concatenate([tone(int(p), 0.4) for p in rng.integers(48, 80, 20)])
    chords = sum(tone(p, 6.0, amp=0.1) for p in (48, 55, 60, 64, 67))
    assert drums.detect_drums(melody, SR) == []
    assert drums.detect_drums(chords.astype(np.float32), SR) == []
    # a piano, a plucked guitar, a slap bass: percussive attacks, but no drums
    notes = [Note(0.2 + 0.25 * i, 0.2 + 0.25 * i + 0.4, 48 + (i * 7) % 36, 70 + (i * 13) % 50)
             for i in range(32)]
    notes += [Note(0.2 + i, 1.2 + i, p, 90) for i in range(8) for p in (40 + i, 47 + i, 52 + i)]
    n = int(9.5 * SR)
    for program in (0, 25, 36):  # piano, steel guitar, slap bass
        audio = render_notes(notes, program, SR, n)
        assert drums.detect_drums(audio, SR) == [], program
    track, shots = drums.encode_drums(render_notes(notes, 0, SR, n), SR)
    assert track is None and shots == ()


def test_a_kit_without_cymbals_is_found():
    """Kick and snare alone (no hi-hat, ride or cymbal), bare and under piano chords: the kit's
    kick and snare together say "drums" (the metal hits alone used to be required)."""
    step = 60.0 / 100.0 / 4
    notes = []
    for i in range(6 * 16):
        on = round(0.3 + i * step, 4)
        if i % 16 in (0, 8, 10):
            notes.append(Note(on, on + 0.1, drums.KICK, 110))
        if i % 16 in (4, 12):
            notes.append(Note(on, on + 0.1, drums.SNARE, 105))
    n = int((notes[-1].onset + 1.5) * SR)
    kit = render_score(Score(tracks=(Track("drums", 0, is_drum=True).with_notes(notes),)), SR, n,
                       soundfont=find_soundfont())
    chords = [Note(0.3 + 2.4 * i, 2.5 + 2.4 * i, p + i, 80) for i in range(4) for p in (48, 55, 64)]
    piano = render_notes(chords, 0, SR, n)
    for audio in (kit, kit + 0.5 * piano):
        audio = (0.7 * audio / np.abs(audio).max()).astype(np.float32)
        found = drums.detect_drums(audio, SR)
        assert {n.pitch for n in found} <= {drums.KICK, drums.SNARE}
        assert _f1(notes, found) >= 0.9


def test_silence_and_tiny_input():
    assert drums.detect_drums(np.zeros(SR, np.float32), SR) == []
    assert drums.detect_drums(np.zeros(10, np.float32), SR) == []
    assert drums.detect_drums(np.full(4096, 0.1, np.float32), 8000) == []
    with pytest.raises(ValueError):
        drums.detect_drums(np.zeros((100, 2), np.float32), SR)


def test_oneshots(drum_clip, detected):
    audio, _ = drum_clip
    shots = drums.drum_oneshots(audio, SR, detected)
    keys = sorted({n.pitch for n in detected})
    assert [s.key for s in shots] == keys
    for s in shots:
        assert s.codec == "opus" and s.sample_rate == 24000 and s.track == 0
        assert 0.04 < s.duration <= 0.51
        assert 0.0 <= s.start <= len(audio) / SR
        # cut from a hit of its own key
        assert any(abs(n.onset - s.start) < 0.02 for n in detected if n.pitch == s.key)
        y, rate = sf.read(io.BytesIO(s.data), dtype="float32")
        assert rate == 48000 or rate == 24000
        assert np.abs(y).max() > 0.01
    assert shots == drums.drum_oneshots(audio, SR, detected)  # deterministic bytes
    # a budget drops the least-used keys first
    counts = {k: sum(1 for n in detected if n.pitch == k) for k in keys}
    total = sum(len(s.data) for s in shots)
    least = min(keys, key=lambda k: (counts[k], -len(next(s.data for s in shots if s.key == k))))
    fewer = drums.drum_oneshots(audio, SR, detected, max_bytes=total - 1)
    assert least not in [s.key for s in fewer] and len(fewer) == len(shots) - 1
    assert drums.drum_oneshots(audio, SR, detected, max_bytes=0) == []


def test_encode_drums(drum_clip, detected):
    audio, _ = drum_clip
    track, shots = drums.encode_drums(audio, SR, max_bytes=None)
    assert track is not None and track.is_drum and track.name == "drums"
    assert list(track.notes) == detected
    assert {s.key for s in shots} == {n.pitch for n in detected}


def test_sampler_positions_velocity_and_fallback():
    sr = 1000
    shot = np.zeros(20, np.float32)
    shot[0] = 1.0
    shots = {36: shot, 47: 0.5 * shot, 49: 0.25 * shot}
    hits = [(0.1, 36, 127), (0.2, 36, 64), (0.3, 45, 127), (0.4, 51, 127), (0.5, 70, 127),
            (2.0, 36, 127)]
    y = dsp.play_oneshots(hits, shots, sr, 1000)
    assert y.shape == (1000,) and y.dtype == np.float32
    assert y[100] == pytest.approx(1.0)
    assert y[200] == pytest.approx((64 / 127) ** 2)  # velocity scales the level
    assert y[300] == pytest.approx(0.5)  # a tom without a shot plays another tom's
    assert y[400] == pytest.approx(0.25)  # a ride without a shot plays the crash's
    assert y[500] == 0.0  # no related shot: skipped
    assert np.count_nonzero(y) == 4
    # the one-shot's own source velocity plays it unchanged
    z = dsp.play_oneshots([(0.1, 36, 90)], shots, sr, 300, ref_velocity={36: 90})
    assert z[100] == pytest.approx(1.0)
    assert dsp.oneshot_for(46, {42: 0}) == 42 and dsp.oneshot_for(42, {46: 0}) == 46
    assert dsp.oneshot_for(38, {36: 0}) is None


def test_fluidsynth_plays_drum_tracks_on_the_kit():
    from semcodec.synth.fluid import FluidsynthEngine

    hat = [Note(0.1, 0.2, 42, 110)]
    kit = FluidsynthEngine().render(Score(tracks=(Track("d", 0, True, tuple(hat)),)), SR, SR // 2)
    piano = FluidsynthEngine().render(Score(tracks=(Track("p", 0, False, tuple(hat)),)), SR, SR // 2)
    spec = lambda a: np.abs(np.fft.rfft(a[4000:12000]))  # noqa: E731
    f = np.fft.rfftfreq(8000, 1 / SR)
    hi = lambda a: spec(a)[f > 5000].sum() / spec(a).sum()  # noqa: E731
    assert hi(kit) > 0.4 and hi(piano) < 0.15  # a closed hi-hat, not a piano F#2


@pytest.fixture(scope="module")
def engine():
    pytest.importorskip("torch")
    from semcodec.synth import neural

    if not neural.weights_available():
        pytest.skip("no neural weights")
    return neural.NeuralEngine(device="cpu")


def test_neural_engine_plays_drum_tracks_from_oneshots(engine, drum_clip, detected):
    audio, _ = drum_clip
    track, shots = drums.encode_drums(audio, SR)
    samples = tuple(Sample(1, s.start, s.duration, s.sample_rate, s.codec, s.data, s.key)
                    for s in shots)
    piano = Track("piano", 0).with_notes([Note(0.3, 1.0, 60, 80)])
    score = Score(tracks=(piano, track))
    n = len(audio)
    y = engine.render(score, SR, n, samples=samples)
    assert y.shape == (n,) and np.abs(y).max() > 0.01
    # the drums sound where the hits are: energy after the last hit's onset, none before the first
    first = int(min(nn.onset for nn in track.notes) * SR)
    drums_only = engine.render(Score(tracks=(track,)), SR, n, samples=samples)
    assert np.abs(drums_only[:first - 300]).max() < 1e-4
    assert np.abs(drums_only[first:first + 2000]).max() > 0.01
    # tempo scales the onsets, transpose does not move drums
    fast = engine.render(Score(tracks=(track,)), SR, n, samples=samples, tempo=2.0)
    assert np.abs(fast[:int(first / 2) - 300]).max() < 1e-4
    assert np.abs(fast[int(first / 2):int(first / 2) + 2000]).max() > 0.01
    up = engine.render(Score(tracks=(track,)), SR, n, samples=samples, transpose=5)
    np.testing.assert_array_equal(up, drums_only)


def test_neural_engine_drums_without_oneshots_use_the_gm_kit(engine):
    track = Track("drums", 0, True).with_notes([Note(0.2, 0.3, 36, 110), Note(0.5, 0.6, 38, 110)])
    y = engine.render(Score(tracks=(track,)), SR, SR)
    assert np.abs(y[int(0.2 * SR):int(0.3 * SR)]).max() > 0.01
    assert np.abs(y[:int(0.19 * SR)]).max() < 1e-3


def test_encode_finds_the_drums_of_a_recording_and_of_a_drum_stem(drum_clip, tmp_path):
    """`encode` adds a drum track with keyed one-shots; a stem named drums becomes one too."""
    import semcodec
    from semcodec.audio import from_array

    audio, truth = drum_clip
    opts = semcodec.EncodeOptions(fit_timbre=False, max_kbps=8.0)
    c = semcodec.encode(audio, sr=SR, options=opts)
    kit = [t for t in c.score.tracks if t.is_drum]
    assert len(kit) == 1 and _f1(truth, list(kit[0].notes)) >= 0.8
    # the pitched transcription runs on the audio with the hits suppressed: no notes from drums
    assert sum(len(t.notes) for t in c.score.tracks if not t.is_drum) == 0
    index = c.score.tracks.index(kit[0])
    keyed = [s for s in c.samples if s.key is not None]
    assert keyed and all(s.track == index for s in keyed)
    assert {s.key for s in keyed} <= {n.pitch for n in kit[0].notes}
    back = semcodec.Container.from_bytes(c.to_bytes())  # SKEY round trip
    assert [s.key for s in back.samples] == [s.key for s in c.samples]
    stems = semcodec.encode_stems([("drums", from_array(audio, SR))], options=opts)
    assert [(t.name, t.is_drum) for t in stems.score.tracks] == [("drums", True)]
    assert len(stems.score.tracks[0].notes) == len(kit[0].notes)
    off = semcodec.encode(audio, sr=SR, options=semcodec.EncodeOptions(fit_timbre=False, drums="off"))
    assert not any(t.is_drum for t in off.score.tracks)


def test_suppress_percussion_keeps_tones_and_removes_hits(drum_clip):
    """A sustained tone passes (nearly) unchanged; drum hits lose most of their energy."""
    audio, _ = drum_clip
    t = np.arange(audio.size) / SR
    sine = (0.3 * np.sin(2 * np.pi * 330.0 * t)).astype(np.float32)
    y = drums.suppress_percussion(sine, SR)
    assert y.shape == sine.shape and y.dtype == np.float32
    core = slice(SR, y.size - SR)
    assert np.max(np.abs(y[core] - sine[core])) < 1e-3
    hits = drums.suppress_percussion(audio, SR)
    assert np.sum(hits.astype(np.float64) ** 2) < 0.5 * np.sum(audio.astype(np.float64) ** 2)
    # the tone under the drums survives
    mix = drums.suppress_percussion(audio + sine, SR)
    k = int(round(330.0 * mix.size / SR))
    spec, in_spec = np.abs(np.fft.rfft(mix)), np.abs(np.fft.rfft(audio + sine))
    assert spec[k - 2:k + 3].max() > 0.9 * in_spec[k - 2:k + 3].max()
    assert drums.suppress_percussion(np.zeros(0, np.float32), SR).size == 0
    assert drums.suppress_percussion(sine[:100], SR).shape == (100,)
