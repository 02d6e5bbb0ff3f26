"""The numpy neural engine: torch-identical noise, streaming pieces, the weights reader, and the
same output as the torch engine."""

from __future__ import annotations

import json
import struct
import threading
from dataclasses import replace

import numpy as np
import pytest

from semcodec.errors import SynthError
from semcodec.events import BendPoint, Note, Score, Track
from semcodec.synth import ddsp_np, dsp, neural, weights

pytestmark = pytest.mark.skipif(not neural.engine_available(), reason="no neural weights")


def _score(notes, program=0):
    return Score(tracks=(Track(name="t", program=program).with_notes(notes),))


def _phrase():
    return [Note(0.05, 0.4, 60, 100), Note(0.3, 0.9, 64, 70, (BendPoint(0.1, 0.5),)),
            Note(0.9, 1.0, 88, 120), Note(1.1, 1.6, 40, 50, (BendPoint(0.05, -1.0),
                                                               BendPoint(0.2, 0.3)))]


@pytest.mark.parametrize("n", [16, 1000, 257 * 7 + 3, 33])
def test_torch_normals_match_torch_randn(n):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(1234)
    a = torch.randn(n, generator=g).numpy()
    b = torch.randn(n, generator=g).numpy()  # the second draw continues the stream
    re = ddsp_np.TorchNormals(1234, n)
    im = ddsp_np.TorchNormals(1234, n, skip=ddsp_np.TorchNormals.draws(n))
    got_a = np.concatenate([re.take(k) for k in (n // 3, n - n // 3)])  # in two pieces
    got_b = im.take(n)
    np.testing.assert_allclose(got_a, a, atol=2e-6)
    np.testing.assert_allclose(got_b, b, atol=2e-6)


def test_torch_normals_skipped_groups_are_zero_and_rest_unchanged():
    n = 16 * 40 + 5
    full = ddsp_np.TorchNormals(9, n).take(n)
    need = np.zeros(n, bool)
    need[100:130] = True
    part = ddsp_np.TorchNormals(9, n).take(n, need)
    assert np.array_equal(part[need], full[need])
    assert np.count_nonzero(part) < n // 2


def test_stream_resampler_equals_whole_resample():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(30011).astype(np.float32)
    for sr_out in (44100, 48000, 16000):
        ref = dsp.resample(x, 22050, sr_out)
        rs = ddsp_np.StreamResampler(22050, sr_out, x.shape[0])
        parts, pos = [], 0
        for k in (1, 700, 4096, 13, 9000, 100000):
            parts.append(rs.push(x[pos:pos + k]))
            pos += k
        parts.append(rs.finish())
        got = np.concatenate(parts)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=1e-5)


def test_stream_convolver_equals_fft_convolve():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(20000).astype(np.float32)
    h = rng.standard_normal(3001).astype(np.float32) * 0.1
    conv = ddsp_np.StreamConvolver(h)
    got = np.concatenate([conv.push(x[s:s + 3333]) for s in range(0, x.shape[0], 3333)])
    np.testing.assert_allclose(got, dsp.fft_convolve(x, h), atol=1e-4)


def test_numpy_engine_matches_torch_engine():
    pytest.importorskip("torch")
    score = _score(_phrase())
    for sr in (44100, 22050):
        n = int(1.9 * sr) + 11
        a = neural.NeuralEngine(device="cpu").render(score, sr, n)
        b = neural.NeuralEngine(device="cpu", backend="torch").render(score, sr, n)
        assert a.shape == b.shape == (n,)
        err = np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b ** 2))
        assert err < 1e-4  # -80 dB: the same signal up to float32 rounding


def test_block_length_does_not_change_the_output():
    eng = neural.NeuralEngine(device="cpu")
    notes = ddsp_np.NoteArrays.from_track(_score(_phrase()).tracks[0])
    emb, room = eng.program_embedding(0)
    whole = ddsp_np.TrackRenderer(eng.net, notes, emb, room, 44100, 80000).render()
    small = ddsp_np.TrackRenderer(eng.net, notes, emb, room, 44100, 80000, block=3000)
    blocks = list(small.blocks())
    assert len(blocks) > 5
    got = np.concatenate(blocks)
    assert got.shape == whole.shape
    np.testing.assert_allclose(got, whole, atol=1e-6 * max(1.0, float(np.abs(whole).max())))


