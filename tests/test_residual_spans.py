"""The residual of a long input coded span by span (semcodec.residual_spans)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from semcodec import residual, residual_spans

#: 8 kHz: spans come in steps of 1.2 s (a multiple of 0.4 s and of the 96-sample hop)
SR = 8000


def _signal(seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """(original, decode): a tone with noise bursts the decode lacks (1.2 s of every 3 s)."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    y = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    burst = np.zeros(n, np.float32)
    rng = np.random.default_rng(3)
    for s in np.arange(0.5, seconds - 1.5, 3.0):
        a, b = int(s * SR), int((s + 1.2) * SR)
        burst[a:b] = 0.05 * rng.standard_normal(b - a).astype(np.float32)
    return y + burst, y


def test_span_length_is_whole_frames_and_hops():
    for sr in (8000, 22050, 44100, 48000):
        span = residual_spans.span_samples(sr)
        assert span is not None
        _, hop = residual.stft_size(sr)
        assert span % hop == 0 and span % round(residual_spans.SPAN_QUANTUM_S * sr) == 0
        assert abs(span / sr - residual_spans.SPAN_S) < 30
    assert residual_spans.span_samples(44101) is None  # 0.4 s is not a whole sample count


def test_spans_join_into_the_whole_inputs_grid(monkeypatch):
    """Spans of 4.8 s over a 20-s input: the joined grid has the whole input's frames, the
    original's levels are the whole-input analysis's but next to the spans' edges, which
    are not coded; most cells the whole-input coder keeps, the spans keep too; and the
    payload plays back as the decoder plays it (the bursts come back)."""
    x, y = _signal(20.0)
    monkeypatch.setattr(residual_spans, "SPAN_S", 5.0)
    span = residual_spans.span_samples(SR)
    assert span is not None and span < len(x) // 3
    asked = []

    def decoded(a: int, b: int) -> np.ndarray:
        asked.append((a, b))
        return y[a:b]

    coder = residual_spans.SpanCoder(x, decoded, len(y), SR, span)
    a = coder.analysis(residual.DEFAULT_BANDS, 0.1)
    assert asked == [(s, min(len(y), s + span)) for s in range(0, len(y), span)]
    payload = coder.code()
    gain = coder.benefit(payload)
    whole = residual.analyse(x, y, SR, n_bands=residual.DEFAULT_BANDS, period_s=0.1)
    assert a.levels.shape == whole.levels.shape
    edges = {round(s / SR / 0.1) for s in range(0, len(x), span)}
    inner = [f for f in range(a.levels.shape[1]) if all(abs(f - e) > 1 for e in edges)]
    assert np.array_equal(a.levels[:, inner], whole.levels[:, inner])
    edge = sorted(e + d for e in edges - {0} for d in (-1, 0))
    assert not np.any(a.benefit[:, edge])
    # most cells the whole-input coder keeps, the spans keep too
    keep_whole, keep_spans = whole.benefit > 0, a.benefit > 0
    assert (keep_whole & keep_spans).sum() >= 0.8 * keep_whole.sum() > 0
    assert payload and gain > 0
    z = residual.apply_payload(y, SR, payload, len(x) / SR, SR)
    f = np.fft.rfftfreq(SR, 1 / SR)
    hi = (f > 1500) & (f < 3800)

    def db(v: np.ndarray, t: float) -> float:
        seg = v[int(t * SR):int(t * SR) + SR]
        return float(10 * np.log10(np.mean(np.abs(np.fft.rfft(seg)[hi]) ** 2) + 1e-20))

    for t in (9.6, 15.6):  # inside bursts, one of them across a span edge
        assert abs(db(z, t) - db(x, t)) < 4 < abs(db(y, t) - db(x, t))


