"""End to end through the Python API: render a known score, encode, check, decode."""

from __future__ import annotations

import mir_eval
import numpy as np
import pytest
import soundfile as sf

import semcodec
from semcodec import decoder
from semcodec.errors import InputError, UsageError
from semcodec.synth import dsp


_ONE_NOTE_SR = 22050


def _one_note_file(velocity: int):
    """A 1-s Container at _ONE_NOTE_SR Hz of one track holding one note (C4, 0.1-0.5 s) at
    ``velocity``: the files the speculative-residual tests pass through the repair."""
    from semcodec.container import Container
    from semcodec.events import Note, Score, Track

    return Container(duration=1.0, sample_rate=_ONE_NOTE_SR, channels=1, n_samples=_ONE_NOTE_SR,
                     loudness_lufs=-20.0, score=Score(tracks=(Track(name="t").with_notes(
                         (Note(0.1, 0.5, 60, velocity),)),)))


def _clear_and_code(monkeypatch, c, **stages):
    """``api._clear_notes_and_residual`` of ``c`` (a :func:`_one_note_file`) on a silent
    input, with the encoder's stages replaced: ``clear_notes=f`` stands for
    ``api._with_clear_notes`` and so on."""
    from semcodec import api

    for name, fn in stages.items():
        monkeypatch.setattr(api, f"_with_{name}", fn)
    inp = api.AudioInput(audio=np.zeros(_ONE_NOTE_SR, np.float32), sample_rate=_ONE_NOTE_SR,
                         channels=1, name="x")
    return api._clear_notes_and_residual(c, inp, api.EncodeOptions(), lambda *_: None)


def _note_f1(ref_notes, est_notes) -> float:
    ref_i = np.array([[n.onset, n.offset] for n in ref_notes])
    ref_p = mir_eval.util.midi_to_hz(np.array([n.pitch for n in ref_notes], dtype=float))
    if not est_notes:
        return 0.0
    est_i = np.array([[n.onset, max(n.offset, n.onset + 0.01)] for n in est_notes])
    est_p = mir_eval.util.midi_to_hz(np.array([n.pitch for n in est_notes], dtype=float))
    _, _, f1, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_i, ref_p, est_i, est_p, onset_tolerance=0.05, offset_ratio=None)
    return f1


def test_end_to_end_chorale(encoded_chorale):
    wav, smc, truth = encoded_chorale
    c = semcodec.load(smc)
    truth_notes = [n for t in truth.tracks for n in t.notes]
    est = [n for t in c.score.tracks for n in t.notes]
    assert _note_f1(truth_notes, est) >= 0.8
    assert c.bitrate_kbps <= 1.0  # the target: never beyond (the residual fills it)
    audio, sr = semcodec.decode(c, engine="fluidsynth")
    info = sf.info(wav)
    assert sr == info.samplerate
    assert audio.shape == (info.frames,)
    original, _ = sf.read(wav, dtype="float32")
    lufs_in = dsp.integrated_loudness(original, sr)
    lufs_out = dsp.integrated_loudness(audio, sr)
    assert abs(lufs_in - lufs_out) < 0.5
    assert np.abs(audio).max() <= 1.0


def test_encode_array_needs_rate():
    with pytest.raises(UsageError):
        semcodec.encode(np.zeros(1000, np.float32))


def test_silence_encodes_to_empty_score_and_decodes_to_silence():
    sr = 22050
    c = semcodec.encode(np.zeros(sr * 2 + 17, np.float32), sr=sr)
    assert c.score.n_notes == 0 and c.loudness_lufs is None
    c2 = semcodec.Container.from_bytes(c.to_bytes())
    audio, out_sr = semcodec.decode(c2)
    assert out_sr == sr and audio.shape == (sr * 2 + 17,) and not audio.any()


def test_stereo_input_is_downmixed(short_wav):
    mono, sr = sf.read(short_wav, dtype="float32")
    stereo = np.stack([mono, mono], axis=1)
    c = semcodec.encode(stereo, sr=sr, options=semcodec.EncodeOptions(fit_timbre=False, samples=False))
    assert c.channels == 2 and c.n_samples == mono.shape[0]
    assert c.score.n_notes >= 3


def test_decode_sample_rate_and_tempo(encoded_chorale):
    _, smc, _ = encoded_chorale
    c = semcodec.load(smc)
    audio, sr = semcodec.decode(c, engine="fluidsynth", sample_rate=22050)
    assert sr == 22050 and audio.shape[0] == round(c.n_samples * 22050 / c.sample_rate)
    fast, _ = semcodec.decode(c, engine="fluidsynth", tempo=2.0)
    assert fast.shape[0] == round(c.n_samples / 2)


def test_to_midi_roundtrips_notes(encoded_chorale, tmp_path):
    import pretty_midi

    _, smc, _ = encoded_chorale
    c = semcodec.load(smc)
    c.to_midi(tmp_path / "x.mid")
    pm = pretty_midi.PrettyMIDI(str(tmp_path / "x.mid"))
    assert sum(len(i.notes) for i in pm.instruments) == c.score.n_notes


def test_nan_input_rejected():
    bad = np.zeros(44100, np.float32)
    bad[100] = np.nan
    with pytest.raises(InputError, match="NaN"):
        semcodec.encode(bad, sr=44100)


def test_huge_declared_output_is_refused_cleanly():
    from semcodec.errors import SynthError
    from semcodec.events import Note, Score, Track

    sr = 192000
    n = 24 * 3600 * sr  # legal in the format, but ~200 GB to render
    c = semcodec.Container(duration=n / sr, sample_rate=sr, n_samples=n, loudness_lufs=-20.0,
                           score=Score(tracks=(Track("t", 0, notes=(Note(0.0, 1.0, 60, 80),)),)))
    c = semcodec.Container.from_bytes(c.to_bytes())
    with pytest.raises(SynthError, match="memory"):
        semcodec.decode(c, engine="fluidsynth", max_duration_s=None)
    # before that, the default duration limit refuses it (a 60-min output is within it)
    from semcodec.errors import OutputTooLongError

    with pytest.raises(OutputTooLongError, match="86400 s .* limit of 14400 s"):
        semcodec.decode(c, engine="fluidsynth")


# --- one bitrate target; track renders (issue 10) --------------------------------------------

