"""Samples that pay for themselves: the sampler, the eq, and the encoder's measured choice."""

from __future__ import annotations

import numpy as np
import pytest

from semcodec import runtime
from semcodec.events import BendPoint, Note, Score, Track
from semcodec.synth import sampler

SR = 22050


def _tone(pitch: float, seconds: float, harmonics: int, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    sig = sum(np.sin(2 * np.pi * f0 * k * t) / k ** 0.7 for k in range(1, harmonics + 1)
              if f0 * k < sr / 2)
    env = np.minimum(1.0, t / 0.01) * np.exp(-t * 1.2)
    return (0.2 * env * sig).astype(np.float32)


def _render(notes, harmonics: int, seconds: float) -> np.ndarray:
    out = np.zeros(int(seconds * SR), np.float32)
    for n in notes:
        y = _tone(n.pitch, n.duration, harmonics) * (n.velocity / 100) ** 2
        a = int(n.onset * SR)
        out[a:a + y.shape[0]] += y[:out.shape[0] - a]
    return out


def _f0(y: np.ndarray, lo: float, hi: float) -> float:
    n = min(8192, y.shape[0])
    spec = np.abs(np.fft.rfft(y[:n] * np.hanning(n), 4 * n))
    f = np.fft.rfftfreq(4 * n, 1 / SR)
    sel = (f > lo) & (f < hi)
    return float(f[sel][np.argmax(spec[sel])])


def test_play_note_shifts_pitch_loops_and_bends():
    z = sampler.zones(_tone(60, 0.5, 8), SR, [Note(0.0, 0.5, 60, 100)], 0.0)[0]
    y = sampler.play_note(z, Note(0.0, 2.0, 62, 100), SR)
    assert y.shape[0] == int(round((2.0 + sampler.RELEASE_S) * SR))
    assert abs(_f0(y[:4096], 250, 320) - 293.66) < 3.0
    # the loop keeps it sounding to the end (no silence after the 0.5-s zone runs out)
    rms = [float(np.sqrt(np.mean(y[s:s + 2205] ** 2))) for s in range(0, int(1.9 * SR), 2205)]
    assert min(rms) > 0.05 * max(rms)
    bent = sampler.play_note(z, Note(0.0, 1.0, 60, 100, bends=(BendPoint(0.0, 0.0),
                                                               BendPoint(0.5, 1.0))), SR)
    assert abs(_f0(bent[int(0.6 * SR):], 250, 300) - 277.18) < 4.0
    # velocity scales the level
    soft = sampler.play_note(z, Note(0.0, 1.0, 62, 50), SR)
    loud = sampler.play_note(z, Note(0.0, 1.0, 62, 100), SR)
    assert np.sqrt(np.mean(soft ** 2)) == pytest.approx(0.25 * np.sqrt(np.mean(loud ** 2)), rel=0.01)


def test_eq_correction_recovers_a_tilt():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(2 * SR).astype(np.float32) * 0.1
    gains = np.linspace(-10, 10, sampler.N_BANDS)
    target = sampler.apply_eq(x, SR, gains)
    est = sampler.eq_correction(target, x, SR)
    # the level is free (the decoder matches loudness): compare the shape
    mid = slice(2, -2)
    assert np.allclose(est[mid] - est[mid].mean(), gains[mid] - gains[mid].mean(), atol=2.5)
    assert np.array_equal(sampler.apply_eq(x, SR, np.zeros(sampler.N_BANDS)), x)



def _apply_eq_whole(y: np.ndarray, sr: int, gains_db: np.ndarray) -> np.ndarray:
    """apply_eq as it was: the whole padded signal in float64, then overlap-add."""
    n_fft, hop = 4096, 1024
    g = sampler._eq_gain(sr, gains_db, n_fft)
    win = np.hanning(n_fft + 1)[:-1]
    xp = np.pad(y.astype(np.float64), (n_fft, n_fft + hop))
    out, norm = np.zeros_like(xp), np.zeros_like(xp)
    n_fr = 1 + (xp.shape[0] - n_fft) // hop
    for s in range(0, n_fr, 128):
        idx = np.arange(s, min(n_fr, s + 128))[:, None] * hop + np.arange(n_fft)[None, :]
        fr = np.fft.irfft(np.fft.rfft(xp[idx] * win, axis=1) * g, n_fft, axis=1) * win
        np.add.at(out, idx, fr)
        np.add.at(norm, idx, np.broadcast_to(win ** 2, fr.shape))
    return (out / np.maximum(norm, 1e-3))[n_fft:n_fft + y.shape[0]].astype(np.float32)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("n", [1, 4095, 4096, 128 * 1024 + 3, 300 * 1024 + 17])
def test_apply_eq_streamed_is_bit_identical_to_the_whole_pass(n, workers, monkeypatch):
    monkeypatch.setenv(runtime.WORK_THREADS_ENV, "2")
    monkeypatch.setattr(sampler, "EQ_WORKERS", workers)  # 2: the blocks' FFTs on two threads
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n).astype(np.float32)
    gains = rng.uniform(-12, 12, sampler.N_BANDS)
    got = sampler.apply_eq(x, SR, gains)
    assert got.dtype == np.float32 and got.shape == x.shape
    assert np.array_equal(got, _apply_eq_whole(x, SR, gains))


