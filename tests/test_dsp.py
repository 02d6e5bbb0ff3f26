"""Pure signal functions of synth/dsp.py: FFT convolution, resampling, loudness filter."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from semcodec import runtime
from semcodec.synth import dsp


@pytest.mark.parametrize("n_x,n_h", [(1000, 1), (70_000, 255), (200_003, 30_000), (10, 5000)])
def test_fft_convolve_matches_direct_convolution(n_x, n_h):
    rng = np.random.default_rng(n_x + n_h)
    x, h = rng.standard_normal(n_x), rng.standard_normal(n_h)
    ref = np.convolve(x, h)
    np.testing.assert_allclose(dsp.fft_convolve(x, h), ref[:n_x], atol=1e-9)
    full = dsp.fft_convolve(x, h, n_x + n_h - 1)
    np.testing.assert_allclose(full, ref, atol=1e-9)
    assert dsp.fft_convolve(x.astype(np.float32), h).dtype == np.float32


@pytest.mark.parametrize("sr_in,sr_out", [(22050, 44100), (44100, 22050), (48000, 22050),
                                           (22050, 48000), (44100, 24000), (8000, 22050),
                                           (16000, 48000), (48000, 32000), (32000, 44100)])
def test_resample_equals_scipy_resample_poly(sr_in, sr_out):
    """Same filter and alignment as scipy's resample_poly, without importing scipy.signal."""
    import math

    from scipy.signal import resample_poly

    x = np.random.default_rng(sr_in + sr_out).standard_normal(sr_in // 3).astype(np.float32)
    g = math.gcd(sr_in, sr_out)
    ref = resample_poly(x, sr_out // g, sr_in // g)
    y = dsp.resample(x, sr_in, sr_out)
    assert y.dtype == np.float32 and y.shape == ref.shape
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_resample_keeps_length_alignment_and_frequency():
    sr_in, sr_out = 22050, 44100
    t = np.arange(sr_in) / sr_in
    x = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    y = dsp.resample(x, sr_in, sr_out)
    assert y.dtype == np.float32 and y.shape[0] == sr_out
    t2 = np.arange(sr_out) / sr_out
    mid = slice(2000, sr_out - 2000)  # aligned with the input: no filter delay
    np.testing.assert_allclose(y[mid], np.sin(2 * np.pi * 440 * t2)[mid], atol=2e-3)


def test_k_weighting_ir_matches_the_biquads():
    """The FIR used by the loudness meter equals the two K-weighting biquads run as IIRs."""
    sr = 48000
    ir = dsp._k_weighting_ir(sr)
    impulse = np.zeros(ir.shape[0])
    impulse[0] = 1.0
    y = impulse
    for b, a in dsp._k_weighting(sr):  # direct form, pure python: the reference
        out = np.zeros_like(y)
        for n in range(y.shape[0]):
            acc = b[0] * y[n]
            if n >= 1:
                acc += b[1] * y[n - 1] - a[1] * out[n - 1]
            if n >= 2:
                acc += b[2] * y[n - 2] - a[2] * out[n - 2]
            out[n] = acc
        y = out
    np.testing.assert_allclose(ir, y, atol=1e-9)


def test_decoding_does_not_import_scipy_signal(encoded_chorale):
    """scipy.signal costs 1-2 s of start-up: neither engine's decode path may import it."""
    code = (
        "import sys\n"
        "from semcodec import api\n"
        f"c = api.load({str(encoded_chorale[1])!r})\n"
        "for engine in api.available_engines():\n"
        "    api.decode(c, engine=engine)\n"
        "print('scipy.signal' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_loudness_meter_in_pieces_equals_whole():
    rng = np.random.default_rng(4)
    x = (rng.standard_normal(100_000) * np.linspace(0.01, 0.3, 100_000)).astype(np.float32)
    m = dsp.LoudnessMeter(x.shape[0], 22050)
    pos = 0
    for k in (1, 5000, 70_000, 24_999):
        m.push(x[pos:pos + k])
        pos += k
    assert m.result() == pytest.approx(dsp.integrated_loudness(x, 22050), abs=1e-9)
    assert dsp.LoudnessMeter(1000, 22050).result() is None  # nothing pushed: silence


def test_loudness_of_a_whole_signal_on_two_threads_is_the_same_number(monkeypatch):
    rng = np.random.default_rng(5)
    n = 5 * (1 << 16) + 1234  # five whole chunks and a rest
    x = (rng.standard_normal(n) * np.linspace(0.01, 0.3, n)).astype(np.float32)
    monkeypatch.setenv(runtime.WORK_THREADS_ENV, "1")
    alone = dsp.integrated_loudness(x, 44100)
    monkeypatch.setenv(runtime.WORK_THREADS_ENV, "2")
    assert dsp.integrated_loudness(x, 44100) == alone
    m = dsp.LoudnessMeter(n, 44100)
    for s in range(0, n, 30_000):
        m.push(x[s:s + 30_000])
    assert m.result() == pytest.approx(alone, abs=1e-9)


def test_flush_tiny_zeros_rounding_noise_only():
    x = np.array([1e-9, -1e-9, -2e-6, 0.5, -3e-5], np.float32)
    y = dsp.flush_tiny(x.copy())
    assert list(y[:2]) == [0.0, 0.0] and y[2] == np.float32(-2e-6) and y[3] == 0.5


def test_rms_in_blocks(monkeypatch):
    x = (np.random.default_rng(3).standard_normal(10_007) * 0.3).astype(np.float32)
    exact = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    assert dsp.rms(x) == exact  # one block: the very same number
    monkeypatch.setattr(dsp, "RMS_BLOCK", 1000)
    assert dsp.rms(x) == pytest.approx(exact, rel=1e-12)
    assert dsp.rms(np.zeros((2000, 2), np.float32)) == 0.0


def test_overlap_add_is_bit_identical_to_add_at():
    rng = np.random.default_rng(3)
    frames = rng.standard_normal((37, 64)) * 10.0 ** rng.uniform(-8, 3, (37, 1))
    for start, hop in ((0, 16), (5, 16), (3, 64), (0, 7)):
        a = rng.standard_normal(start + 36 * hop + 64 + 9)
        b = a.copy()
        idx = start + np.arange(37)[:, None] * hop + np.arange(64)[None, :]
        np.add.at(a, idx, frames)
        dsp.overlap_add(b, frames, start, hop)
        assert np.array_equal(a, b)


def test_rfft64_gives_numpys_bits_through_scipy_or_numpy(monkeypatch):
    import sys

    import scipy.fft  # noqa: F401 - loaded: rfft64 takes scipy's path

    rng = np.random.default_rng(3)
    for n in (441, 1024, 2048):
        x = rng.standard_normal((40, n))
        want = np.fft.rfft(x, axis=-1)
        assert np.array_equal(dsp.rfft64(x), want)
        with monkeypatch.context() as m:  # scipy not imported (the decoder): numpy's own
            m.delitem(sys.modules, "scipy.fft")
            assert np.array_equal(dsp.rfft64(x), want)


@pytest.mark.parametrize("with_scipy", [False, True])
def test_rfft64_and_irfft_are_numpys_bit_for_bit(monkeypatch, with_scipy):
    import sys

    import scipy.fft  # noqa: F401 - dsp uses it when it is imported

    if not with_scipy:
        monkeypatch.delitem(sys.modules, "scipy.fft")
    rng = np.random.default_rng(1)
    for shape, n in [((1290, 1024), 1024), ((37, 2048), 4096), ((5000,), 1 << 17), ((3, 255), 255),
                     ((300, 4096), None)]:
        x = rng.standard_normal(shape)
        assert np.array_equal(dsp.rfft64(x, n), np.fft.rfft(x, n, axis=-1))
        n_inv = n or shape[-1]
        for spec in (np.fft.rfft(x, n_inv, axis=-1),
                     np.fft.rfft(x.astype(np.float32), n_inv, axis=-1)):
            got, want = dsp.irfft(spec, n_inv), np.fft.irfft(spec, n_inv, axis=-1)
            assert got.dtype == want.dtype and np.array_equal(got, want)