def _melody(sr: int = 22050, seconds: float = 8.0) -> np.ndarray:
    """A bright monophonic line (many harmonics) with silence between the notes."""
    from conftest import tone

    out = np.zeros(int(seconds * sr), np.float32)
    for k, p in enumerate([60, 62, 64, 65, 67, 65, 64, 62, 60, 64, 67, 72, 67, 64, 60, 62]):
        y = tone(p, 0.4, sr, harmonics=12)
        a = int((0.1 + 0.48 * k) * sr)
        out[a:a + y.shape[0]] += y[:out.shape[0] - a]
    return out


@pytest.fixture(scope="module")
def melody_encodes():
    """The melody encoded (no timbre fit: fast) at three bitrate targets: {kbps: bytes}."""
    sr = 22050
    x = _melody(sr)
    out = {}
    for kbps in (0.3, 1.5, 6.0):
        c = semcodec.encode(x, sr=sr, options=semcodec.EncodeOptions(fit_timbre=False, kbps=kbps))
        out[kbps] = c.to_bytes()
    return out, x.shape[0] / sr


def test_a_long_input_measures_its_decode_loudness_with_its_residuals_decode(monkeypatch):
    """An input over MEASURE_WHOLE_MAX_S whose residual is coded after the repair gets its
    synth_lufs from the residual's rendering of its mix (the mix is not rendered once more),
    the same number as the file read back measures."""
    from semcodec import api, encode_budget

    for module in (api, encode_budget):
        monkeypatch.setattr(module, "MEASURE_WHOLE_MAX_S", 4.0)  # the 8-s melody is long
    monkeypatch.setattr(api, "SPECULATIVE_RESIDUAL_MAX_S", 4.0)  # coded after the repair

    def again(_c):
        raise AssertionError("the mix was rendered again for its loudness")

    monkeypatch.setattr(api, "_synth_lufs", again)
    monkeypatch.setattr(encode_budget, "_synth_lufs", again)
    c = semcodec.encode(_melody(), sr=22050, options=semcodec.EncodeOptions(fit_timbre=False,
                                                                            kbps=6.0))
    c = semcodec.Container.from_bytes(c.to_bytes())
    assert c.residual and c.synth_lufs is not None
    loud = decoder.synth_loudness(c)
    assert loud is not None and abs(loud - c.synth_lufs) <= 0.002


def test_the_bitrate_target_is_never_exceeded(melody_encodes):
    from semcodec.container import part_sizes

    files, duration = melody_encodes
    for kbps, data in files.items():
        from dataclasses import replace

        c = semcodec.Container.from_bytes(data)
        base = len(replace(c, samples=()).to_bytes())
        # the header, score and timbres are always kept; the rest only within the target
        assert len(data) <= max(kbps * 125 * duration, base)
        parts = part_sizes(c, data)
        assert sum(parts.values()) == len(data)
    # the low target leaves no room for an excerpt
    assert not semcodec.Container.from_bytes(files[0.3]).samples


def test_an_encode_stores_its_decode_loudness_within_the_target(melody_encodes):
    """The header's synth_lufs is the loudness of the decode's mix as the file is read back,
    so that decode() and the stream know the gain before rendering; it fits the target."""
    from dataclasses import replace

    files, duration = melody_encodes
    stored = 0
    for kbps, data in files.items():
        c = semcodec.Container.from_bytes(data)
        if c.synth_lufs is None:
            continue
        stored += 1
        loud = decoder.synth_loudness(c)
        assert loud is not None and abs(loud - c.synth_lufs) <= 0.0005  # its 3 decimals
        a, _ = semcodec.decode(c)
        b, _ = semcodec.decode(replace(c, synth_lufs=None))
        np.testing.assert_allclose(a, b, atol=1e-3)
    assert stored >= 2


def test_a_kept_excerpt_is_played_and_measured_closer(melody_encodes):
    files, _ = melody_encodes
    c = semcodec.Container.from_bytes(files[6.0])
    track = c.score.tracks[0]
    # the engine (no timbre fit) plays a bright line as near sines: its excerpts, replayed by
    # the sampler, measure closer, so they are kept and the track says how to play them
    assert c.samples and track.render is not None and track.render.use == "sampler"
    with_r, sr = semcodec.decode(c)
    without, _ = semcodec.decode(c, track_renders=False)
    assert with_r.shape == without.shape and not np.allclose(with_r, without)
    # a re-orchestrated track is played by the engine alone
    prog = {0: 40}
    a, _ = semcodec.decode(c, programs=prog)
    b, _ = semcodec.decode(c, programs=prog, track_renders=False)
    assert np.allclose(a, b)


def test_max_kbps_is_the_old_name_of_kbps():
    assert semcodec.EncodeOptions(max_kbps=2.5).target_kbps == 2.5
    assert semcodec.EncodeOptions(kbps=0.5).target_kbps == 0.5
    with pytest.raises(UsageError):
        semcodec.EncodeOptions(kbps=-1.0)


def _made_container(seconds=6.0, channels=1, pans=(0.0, 0.0)):
    """A container built directly (no encoding): two pitched tracks, loudness -20 LUFS."""
    from semcodec.events import BendPoint, Note, Score, Track

    rng = np.random.default_rng(3)
    tracks = []
    for k, pan in enumerate(pans):
        notes = [Note(t, t + 0.3, 50 + 7 * k + int(rng.integers(0, 5)), 90,
                      (BendPoint(0.1, 0.5),) if k else ())
                 for t in np.arange(0.1, seconds - 0.5, 0.4)]
        tracks.append(Track(f"t{k}", program=(0, 40)[k], pan=pan).with_notes(notes))
    return semcodec.Container(duration=seconds, sample_rate=44100, channels=channels,
                              n_samples=int(seconds * 44100), loudness_lufs=-20.0,
                              score=Score(tracks=tuple(tracks)))


