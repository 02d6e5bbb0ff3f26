"""Per-track engine preference: the encoder's comparison, the container key, the decoder's choice."""

from __future__ import annotations

import json

import numpy as np
import pytest

import semcodec
from semcodec.container import SmcFile as Container
from semcodec.errors import ContainerError
from semcodec.events import Note, Score, Track
from semcodec.synth.fluid import render_notes

SR = 44100


def _melody(program: int) -> tuple[np.ndarray, list[Note]]:
    pitches = [72, 74, 76, 77, 79, 77, 76, 74, 72, 71, 72, 74] * 2
    notes = [Note(round(0.2 + 0.4 * i, 3), round(0.55 + 0.4 * i, 3), p, 90)
             for i, p in enumerate(pitches)]
    return render_notes(notes, program, SR, int(10.5 * SR)), notes


@pytest.fixture(scope="module")
def gm_flute():
    """A flute line played by the fallback's own soundfont: fluidsynth is the closer engine."""
    audio, _ = _melody(73)
    return semcodec.encode(audio, sr=SR)


def test_encoder_prefers_the_engine_that_renders_closer(gm_flute):
    (track,) = gm_flute.score.tracks
    assert track.program == 73 and track.engine == "fluidsynth"
    assert -40.0 < track.engine_gain_db < 40.0


def test_preference_is_stored_and_unknown_engines_are_ignored(gm_flute):
    data = gm_flute.to_bytes()
    # format 1.2 (1.3: a tempo map; 1.4: the track also has a measured render; 1.5: a residual;
    # 1.6: the header names the neural model, as every encode with a model after the first does;
    # 1.8: it stores the decode mix's loudness, as every encode of a sounding file does)
    assert data[5] == (8 if gm_flute.synth_lufs is not None
                       else 6 if gm_flute.neural_model else 5 if gm_flute.residual
                       else 4 if gm_flute.score.tracks[0].render is not None
                       else 3 if gm_flute.score.tempo_map else 2)
    back = Container.from_bytes(data)
    assert back.score.tracks[0].engine == "fluidsynth"
    from semcodec.synth import weights  # noqa: PLC0415

    model = weights.current_model()  # the encode names the model its timbres were fitted to
    assert back.neural_model == ("" if model == weights.LEGACY_NEURAL_MODEL else model)
    assert back.score.tracks[0].engine_gain_db == pytest.approx(gm_flute.score.tracks[0].engine_gain_db, abs=0.01)
    # a newer writer's engine name is read as no preference
    hlen = int.from_bytes(data[6:10], "little")
    header = json.loads(data[10:10 + hlen])
    assert header["tracks"][0]["engine"] == "fluidsynth"
    plain = Container(**{**gm_flute.__dict__, "score": Score(tracks=(Track("t", 73).with_notes(
        list(gm_flute.score.tracks[0].notes)),))})
    assert Container.from_bytes(plain.to_bytes()).score.tracks[0].engine == ""
    bad = Container(**{**gm_flute.__dict__, "score": Score(tracks=(Track(
        "t", 73, engine="theremin").with_notes([Note(0.0, 0.5, 60, 90)]),))})
    with pytest.raises(ContainerError, match="engine"):
        bad.to_bytes()


def test_auto_decoding_honours_the_preference(gm_flute):
    # the engine choice alone (a measured track render, format 1.4, is played on top of it)
    auto, _ = semcodec.decode(gm_flute, track_renders=False)
    fluid, _ = semcodec.decode(gm_flute, engine="fluidsynth")
    neural, _ = semcodec.decode(gm_flute, engine="neural")
    assert np.allclose(auto, fluid, atol=1e-5)  # one track: the loudness match absorbs the gain
    assert not np.allclose(auto, neural, atol=1e-3)


def test_mixed_engines_in_one_file(gm_flute):
    """One track by fluidsynth (its gain applied), another by the neural engine."""
    flute = gm_flute.score.tracks[0]
    bass = Track("bass", 33).with_notes([Note(0.2 + 0.8 * i, 0.9 + 0.8 * i, 40 + i % 5, 90)
                                         for i in range(12)])
    c = Container(**{**gm_flute.__dict__, "score": Score(tracks=(flute, bass))})
    mix, sr, parts = semcodec.decode_tracks(c, residual=False)  # the tracks add up to it
    assert np.allclose(sum(p for _, p in parts), mix, atol=1e-4)
    louder = Container(**{**c.__dict__, "score": Score(tracks=(
        Track(**{**flute.__dict__, "engine_gain_db": flute.engine_gain_db + 12.0}), bass))})
    _, _, parts2 = semcodec.decode_tracks(louder)
    ratio = np.sqrt(np.mean(parts2[0][1] ** 2) / np.mean(parts2[1][1] ** 2))
    base = np.sqrt(np.mean(parts[0][1] ** 2) / np.mean(parts[1][1] ** 2))
    assert ratio / base == pytest.approx(10 ** (12 / 20), rel=0.02)
