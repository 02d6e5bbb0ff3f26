"""Timbre fitting (analysis by synthesis) and Opus sample extraction."""

from __future__ import annotations

import numpy as np
import pytest

from semcodec.events import Note, Sample, Score, Track
from semcodec.timbre import decode_sample, extract_samples, fit_timbres

SR = 44100


def _score(program=0):
    notes = [Note(0.1 + 0.4 * i, 0.1 + 0.4 * i + 0.3, 55 + 2 * (i % 4), 90) for i in range(5)]
    return Score(tracks=(Track(name="t", program=program).with_notes(notes),))


def _fluid(score, program, seconds=2.2):
    fluid = pytest.importorskip("semcodec.synth.fluid")
    try:
        return fluid.render_notes(score.tracks[0].notes, program, SR, int(seconds * SR),
                                  soundfont="/usr/share/sounds/sf2/FluidR3_GM.sf2")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"fluidsynth unavailable: {exc}")


def test_extract_and_decode_samples_round_trip():
    score = _score()
    rng = np.random.default_rng(0)
    t = np.arange(int(2.5 * SR)) / SR
    audio = (0.3 * np.sin(2 * np.pi * 196 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    samples = extract_samples(audio, SR, score, max_total_s=3.0)
    assert samples
    assert sum(s.duration for s in samples if s.track == 0) <= 3.0 + 1e-6
    for s in samples:
        assert isinstance(s, Sample) and s.codec == "opus"
        y, rate = decode_sample(s)
        assert rate == s.sample_rate
        assert y.dtype == np.float32 and y.ndim == 1
        assert abs(len(y) / rate - s.duration) < 0.05
        assert np.abs(y).max() > 0.05
    total_bytes = sum(len(s.data) for s in samples)
    assert total_bytes < 4000


def test_no_samples_for_drums_or_empty():
    score = Score(tracks=(Track(name="d", is_drum=True, notes=(Note(0.1, 0.2, 36, 100),)),))
    assert extract_samples(np.zeros(SR, np.float32), SR, score) == ()


def test_fit_lowers_loss_against_start():
    torch = pytest.importorskip("torch")
    from semcodec.synth import ddsp, neural

    if not neural.weights_available():
        pytest.skip("no neural weights")
    program = 40  # violin
    score = _score(program=0)  # the transcriber does not know the program
    audio = _fluid(score, program)
    # the default, deterministic fit (a fixed number of steps): a wall-clock budget would make
    # the test depend on the machine's load (under a load of 16 on 2 cores, 8 s ran no step)
    timbres, programs, _ = fit_timbres(audio, SR, score)
    assert len(timbres) == 1 and timbres[0].track == 0
    assert 0 <= programs[0] <= 127
    tb = timbres[0]
    assert len(tb.embedding) == ddsp.EMB_DIM and np.all(np.isfinite(tb.embedding))

    # the fitted timbre sounds closer to the original than the start (the chosen program)
    model = neural.load_model()
    from semcodec.synth import dsp

    x = torch.from_numpy(dsp.resample(audio, SR, ddsp.SR_INT))[None]
    notes = score.tracks[0].notes
    nb = ddsp.NoteBatch([n.onset for n in notes], [n.offset for n in notes],
                        [n.pitch for n in notes], [n.velocity for n in notes],
                        [() for _ in notes], x.shape[1] / ddsp.SR_INT)
    grp = np.zeros(len(notes), np.int64)

    def loss_of(emb, room, gain_db):
        with torch.no_grad():
            y = ddsp.render_groups(model, nb, grp, emb[None], room[None], x.shape[1])
            return float(ddsp.mrstft_loss(y * 10 ** (gain_db / 20), x))

    p = programs[0]
    start = loss_of(model.embedding.weight[p], model.room.weight[p], tb.gain_db)
    fitted = loss_of(torch.tensor(tb.embedding), torch.tensor(tb.room), tb.gain_db)
    assert fitted < start


def test_written_out_adam_matches_torch_adam():
    """timbre._Adam takes the same steps as torch.optim.Adam (whose constructor imports
    torch._dynamo, seconds per process): the same numbers after a few steps, bit for bit."""
    torch = pytest.importorskip("torch")
    from semcodec.timbre import _Adam

    target = torch.linspace(-1.0, 2.0, 7)
    a = torch.zeros(7, requires_grad=True)
    g = torch.tensor(0.5, requires_grad=True)
    b = a.detach().clone().requires_grad_(True)
    h = g.detach().clone().requires_grad_(True)
    mine = _Adam([(a, 0.05), (g, 0.3)])
    ref = torch.optim.Adam([{"params": [b], "lr": 0.05}, {"params": [h], "lr": 0.3}])
    for _ in range(5):
        mine.step(((a * g - target) ** 2).sum())
        ref.zero_grad()
        ((b * h - target) ** 2).sum().backward()
        ref.step()
    assert torch.equal(a, b) and torch.equal(g, h)
    assert not torch.equal(a, torch.zeros(7))


def test_fit_on_threads_equals_one_thread_and_spent_budget_still_fits(monkeypatch):
    """Program candidates rendered on 2 threads give the same timbre, program and engine as on
    one; a budget spent before the fit starts still returns a timbre (the first candidate)."""
    pytest.importorskip("torch")
    from semcodec import timbre
    from semcodec.synth import neural

    if not neural.weights_available():
        pytest.skip("no neural weights")
    score = _score(program=0)
    audio = _fluid(score, 40)
    results = []
    for workers in (1, 2):
        monkeypatch.setattr(timbre, "_n_workers", lambda w=workers: w)
        results.append(fit_timbres(audio, SR, score))
    assert results[0] == results[1]
    timbres, programs, _ = fit_timbres(audio, SR, score, budget_s=0.0)
    assert len(timbres) == 1 and np.all(np.isfinite(timbres[0].embedding))
    # the first candidate (the proxy's closest program), a pitched one
    assert 0 <= programs[0] < timbre.PITCHED_PROGRAMS_END


def test_a_lone_track_refines_on_two_torch_threads_the_tracks_of_a_mix_on_one(monkeypatch):
    """Step 3b of a track fitted alone runs on LONE_REFINE_THREADS torch threads whatever the
    machine's cores (the same bytes anywhere), those of a mix's tracks on one each; the
    caller's thread count is restored."""
    torch = pytest.importorskip("torch")
    from semcodec import timbre
    from semcodec.synth import neural

    if not neural.weights_available():
        pytest.skip("no neural weights")
    seen: list[int] = []
    real = timbre._refine_on_render

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(timbre, "_refine_on_render", spy)
    monkeypatch.setattr(timbre, "_n_workers", lambda: 1)
    monkeypatch.delenv(neural.THREADS_ENV, raising=False)
    settings = timbre.FitSettings(det_steps=1)
    score = _score(program=0)
    audio = _fluid(score, 40)
    before = torch.get_num_threads()
    fit_timbres(audio, SR, score, settings=settings)
    assert seen == [timbre.LONE_REFINE_THREADS] and timbre.LONE_REFINE_THREADS >= 2
    assert torch.get_num_threads() == before
    seen.clear()
    other = Track(name="u", program=0).with_notes(
        [Note(0.3 + 0.4 * i, 0.5 + 0.4 * i, 67, 80) for i in range(4)])
    fit_timbres(audio, SR, Score(tracks=(score.tracks[0], other)), settings=settings)
    assert seen == [1, 1]


def test_engine_losses_scored_later_are_scored_on_the_thread_that_asks(monkeypatch):
    """The fluidsynth side of the engine comparison is rendered on its own thread and scored
    (torch sums, whose bits depend on the thread count) on the thread that asks for it; the
    same numbers as scored at once."""
    import threading

    torch = pytest.importorskip("torch")
    pytest.importorskip("semcodec.synth.fluid")
    from semcodec import timbre
    from semcodec.synth import ddsp

    score = _score(program=0)
    tgt = torch.from_numpy(np.random.default_rng(1).standard_normal(
        (2, int(timbre.FIT_WINDOW_S * ddsp.SR_INT))).astype(np.float32) * 0.1)
    starts = [0.0, 0.8]
    try:
        at_once = timbre._engine_losses(score, 0, starts, None, 0, tgt, engines=("fluidsynth",))
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"fluidsynth unavailable: {exc}")
    if at_once is None:
        pytest.skip("fluidsynth rendered nothing")
    threads: list = []
    real = ddsp.mrstft_loss
    monkeypatch.setattr(ddsp, "mrstft_loss",
                        lambda *a, **k: threads.append(threading.current_thread()) or real(*a, **k))
    box: list = []
    t = threading.Thread(target=lambda: box.append(timbre._engine_losses(
        score, 0, starts, None, 0, tgt, engines=("fluidsynth",), score_later=True)))
    t.start()
    t.join()
    assert threads == []  # rendered there, not scored
    assert box[0]() == at_once
    assert threads == [threading.current_thread()]


def test_program_candidates_follow_the_instrument_classifier():
    import math
    from types import SimpleNamespace

    torch = pytest.importorskip("torch")
    from semcodec import timbre

    weights = torch.arange(128, dtype=torch.float32)[:, None].repeat(1, 4)
    model = SimpleNamespace(embedding=SimpleNamespace(weight=weights),
                            room=SimpleNamespace(weight=weights))
    loss_of = {26: 1.0, 33: 0.5}  # the bass (family 4) would render closest

    render = SimpleNamespace(evaluate=lambda emb, room: (loss_of.get(int(emb[0]), 3.0), 0.0))
    proxy = SimpleNamespace(ok=False)  # no shortlist from the proxy: programs 0, 1, 2
    ex = SimpleNamespace(ti=0)
    track = Track(name="t", program=0)
    settings = timbre.FitSettings()
    cand, program, _ = timbre._select_program(model, ex, render, track, proxy, math.inf,
                                              settings, prior=(26, frozenset({3})))
    assert cand == [0, 1, 2, 26, 24, 25, 29] and program == 26  # guitars only
    cand, program, _ = timbre._select_program(model, ex, render, track, proxy, math.inf,
                                              settings)
    assert set(timbre.COMMON_PROGRAMS) <= set(cand) and program == 33  # no prior: all


def test_the_deterministic_fit_skips_the_proxy_refinement(monkeypatch):
    """Step 3a (the embedding refined on the proxy) runs with a budget only: in the
    deterministic fit its result never rendered closer on the bench clips, so it is not done."""
    pytest.importorskip("torch")
    from semcodec import timbre
    from semcodec.synth import neural

    if not neural.weights_available():
        pytest.skip("no neural weights")
    calls: list = []
    refine = timbre._refine_on_proxy

    def counted(*args, **kwargs):
        calls.append(args[4])  # n_steps
        return refine(*args, **kwargs)

    monkeypatch.setattr(timbre, "_refine_on_proxy", counted)
    score = _score(program=0)
    audio = _fluid(score, 40)
    timbres, _, _ = fit_timbres(audio, SR, score)
    assert len(timbres) == 1 and calls == []
    fit_timbres(audio, SR, score, budget_s=60.0)
    assert calls == [timbre.PROXY_STEPS]  # with a budget: still done