@pytest.mark.parametrize("channels,pans", [(1, (0.0, 0.0)), (2, (-0.5, 0.6))])
def test_decode_stream_exact_equals_decode(monkeypatch, channels, pans):
    c = _made_container(channels=channels, pans=pans)
    ref, sr = semcodec.decode(c, engine="neural")
    monkeypatch.setattr(decoder, "STREAM_BLOCK", 10000)  # several blocks
    monkeypatch.setattr(decoder, "SPOOL_MEMORY_BYTES", 1000)  # the raw mix spooled to a file
    st = semcodec.decode_stream(c, engine="neural", exact=True)
    blocks = list(st.blocks)
    assert len(blocks) > 5 and st.exact_gain and st.sr == sr
    got = np.concatenate(blocks)
    assert got.shape == ref.shape
    if channels == 1:
        assert np.array_equal(got, ref)
    else:  # gain and pan applied in the other order: float rounding
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("n_tracks", [1, 2])
def test_a_streamed_lone_track_is_rendered_in_two_stages(monkeypatch, pipelined_renders,
                                                         n_tracks):
    from dataclasses import replace

    from semcodec.synth import neural

    c = _made_container(seconds=4.0)
    c = replace(c, score=replace(c.score, tracks=c.score.tracks[:n_tracks]))
    monkeypatch.setenv(neural.THREADS_ENV_RENDER, "2")
    ref, _ = semcodec.decode(c, engine="neural")
    seen = pipelined_renders
    seen.clear()  # the renders of the stream only
    monkeypatch.setattr(decoder, "STREAM_INTERNAL_BLOCK", 1 << 13)  # several internal blocks
    st = semcodec.decode_stream(c, engine="neural", exact=False)
    got = np.concatenate(list(st.blocks))
    # (the gain's windows, then the stream): a lone track's notes on a second thread; tracks
    # side by side already when there are two
    assert seen and set(seen) == {n_tracks == 1}
    assert got.shape == ref.shape and np.isfinite(got).all()


def _with_random_residual(c, seed=4):
    """``c`` with a residual payload: random levels in half of the cells (noise and cuts)."""
    from dataclasses import replace

    from semcodec import residual

    rng = np.random.default_rng(seed)
    nf = residual.n_grid_frames(c.duration, residual.DEFAULT_PERIOD_S)
    shape = (residual.DEFAULT_BANDS, nf)
    env = residual.Envelope(levels=rng.integers(-40, -10, shape), mask=rng.random(shape) < 0.5,
                            period_s=residual.DEFAULT_PERIOD_S, step_db=residual.DEFAULT_STEP_DB)
    return replace(c, residual=residual.encode_envelope(env))


@pytest.mark.parametrize("channels,pans,silent", [(1, (0.0, 0.0), False),
                                                  (2, (-0.5, 0.6), False), (1, (0.0,), True)])