def test_pipelined_render_gives_the_same_samples_on_two_threads(monkeypatch):
    eng = neural.NeuralEngine(device="cpu")
    notes = ddsp_np.NoteArrays.from_track(_score(_phrase()).tracks[0])
    emb, room = eng.program_embedding(0)
    plain = ddsp_np.TrackRenderer(eng.net, notes, emb, room, 44100, 80000, block=3000)
    piped = ddsp_np.TrackRenderer(eng.net, notes, emb, room, 44100, 80000, block=3000,
                                  pipelined=True)
    made_on: set[str] = set()
    parts = ddsp_np.TrackRenderer._parts

    def watched(self):
        for part in parts(self):
            made_on.add(threading.current_thread().name)
            yield part

    monkeypatch.setattr(ddsp_np.TrackRenderer, "_parts", watched)
    a = np.concatenate(list(plain.blocks()))
    assert made_on == {threading.current_thread().name}
    made_on.clear()
    b = np.concatenate(list(piped.blocks()))
    assert made_on == {"semcodec-ahead"}  # the notes evaluated on the second thread
    assert np.array_equal(a, b)


def test_engine_pipelines_a_lone_track_only(monkeypatch, pipelined_renders):
    eng = neural.NeuralEngine(device="cpu")
    seen = pipelined_renders
    monkeypatch.setattr(neural, "_RENDER_MEMO", [])  # every render made, none remembered
    monkeypatch.setattr(neural, "_memo_trim", lambda: neural._RENDER_MEMO.clear())
    monkeypatch.setenv(neural.THREADS_ENV_RENDER, "2")
    one = _score(_phrase())
    eng.render(one, 44100, 80000)
    assert seen == [True]
    seen.clear()
    two = Score(tracks=(one.tracks[0], replace(one.tracks[0], name="b")))
    eng.render(two, 44100, 80000)
    assert seen == [False, False]  # the tracks run side by side already
    seen.clear()
    monkeypatch.setenv(neural.THREADS_ENV_RENDER, "1")  # one core: no second thread
    eng.render(one, 44100, 80000)
    assert seen == [False]


def test_note_arrays_from_track_filters_and_take_keeps_bends():
    tr = Track("t").with_notes([Note(0.1, 0.2, 60, 200), Note(0.2, 0.3, 130, 90),
                                Note(0.5, 0.6, 62, 0, (BendPoint(0.02, 1.0),)),
                                Note(3.0, 3.5, 64, 90)])
    na = ddsp_np.NoteArrays.from_track(tr, tempo=2.0, transpose=-2, limit_s=1.0)
    assert len(na) == 2  # pitch 128 and the note at 1.5 s dropped
    assert np.allclose(na.onsets, [0.05, 0.25]) and np.allclose(na.pitches, [58, 60])
    assert list(na.velocities) == [127, 1]
    sub = na.take(np.array([1]))
    assert list(sub.bend_note) == [0] and np.allclose(sub.bend_time, [0.01])


def test_safetensors_reader_and_corruption(tmp_path):
    path = weights.find_weights()
    arrays = weights.load_arrays(path)
    assert arrays["inp.weight"].dtype == np.float32 and arrays["l1.weight"].shape == (256, 256)
    header = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    good = struct.pack("<Q", len(header)) + header + np.array([1, 2], "<f4").tobytes()
    assert list(weights.parse_safetensors(good)["a"]) == [1.0, 2.0]
    with pytest.raises(SynthError):
        weights.parse_safetensors(good[:-1])  # data shorter than the header says
    with pytest.raises(SynthError):
        weights.parse_safetensors(struct.pack("<Q", 1 << 40) + header)
    bad = tmp_path / path.name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(SynthError, match="corrupt"):
        weights.load_arrays(bad)
