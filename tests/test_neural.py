"""Neural (DDSP) engine: weights integrity, gradients, determinism, timing edits, clicks."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from semcodec.errors import SynthError  # noqa: E402
from semcodec.events import BendPoint, Note, Score, Timbre, Track  # noqa: E402
from semcodec.synth import neural  # noqa: E402

SR = 22050

pytestmark = pytest.mark.skipif(not neural.weights_available(), reason="no neural weights")


@pytest.fixture(scope="module")
def engine():
    return neural.NeuralEngine(device="cpu")


def _score(notes, program=0, is_drum=False):
    return Score(tracks=(Track(name="t", program=program, is_drum=is_drum).with_notes(notes),))


def _melody(t0=0.1, step=0.25, n=6, pitch=60):
    return [Note(t0 + i * step, t0 + i * step + 0.2, pitch + (i % 3) * 2, 90) for i in range(n)]


def test_weights_hash_verified_and_corruption_detected(tmp_path):
    path = neural.find_weights()
    neural.verify_weights(path)  # committed weights: name matches content
    bad = tmp_path / path.name
    shutil.copy(path, bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(SynthError):
        neural.load_model(bad)
    misnamed = tmp_path / "weights.safetensors"
    shutil.copy(path, misnamed)
    with pytest.raises(SynthError):
        neural.verify_weights(misnamed)


def test_device_cuda_unavailable_raises():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(SynthError):
        neural.NeuralEngine(device="cuda")


def test_cuda_unavailable_is_one_clean_error_naming_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(SynthError, match="cuda") as exc:
        neural.NeuralEngine(device="cuda")
    assert "\n" not in str(exc.value)


def test_auto_and_cpu_run_numpy_and_torch_backend_keeps_tensors_on_its_device(monkeypatch):
    from semcodec.synth import ddsp

    assert neural.NeuralEngine(device="auto").backend == "numpy"
    eng = neural.NeuralEngine(device="cpu", backend="torch")
    assert eng.backend == "torch" and eng.device == "cpu"
    seen = []
    real_noise, real_forward = ddsp.noise_from_bands, ddsp.DDSPNet.forward

    def noise(bands, *a, **k):
        seen.append(("noise", bands.device))
        return real_noise(bands, *a, **k)

    def forward(self, feats, emb):
        seen.append(("model", feats.device))
        seen.append(("weights", next(self.parameters()).device))
        return real_forward(self, feats, emb)

    monkeypatch.setattr(ddsp, "noise_from_bands", noise)
    monkeypatch.setattr(ddsp.DDSPNet, "forward", forward)
    y = eng.render(_score(_melody(n=3)), SR, SR)
    assert y.shape == (SR,) and np.abs(y).max() > 0
    assert {k for k, _ in seen} == {"noise", "model", "weights"}
    assert all(d == torch.device("cpu") for _, d in seen)


def _note_batch(notes):
    """The ``ddsp.NoteBatch`` of ``notes`` in a 0.5-s clip (no bends, 0.1-s tails)."""
    from semcodec.synth import ddsp

    return ddsp.NoteBatch([n.onset for n in notes], [n.offset for n in notes],
                          [n.pitch for n in notes], [n.velocity for n in notes],
                          [() for _ in notes], 0.5, tail_s=0.1)


def test_gradients_reach_embedding():
    from semcodec.synth import ddsp

    model = neural.load_model()
    notes = _melody(t0=0.02, step=0.1, n=3)
    nb = _note_batch(notes)
    emb = model.embedding.weight[0].detach().clone().requires_grad_(True)
    room = model.room.weight[0].detach().clone()
    y = ddsp.render_groups(model, nb, np.zeros(3, np.int64), emb[None], room[None], SR // 2)
    target = torch.randn(1, SR // 2) * 0.01
    loss = ddsp.mrstft_loss(y, target)
    loss.backward()
    assert emb.grad is not None and float(emb.grad.abs().sum()) > 0


def test_harmonic_cache_gives_the_same_renderings_and_gradients():
    from semcodec.synth import ddsp

    model = neural.load_model()
    notes = _melody(t0=0.02, step=0.1, n=4)
    nb = _note_batch(notes)
    n = SR // 2
    target = torch.randn(1, n) * 0.01
    grp = np.zeros(len(notes), np.int64)
    cache: dict = {}

    def step(program: int, cached: bool):
        emb = model.embedding.weight[program].detach().clone().requires_grad_(True)
        room = model.room.weight[program].detach().clone()
        y = ddsp.render_groups(model, nb, grp, emb[None], room[None], n, note_chunk=3,
                               harmonic_cache=cache if cached else None)
        ddsp.mrstft_loss(y, target).backward()
        return y.detach(), emb.grad

    for program in (0, 40):  # the cache made on the first call serves the second
        y0, g0 = step(program, cached=False)
        y1, g1 = step(program, cached=True)
        assert torch.equal(y0, y1) and torch.equal(g0, g1)
    assert len(cache) == 2 and all("basis" in v for v in cache.values())  # 2 chunks of notes


def test_deterministic_length_finite(engine):
    score = _score(_melody())
    n = int(2.3 * SR) + 7
    a = engine.render(score, SR, n)
    b = engine.render(score, SR, n)
    assert a.dtype == np.float32 and a.shape == (n,)
    assert np.all(np.isfinite(a))
    assert np.array_equal(a, b)
    assert np.abs(a).max() > 1e-4


def test_output_rate_44k_and_silent_drums(engine):
    y = engine.render(_score(_melody(n=2)), 44100, 44100)
    assert y.shape == (44100,) and np.all(np.isfinite(y))
    d = engine.render(_score(_melody(n=2), is_drum=True), 44100, 1000)
    assert d.shape == (1000,)


def test_no_clicks_at_note_boundaries(engine):
    notes = [Note(0.1, 0.4, 60, 100), Note(0.4, 0.7, 67, 100),
             Note(0.7, 0.75, 72, 100, (BendPoint(0.02, 1.0),))]
    y = engine.render(_score(notes), SR, SR)
    peak = np.abs(y).max()
    jumps = np.abs(np.diff(y))
    # A click is a step at a note boundary larger than anything the waveform itself does: the
    # largest sample-to-sample step within 3 ms of an onset/offset stays below 1.5x the largest
    # step elsewhere while notes sound (a bright timbre has sharp edges every period).
    near = np.zeros(jumps.shape, bool)
    for n in notes:
        for t in (n.onset, n.offset):
            near[max(0, int((t - 0.003) * SR)):int((t + 0.003) * SR)] = True
    sounding = np.zeros(jumps.shape, bool)
    sounding[int(0.1 * SR):int(0.75 * SR)] = True
    assert jumps[near].max() < 1.5 * jumps[sounding & ~near].max() + 1e-6
    # the release tail fades out: no step at the very end of the rendering
    assert jumps[-int(0.01 * SR):].max() < 0.05 * peak + 1e-6
    # well before the onset (noise frames start up to one STFT window early) it is silent
    assert np.abs(y[: int(0.07 * SR)]).max() < 1e-3 * max(peak, 1e-9) + 1e-6


def _f0_hz(y, sr):
    librosa = pytest.importorskip("librosa")
    f0 = librosa.yin(y.astype(np.float64), fmin=60, fmax=1500, sr=sr, frame_length=2048)
    return float(np.median(f0))


def test_transpose_shifts_pitch(engine):
    score = _score([Note(0.05, 0.95, 57, 100)], program=73)
    y0 = engine.render(score, SR, SR)
    y1 = engine.render(score, SR, SR, transpose=12)
    y2 = engine.render(score, SR, SR, transpose=-5)
    f0 = _f0_hz(y0[2000:18000], SR)
    assert abs(12 * np.log2(f0 / 220.0)) < 0.5
    assert abs(12 * np.log2(_f0_hz(y1[2000:18000], SR) / f0) - 12) < 0.5
    assert abs(12 * np.log2(_f0_hz(y2[2000:18000], SR) / f0) + 5) < 0.5


def test_tempo_halves_times(engine):
    score = _score([Note(0.8, 1.2, 60, 100)])
    y1 = engine.render(score, SR, 2 * SR)
    y2 = engine.render(score, SR, 2 * SR, tempo=2.0)

    def first(y):
        return np.argmax(np.abs(y) > 0.05 * np.abs(y).max()) / SR

    assert abs(first(y1) - 0.8) < 0.02
    assert abs(first(y2) - 0.4) < 0.02


def test_program_override_and_timbre(engine):
    score = _score(_melody(n=3), program=0)
    model = neural.load_model()
    emb = tuple(float(v) for v in model.embedding.weight[40].detach())
    room = tuple(float(v) for v in model.room.weight[40].detach())
    tb = (Timbre(track=0, embedding=emb, gain_db=0.0, room=room),)
    a = engine.render(score, SR, SR, timbres=tb)
    b = engine.render(score, SR, SR, programs={0: 40})
    c = engine.render(score, SR, SR)
    assert np.allclose(a, b, atol=1e-5)  # timbre = program 40's embedding
    assert not np.allclose(a, c, atol=1e-5)
    # with an override, the fitted embedding is ignored (fitted room and gain are kept)
    d = engine.render(score, SR, SR, timbres=tb, programs={0: 0})
    e = engine.render(score, SR, SR, timbres=(Timbre(track=0, embedding=(), room=room),))
    assert np.allclose(d, e, atol=1e-5)
    assert not np.allclose(d, a, atol=1e-5)


def test_files_decode_with_the_model_their_timbres_were_fitted_to(monkeypatch, caplog):
    """A file that names no neural model (format < 1.6) decodes with the legacy model exactly
    as a semcodec whose only model is the legacy one did; one naming another model differs."""
    from dataclasses import replace

    from semcodec import decoder
    from semcodec.container import SmcFile
    from semcodec.synth import weights

    legacy = weights.weights_for_model(None)
    assert legacy is not None and legacy.name == f"neural-{weights.LEGACY_NEURAL_MODEL}.safetensors"
    emb = tuple(float(v) for v in 0.2 * np.sin(np.arange(24)))
    c = SmcFile(duration=2.0, sample_rate=SR, channels=1, n_samples=2 * SR, loudness_lufs=-20.0,
                score=_score(_melody(), program=40),
                timbres=(Timbre(track=0, embedding=emb, gain_db=-1.0, room=(-0.5, -2.0, 0.0)),))
    old = SmcFile.from_bytes(c.to_bytes())
    assert old.neural_model == ""
    decoded, _ = decoder.decode(old, engine="neural")
    monkeypatch.setenv(weights.NEURAL_WEIGHTS_ENV, str(legacy))  # a semcodec with only that model
    before, _ = decoder.decode(old, engine="neural")
    monkeypatch.delenv(weights.NEURAL_WEIGHTS_ENV)
    assert np.array_equal(decoded, before)
    current = weights.current_model()
    if current == weights.LEGACY_NEURAL_MODEL:
        return  # one model only: nothing else to tell apart
    new = SmcFile.from_bytes(replace(c, neural_model=current).to_bytes())
    assert new.neural_model == current
    assert not np.allclose(decoder.decode(new, engine="neural")[0], decoded, atol=1e-4)
    # a model this installation lacks: the current one, with a warning (no failure)
    with caplog.at_level("WARNING", logger="semcodec.decoder"):
        unknown, _ = decoder.decode(replace(c, neural_model="0" * 12), engine="neural")
    assert unknown.shape == decoded.shape and "000000000000 of this file not found" in caplog.text


def test_a_track_rendered_again_comes_from_the_memo_with_the_same_samples(monkeypatch):
    neural._RENDER_MEMO.clear()
    sr, n = 22050, 22050
    score = _score(_melody())
    made: list = []
    real = neural.TrackRenderer
    monkeypatch.setattr(neural, "TrackRenderer", lambda *a, **k: made.append(1) or real(*a, **k))
    first = neural.NeuralEngine().render_track(score, 0, sr, n)
    again = neural.NeuralEngine().render_track(score, 0, sr, n)  # another engine, same weights
    assert len(made) == 1 and np.array_equal(first, again) and again is not first
    again[:] = 0.0  # the caller's copy: the kept render is not changed
    assert np.array_equal(neural.NeuralEngine().render_track(score, 0, sr, n), first)
    # anything the render depends on makes a new one: a note's velocity, the timbre, the length
    louder = _score([Note(nt.onset, nt.offset, nt.pitch, 127) for nt in _melody()])
    eng = neural.NeuralEngine()
    eng.render_track(louder, 0, sr, n)
    eng.render_track(score, 0, sr, n, timbres=(Timbre(track=0, embedding=(), gain_db=3.0),))
    eng.render_track(score, 0, sr, n + 1)
    assert len(made) == 4
    neural._RENDER_MEMO.clear()


def test_keep_renders_keeps_long_tracks_within_its_bytes_then_cuts_back(monkeypatch):
    neural._RENDER_MEMO.clear()
    sr = 8000
    monkeypatch.setattr(neural, "RENDER_MEMO_MAX_SAMPLES", 4000)  # "short": 0.5 s here
    long_n = 2 * sr
    monkeypatch.setattr(neural, "RENDER_MEMO_KEEP_BYTES", 3 * long_n * 4)  # three long renders
    made: list = []
    real = neural.TrackRenderer
    monkeypatch.setattr(neural, "TrackRenderer", lambda *a, **k: made.append(1) or real(*a, **k))
    eng = neural.NeuralEngine()
    scores = [_score(_melody(pitch=p)) for p in (60, 62, 64, 65)]
    eng.render_track(scores[0], 0, sr, long_n)
    eng.render_track(scores[0], 0, sr, long_n)
    assert len(made) == 2  # a long track is not kept outside keep_renders
    with neural.keep_renders():
        first = [eng.render_track(s, 0, sr, long_n) for s in scores[:3]]
        again = [eng.render_track(s, 0, sr, long_n) for s in scores[:3]]
        assert len(made) == 5 and all(np.array_equal(a, b) for a, b in zip(first, again))
        eng.render_track(scores[0], 0, sr, long_n)  # the latest used: kept ...
        eng.render_track(scores[3], 0, sr, long_n)  # ... when a fourth pushes one out
        assert len(made) == 6
        eng.render_track(scores[0], 0, sr, long_n)
        assert len(made) == 6
        eng.render_track(scores[1], 0, sr, long_n)  # the least recently used went
        assert len(made) == 7
        assert sum(e[2].nbytes for e in neural._RENDER_MEMO) <= neural.RENDER_MEMO_KEEP_BYTES
    # outside again: nothing over the usual length stays
    assert all(e[2].shape[0] <= 4000 for e in neural._RENDER_MEMO)
    neural._RENDER_MEMO.clear()