def test_decode_stream_with_residual_equals_decode(monkeypatch, channels, pans, silent):
    """A file with a residual streams block by block (the raw mix spooled, the residual
    applied in blocks: bounded memory) with the same samples as the whole decode()."""
    from dataclasses import replace

    from semcodec import residual
    from semcodec.events import Score

    c = _made_container(seconds=7.0, channels=channels, pans=pans)
    if silent:  # no notes: the residual is all there is
        c = replace(c, score=Score(tracks=()))
    c = _with_random_residual(c)
    ref, sr = semcodec.decode(c, engine="neural")
    monkeypatch.setattr(decoder, "STREAM_BLOCK", 10000)
    monkeypatch.setattr(decoder, "SPOOL_MEMORY_BYTES", 1000)  # spooled to a file, read 3 times
    monkeypatch.setattr(residual, "BLOCK_FRAMES", 100)  # many residual blocks
    ref_small, _ = semcodec.decode(c, engine="neural")  # the noise depends on the blocks
    st = semcodec.decode_stream(c, engine="neural")  # exact: the residual asks for it
    got = np.concatenate(list(st.blocks))
    assert st.exact_gain and got.shape == ref_small.shape == ref.shape
    assert np.any(got != semcodec.decode(c, engine="neural", residual=False)[0])
    if channels == 1:
        assert np.array_equal(got, ref_small)
    else:  # gain and pan applied in the other order (as without a residual): float rounding
        np.testing.assert_allclose(got, ref_small, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("channels,pans", [(1, (0.0, 0.0)), (2, (-0.5, 0.6))])
def test_stored_synth_loudness_gives_the_gain_and_an_immediate_stream(monkeypatch, channels,
                                                                      pans):
    """With the header's synth_lufs (format 1.8) decode() takes the gain from it and the
    stream starts before the mix is rendered whole, with decode()'s samples (the residual's
    noise does not depend on the blocks)."""
    from dataclasses import replace

    c = _with_random_residual(_made_container(seconds=7.0, channels=channels, pans=pans))
    loud = decoder.synth_loudness(c)
    assert loud is not None
    ref, _ = semcodec.decode(c)  # the gain measured on the whole mix
    stored = replace(c, synth_lufs=loud)
    got, _ = semcodec.decode(stored)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(decoder, "STREAM_BLOCK", 10000)
    stages = []
    st = semcodec.decode_stream(stored, exact=True, progress=lambda s, _f: stages.append(s))
    first = next(st.blocks)
    assert st.exact_gain and "render" not in stages  # nothing rendered whole before it
    streamed = np.concatenate([first] + list(st.blocks))
    assert streamed.shape == ref.shape
    np.testing.assert_allclose(streamed, ref, rtol=1e-4, atol=1e-5)
    # the stored value is what sets the gain: 6.02 dB lower is twice as loud (below the clip)
    louder, _ = semcodec.decode(replace(c, synth_lufs=loud - 20 * np.log10(2.0)), residual=False)
    plain, _ = semcodec.decode(c, residual=False)
    quiet = np.abs(plain) < 0.2
    np.testing.assert_allclose(louder[quiet], 2 * plain[quiet], rtol=1e-4, atol=4e-6)  # flush_tiny
    # an edit that changes the mix measures it again
    edited, _ = semcodec.decode(replace(c, synth_lufs=loud - 6.0), transpose=2, residual=False)
    assert np.array_equal(edited, semcodec.decode(c, transpose=2, residual=False)[0])


def test_decode_stream_estimated_gain_is_close():
    c = _made_container(seconds=8.0)
    exact = semcodec.decode_stream(c, engine="neural", exact=True)
    est = semcodec.decode_stream(c, engine="neural", exact=False)
    assert not est.exact_gain
    assert abs(20 * np.log10(est.gain / exact.gain)) < 1.0  # dB
    y = np.concatenate(list(est.blocks))
    assert y.shape == (c.n_samples,) and np.all(np.isfinite(y)) and np.abs(y).max() <= 1.0


def test_decoding_imports_neither_torch_nor_heavy_libraries(tmp_path):
    import subprocess
    import sys

    smc = tmp_path / "c.smc"
    _made_container(seconds=2.0).save(smc)
    code = ("import sys, semcodec\n"
            f"a, sr = semcodec.decode(semcodec.load({str(smc)!r}))\n"
            "assert a.shape[0] == 88200 and abs(a).max() > 0\n"
            "heavy = {'torch', 'librosa', 'scipy', 'music21', 'sklearn', 'numba'}\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_encoding_a_solo_does_not_import_scikit_learn(short_wav):
    # the track split of a mix needs it (imported then); a solo never does: no CPU spent on it
    import subprocess
    import sys

    code = ("import sys, semcodec\n"
            f"c = semcodec.encode({str(short_wav)!r})\n"
            "assert c.score.n_notes > 0\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_encode_progress_moves_through_every_stage(short_wav):
    # issue 13 item 14: every stage reports, the fit per track, and the overall fraction
    # (what the CLI's bar and ETA show) never goes back
    from semcodec.api import ENCODE_STAGES, progress_fraction

    calls: list[tuple[str, float]] = []
    c = semcodec.encode(short_wav, progress=lambda stage, frac: calls.append((stage, frac)))
    stages = list(dict.fromkeys(stage for stage, _ in calls))
    assert stages == ["loudness", "drums", "transcribe", "split", "samples", "fit track 1/1",
                      "residual"]
    assert all(0.0 <= f <= 1.0 for _, f in calls)
    fit = [f for stage, f in calls if stage.startswith("fit")]
    assert len(set(fit)) >= 5 and fit[0] == 0.0 and fit[-1] == 1.0  # moves during the fit
    overall = [progress_fraction(stage, f) for stage, f in calls]
    assert None not in overall and overall == sorted(overall) and overall[-1] == 1.0
    assert progress_fraction("fit track 2/4", 0.5) < progress_fraction("fit track 3/4", 0.0)
    assert progress_fraction("nonsense", 0.5) is None
    assert abs(sum(w for _, w in ENCODE_STAGES) - 1.0) < 1e-9
    assert c.timbres  # the fit ran


def test_decode_progress_renders_per_track_then_loudness(tmp_path):
    # issue 13 item 14: decode reports every sounding track's rendering, then the loudness
    from semcodec.api import DECODE_STAGES, progress_fraction
    from semcodec.events import Note, Score, Track

    tracks = tuple(Track(name=f"t{k}", program=p).with_notes(
        [Note(0.1 + 0.3 * j, 0.35 + 0.3 * j, 60 + k * 4 + j, 90) for j in range(3)])
        for k, p in enumerate((0, 40, 73)))
    c = semcodec.Container(duration=1.2, sample_rate=22050, channels=1, n_samples=26460,
                           loudness_lufs=-20.0, score=Score(tracks=tracks))
    for per_track in (False, True):
        calls: list[tuple[str, float]] = []
        fn = semcodec.api.decode_tracks if per_track else semcodec.decode
        fn(c, engine="fluidsynth", progress=lambda s, f: calls.append((s, f)))
        stages = list(dict.fromkeys(s for s, _ in calls))
        assert stages == ["engine", "render track 1/3", "render track 2/3", "render track 3/3",
                          "loudness"]
        overall = [progress_fraction(s, f, DECODE_STAGES) for s, f in calls]
        assert None not in overall and overall == sorted(overall)
        assert calls[-1] == ("loudness", 1.0)


def test_decode_options_object_and_keywords_agree():
    from semcodec.events import Score, Track

    c = semcodec.Container(duration=1.0, sample_rate=16000, n_samples=16000, channels=2,
                           score=Score(tracks=(Track("a", 0), Track("b", 0))))
    opts = semcodec.DecodeOptions(sample_rate=8000, tempo=2.0)
    audio, sr = semcodec.decode(c, opts)
    assert sr == 8000 and audio.shape == (4000, 2)  # stereo like the original, at half length
    mono, _ = semcodec.decode(c, opts, channels=1)  # a keyword overrides the options
    same, _ = semcodec.decode(c, sample_rate=8000, tempo=2.0, channels=1)
    assert mono.shape == same.shape == (4000,)
    mix, sr, tracks = semcodec.decode_tracks(c, opts)
    assert [name for name, _ in tracks] == ["a", "b"] and tracks[0][1].shape == mix.shape
    with pytest.raises(TypeError, match="decode_tracks"):
        semcodec.decode(c, per_track=True)
    with pytest.raises(UsageError, match="tempo"):
        semcodec.decode(c, opts, tempo=8.0)


def test_memory_error_names_the_cli_flag_only_in_the_cli(tmp_path):
    from click.testing import CliRunner

    from semcodec.cli import cli
    from semcodec.errors import OutputTooLargeError
    from semcodec.events import Note, Score, Track

    sr = 192000
    n = 24 * 3600 * sr
    c = semcodec.Container(duration=n / sr, sample_rate=sr, n_samples=n, loudness_lufs=-20.0,
                           score=Score(tracks=(Track("t", 0, notes=(Note(0.0, 1.0, 60, 80),)),)))
    with pytest.raises(OutputTooLargeError) as exc:
        semcodec.decode(c, engine="fluidsynth", max_duration_s=None)
    assert "sample rate" in str(exc.value) and "--sample-rate" not in str(exc.value)
    c.save(tmp_path / "huge.smc")
    r = CliRunner().invoke(cli, ["decode", str(tmp_path / "huge.smc"), str(tmp_path / "x.wav"),
                                 "--max-duration", "0"])
    assert r.exit_code == 2 and "(--sample-rate)" in r.output
    # the duration limit comes first by default; its flag is named by the CLI only
    with pytest.raises(semcodec.errors.OutputTooLongError) as exc:
        semcodec.decode(c, engine="fluidsynth")
    assert "--max-duration" not in str(exc.value)
    r = CliRunner().invoke(cli, ["decode", str(tmp_path / "huge.smc"), str(tmp_path / "x.wav")])
    assert r.exit_code == 2 and "--max-duration SECONDS" in r.output
    assert not (tmp_path / "x.wav").exists()


def test_split_tracks_are_named_by_their_family():
    from semcodec.api import _part_names
    from semcodec.events import Track

    split = [Track(name="track1"), Track(name="track2"), Track(name="track3"),
             Track(name="drums", is_drum=True)]
    assert _part_names(split, {0: 33, 1: 0, 2: 1}) == ["bass", "piano", "piano 2", "drums"]
    # a single track, and named stems, keep their names
    assert _part_names([Track(name="track1")], {0: 33}) == ["track1"]
    assert _part_names([Track(name="lead"), Track(name="track2")], {0: 0, 1: 33}) == \
        ["lead", "track2"]


@pytest.mark.parametrize("repair_changes", [False, True])
def test_residual_is_coded_against_the_repaired_decode(monkeypatch, repair_changes):
    from dataclasses import replace

    from semcodec.container import Container
    from semcodec.events import Note, Score, Track

    SR = 22050
    notes = (Note(0.1, 0.5, 60, 90),)
    c = Container(duration=1.0, sample_rate=SR, channels=1, n_samples=SR, loudness_lufs=-20.0,
                  score=Score(tracks=(Track(name="t").with_notes(notes),)))
    louder = replace(c, score=replace(c.score, tracks=(Track(name="t").with_notes(
        (Note(0.1, 0.5, 60, 120),)),)))
    coded: list = []

    def with_residual(cc, original, max_bytes, stop=None):
        coded.append(cc)
        return replace(cc, residual=b"r")

    out = _clear_and_code(monkeypatch, c,
                          clear_notes=lambda cc, original, on_candidate=None, **_: (
                              louder if repair_changes else cc),
                          residual=with_residual)
    assert out.residual == b"r"
    assert out.score == (louder if repair_changes else c).score
    assert coded[-1].score == out.score  # the residual of the final decode


def test_residual_is_coded_against_the_repaired_then_aligned_decode(monkeypatch):
    from dataclasses import replace

    from semcodec.container import Container
    from semcodec.events import Note, Score, Track

    SR = 22050
    c = Container(duration=1.0, sample_rate=SR, channels=1, n_samples=SR, loudness_lufs=-20.0,
                  score=Score(tracks=(Track(name="t").with_notes((Note(0.1, 0.5, 60, 90),)),)))
    louder = replace(c, score=replace(c.score, tracks=(Track(name="t").with_notes(
        (Note(0.1, 0.5, 60, 120),)),)))
    earlier = replace(louder, score=replace(louder.score, tracks=(Track(name="t").with_notes(
        (Note(0.05, 0.45, 60, 120),)),)))
    steps: list = []

    def aligned(cc, original, reference=None, **_):
        steps.append(("align", cc.score, reference, cc.residual))
        return cc if cc.residual else earlier

    def with_residual(cc, original, max_bytes, stop=None):
        if stop is None:  # the final residual (not the speculative one)
            steps.append(("residual", cc.score))
        return replace(cc, residual=b"r")

    out = _clear_and_code(monkeypatch, c,
                          clear_notes=lambda cc, original, on_candidate=None, **_: louder,
                          aligned_onsets=aligned,
                          residual=with_residual)
    # led before the residual, then again with it, against the unled tracks
    assert steps == [("align", louder.score, None, b""), ("residual", earlier.score),
                     ("align", earlier.score, louder.score.tracks, b"r")]
    assert out.score == earlier.score and out.residual == b"r"


@pytest.mark.parametrize("first_leads", [{}, {0: 0.02}, None])
def test_alignment_with_the_residual_only_when_the_first_pass_found_a_lag(monkeypatch,
                                                                          first_leads):
    from dataclasses import replace

    from semcodec.container import Container
    from semcodec.events import Note, Score, Track

    SR = 22050
    c = Container(duration=1.0, sample_rate=SR, channels=1, n_samples=SR, loudness_lufs=-20.0,
                  score=Score(tracks=(Track(name="t").with_notes((Note(0.1, 0.5, 60, 90),)),)))
    passes: list = []

    def aligned(cc, original, reference=None, on_leads=None, **_):
        passes.append(cc.residual)
        if on_leads is not None and first_leads is not None:  # None: the decode failed
            on_leads(first_leads)
        return cc

    out = _clear_and_code(monkeypatch, c,
                          clear_notes=lambda cc, original, **_: cc,
                          aligned_onsets=aligned,
                          residual=lambda cc, original, max_bytes, stop=None: replace(
                              cc, residual=b"r"))
    assert out.residual == b"r"
    # every track heard on time without the residual: not measured again with it
    assert passes == ([b""] if first_leads == {} else [b"", b"r"])


@pytest.mark.parametrize("repair_changes", [False, True])
def test_speculative_residual_is_cancelled_and_joined_when_the_repair_changes_the_file(
        monkeypatch, repair_changes):
    import threading
    from dataclasses import replace

    from semcodec.container import Container
    from semcodec.events import Note, Score, Track

    SR = 22050
    c = Container(duration=1.0, sample_rate=SR, channels=1, n_samples=SR, loudness_lufs=-20.0,
                  score=Score(tracks=(Track(name="t").with_notes((Note(0.1, 0.5, 60, 90),)),)))
    louder = replace(c, score=replace(c.score, tracks=(Track(name="t").with_notes(
        (Note(0.1, 0.5, 60, 120),)),)))
    decided = threading.Event()
    seen: dict = {}

    def with_residual(cc, original, max_bytes, stop=None):
        if stop is None:  # coded in the caller's thread, after the repair
            return replace(cc, residual=b"after")
        # the speculative one: works until it is cancelled (or the repair kept the file)
        until = stop if repair_changes else decided.is_set
        for _ in range(6000):  # 60 s at most: then the assertions below fail
            if until():
                break
            threading.Event().wait(0.01)
        seen["stopped"] = stop()
        seen["ended"] = True
        return cc if stop() else replace(cc, residual=b"early")

    def with_clear_notes(cc, original, on_candidate=None, **_):
        decided.set()
        return louder if repair_changes else cc

    out = _clear_and_code(monkeypatch, c, clear_notes=with_clear_notes, residual=with_residual)
    assert seen.get("ended")  # joined before the encode goes on, in both cases
    assert seen["stopped"] is repair_changes
    assert out.residual == (b"after" if repair_changes else b"early")
    assert out.score == (louder if repair_changes else c).score


@pytest.mark.parametrize("rounds", [1, 2])
def test_the_residual_of_the_repairs_candidate_is_coded_while_it_is_measured(monkeypatch,
                                                                               rounds):
    import threading
    from dataclasses import replace

    file = _one_note_file

    c, cands = file(90), [file(100), file(110)][:rounds]
    final = 100 + 10 * (rounds - 1)
    coded: list = []  # (velocity, speculative, cancelled when it ended)
    measured = threading.Event()
    lock = threading.Lock()

    def with_residual(cc, original, max_bytes, stop=None):
        v = cc.score.tracks[0].notes[0].velocity
        if stop is not None:  # speculative: the file the repair returns ends once it has
            # decided, the others only when they are cancelled
            for _ in range(6000):  # 60 s at most: then the assertions below fail
                if stop() or (measured.is_set() and v == final):
                    break
                threading.Event().wait(0.01)
        with lock:
            coded.append((v, stop is not None, stop is not None and stop()))
        return replace(cc, residual=bytes([v]))

    def with_clear_notes(cc, original, on_candidate=None, **_):
        assert on_candidate is not None
        for cand in cands:  # each round's first candidate, shown before it is measured
            on_candidate(replace(cand))  # an equal copy, as the repair builds it
        measured.set()
        return cands[-1]

    out = _clear_and_code(monkeypatch, c, clear_notes=with_clear_notes, residual=with_residual)
    assert out.score == cands[-1].score
    assert out.residual == bytes([cands[-1].score.tracks[0].notes[0].velocity])
    # coded once per file, all speculatively (none after the repair), all joined; only the
    # kept one ran to its end uncancelled
    assert sorted(v for v, _, _ in coded) == sorted([90] + [100, 110][:rounds])
    assert all(spec for _, spec, _ in coded)
    assert [v for v, _, cancelled in coded if not cancelled] == [final]


@pytest.mark.parametrize("has_drums", [False, True])
def test_a_short_input_is_transcribed_while_its_drums_are_looked_for(monkeypatch, has_drums):
    import threading

    from semcodec import api, drums
    from semcodec.events import Note, Track

    SR = 22050
    audio = (0.1 * np.sin(np.arange(2 * SR) * 0.05)).astype(np.float32)
    suppressed = audio * np.float32(0.5)
    started = threading.Event()
    calls: list = []  # (audio transcribed, on the main thread)

    def transcribe(x, sr, options=None, progress=None):
        calls.append((x, threading.current_thread() is threading.main_thread()))
        started.set()
        return (Note(0.1, 0.5, 60 if x is audio else 62, 90),)

    def find_drums(x, sr, opts):
        assert started.wait(60)  # the transcription runs meanwhile
        drum = Track(name="drums", is_drum=True).with_notes((Note(0.2, 0.3, 36, 100),))
        return (drum, ()) if has_drums else (None, ())

    seen: dict = {}

    def assemble(inp, loudness, tracks, audio_of, *rest):
        seen["tracks"] = tracks
        return "file"

    monkeypatch.setattr(api, "transcribe", transcribe)
    monkeypatch.setattr(api, "_drums", find_drums)
    monkeypatch.setattr(drums, "suppress_percussion", lambda x, sr: suppressed)
    monkeypatch.setattr(api, "_assemble", assemble)
    assert api.encode(audio, SR, options=api.EncodeOptions(tracks=1)) == "file"
    pitched = [t for t in seen["tracks"] if not t.is_drum]
    assert calls[0][0] is audio and not calls[0][1]  # the whole input, on a second thread
    if has_drums:  # then the audio without the drum hits, as before
        assert len(calls) == 2 and calls[1][0] is suppressed and calls[1][1]
        assert [n.pitch for n in pitched[0].notes] == [62]
    else:
        assert len(calls) == 1 and [n.pitch for n in pitched[0].notes] == [60]


@pytest.mark.parametrize("silent", [False, True])
def test_a_long_inputs_loudness_is_measured_while_its_drums_are_looked_for(monkeypatch, silent):
    import threading

    from semcodec import api
    from semcodec.events import Note, Track

    SR = 22050
    monkeypatch.setattr(api, "EARLY_TRANSCRIPTION_MAX_S", 1.0)  # 2 s: a "long" input here
    audio = (np.zeros(2 * SR) if silent
             else 0.1 * np.sin(np.arange(2 * SR) * 0.05)).astype(np.float32)
    measuring = threading.Event()
    measure = dsp.integrated_loudness
    where: list = []

    def loudness(x, sr):
        where.append(threading.current_thread() is threading.main_thread())
        measuring.set()
        return measure(x, sr)

    drum = Track(name="drums", is_drum=True).with_notes((Note(0.2, 0.3, 36, 100),))

    def find_drums(x, sr, opts):
        assert measuring.wait(60)  # the loudness is measured meanwhile
        return drum, ()

    seen: dict = {}

    def assemble(inp, loud, tracks, audio_of, *rest):
        seen.update(loudness=loud, tracks=tracks)
        return "file"

    monkeypatch.setattr(api.dsp, "integrated_loudness", loudness)
    monkeypatch.setattr(api, "_drums", find_drums)
    monkeypatch.setattr(api, "transcribe", lambda *a, **k: (Note(0.1, 0.5, 60, 90),))
    monkeypatch.setattr(api, "_assemble", assemble)
    assert api.encode(audio, SR, options=api.EncodeOptions(tracks=1)) == "file"
    assert where == [False]  # once, on the second thread
    assert seen["loudness"] == measure(audio, SR)
    if silent:  # nothing to encode: the drums found are dropped
        assert seen["loudness"] is None and seen["tracks"] == []
    else:
        assert drum in seen["tracks"]

    def broken(x, sr, opts):
        raise ValueError("detector failed")

    monkeypatch.setattr(api, "_drums", broken)
    if silent:  # a silent input is not searched for drums otherwise: the error is dropped
        assert api.encode(audio, SR) == "file" and seen["tracks"] == []
    else:
        with pytest.raises(ValueError, match="detector failed"):
            api.encode(audio, SR)


def test_the_fit_gets_the_instrument_classifiers_families_only_when_it_is_sure(monkeypatch):
    from semcodec import api, timbre
    from semcodec.events import Note, Score, Track
    from semcodec.instrument import Guess

    def guess(program: int, family_p: float) -> Guess:
        fam = np.full(16, (1.0 - family_p) / 15, np.float32)
        fam[program // 8] = family_p
        return Guess(program=program, family=program // 8, program_p=family_p,
                     family_p=family_p, program_proba=np.zeros(128, np.float32),
                     family_proba=fam, n_notes=10)

    monkeypatch.setattr(api, "_classify_instruments",
                        lambda inp, score: {0: guess(26, 0.96), 1: guess(65, 0.4)})
    seen: dict = {}

    def fit_timbres(audio, sr, score, **kw):
        seen.update(kw["priors"])
        return (), {}, {}

    monkeypatch.setattr(timbre, "fit_timbres", fit_timbres)
    notes = (Note(0.1, 0.5, 60, 90),)
    score = Score(tracks=(Track(name="a").with_notes(notes), Track(name="b").with_notes(notes)))
    inp = api.AudioInput(audio=np.zeros(22050, np.float32), sample_rate=22050, channels=1,
                         name="x")
    api._fit(inp, score, api.EncodeOptions(samples=False))
    assert seen == {0: (26, frozenset({3}))}  # the unsure guess (0.4) restricts nothing


def _forty_second_file():
    """(sample rate, duration s, notes, Container): 19 notes of one track over 40 s at 8 kHz."""
    from semcodec.container import Container
    from semcodec.events import Note, Score, Track

    sr, dur = 8000, 40.0
    notes = tuple(Note(0.5 + 2.0 * k, 1.0 + 2.0 * k, 60, 90) for k in range(19))
    return sr, dur, notes, Container(
        duration=dur, sample_rate=sr, channels=1, n_samples=int(dur * sr), loudness_lufs=-20.0,
        score=Score(tracks=(Track(name="t").with_notes(notes),)))


def test_onset_alignment_of_a_long_input_is_measured_on_its_first_span(monkeypatch):
    from semcodec import digest, encode_budget, roundtrip

    SR, dur, notes, c = _forty_second_file()
    monkeypatch.setattr(digest, "LONG_MEASURE_S", 20.0)
    monkeypatch.setattr(encode_budget, "REPAIR_SPAN_S", 10.0)
    seen: dict = {}

    def align(tracks, target, sr, render, reference=None, **_):
        seen.update(n=len(tracks[0].notes), seconds=len(target) / sr, ref=reference)
        return {0: 0.02}

    monkeypatch.setattr(roundtrip, "align_onsets", align)
    out = encode_budget._with_aligned_onsets(c, np.zeros(int(dur * SR), np.float32))
    assert seen["seconds"] == pytest.approx(10.0, abs=0.01) and seen["n"] == 5
    assert [n.onset for n in out.score.tracks[0].notes] == pytest.approx(
        [n.onset - 0.02 for n in notes])  # every note of the whole input is led


def test_an_input_over_the_whole_measure_limit_is_repaired_and_aligned_on_its_digest(
        monkeypatch):
    """Between MEASURE_WHOLE_MAX_S and digest.LONG_MEASURE_S: the repair (one round) and the
    first alignment measured on the digest's windows, the velocities the repair changes there
    and the leads applied to the whole file; the residual's alignment (the ``whole_max_s`` the
    encoder gives) on the first span; a shorter input measured whole."""
    from dataclasses import replace

    from semcodec import digest, encode_budget, roundtrip

    SR, dur, notes, c = _forty_second_file()
    monkeypatch.setattr(encode_budget, "MEASURE_WHOLE_MAX_S", 20.0)
    monkeypatch.setattr(encode_budget, "REPAIR_SPAN_S", 10.0)
    monkeypatch.setattr(digest, "DIGEST_WINDOW_S", 2.0)  # 6 windows of 2 s: 12 s
    assert digest.LONG_MEASURE_S >= dur
    seen: dict = {}

    def align(tracks, target, sr, render, reference=None, **_):
        seen.setdefault("seconds", []).append(len(target) / sr)
        seen.setdefault("notes", []).append(len(tracks[0].notes))
        return {0: 0.02}

    def repair(tracks, target, sr, render, max_rounds=roundtrip.MAX_ROUNDS, **_):
        seen.setdefault("repair", []).append((len(target) / sr, max_rounds))
        return tuple(replace(t, notes=tuple(replace(n, velocity=n.velocity + 10)
                                            for n in t.notes)) for t in tracks)

    monkeypatch.setattr(roundtrip, "align_onsets", align)
    monkeypatch.setattr(roundtrip, "repair", repair)
    x = np.zeros(int(dur * SR), np.float32)
    dg = digest.Digest(digest.windows(dur), SR)
    inside = {k for k, _ in dg.kept(notes)}
    assert 0 < len(inside) < len(notes)
    led = encode_budget._with_aligned_onsets(c, x)  # the first alignment: on the digest
    assert [n.onset for n in led.score.tracks[0].notes] == pytest.approx(
        [n.onset - 0.02 for n in notes])  # every note of the whole input is led
    encode_budget._with_aligned_onsets(c, x, whole_max_s=encode_budget.MEASURE_WHOLE_MAX_S)
    assert seen["seconds"] == pytest.approx([12.0, 10.0], abs=0.01)
    assert seen["notes"][0] == len(inside)
    out = encode_budget._with_clear_notes(c, x)
    assert [n.velocity for n in out.score.tracks[0].notes] == [
        100 if k in inside else 90 for k in range(len(notes))]
    assert [(n.onset, n.offset) for n in out.score.tracks[0].notes] == \
        [(n.onset, n.offset) for n in notes]
    short = replace(c, duration=15.0, n_samples=15 * SR)
    encode_budget._with_clear_notes(short, x[:15 * SR])
    assert seen["repair"] == [(pytest.approx(12.0, abs=0.01), encode_budget.LONG_REPAIR_ROUNDS),
                              (pytest.approx(15.0), roundtrip.MAX_ROUNDS)]


def test_a_digest_repair_raises_the_stacked_notes_outside_its_windows_alike(monkeypatch):
    """Between MEASURE_WHOLE_MAX_S and digest.LONG_MEASURE_S, when the digest's repair
    raises notes: the notes outside its windows stacked an octave over another are raised
    by RAISE_FACTOR too, the others (and every note when the repair changes nothing) kept."""
    from dataclasses import replace

    from semcodec import digest, encode_budget, roundtrip
    from semcodec.container import Container
    from semcodec.events import Note, Score, Track

    SR = 8000
    dur = 40.0
    low = tuple(Note(0.5 + 2.0 * k, 1.0 + 2.0 * k, 48, 80) for k in range(19))
    high = tuple(Note(0.5 + 2.0 * k, 1.0 + 2.0 * k, 60, 40) for k in range(19))
    lone = tuple(Note(1.5 + 2.0 * k, 2.0 + 2.0 * k, 67, 40) for k in range(19))
    c = Container(duration=dur, sample_rate=SR, channels=1, n_samples=int(dur * SR),
                  loudness_lufs=-20.0, score=Score(tracks=(
                      Track(name="low").with_notes(low), Track(name="high").with_notes(high),
                      Track(name="lone").with_notes(lone))))
    monkeypatch.setattr(encode_budget, "MEASURE_WHOLE_MAX_S", 20.0)
    monkeypatch.setattr(digest, "DIGEST_WINDOW_S", 2.0)
    x = np.zeros(int(dur * SR), np.float32)

    def raise_high(tracks, *_a, **_k):
        return roundtrip.scaled(tracks, {(1, k) for k in range(len(tracks[1].notes))},
                                roundtrip.RAISE_FACTOR)

    monkeypatch.setattr(roundtrip, "repair", raise_high)
    out = encode_budget._with_clear_notes(c, x)
    assert [n.velocity for n in out.score.tracks[1].notes] == [60] * len(high)
    assert out.score.tracks[0].notes == low and out.score.tracks[2].notes == lone
    monkeypatch.setattr(roundtrip, "repair", lambda tracks, *_a, **_k: tracks)
    assert encode_budget._with_clear_notes(c, x) is c
    short = replace(c, duration=15.0, n_samples=15 * SR)
    monkeypatch.setattr(roundtrip, "repair", raise_high)
    whole = encode_budget._with_clear_notes(short, x[:15 * SR])
    assert [n.velocity for n in whole.score.tracks[1].notes] == [60] * len(high)


def test_decode_stream_with_residual_and_estimated_gain_starts_without_a_render_pass(monkeypatch):
    """A long stream of a file with a residual starts at once: estimated gain, the residual in
    one pass (nothing spooled), close to the exact decode."""
    from semcodec import residual

    c = _with_random_residual(_made_container(seconds=8.0))
    monkeypatch.setattr(residual, "BLOCK_FRAMES", 100)
    exact = np.concatenate(list(semcodec.decode_stream(c, engine="neural", exact=True).blocks))

    def no_spool(*_a, **_k):
        raise AssertionError("an estimated-gain stream must not keep the raw mix")

    monkeypatch.setattr(decoder, "_Spool", no_spool)
    st = semcodec.decode_stream(c, engine="neural", exact=False)
    got = np.concatenate(list(st.blocks))
    assert not st.exact_gain and got.shape == exact.shape
    plain = np.concatenate(list(semcodec.decode_stream(c, engine="neural", exact=False,
                                                       residual=False).blocks))
    assert not np.allclose(got, plain)  # the residual is played
    rms = lambda y: float(np.sqrt(np.mean(y ** 2)))  # noqa: E731
    assert abs(20 * np.log10(rms(got) / rms(exact))) < 1.0  # dB: the estimated gain


@pytest.mark.parametrize("accepted", [False, True])
def test_a_speculative_residual_stops_as_soon_as_the_repair_rules_its_file_out(monkeypatch,
                                                                              accepted):
    import threading
    from dataclasses import replace

    file = _one_note_file

    c, cand = file(90), file(100)
    stopped = {90: threading.Event(), 100: threading.Event()}
    decided = threading.Event()

    def with_residual(cc, original, max_bytes, stop=None):
        v = cc.score.tracks[0].notes[0].velocity
        if stop is not None:  # speculative: works until cancelled or the repair returned
            for _ in range(6000):  # 60 s at most
                if stop():
                    stopped[v].set()
                    break
                if decided.is_set():
                    break
                threading.Event().wait(0.01)
        return replace(cc, residual=bytes([v]))

    ruled_out: dict = {}

    def with_clear_notes(cc, original, on_candidate=None, on_verdict=None, **_):
        on_candidate(replace(cand))
        on_verdict(replace(cand), accepted)  # measured: the repair goes on a while
        out = 100 if accepted else 90  # the file ruled out: the other one
        ruled_out["stopped"] = stopped[190 - out].wait(60)  # before the repair returns
        ruled_out["other"] = stopped[out].is_set()
        decided.set()
        return cand if accepted else cc

    out = _clear_and_code(monkeypatch, c,
                          clear_notes=with_clear_notes,
                          aligned_onsets=lambda cc, *a, **k: cc,
                          residual=with_residual)
    assert ruled_out == {"stopped": True, "other": False}
    assert out.score == (cand if accepted else c).score


@pytest.mark.parametrize("level", ["INFO", "WARNING"])
def test_the_instrument_guess_is_named_only_when_it_is_logged(monkeypatch, caplog, level):
    """The GM program's name (pretty_midi, ~0.2 s to import) is looked up for the log line
    only when that line is shown."""
    import logging

    from semcodec import api, instrument
    from semcodec.events import Note, Score, Track
    from semcodec.instrument import Guess

    fam = np.full(16, 0.01, np.float32)
    fam[3] = 0.85
    guess = Guess(program=26, family=3, program_p=0.85, family_p=0.85,
                  program_proba=np.zeros(128, np.float32), family_proba=fam, n_notes=10)
    named: list = []
    monkeypatch.setattr(instrument, "weights_available", lambda: True)
    monkeypatch.setattr(instrument, "classify_tracks",
                        lambda audio, sr, tracks: {k: guess for k in tracks})
    monkeypatch.setattr(instrument, "program_name",
                        lambda p: named.append(p) or "Electric Guitar (jazz)")
    caplog.set_level(getattr(logging, level), logger="semcodec.api")
    score = Score(tracks=(Track(name="a").with_notes((Note(0.1, 0.5, 60, 90),)),))
    inp = api.AudioInput(audio=np.zeros(22050, np.float32), sample_rate=22050, channels=1,
                         name="x")
    assert api._classify_instruments(inp, score) == {0: guess}
    assert named == ([26] if level == "INFO" else [])
    assert ("Electric Guitar (jazz)" in caplog.text) is (level == "INFO")


@pytest.mark.parametrize("accepted", [False, True])
def test_the_unrepaired_files_residual_waits_while_a_candidate_is_measured(monkeypatch,
                                                                           accepted):
    import threading
    from dataclasses import replace

    file = _one_note_file

    c, cand = file(90), file(100)
    checks: dict = {90: 0, 100: 0}
    seen: dict = {}

    def with_residual(cc, original, max_bytes, stop=None):
        v = cc.score.tracks[0].notes[0].velocity
        if stop is not None:
            for _ in range(200):  # checks as a residual's passes make them (2 s at most)
                if stop():
                    break
                checks[v] += 1
                threading.Event().wait(0.01)
        return replace(cc, residual=bytes([v]))

    def with_clear_notes(cc, original, on_candidate=None, on_verdict=None, **_):
        threading.Event().wait(0.05)  # the unrepaired decode measured: c's coding goes on
        seen["before"] = checks[90] > 0
        on_candidate(replace(cand))
        threading.Event().wait(0.05)  # c's coding reaches its next check and waits there
        held = checks[90]
        threading.Event().wait(0.2)  # the candidate measured: c's made no progress
        seen["held"] = checks[90] == held
        seen["candidate"] = checks[100] > 0
        on_verdict(replace(cand), accepted)
        return cand if accepted else cc

    out = _clear_and_code(monkeypatch, c,
                          clear_notes=with_clear_notes,
                          aligned_onsets=lambda cc, *a, **k: cc,
                          residual=with_residual)
    assert seen == {"before": True, "held": True, "candidate": True}
    assert out.score == (cand if accepted else c).score
    # the file returned keeps its own residual: c's went on after the refusal
    assert out.residual == bytes([100 if accepted else 90])