def _line():
    pitches = [60, 62, 64, 65, 64, 62, 60, 62, 63, 61, 60, 64]
    return [Note(0.1 + 0.45 * k, 0.1 + 0.45 * k + 0.4, p, 90) for k, p in enumerate(pitches)]


def test_a_kept_excerpt_brings_the_decode_closer():
    pytest.importorskip("librosa")
    from semcodec import sampleuse
    from semcodec.timbre import extract_samples

    notes = _line()
    seconds = 6.0
    score = Score(tracks=(Track("lead").with_notes(notes),))
    original = _render(notes, harmonics=14, seconds=seconds)  # a bright instrument
    samples = extract_samples(original, SR, score)
    assert samples

    def engine(i, track):  # an engine with the wrong timbre: nearly pure sines
        return _render(track.notes, harmonics=1, seconds=seconds)

    (choice,) = sampleuse.choose(original, SR, score, [0], samples, engine, -20.0)
    assert choice.uses_sample and choice.render.use in ("sampler", "voice")
    assert choice.dist < choice.dist_without_sample - sampleuse.MIN_GAIN
    assert choice.sample_benefit > 0

    # the engine already plays it as the original: the excerpt does not pay, it is not kept
    def perfect(i, track):
        return _render(track.notes, harmonics=14, seconds=seconds)

    (same,) = sampleuse.choose(original, SR, score, [0], samples, perfect, -20.0)
    assert not same.uses_sample and same.sample_benefit == 0.0


def test_render_track_hook_plays_the_stored_choice():
    from semcodec.events import TrackRender
    from semcodec.timbre import extract_samples

    notes = _line()
    seconds = 6.0
    original = _render(notes, harmonics=14, seconds=seconds)
    track = Track("lead").with_notes(notes)
    (smp,) = extract_samples(original, SR, Score(tracks=(track,)))
    x = sampler.decode_excerpt(smp, SR)
    calls = []

    def engine(t):
        calls.append(len(t.notes))
        return _render(t.notes, harmonics=1, seconds=seconds)

    n = int(seconds * SR)
    plain = sampler.render_track(track, [(x, smp.start)], SR, n, engine)
    assert calls == [len(notes)] and np.allclose(plain, engine(track))
    calls.clear()
    from dataclasses import replace

    sampled = replace(track, render=TrackRender(use="sampler", eq_db=(0.0,) * 23 + (3.0,)))
    y = sampler.render_track(sampled, [(x, smp.start)], SR, n, engine)
    assert y.shape == (n,) and np.isfinite(y).all()
    # only the notes the excerpt does not cover went to the engine
    assert not calls or calls[0] < len(notes)
    # without its excerpt the track falls back to the engine
    assert np.allclose(sampler.render_track(sampled, [], SR, n, engine), engine(track))


