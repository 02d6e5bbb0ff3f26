"""Tempo, beats and meter from audio (semcodec.beats) on plucked-chord clips made here."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import soundfile as sf

from semcodec import beats
from semcodec.events import TempoMap

SR = 22050
LEAD = 0.37  # s of silence before the first downbeat


def _clip(bpm: float, beats_per_bar: int, sub: int, seconds: float = 20.0) -> np.ndarray:
    """Plucked triads on every beat (a new chord each bar, louder on the downbeat, a bass note
    under it) and single notes on the ``sub`` - 1 subdivisions of every beat."""
    y = np.zeros(int(seconds * SR), np.float32)
    beat = 60.0 / bpm
    roots = [48, 53, 55, 50, 57, 52]

    def pluck(t: float, pitches: list[int], amp: float, dur: float) -> None:
        i = int(t * SR)
        n = min(int(dur * SR), y.size - i)
        tt = np.arange(max(n, 0)) / SR
        for p in pitches:
            f = 440.0 * 2 ** ((p - 69) / 12)
            y[i:i + n] += (amp * np.exp(-6.0 * tt) * np.sin(2 * np.pi * f * tt)).astype(np.float32)

    t, bar = LEAD, 0
    while t < seconds - beats_per_bar * beat:
        root = roots[bar % len(roots)]
        pluck(t, [root - 12], 0.06, beats_per_bar * beat)
        for b in range(beats_per_bar):
            for s in range(sub):
                at = t + (b * sub + s) * beat / sub
                if s == 0:
                    pluck(at, [root + 12, root + 16, root + 19], 0.2 if b == 0 else 0.12, beat)
                else:
                    pluck(at, [root + 24 + (7 * s) % 12], 0.07, beat / sub)
        t += beats_per_bar * beat
        bar += 1
    return y


@pytest.mark.parametrize("bpm,per_bar,sub,meter", [(100, 3, 2, (3, 4)), (120, 4, 2, (4, 4)),
                                                   (90, 2, 3, (6, 8))])
def test_tempo_meter_and_downbeats(bpm, per_bar, sub, meter):
    tm = beats.analyze(_clip(bpm, per_bar, sub), SR)
    assert tm is not None
    assert abs(tm.tempo_bpm / bpm - 1) <= 0.04, tm.tempo_bpm
    assert tm.time_signature == meter
    bar = per_bar * 60.0 / bpm
    # downbeats on the bars (LEAD + k bars) within 60 ms
    off = [(d - LEAD) / bar for d in tm.downbeats]
    assert max(abs(o - round(o)) * bar for o in off) < 0.06, tm.downbeats
    # beats on the beat grid within 60 ms
    beat = 60.0 / bpm
    err = [abs((b - LEAD) / beat - round((b - LEAD) / beat)) * beat for b in tm.beats]
    assert np.median(err) < 0.03


def test_same_tempo_from_mp3():
    y = _clip(100, 4, 2)
    buf = io.BytesIO()
    try:
        sf.write(buf, y, SR, format="MP3")
    except Exception as exc:  # noqa: BLE001 - libsndfile without MPEG support
        pytest.skip(f"libsndfile cannot write MP3 here ({exc})")
    buf.seek(0)
    z, _ = sf.read(buf, dtype="float32")
    a, b = beats.analyze(y, SR), beats.analyze(z, SR)
    assert abs(a.tempo_bpm / b.tempo_bpm - 1) < 0.01
    assert a.time_signature == b.time_signature


def test_silence_and_short_input_have_no_map():
    assert beats.analyze(np.zeros(SR * 5, np.float32), SR) is None
    assert beats.analyze(np.zeros(SR // 2, np.float32), SR) is None


def test_cheap():
    y = np.tile(_clip(110, 4, 2, seconds=15.0), 2)  # 30 s
    beats.analyze(y[: SR * 3], SR)  # imports
    t0 = time.perf_counter()
    beats.analyze(y, SR)
    assert time.perf_counter() - t0 < 1.5  # ~0.2-0.3 s measured on 2 busy cores


def test_tempo_map_properties():
    tm = TempoMap(beats=tuple(0.5 * i for i in range(13)), downbeat=1, time_signature=(6, 8))
    assert tm.beats_per_bar == 2 and tm.quarters_per_beat == 1.5
    assert tm.tempo_bpm == pytest.approx(120.0)
    assert tm.downbeats[:2] == (0.5, 1.5)


def test_power_spectrogram_in_blocks_equals_librosa_whole(monkeypatch):
    """The beat features take their STFT in blocks of frames (bounded memory on long
    inputs): the same power as one centred librosa.stft of the whole signal."""
    import librosa

    from semcodec import beats

    rng = np.random.default_rng(2)
    y = (0.1 * rng.standard_normal(beats._SR * 5 + 77)).astype(np.float32)
    whole = np.abs(librosa.stft(y, n_fft=beats._NFFT, hop_length=beats._HOP, center=True)) ** 2
    monkeypatch.setattr(beats, "_BLOCK_FRAMES", 37)
    blocks = np.concatenate(list(beats._power_blocks(y)), axis=1)
    assert blocks.shape == whole.shape
    np.testing.assert_allclose(blocks, whole, rtol=1e-6, atol=1e-9)


def test_flux_block_by_block_equals_the_whole_spectrograms():
    """The onset envelopes made block by block are the numbers of librosa's power_to_db
    (ref=max, top_db=80) and first difference over the joined mel spectrogram."""
    import librosa

    rng = np.random.default_rng(1)
    low_rows = np.arange(64) < 9
    blocks = [(np.abs(rng.standard_normal((64, n))) ** 3).astype(np.float32)
              for n in (4096, 4096, 777)]
    blocks[1][5, 100] = 1e3  # the loudest cell in a middle block
    mel = librosa.power_to_db(np.concatenate(blocks, axis=1), ref=np.max, top_db=80.0)
    flux = np.maximum(0.0, np.diff(mel, axis=1, prepend=mel[:, :1]))
    env, low = beats._flux([b.copy() for b in blocks], low_rows)
    assert np.array_equal(env, flux.mean(axis=0))
    assert np.array_equal(low, flux[low_rows].mean(axis=0))