def test_a_short_budget_is_kept(monkeypatch):
    x, y = _signal(12.0)
    monkeypatch.setattr(residual_spans, "SPAN_S", 5.0)
    coder = residual_spans.SpanCoder(x, lambda a, b: y[a:b], len(y), SR,
                                     residual_spans.span_samples(SR) or 0)
    full = coder.code()
    small = coder.code(max_bytes=len(full) // 2)
    assert 0 < len(small) <= len(full) // 2
    residual.decode_envelope(small, 12.0)


def test_the_encoder_codes_a_long_input_span_by_span(monkeypatch):
    """Above LONG_RESIDUAL_S the encoder's residual step decodes and codes span by span
    (neither the whole decode nor the whole-input coder is made), the spans' decodes are
    the whole decode's (but for the loudness gain, estimated), and the file gets a residual."""
    from semcodec import encode_budget
    from semcodec.api import EncodeOptions, encode

    sr = 22050
    t = np.arange(12 * sr) / sr
    notes = (0.3 * np.sin(2 * np.pi * 440.0 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0))
    rng = np.random.default_rng(5)
    original = (notes + 0.04 * rng.standard_normal(len(t))).astype(np.float32)
    c = encode(original, sr, options=EncodeOptions(fit_timbre=False, samples=False,
                                                    residual=False, drums="off"))
    monkeypatch.setattr(residual_spans, "LONG_RESIDUAL_S", 5.0)
    monkeypatch.setattr(residual_spans, "SPAN_S", 5.0)

    def whole(*_a, **_k):
        raise AssertionError("the whole-input coder was called")

    whole_decode, _ = encode_budget.decode(c, encode_budget.DecodeOptions(
        residual=False, channels=1, max_duration_s=None))
    read = encode_budget._span_decoder(c, encode_budget.DecodeOptions(
        residual=False, channels=1, max_duration_s=None))
    part = read(5 * sr, 9 * sr)
    ref = whole_decode[5 * sr:9 * sr]
    assert part.shape == ref.shape
    level = float(np.sum(part ** 2) / max(1e-12, np.sum(ref ** 2)))
    assert 0.7 < level < 1.4  # the estimated gain (within ~1.5 dB)
    assert np.corrcoef(part, ref)[0, 1] > 0.95  # the same notes, in the same place
    monkeypatch.setattr(residual, "encode_residual", whole)
    monkeypatch.setattr(encode_budget, "decode", whole)
    out = encode_budget._with_residual(c, original, 4000)
    assert out.residual and len(out.residual) <= 4000
    env = residual.decode_envelope(out.residual, c.duration)
    assert env.n_frames == residual.n_grid_frames(c.duration, env.period_s)
    assert np.any(env.mask)


def _encoded(seconds: float = 8.0):
    from semcodec.api import EncodeOptions, encode

    sr = 22050
    t = np.arange(int(seconds * sr)) / sr
    notes = (0.3 * np.sin(2 * np.pi * 440.0 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0))
    original = (notes + 0.04 * np.random.default_rng(5).standard_normal(len(t))).astype(np.float32)
    c = encode(original, sr, options=EncodeOptions(fit_timbre=False, samples=False,
                                                    residual=False, drums="off"))
    return c, original


def test_the_residuals_decode_and_the_mix_loudness_come_from_one_rendering():
    """_decode_measured: the synth_lufs the decoder would be given (synth_loudness, rounded as
    stored) and the decode the decoder then plays (its stored gain), from one rendering."""
    from semcodec import decoder, encode_budget

    c, _ = _encoded()
    stored = encode_budget._as_stored(c)
    opts = decoder.DecodeOptions(residual=False, channels=1, max_duration_s=None)
    y, synth = encode_budget._decode_measured(stored, opts)
    assert synth is not None
    assert abs(synth - decoder.synth_loudness(stored)) < 0.002  # rounded to the stored decimals
    assert synth == encode_budget._as_stored(replace(stored, synth_lufs=synth)).synth_lufs
    played, _ = decoder.decode(replace(stored, synth_lufs=synth), opts)  # the stored gain
    assert y.shape == played.shape
    assert np.max(np.abs(y - played)) < 1e-5


def test_a_long_input_is_coded_at_the_gain_of_the_synth_lufs_stored(monkeypatch):
    """Above LONG_RESIDUAL_S, the spans' decodes have the decoder's gain (that of the stored
    synth_lufs, measured first and handed out), not an estimate."""
    from semcodec import decoder, encode_budget

    c, original = _encoded(12.0)
    monkeypatch.setattr(residual_spans, "LONG_RESIDUAL_S", 5.0)
    monkeypatch.setattr(residual_spans, "SPAN_S", 5.0)
    got: list = []
    seen: list = []
    real = encode_budget._span_decoder

    def span_decoder(cc, opts):
        seen.append(cc.synth_lufs)
        return real(cc, opts)

    monkeypatch.setattr(encode_budget, "_span_decoder", span_decoder)
    out = encode_budget._with_residual(c, original, 4000, on_synth_lufs=got.append)
    assert out.residual
    synth = decoder.synth_loudness(encode_budget._as_stored(c))
    assert len(got) == 1 and abs(got[0] - synth) < 0.002
    assert seen == got
    stored = replace(encode_budget._as_stored(c), synth_lufs=got[0])
    opts = decoder.DecodeOptions(residual=False, channels=1, max_duration_s=None)
    whole, _ = decoder.decode(stored, opts)  # as the decoder plays the file
    sr = c.sample_rate
    part = real(stored, opts)(5 * sr, 9 * sr)
    ref = whole[5 * sr:9 * sr]
    level = float(np.sum(part ** 2) / max(1e-12, np.sum(ref ** 2)))
    assert abs(10 * np.log10(level)) < 0.3  # the decoder's gain (an estimate was ~1.5 dB off)