def test_log_mels_in_blocks_equal_the_whole_stft(monkeypatch):
    """sampleuse.log_mels (and the eq's band powers) take sampler.stft_mag's frames block by
    block (bounded memory on long inputs): the same numbers as one whole-signal STFT."""
    from semcodec import sampleuse

    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(sampleuse.MEASURE_SR * 3 + 5)).astype(np.float32)
    whole = sampleuse.log_mels(x)  # one block
    monkeypatch.setattr(sampler, "MAG_BLOCK_FRAMES", 7)
    for got, ref, n_fft in zip(sampleuse.log_mels(x), whole, (1024, 2048)):
        mag = sampler.stft_mag(x, n_fft, n_fft // 4)
        direct = np.log10(np.maximum(mag @ sampleuse._FB[(sampleuse.MEASURE_SR, n_fft)].T, 1e-5))
        np.testing.assert_allclose(got, direct, rtol=0, atol=1e-12)
        np.testing.assert_allclose(ref, direct, rtol=0, atol=1e-12)
    blocks = np.concatenate(list(sampler.stft_mag_blocks(x, 1024, 256)))
    assert np.array_equal(blocks, sampler.stft_mag(x, 1024, 256))


def test_frames_mag_is_the_abs_rfft_of_the_windowed_frames():
    rng = np.random.default_rng(4)
    n_fft, hop, n_fr = 512, 128, 300
    xp = rng.standard_normal((n_fr - 1) * hop + n_fft + 7)
    idx = np.arange(n_fr)[:, None] * hop + np.arange(n_fft)[None, :]
    want = np.abs(np.fft.rfft(xp[idx] * np.hanning(n_fft + 1)[:-1], axis=1))
    assert np.array_equal(sampler.frames_mag(xp, n_fft, hop, n_fr), want)
    with pytest.raises(IndexError):  # too few samples for the frames asked for
        sampler.frames_mag(xp[:n_fft], n_fft, hop, n_fr)


def test_target_measures_are_kept_for_the_same_input_only():
    from semcodec import sampleuse
    from semcodec.synth import dsp

    sr = 44100
    rng = np.random.default_rng(5)
    audio = (0.1 * rng.standard_normal(sr)).astype(np.float32)
    sampleuse.forget_target()
    try:
        first = sampleuse.target_measures(audio, sr)
        target = dsp.resample(audio, sr, sampleuse.MEASURE_SR)
        assert np.array_equal(first[0], target)  # the numbers of the direct computation
        for a, b in zip(first[1], sampleuse.log_mels(target)):
            assert np.array_equal(a, b)
        assert first[2] == dsp.integrated_loudness(target, sampleuse.MEASURE_SR)
        assert sampleuse.target_measures(audio, sr) is first  # kept for the same array
        assert sampleuse.kept_target(audio, sr) is first
        assert sampleuse.kept_target(audio.copy(), sr) is None  # looked up, never measured
        assert not first[0].flags.writeable
        other = sampleuse.target_measures(audio.copy(), sr)  # an equal copy: measured again
        assert other is not first and np.array_equal(other[0], first[0])
        assert sampleuse.target_measures(audio, sr) is not first  # only the latest is kept
        kept = sampleuse.target_measures(audio, sr)
        sampleuse.forget_target()
        assert sampleuse.target_measures(audio, sr) is not kept
    finally:
        sampleuse.forget_target()


def test_a_solos_engine_agreement_is_measured_meanwhile_with_the_same_result(monkeypatch,
                                                                            caplog):
    import logging
    import threading

    from semcodec import roundtrip, sampleuse

    notes = _line()
    seconds = 6.0
    score = Score(tracks=(Track("lead").with_notes(notes),))
    original = _render(notes, harmonics=14, seconds=seconds)

    def engine(i, track):  # the wrong timbre: the eq is the better render, then checked
        return _render(track.notes, harmonics=1, seconds=seconds)

    threads: list = []

    def agreement(audio, sr, ns, heard_into=None):  # a stand-in: a number of the audio itself
        threads.append(threading.current_thread() is threading.main_thread())
        return float(np.round(np.sqrt(np.mean(np.square(audio))) * 10.0 % 1.0, 6))

    monkeypatch.setattr(roundtrip, "agreement", agreement)

    def choose() -> tuple:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="semcodec.sampleuse"):
            (ch,) = sampleuse.choose(original, SR, score, [0], (), engine, -20.0)
        return ch, [r.getMessage() for r in caplog.records if "mel distances" in r.getMessage()]

    overlapped, said = choose()
    assert overlapped.render is not None and threads == [False, True]  # the engine's meanwhile
    monkeypatch.setattr(sampleuse, "in_background",  # one after the other, as before
                        lambda fn, *a: (lambda r=fn(*a): r))
    threads.clear()
    serial, said_serial = choose()
    assert threads == [True, True]
    assert serial == overlapped and said_serial == said and "engine F1" in said[0]


