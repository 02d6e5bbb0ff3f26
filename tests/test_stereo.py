"""Stereo: pans measured at encode, stored in the container, played back at decode."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

import semcodec
from semcodec import stereo
from semcodec.cli import cli
from semcodec.container import SmcFile as Container
from semcodec.errors import ContainerError, SemcodecError
from semcodec.events import Note, Score, Track
from semcodec.separate import assign_tracks, note_pans
from semcodec.synth import dsp

from conftest import tone

SR = 44100


def _place(x: np.ndarray, pan: float) -> np.ndarray:
    """``x`` at ``pan`` as (n, 2), gains (1 - pan, 1 + pan): its downmix is ``x``."""
    return dsp.pan_stereo(x, pan)


def _melody(pitches: list[int], step: float, start: float = 0.0) -> tuple[np.ndarray, list[Note]]:
    audio = np.zeros(int((start + step * len(pitches) + 0.5) * SR), np.float32)
    notes = []
    for i, p in enumerate(pitches):
        on = start + i * step
        t = tone(p, step * 0.9)
        a = int(on * SR)
        audio[a:a + t.size] += t
        notes.append(Note(round(on, 4), round(on + step * 0.9, 4), p, 90))
    return audio, notes


def test_pan_law_keeps_the_downmix():
    x = np.linspace(-0.5, 0.5, 101).astype(np.float32)
    for pan in (-1.0, -0.3, 0.0, 0.7):
        st = dsp.pan_stereo(x, pan)
        assert st.shape == (101, 2)
        assert np.allclose(st.mean(axis=1), x, atol=1e-7)
    assert np.allclose(dsp.pan_stereo(x, -1.0)[:, 1], 0.0)


def test_measure_pans_finds_each_tracks_position():
    a, notes_a = _melody([57, 59, 60, 62], 0.5)
    b, notes_b = _melody([69, 71, 72, 74], 0.5, start=0.25)
    n = max(a.size, b.size)
    a, b = dsp.fit_length(a, n), dsp.fit_length(b, n)
    st = _place(a, -0.5) + _place(b, 0.4)
    mid, side = st.mean(axis=1), (st[:, 0] - st[:, 1]) / 2
    tracks = [Track("a").with_notes(notes_a), Track("b").with_notes(notes_b), Track("empty")]
    pans = stereo.measure_pans(mid, side, SR, tracks)
    assert pans[0] == pytest.approx(-0.5, abs=0.05)
    assert pans[1] == pytest.approx(0.4, abs=0.05)
    assert pans[2] == 0.0
    # a centred mix gives centred tracks
    assert stereo.measure_pans(mid, np.zeros_like(side), SR, tracks) == [0.0, 0.0, 0.0]


def test_pan_is_stored_and_checked():
    track = Track("lead", 73, pan=-0.25).with_notes([Note(0.0, 0.5, 72, 90)])
    c = Container(duration=1.0, sample_rate=SR, channels=2, n_samples=SR, loudness_lufs=-20.0,
                  score=Score(tracks=(track, Track("bass", 33).with_notes([Note(0.0, 1.0, 40, 80)]))))
    data = c.to_bytes()
    assert data[5] == 2  # format 1.2: a track has a pan
    back = Container.from_bytes(data)
    assert [t.pan for t in back.score.tracks] == [-0.25, 0.0]
    header = json.loads(data[10:10 + int.from_bytes(data[6:10], "little")])  # after the preamble
    assert "pan" in header["tracks"][0] and "pan" not in header["tracks"][1]
    centred = Container.from_bytes(
        Container(**{**c.__dict__, "score": Score(tracks=(Track("x").with_notes([Note(0, 1, 60, 90)]),))}).to_bytes())
    assert centred.to_bytes()[5] == 0
    bad = Track("lead", pan=1.5).with_notes([Note(0.0, 0.5, 72, 90)])
    with pytest.raises(ContainerError, match="pan"):
        Container(**{**c.__dict__, "score": Score(tracks=(bad,))}).to_bytes()


@pytest.fixture(scope="module")
def stereo_stems(tmp_path_factory):
    """Two stereo stems (WAV): a low line at pan -0.6 and a high line at pan 0.5."""
    d = tmp_path_factory.mktemp("stereo")
    low, _ = _melody([48, 50, 52, 53, 55, 53, 52, 50], 0.4)
    high, _ = _melody([72, 74, 76, 77, 79, 77, 76, 74], 0.4, start=0.2)
    n = max(low.size, high.size)
    paths = {}
    for name, x, pan in (("bass", low, -0.6), ("keys", high, 0.5)):
        paths[name] = d / f"{name}.wav"
        sf.write(paths[name], 0.3 * _place(dsp.fit_length(x, n), pan), SR)  # no clipping
    return paths


def test_stems_keep_their_positions_and_decode_in_stereo(stereo_stems):
    opts = semcodec.EncodeOptions(fit_timbre=False)
    c = semcodec.encode_stems([(k, str(p)) for k, p in stereo_stems.items()], options=opts)
    assert c.channels == 2
    pans = {t.name: t.pan for t in c.score.tracks}
    assert pans["bass"] == pytest.approx(-0.6, abs=0.05)
    assert pans["keys"] == pytest.approx(0.5, abs=0.05)
    st, sr = semcodec.decode(c, engine="fluidsynth")
    mono, _ = semcodec.decode(c, engine="fluidsynth", channels=1)
    assert st.shape == (mono.shape[0], 2) and sr == SR
    # the same up to the engine rendering the tracks one pan at a time instead of together
    assert np.abs(st.mean(axis=1) - mono).max() < 0.02 * np.abs(mono).max()
    mix, _, parts = semcodec.decode_tracks(c, engine="fluidsynth")
    assert mix.shape == st.shape and all(p.shape == st.shape for _, p in parts)
    assert np.allclose(np.sum([p for _, p in parts], axis=0), mix, atol=1e-4)
    # each track sits at its pan: channel gains (1 - pan, 1 + pan)
    for name, part in parts:
        left, right = np.abs(part).sum(axis=0)
        assert right / left == pytest.approx((1 + pans[name]) / (1 - pans[name]), rel=1e-3)


def test_mono_input_stays_mono(tmp_path):
    x, _ = _melody([60, 62, 64], 0.4)
    c = semcodec.encode(x, sr=SR, options=semcodec.EncodeOptions(fit_timbre=False))
    assert c.channels == 1 and all(t.pan == 0.0 for t in c.score.tracks)
    audio, _ = semcodec.decode(c, engine="fluidsynth")
    assert audio.ndim == 1
    both, _ = semcodec.decode(c, engine="fluidsynth", channels=2)
    assert both.shape == (audio.shape[0], 2) and np.array_equal(both[:, 0], audio)
    with pytest.raises(SemcodecError):
        semcodec.decode(c, channels=3)


def test_cli_decodes_stereo_and_mono_on_request(stereo_stems, tmp_path):
    runner = CliRunner()
    smc = tmp_path / "band.smc"
    r = runner.invoke(cli, ["encode", "--no-timbre", f"--stem=bass={stereo_stems['bass']}",
                                   f"--stem=keys={stereo_stems['keys']}", str(smc)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["info", str(smc)])
    assert r.exit_code == 0 and "pan L0.6" in r.output and "pan R0.5" in r.output
    out = tmp_path / "band.wav"
    r = runner.invoke(cli, ["decode", "--engine", "fluidsynth", str(smc), str(out)])
    assert r.exit_code == 0, r.output
    assert sf.info(out).channels == 2
    mono = tmp_path / "mono.flac"
    r = runner.invoke(cli, ["decode", "--engine", "fluidsynth", "--channels", "1", str(smc), str(mono)])
    assert r.exit_code == 0, r.output
    assert sf.info(mono).channels == 1


def test_note_pans_and_a_split_by_position():
    """One instrument twice, in one register, hard left and hard right: only stereo splits it."""
    left, notes_l = _melody([60, 62, 64, 65, 67, 65, 64, 62] * 2, 0.5)
    right, notes_r = _melody([61, 63, 66, 68, 66, 63, 61, 59] * 2, 0.5, start=0.25)
    n = max(left.size, right.size)
    st = _place(dsp.fit_length(left, n), -0.8) + _place(dsp.fit_length(right, n), 0.8)
    mid, side = st.mean(axis=1), (st[:, 0] - st[:, 1]) / 2
    notes = sorted(notes_l + notes_r, key=lambda x: x.onset)
    truth = np.array([0 if x in notes_l else 1 for x in notes])
    p = note_pans(mid, side, SR, notes)
    assert np.all(p[truth == 0] < -0.2) and np.all(p[truth == 1] > 0.2)
    for k in (None, 2):
        a = assign_tracks(mid, SR, notes, k, side=side)
        agree = np.mean(a.labels == truth)
        assert a.n_tracks == 2 and max(agree, 1 - agree) > 0.95
    assert assign_tracks(mid, SR, notes, None).n_tracks == 1  # the downmix alone: one instrument


def test_note_pans_do_not_depend_on_the_blocking(monkeypatch):
    from semcodec import separate

    a, notes_a = _melody([57, 59, 60, 62, 64, 65], 0.5)
    st = _place(a, -0.4)
    mid, side = st.mean(axis=1), (st[:, 0] - st[:, 1]) / 2
    whole = note_pans(mid, side, SR, notes_a)
    monkeypatch.setattr(separate, "PAN_BLOCK_S", 0.7)
    blocked = note_pans(mid, side, SR, notes_a)
    assert np.allclose(whole, -0.4, atol=0.02) and np.allclose(blocked, whole, atol=0.02)
