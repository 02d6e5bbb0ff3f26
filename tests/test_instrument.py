"""Instrument recognition: the committed classifier, its weights check, its training recipe."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from semcodec import api, instrument_train
from semcodec import instrument as ins
from semcodec.errors import SynthError
from semcodec.events import Note

SR = 44100
TIMGM = "/usr/share/sounds/sf2/TimGM6mb.sf2"


def _phrase(pitches, step=0.45, dur=0.4):
    return [Note(0.2 + step * i, 0.2 + step * i + dur, p, 70 + 5 * (i % 5)) for i, p in enumerate(pitches)]


def _render(notes, program, soundfont=TIMGM, seconds=None):
    fluid = pytest.importorskip("semcodec.synth.fluid")
    seconds = seconds or notes[-1].offset + 1.0
    try:
        return fluid.render_notes(notes, program, SR, int(seconds * SR), soundfont=soundfont)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"fluidsynth or {soundfont} unavailable: {exc}")


@pytest.fixture(scope="module")
def model():
    if not ins.weights_available():
        pytest.fail("the committed instrument weights are missing (make train-instrument)")
    return ins.load_model()


def test_flute_and_bass_are_told_apart(model):
    flute = _phrase([72, 74, 76, 77, 79, 77, 76, 74, 72, 71])
    bass = _phrase([36, 38, 40, 41, 43, 41, 40, 38, 36, 35])
    g_flute = ins.classify_track(_render(flute, 73), SR, flute, model=model)
    g_bass = ins.classify_track(_render(bass, 33), SR, bass, model=model)
    assert ins.FAMILY_NAMES[g_flute.family] == "Pipe"
    assert ins.FAMILY_NAMES[g_bass.family] == "Bass"
    assert g_flute.family_proba.sum() == pytest.approx(1.0)
    assert 72 <= g_flute.program < 80 and 32 <= g_bass.program < 40


def test_tracks_of_one_mix_are_classified_as_one_by_one_with_one_pass_over_the_audio(
        model, monkeypatch):
    flute = _phrase([72, 74, 76, 77, 79, 77, 76, 74, 72, 71])
    bass = _phrase([36, 38, 40, 41, 43, 41, 40, 38, 36, 35], step=0.5)
    mix = _render(flute, 73) + _render(bass, 33, seconds=flute[-1].offset + 1.0)
    alone = {k: ins.classify_track(mix, SR, ns, model=model)
             for k, ns in ((3, flute), (5, bass))}
    stfts: list = []
    real = ins._stft
    monkeypatch.setattr(ins, "_stft", lambda *a: stfts.append(1) or real(*a))
    together = ins.classify_tracks(mix, SR, {3: flute, 5: bass, 7: []}, model=model)
    assert len(stfts) == 1 and sorted(together) == [3, 5]
    # the notes measured last in that very audio are not measured again (the track split's)
    again = ins.classify_tracks(mix, SR, {5: bass}, model=model)
    assert len(stfts) == 1 and np.array_equal(again[5].program_proba, alone[5].program_proba)
    ins.note_features(mix.copy(), SR, bass)  # another array: measured
    assert len(stfts) == 2
    for k, g in alone.items():
        assert g is not None and together[k].program == g.program
        assert np.array_equal(together[k].program_proba, g.program_proba)
        assert np.array_equal(together[k].family_proba, g.family_proba)


def test_features_have_one_row_per_note_and_are_finite():
    notes = _phrase([60, 64, 67])
    x = ins.note_features(_render(notes, 0), SR, notes)
    assert x.shape == (3, len(ins.feature_names()))
    assert np.isfinite(x).all()
    assert ins.note_features(np.zeros(SR, np.float32), SR, []).shape == (0, len(ins.feature_names()))


def test_weights_hash_is_verified(tmp_path):
    path = ins.find_weights()
    assert path is not None
    good = tmp_path / path.name
    shutil.copy(path, good)
    ins.load_model(good)  # a faithful copy loads
    data = bytearray(good.read_bytes())
    data[-5] ^= 0xFF
    good.write_bytes(bytes(data))
    with pytest.raises(SynthError, match="corrupt"):
        ins.load_model(good)
    renamed = tmp_path / "instrument.safetensors"
    shutil.copy(path, renamed)
    with pytest.raises(SynthError, match="name"):
        ins.load_model(renamed)


def _guess(family_p, pitches=None):
    pp = np.zeros(ins.N_PROGRAMS)
    for f, p in family_p.items():
        pp[f * 8:(f + 1) * 8] = p / 8.0
        pp[f * 8 + 1] += 0.01  # one program of the family stands out
    pp = pp / pp.sum()
    logp = np.log(np.maximum(pp, 1e-12))[None]
    if pitches is None:
        return ins.guess_from_log_proba(logp)
    return ins.guess_from_log_proba(np.repeat(logp, len(pitches), axis=0), np.array(pitches))


def test_a_low_register_tips_piano_or_bass_towards_bass():
    # the classifier's Slakh basses: Piano first, Bass second
    fams = {0: 0.4, 4: 0.2, 3: 0.1, 2: 0.1}
    assert _guess(fams).family == 0
    assert _guess(fams, [60, 62, 64, 55]).family == 0  # a piano's register
    low = _guess(fams, [36, 40, 43, 45, 52])  # below D3 in the main
    assert low.family == 4 and 32 <= low.program < 40
    # a family far likelier than Bass is not overturned by the register (a tuba, a cello)
    assert _guess({7: 0.8, 4: 0.1, 0: 0.1}, [36, 40, 43]).family == 7


def test_override_only_when_much_likelier():
    sure = _guess({4: 0.9, 3: 0.1})
    assert sure.family == 4 and sure.program == 33
    assert ins.overrides(sure, 16) and ins.overrides(sure, 27)  # organ (p 0), guitar (p 0.1)
    assert not ins.overrides(sure, 38)  # the same family
    close = _guess({0: 0.45, 3: 0.4, 2: 0.15})
    assert not ins.overrides(close, 25) and ins.overrides(close, 16)
    flat = _guess({f: 1.0 for f in range(14)})
    assert not ins.overrides(flat, 40)
    assert ins.overrides(sure, 120)  # a non-class program (p 0)


def test_bass_register_lets_bass_win_between_fit_and_classifier():
    organ = _guess({2: 0.6, 0: 0.3, 4: 0.1})  # a split-off bass line heard as an organ
    assert ins.overrides(organ, 33)  # without the register: organ is 6x as likely
    assert not ins.overrides(organ, 33, median_pitch=50)  # a bass fitted in a bass's register
    assert ins.overrides(organ, 33, median_pitch=ins.BASS_REGISTER_PITCH + 5)  # a tenor line
    bass = _guess({4: 0.45, 0: 0.35, 3: 0.2})  # Bass first, but not twice Piano
    assert not ins.overrides(bass, 4)
    assert ins.overrides(bass, 4, median_pitch=40) and bass.program // 8 == 4
    assert not ins.overrides(bass, 4, median_pitch=64)  # a piano's register: the fit stands
    assert ins.overrides(organ, 40, median_pitch=40)  # Bass named by neither: the ratio rule
    assert not ins.overrides(_guess({2: 0.5, 0: 0.4, 4: 0.1}), 0, median_pitch=40)


def test_training_recipe_runs_small_and_is_deterministic(tmp_path):
    pytest.importorskip("fluidsynth")
    args = ["--programs", "2", "--passes", "1", "--views", "1", "--steps", "30",
            "--soundfont", TIMGM]
    digests = []
    for run in ("a", "b"):
        out = tmp_path / run
        assert instrument_train.main([*args, "--out", str(out)]) == 0
        cfg = json.loads((out / ins.CONFIG_NAME).read_text())
        assert (out / cfg["weights_file"]).is_file()
        assert cfg["seed"] == 1234 and cfg["soundfonts"] == ["TimGM6mb.sf2"]
        model = ins.load_model(ins.find_weights(out))
        assert model.w2.shape[1] == ins.N_PROGRAMS
        digests.append(cfg["sha256_12"])
    assert digests[0] == digests[1]
    out = tmp_path / "mixed"
    assert instrument_train.main([*args, "--mix-views", "1", "--out", str(out)]) == 0
    cfg = json.loads((out / ins.CONFIG_NAME).read_text())
    assert cfg["mix_views"] == 1 and "--mix-views 1" in cfg["command"]
    assert cfg["n_notes"] == 2 * json.loads((tmp_path / "a" / ins.CONFIG_NAME).read_text())["n_notes"]


def test_mixture_augmentation_adds_other_families_at_bounded_levels():
    rng = np.random.default_rng(0)
    n = 4000
    seg = rng.standard_normal(n).astype(np.float32)
    others = [rng.standard_normal(n + 3).astype(np.float32) * s for s in (1.0, 0.3, 2.0, 0.5)]
    programs = [1, 33, 40, 2]  # 1 and 2 are pianos, as the target (program 0)
    lo, hi = instrument_train.MIX_LEVEL_DB
    seen = set()
    for seed in range(20):
        y = instrument_train.mix_in(np.random.default_rng(seed), seg, others, programs, 0)
        again = instrument_train.mix_in(np.random.default_rng(seed), seg, others, programs, 0)
        assert y.shape == seg.shape and np.array_equal(y, again)
        coef, *_ = np.linalg.lstsq(np.stack([o[:n] for o in others], axis=1), y - seg, rcond=None)
        assert abs(coef[0]) < 1e-3 and abs(coef[3]) < 1e-3  # never the target's own family
        for j in (1, 2):
            if abs(coef[j]) > 1e-3:
                seen.add(j)
                level = 20 * np.log10(abs(coef[j]) * np.std(others[j][:n]) / np.std(seg))
                assert lo - 0.5 <= level <= hi + 0.5
    assert seen == {1, 2}
    alone = instrument_train.mix_in(rng, seg, others[:1], programs[:1], 0)
    assert np.array_equal(alone, seg)  # nothing of another family to mix in


def test_encode_stores_the_classified_program():
    notes = _phrase([36, 38, 40, 41, 43, 41, 40, 38, 36, 35, 33, 36], step=0.35, dur=0.3)
    audio = _render(notes, 33, soundfont="/usr/share/sounds/sf2/FluidR3_GM.sf2")
    c = api.encode(audio, SR, options=api.EncodeOptions(fit_timbre=False, samples=True, tracks=1))
    tracks = [t for t in c.score.tracks if not t.is_drum]
    assert tracks and 32 <= tracks[0].program < 40


def test_stored_program_rule():
    from semcodec.events import Timbre

    fitted = tuple(Timbre(track=i, embedding=(0.0,), gain_db=0.0, room=()) for i in (0, 1, 2, 3))
    guesses = {0: _guess({4: 0.9, 3: 0.1}), 1: _guess({4: 0.9, 3: 0.1}),
               2: _guess({3: 0.45, 0: 0.4, 2: 0.15}), 3: _guess({f: 1.0 for f in range(14)}),
               4: _guess({9: 0.9, 4: 0.1})}
    fit = {0: 16, 1: 16, 2: 1, 3: 0, 4: 0}
    out = api._instrument_programs(fit, guesses, fitted, {1: ("fluidsynth", 0.0)})
    assert out[0] == 33  # the classifier's family is far likelier than the fit's: its program
    assert out[1] == 16  # played by fluidsynth: the engine choice was made with the fit's program
    assert out[2] == 1  # the fit's family is nearly as likely: kept
    assert out[3] == 0  # not confident: the fit's
    assert out[4] == 73  # nothing fitted: the classifier's