def test_a_second_measure_with_the_memo_gives_the_same_choices_and_transcribes_no_more(
        monkeypatch):
    """The encoder measures a group's first excerpts, then all of them, with one memo: a
    solo's round-trip checks of the same renders are not made again; a mix's track whose
    excerpts and surroundings are the same is not measured again."""
    from semcodec import roundtrip, sampleuse
    from semcodec.timbre import extract_samples

    notes = _line()
    seconds = 6.0
    original = _render(notes, harmonics=14, seconds=seconds)
    calls: list = []

    def agreement(audio, sr, ns, heard_into=None):  # a stand-in: a number of the audio itself
        calls.append(1)
        return float(np.round(np.sqrt(np.mean(np.square(audio))) * 10.0 % 1.0, 6))

    monkeypatch.setattr(roundtrip, "agreement", agreement)
    rendered: dict = {}

    def engine(i, track):  # the wrong timbre: the eq is the better render, then checked
        key = (i, track.notes)
        if key not in rendered:
            rendered[key] = _render(track.notes, harmonics=1, seconds=seconds)
        return rendered[key]

    solo = Score(tracks=(Track("lead").with_notes(notes),))
    fresh = sampleuse.choose(original, SR, solo, [0], (), engine, -20.0)
    n_fresh = len(calls)
    memo: dict = {}
    first = sampleuse.choose(original, SR, solo, [0], (), engine, -20.0, memo=memo)
    assert first == fresh and len(calls) == 2 * n_fresh and n_fresh >= 2
    again = sampleuse.choose(original, SR, solo, [0], (), engine, -20.0, memo=memo)
    assert again == fresh and len(calls) == 2 * n_fresh  # nothing transcribed again
    # a mix: the same excerpts against the same renders: each choice as measured before
    low = [Note(n.onset, n.offset, n.pitch - 12, n.velocity) for n in notes]
    mix_score = Score(tracks=(Track("a").with_notes(low), Track("b").with_notes(notes)))
    mix = original + _render(low, harmonics=3, seconds=seconds)
    samples = extract_samples(mix, SR, mix_score)
    measured: list = []
    real = sampleuse.mel_distance
    monkeypatch.setattr(sampleuse, "mel_distance", lambda *a: measured.append(1) or real(*a))
    memo = {}
    one = sampleuse.choose(mix, SR, mix_score, [0, 1], samples, engine, -20.0, memo=memo)
    n_one = len(measured)
    assert one == sampleuse.choose(mix, SR, mix_score, [0, 1], samples, engine, -20.0, memo=memo)
    assert n_one > 0 and len(measured) == n_one


def test_what_a_renders_check_heard_is_found_for_the_same_audio_only(monkeypatch):
    """The chosen render's round-trip check keeps what it heard: the encoder's repair, whose
    decode is that audio up to float rounding, takes it instead of transcribing again."""
    from semcodec import roundtrip, sampleuse

    sr = sampleuse.MEASURE_SR
    t = np.arange(sr) / sr
    mix = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    heard = (Note(0.1, 0.5, 69, 90),)
    calls = []

    def transcribe_back(audio, rate):
        calls.append(audio)
        return heard

    monkeypatch.setattr(roundtrip, "transcribe_back", transcribe_back)
    sampleuse.forget_target()
    try:
        f1 = sampleuse._agreement(mix, [Note(0.1, 0.5, 69, 90)])
        assert f1 == 1.0 and len(calls) == 1
        assert sampleuse.heard_like(mix, sr) == heard
        assert sampleuse.heard_like(mix + np.float32(1e-5), sr) == heard  # float rounding
        assert sampleuse.heard_like(mix * np.float32(1.01), sr) is None  # 1 % louder
        assert sampleuse.heard_like(mix[:-1], sr) is None
        assert sampleuse.heard_like(mix, sr * 2) is None
        assert sampleuse.heard_like(np.zeros_like(mix), sr) is None
        sampleuse.forget_target()
        assert sampleuse.heard_like(mix, sr) is None
        # a transcriber that is not there: nothing heard, nothing kept
        from semcodec.errors import SemcodecError

        def missing(audio, rate):
            raise SemcodecError("no transcriber")

        monkeypatch.setattr(roundtrip, "transcribe_back", missing)
        assert sampleuse._agreement(mix, [Note(0.1, 0.5, 69, 90)]) is None
        assert sampleuse.heard_like(mix, sr) is None
    finally:
        sampleuse.forget_target()
