"""Training recipe of the neural synthesizer (synth/train.py) and the choice of weights files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from semcodec.errors import SynthError
from semcodec.synth import train, weights
from semcodec.synth.train import augment, available_soundfonts, generate_data

FLUID = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
TIM = "/usr/share/sounds/sf2/TimGM6mb.sf2"


def _have(*paths: str) -> bool:
    return all(Path(p).exists() for p in paths)


def test_augment_changes_the_target_reproducibly():
    sr = 22050
    t = np.arange(int(1.5 * sr)) / sr
    x = (0.3 * np.sin(2 * np.pi * 220 * t) * np.exp(-2 * t)).astype(np.float32)
    a = augment(np.random.default_rng(3), x, sr)
    b = augment(np.random.default_rng(3), x, sr)
    c = augment(np.random.default_rng(4), x, sr)
    assert a.shape == x.shape and a.dtype == np.float32 and np.all(np.isfinite(a))
    assert np.array_equal(a, b)  # same generator state, same augmentation
    assert not np.allclose(a, x, atol=1e-3) and not np.allclose(a, c, atol=1e-3)
    rms = lambda v: float(np.sqrt(np.mean(v.astype(np.float64) ** 2)))  # noqa: E731
    # EQ (+-8 dB peak, tilt), reverb and +-6 dB level: same order of loudness, not silence
    assert 0.1 < rms(a) / rms(x) < 10.0


def test_available_soundfonts_keeps_existing_in_order(tmp_path):
    sf = tmp_path / "a.sf2"
    sf.write_bytes(b"x")
    assert available_soundfonts([str(tmp_path / "missing.sf2"), str(sf)]) == [str(sf)]


@pytest.mark.skipif(not _have(FLUID, TIM), reason="FluidR3_GM and TimGM6mb soundfonts needed")
def test_generate_data_splits_clips_across_soundfonts():
    pytest.importorskip("fluidsynth")
    audio, notes, programs, sf_idx = generate_data(4, seed=5, sr=22050, soundfonts=[FLUID, TIM],
                                                   program_list=[0])
    assert audio.shape == (4, int(1.5 * 22050)) and len(notes) == 4
    assert list(programs) == [0, 0, 0, 0] and list(sf_idx) == [0, 1, 0, 1]
    assert all(np.abs(a).max() > 0 for a in audio)  # every clip sounds


@pytest.mark.skipif(not _have(FLUID, TIM), reason="FluidR3_GM and TimGM6mb soundfonts needed")
def test_train_smoke_options_warm_start_and_config(tmp_path):
    """A few seconds of training on 2 programs from 2 soundfonts, augmented, warm-started."""
    pytest.importorskip("torch")
    pytest.importorskip("fluidsynth")
    pytest.importorskip("safetensors")
    init = weights.find_weights(weights.WEIGHTS_DIR)
    assert init is not None
    # 0 minutes: no step, so the written weights are exactly the ones it started from
    same = tmp_path / "same"
    assert train.main(["--minutes", "0", "--programs", "1", "--clips-per-program", "1",
                       "--soundfonts", TIM, "--init", str(init), "--out", str(same)]) == 0
    assert weights.find_weights(same).name == init.name

    out = tmp_path / "out"
    assert train.main(["--minutes", "0.05", "--programs", "2", "--clips-per-program", "2",
                       "--batch", "2", "--threads", "1", "--augment", "0.5",
                       "--soundfonts", FLUID, TIM, "--init", str(weights.WEIGHTS_DIR),
                       "--out", str(out)]) == 0
    cfg = json.loads((out / "neural-config.json").read_text())
    assert cfg["soundfonts"] == ["FluidR3_GM.sf2", "TimGM6mb.sf2"] and cfg["augment"] == 0.5
    assert cfg["init"] == init.name and cfg["steps"] >= 1 and cfg["partial"] is False
    assert "TimGM6mb.sf2" in cfg["data"] and "augmented" in cfg["data"]
    assert f"warm-started from {init.name}" in cfg["data"]
    new = weights.find_weights(out)
    assert new.name == cfg["weights_file"] and new.name != init.name
    a, b = weights.load_arrays(init), weights.load_arrays(new)  # verified by its digest
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    assert not np.array_equal(a["l1.weight"], b["l1.weight"])  # it trained


def test_neural_weights_env_selects_directory_or_file(tmp_path, monkeypatch):
    committed = weights.find_weights()
    assert committed is not None and committed.parent == weights.WEIGHTS_DIR
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(committed, other / committed.name)
    (other / "neural-config.json").write_text(json.dumps({"weights_file": committed.name}))
    monkeypatch.setenv(weights.NEURAL_WEIGHTS_ENV, str(other))
    assert weights.find_weights() == other / committed.name
    assert weights.find_weights(weights.WEIGHTS_DIR) == committed  # an explicit directory wins
    assert weights.find_weights(kind="instrument").parent == weights.WEIGHTS_DIR  # neural only
    monkeypatch.setenv(weights.NEURAL_WEIGHTS_ENV, str(other / committed.name))
    assert weights.find_weights() == other / committed.name
    assert weights.load_arrays()["l1.weight"].shape == (256, 256)
    monkeypatch.setenv(weights.NEURAL_WEIGHTS_ENV, str(tmp_path / "missing"))
    with pytest.raises(SynthError, match="SEMCODEC_NEURAL_WEIGHTS"):
        weights.find_weights()
    monkeypatch.delenv(weights.NEURAL_WEIGHTS_ENV)
    assert weights.find_weights() == committed
