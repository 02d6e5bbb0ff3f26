"""Decoding with a pitched track's stored excerpt: a sampler, or a timbre correction.

A pitched track may keep a short coded excerpt of the original (a ``Sample`` without a key).
The encoder measures (:mod:`semcodec.sampleuse`) which use of it brings the decode closer to
the original and stores the choice in the track (``Track.sample_use``); this module renders it:

* ``"eq"`` — a spectral-envelope correction: the engine's rendering of the notes the excerpt
  covers is compared with the excerpt in ``N_BANDS`` log-spaced bands (mean power over the
  excerpt's frames), and the whole track is filtered by the smoothed ratio (±EQ_MAX_DB);
* ``"sampler"`` — the notes of the track whose pitch lies within SAMPLER_MAX_SHIFT semitones
  of a note the excerpt holds are played from the excerpt: the nearest such note's audio,
  pitch-shifted by resampling (following the target's pitch bends), scaled by velocity
  (``(v / v_ref) ** 2``), its steady middle looped with crossfades when the target is longer,
  and a release fade; the other notes keep the engine's rendering;
* ``"voice"`` — the track is sung by :mod:`semcodec.synth.voice` with the singer's spectral
  envelope stored in the track (measured by the encoder on the original), or else measured
  on its excerpt.

Pure numpy: the decoder imports neither torch, librosa nor scipy for this.  Audio is mono
float32 ``(n,)``, times in seconds, pitches in MIDI numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from semcodec.events import Note, Track
from semcodec.synth import dsp
from semcodec.synth.dsp import fft_convolve as dsp_convolve
from semcodec.runtime import work_threads

#: Values of ``Track.sample_use`` (format 1.3): how the decoder plays the track's excerpt.
SAMPLE_USES = ("eq", "sampler", "voice")
#: Correction bands of the "eq" use (log-spaced, BAND_LO_HZ .. Nyquist) and its limit (dB).
N_BANDS = 24
BAND_LO_HZ = 60.0
BAND_HI_HZ = 11025.0
EQ_MAX_DB = 30.0
#: The sampler plays a note from an excerpt note at most this many semitones away.
SAMPLER_MAX_SHIFT = 4
#: Crossfade of a sustain loop (s) and the release fade of a sampled note (s).
LOOP_XFADE_S = 0.04
RELEASE_S = 0.06
#: STFT used for the analyses (samples at any rate are resampled to it first).
ANALYSIS_SR = 24000
N_FFT = 2048
HOP = 256


# --- shared analysis helpers -------------------------------------------------------------

def stft_mag(x: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """|STFT| of mono ``x`` (Hann window, centred frames): ``(n_frames, n_fft // 2 + 1)``."""
    x = np.asarray(x, np.float64)
    xp = np.pad(x, (n_fft // 2, n_fft // 2 + hop))
    return frames_mag(xp, n_fft, hop, max(1, 1 + (xp.shape[0] - n_fft) // hop))


#: STFT frames per block of :func:`stft_mag_blocks` (~95 s at 22.05 kHz, n_fft 1024).
MAG_BLOCK_FRAMES = 8192


def stft_mag_blocks(x: np.ndarray, n_fft: int = N_FFT,
                    hop: int = HOP) -> Iterator[np.ndarray]:
    """:func:`stft_mag` of ``x`` in blocks of MAG_BLOCK_FRAMES frames (the same numbers): no
    float64 copy of the whole signal nor its whole spectrum (gigabytes an hour)."""
    n_fr = max(1, 1 + (x.shape[0] + hop) // hop)
    for f0 in range(0, n_fr, MAG_BLOCK_FRAMES):
        f1 = min(n_fr, f0 + MAG_BLOCK_FRAMES)
        a, b = f0 * hop - n_fft // 2, (f1 - 1) * hop + n_fft // 2
        seg = np.zeros(b - a)
        lo, hi = max(a, 0), min(b, x.shape[0])
        if hi > lo:
            seg[lo - a:hi - a] = x[lo:hi]
        yield frames_mag(seg, n_fft, hop, f1 - f0)


def frames_mag(xp: np.ndarray, n_fft: int, hop: int, n_fr: int) -> np.ndarray:
    """|rfft| of the Hann-windowed frames ``xp[k * hop:k * hop + n_fft]``, k < ``n_fr``, of
    an already padded float64 signal (:func:`stft_mag`'s frames): ``(n_fr, n_fft // 2 + 1)``."""
    from numpy.lib.stride_tricks import sliding_window_view  # noqa: PLC0415

    win = np.hanning(n_fft + 1)[:-1]
    out = np.empty((n_fr, n_fft // 2 + 1))
    frames = sliding_window_view(xp[:(n_fr - 1) * hop + n_fft], n_fft)[::hop]
    if frames.shape[0] < n_fr:
        raise IndexError(f"{n_fr} frames of {n_fft} every {hop} need "
                         f"{(n_fr - 1) * hop + n_fft} samples, got {xp.shape[0]}")
    for s in range(0, n_fr, 256):  # blocks of frames: bounded memory for long inputs
        e = min(n_fr, s + 256)
        out[s:e] = np.abs(dsp.rfft64(frames[s:e] * win))
    return out


def shape_noise(gain: np.ndarray, n_fft: int, hop: int, n_samples: int,
                seed: int = 0) -> np.ndarray:
    """White noise shaped in time and frequency: ``gain`` ``(n_frames, n_fft // 2 + 1)`` is
    the standard deviation (re. unit white noise) per STFT frame (hop ``hop``, frame ``j``
    centred on sample ``j · hop``) and bin.  Weighted overlap-add with a Hann window, so a
    constant gain g gives white noise of std ≈ g.  Deterministic for a given ``seed``."""
    rng = np.random.default_rng(seed)
    win = np.hanning(n_fft + 1)[:-1]
    n_fr = gain.shape[0]
    total = (n_fr - 1) * hop + n_fft
    acc = np.zeros(total)
    norm = np.zeros(total)
    for s0 in range(0, n_fr, 256):
        e0 = min(n_fr, s0 + 256)
        shape = (e0 - s0, n_fft)
        dsp.overlap_add(norm, np.broadcast_to(win ** 2, shape), s0 * hop, hop)
        g = gain[s0:e0]
        if not g.any():
            continue
        spec = np.fft.rfft(rng.standard_normal(shape) * win, axis=1) * g
        dsp.overlap_add(acc, np.fft.irfft(spec, n_fft, axis=1) * win, s0 * hop, hop)
    out = acc / np.maximum(norm, 1e-3)
    return out[n_fft // 2:n_fft // 2 + n_samples]


def band_edges(sr: int | None = None, n_bands: int = N_BANDS, lo: float = BAND_LO_HZ,
               hi: float = BAND_HI_HZ) -> np.ndarray:
    """``n_bands + 1`` log-spaced band edges (Hz) from ``lo`` to ``hi`` (at most ``sr / 2``):
    the same bands at any sample rate, so that gains measured at one rate apply at another."""
    top = hi if sr is None else min(hi, sr / 2.0)
    return np.geomspace(lo, top, n_bands + 1)


def band_powers(mag: np.ndarray, sr: int, n_fft: int, edges: np.ndarray) -> np.ndarray:
    """Mean power per band of magnitude frames ``(F, bins)`` -> ``(F, n_bands)``."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    out = np.zeros((mag.shape[0], edges.shape[0] - 1))
    p = mag ** 2
    for b in range(edges.shape[0] - 1):
        sel = (freqs >= edges[b]) & (freqs < edges[b + 1])
        if not sel.any():  # a band narrower than a bin: the nearest bin
            sel = np.zeros_like(sel)
            sel[int(np.argmin(np.abs(freqs - math.sqrt(edges[b] * edges[b + 1]))))] = True
        out[:, b] = p[:, sel].mean(axis=1)
    return out


def pitch_contour(note: Note, t_rel: np.ndarray, transpose: int = 0,
                  smooth_s: float = 0.03) -> np.ndarray:
    """MIDI pitch (fractional) of ``note`` at times ``t_rel`` (s from its onset): the note's
    pitch plus its piecewise-constant bends, smoothed over ``smooth_s`` so that vibrato and
    glides come out as curves, not steps."""
    p = np.full(t_rel.shape[0], float(note.pitch + transpose))
    if not note.bends or t_rel.shape[0] == 0:
        return p
    times = np.array([b.time for b in note.bends])
    vals = np.array([b.semitones for b in note.bends])
    k = np.searchsorted(times, t_rel, side="right") - 1
    bend = np.where(k >= 0, vals[np.clip(k, 0, None)], 0.0)
    if t_rel.shape[0] > 2 and smooth_s > 0:
        dt = float(np.median(np.diff(t_rel))) or 1e-3
        w = max(1, int(round(smooth_s / dt)))
        if w > 1:
            ker = np.hanning(w + 2)[1:-1]
            ker /= ker.sum()
            padded = np.pad(bend, (w, w), mode="edge")
            bend = np.convolve(padded, ker, mode="same")[w:w + bend.shape[0]]
    return p + bend


def midi_hz(p: np.ndarray | float) -> np.ndarray | float:
    """MIDI pitch -> Hz (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((np.asarray(p) - 69.0) / 12.0)


def resample_linear(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Cheap linear-interpolation resampling (for analyses, not for playback)."""
    if sr_in == sr_out:
        return np.asarray(x, np.float64)
    n_out = int(round(x.shape[0] * sr_out / sr_in))
    return np.interp(np.arange(n_out) * (sr_in / sr_out), np.arange(x.shape[0]), x)


def notes_in(track: Track, start: float, duration: float, margin: float = 0.02) -> list[Note]:
    """Notes of ``track`` that start inside ``[start, start + duration)`` (s)."""
    return [n for n in track.notes if start - margin <= n.onset < start + duration - 0.05]


# --- "eq": spectral-envelope correction --------------------------------------------------

def eq_correction(target: np.ndarray, rendered: np.ndarray, sr: int,
                  n_bands: int = N_BANDS) -> np.ndarray:
    """Correction gains (dB, ``(n_bands,)``) that move ``rendered`` towards ``target``.

    Both are mono at ``sr`` Hz and aligned.  Per band: the mean over the frames where both
    are within 60 dB of their loudest frame of the difference of their log band powers
    (the log domain, as the mel distance measures), minus the level difference over all
    bands weighted by the target's band power (so the correction is a pure colour; the
    decoder's loudness matching sets the level); clipped to ±EQ_MAX_DB.
    """
    n = min(target.shape[0], rendered.shape[0])
    edges = band_edges(None, n_bands)
    a = np.concatenate([band_powers(m, sr, 1024, edges)
                        for m in stft_mag_blocks(target[:n], 1024, 256)])
    b = np.concatenate([band_powers(m, sr, 1024, edges)
                        for m in stft_mag_blocks(rendered[:n], 1024, 256)])
    if n == 0:
        return np.zeros(n_bands)
    ea, eb = a.sum(axis=1), b.sum(axis=1)
    act = (ea > ea.max() * 1e-6) & (eb > eb.max() * 1e-6)
    if not act.any():
        return np.zeros(n_bands)
    la = 10.0 * np.log10(a[act] + ea.max() * 1e-9)
    lb = 10.0 * np.log10(b[act] + eb.max() * 1e-9)
    db = (la - lb).mean(axis=0)
    pa = a[act].mean(axis=0) + 1e-20
    db -= float((db * pa).sum() / pa.sum())
    return np.clip(db, -EQ_MAX_DB, EQ_MAX_DB)


def room_ir(sr: int, rt60: float, seed: int = 0) -> np.ndarray:
    """:func:`apply_room`'s impulse response: unit-energy Gaussian noise decaying by 60 dB in
    ``rt60`` seconds (at most 3 s long, 5-ms fade-in), deterministic for ``seed``."""
    n = int(min(rt60 * 1.2, 3.0) * sr)
    t = np.arange(n) / sr
    ir = np.random.default_rng(seed).standard_normal(n) * 10.0 ** (-3.0 * t / rt60)
    ir[:n // 2] *= np.clip(t[:n // 2] / 0.005, 0.0, 1.0)  # 5-ms fade-in: no click
    ir /= math.sqrt(float((ir ** 2).sum())) + 1e-12
    return ir


def apply_room(y: np.ndarray, sr: int, rt60: float, wet: float, seed: int = 0) -> np.ndarray:
    """``y`` plus ``wet`` × its convolution with a diffuse room (:func:`room_ir`)."""
    y = np.asarray(y, np.float32)
    if rt60 <= 0 or wet <= 0 or y.size == 0:
        return y
    return (y + np.float32(wet) * dsp_convolve(y, room_ir(sr, rt60, seed))).astype(np.float32)


def room_blocks(blocks: Iterator[np.ndarray], n: int, sr: int, rt60: float, wet: float,
                seed: int = 0) -> Iterator[np.ndarray]:
    """:func:`apply_room` of the mono signal that ``blocks`` hand out (``n`` samples in all),
    as consecutive float32 blocks: the same samples, with memory of one convolution block
    plus the room's tail."""
    n = int(n)
    if rt60 <= 0 or wet <= 0:
        yield from exactly(blocks, n)
        return
    h = room_ir(sr, rt60, seed)
    block, nfft = dsp.convolution_block(h.shape[0])
    hf = np.fft.rfft(h, nfft)
    acc = np.zeros(block + h.shape[0] - 1, np.float32)  # the output from sample s on
    src = BlockReader(blocks, n)
    w = np.float32(wet)
    for s in range(0, n, block):
        seg = src.read(s, s + block)
        m = seg.shape[0]
        # as dsp.fft_convolve: float64 FFTs, each segment added into the float32 output in order
        y = np.fft.irfft(np.fft.rfft(seg.astype(np.float64), nfft) * hf, nfft)[:m + h.shape[0] - 1]
        acc[:y.shape[0]] += y
        yield (seg + w * acc[:m]).astype(np.float32)
        acc[:-m] = acc[m:].copy()
        acc[-m:] = 0.0


#: STFT frames per FFT block of :func:`apply_eq`.
EQ_BLOCK_FRAMES = 128
#: Threads of :func:`apply_eq`'s FFTs (at most: :func:`semcodec.runtime.work_threads`).
EQ_WORKERS = 2


def _eq_gain(sr: int, gains_db: np.ndarray, n_fft: int) -> np.ndarray:
    """Linear gain per rFFT bin (``n_fft``) of :func:`apply_eq`'s band gains ``gains_db``."""
    edges = band_edges(None, gains_db.shape[0])
    centres = np.sqrt(edges[:-1] * edges[1:])
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    lf = np.log(np.maximum(freqs, 1.0))
    db = np.interp(lf, np.log(centres), gains_db)
    # above the top band (unmeasured) the correction fades to 0 dB over an octave
    top = edges[-1]
    fade = np.clip(1.0 - np.log2(np.maximum(freqs, top) / top), 0.0, 1.0)
    return 10.0 ** (db * fade / 20.0)


def apply_eq(y: np.ndarray, sr: int, gains_db: np.ndarray) -> np.ndarray:
    """Filter mono ``y`` by band gains (dB at the log-spaced band centres of
    :func:`band_edges` at any rate, interpolated in log frequency; above the top band the
    correction fades out over an octave), in one zero-phase FFT pass (n_fft 4096, hop 1024,
    Hann analysis and synthesis windows, overlap-add normalised by the summed squared window).

    Streamed (:func:`eq_blocks` over one block): memory is bounded by EQ_BLOCK_FRAMES frames
    plus the float32 output; the output is bit-identical to the whole-signal pass."""
    y = np.asarray(y, np.float32)
    if y.size == 0 or not np.any(gains_db):
        return y
    # the whole signal at hand: the FFTs of later blocks may be made ahead, on two threads
    workers = work_threads(EQ_WORKERS)
    return np.concatenate(list(eq_blocks(iter([y]), y.shape[0], sr, gains_db, workers)))


def eq_blocks(blocks: Iterator[np.ndarray], n: int, sr: int,
              gains_db: np.ndarray, workers: int = 1) -> Iterator[np.ndarray]:
    """:func:`apply_eq` of the mono signal that ``blocks`` hand out (float32 blocks of any
    sizes, ``n`` samples in all), as consecutive float32 blocks adding up to ``n`` samples.

    EQ_BLOCK_FRAMES frames at a time, each output sample emitted as soon as no later frame
    reaches it; the input is read only as far as those frames need.  The sums run in the same
    order as over the whole padded signal, so the samples are those of the whole pass.
    ``workers`` > 1: the blocks' FFTs made on that many threads, a few blocks ahead (the
    input is then read ahead as far: not for a stream that must start at once)."""
    n = int(n)
    if n == 0:
        return
    if not np.any(gains_db):
        yield from exactly(blocks, n)
        return
    n_fft, hop = 4096, 1024
    g = _eq_gain(sr, gains_db, n_fft)
    win = np.hanning(n_fft + 1)[:-1]
    n_pad = n + 2 * n_fft + hop  # the padded signal: n_fft zeros before, n_fft + hop after
    n_fr = 1 + (n_pad - n_fft) // hop
    # out/norm over padded samples [base, base + buf.size): the samples a block touches
    span = (EQ_BLOCK_FRAMES - 1) * hop + n_fft
    out, norm = np.zeros(span), np.zeros(span)
    base = 0
    offs = np.arange(n_fft)[None, :]
    src = BlockReader(blocks, n)
    emitted = 0  # output samples handed out

    def segments() -> Iterator[tuple[int, int, int, np.ndarray]]:
        """(first frame, end frame, first padded sample, the padded samples they read)"""
        for s in range(0, n_fr, EQ_BLOCK_FRAMES):
            e = min(n_fr, s + EQ_BLOCK_FRAMES)
            a, b = s * hop, (e - 1) * hop + n_fft  # padded samples this block reads
            seg = np.zeros(b - a)
            lo, hi = max(a - n_fft, 0), min(b - n_fft, n)
            if hi > lo:
                seg[lo + n_fft - a:hi + n_fft - a] = src.read(lo, hi)
            yield s, e, a, seg

    def filtered(part: tuple[int, int, int, np.ndarray]) -> tuple[int, int, np.ndarray]:
        s, e, a, seg = part
        idx = (np.arange(e - s)[:, None] * hop) + offs
        return e, a, dsp.irfft(dsp.rfft64(seg[idx] * win) * g, n_fft) * win

    parts: Iterator[tuple[int, int, np.ndarray]]
    if n_fr > EQ_BLOCK_FRAMES and workers > 1:
        # overlap-added here in order: the same samples (a 5-min track 1.19 -> 0.83 s)
        from semcodec.background import mapped  # noqa: PLC0415

        parts = mapped(filtered, segments(), workers)
    else:
        parts = map(filtered, segments())
    for e, a, fr in parts:
        b = a + (fr.shape[0] - 1) * hop + n_fft
        dsp.overlap_add(out, fr, a - base, hop)
        dsp.overlap_add(norm, np.broadcast_to(win ** 2, fr.shape), a - base, hop)
        done = e * hop if e < n_fr else b  # no later frame reaches below this sample
        piece = _finished(out, norm, base, done, n_fft, n)
        if piece.size:
            emitted += piece.shape[0]
            yield piece
        if e == n_fr:
            break
        out[:b - done], norm[:b - done] = out[done - base:b - base], norm[done - base:b - base]
        out[b - done:], norm[b - done:] = 0.0, 0.0
        base = done
    if emitted < n:  # pragma: no cover - the last frame reaches past the end
        yield np.zeros(n - emitted, np.float32)


class BlockReader:
    """Random access to a forward-only stream of blocks (``n`` samples in all, zero-padded if
    it ends early): :meth:`read` ``(lo, hi)`` with ``lo`` never decreasing keeps only the
    samples from ``lo`` on."""

    def __init__(self, blocks: Iterator[np.ndarray], n: int) -> None:
        self.it, self.n = iter(blocks), n
        self.buf = np.zeros(0, np.float32)
        self.start = 0  # sample index of buf[0]

    def read(self, lo: int, hi: int) -> np.ndarray:
        hi = min(hi, self.n)
        have = [self.buf[max(0, lo - self.start):]]
        end = self.start + self.buf.shape[0]
        while end < hi:
            x = next(self.it, None)
            x = np.zeros(hi - end, np.float32) if x is None else np.asarray(x, np.float32)
            have.append(x)
            end += x.shape[0]
        self.start = max(lo, self.start)
        self.buf = np.concatenate(have) if len(have) > 1 else have[0]
        return self.buf[:hi - self.start]


def exactly(blocks: Iterator[np.ndarray], n: int) -> Iterator[np.ndarray]:
    """``blocks`` cut or zero-padded to ``n`` samples in all, as float32."""
    done = 0
    for x in blocks:
        x = np.asarray(x, np.float32)[:n - done]
        if x.size:
            done += x.shape[0]
            yield x
        if done >= n:
            return
    if done < n:
        yield np.zeros(n - done, np.float32)


def _finished(out: np.ndarray, norm: np.ndarray, base: int, done: int, lead: int,
              n: int) -> np.ndarray:
    """The finished padded samples ``[base, done)`` of :func:`eq_blocks`'s overlap-add
    (``out / norm``, buffers starting at padded sample ``base``) that are output samples
    (output sample 0 is padded sample ``lead``; ``n`` of them), as float32."""
    lo, hi = max(base, lead), min(done, lead + n)
    if hi <= lo:
        return np.zeros(0, np.float32)
    return (out[lo - base:hi - base] / np.maximum(norm[lo - base:hi - base], 1e-3)
            ).astype(np.float32)


# --- "sampler": the excerpt's notes replayed --------------------------------------------

@dataclass(frozen=True)
class Zone:
    """One excerpt note: its audio (mono float32 at the render rate), MIDI pitch, velocity
    and the loop region (sample indices) of its steady part."""

    audio: np.ndarray
    pitch: int
    velocity: int
    loop: tuple[int, int]


def zones(excerpt: np.ndarray, sr: int, notes: list[Note], start: float) -> list[Zone]:
    """Cut the excerpt (mono at ``sr``, beginning at ``start`` s of the original) into one
    zone per note it holds; a note is cut at the next note's onset (monophonic lines) or
    its own offset, whichever comes first.  Notes shorter than 60 ms are skipped, and so are
    notes of a chord (another note starting within 30 ms, or still sounding at the onset):
    their audio is not theirs alone."""
    out = []
    ns = sorted(notes, key=lambda n: n.onset)
    for k, n in enumerate(ns):
        a = int(round((n.onset - start) * sr))
        if any(m is not n and (abs(m.onset - n.onset) < 0.03
                               or m.onset < n.onset < m.offset - 0.03) for m in ns):
            continue
        end = n.offset
        later = [m.onset for m in ns[k + 1:] if m.onset > n.onset + 0.03]
        if later:
            end = min(end, later[0])
        b = min(excerpt.shape[0], int(round((end - start) * sr)))
        if a < 0 or b - a < int(0.06 * sr):
            continue
        seg = excerpt[a:b].astype(np.float32)
        la, lb = int(0.3 * seg.shape[0]), int(0.85 * seg.shape[0])
        out.append(Zone(seg, int(n.pitch), int(n.velocity), (la, lb)))
    return out


def _read_position(rate: np.ndarray, loop: tuple[int, int], length: int) -> np.ndarray:
    """Read positions (fractional samples) advancing by ``rate`` per output sample, wrapped
    into the loop ``[a, b)`` once past its end."""
    pos = np.concatenate([[0.0], np.cumsum(rate[:-1])]) if rate.size else rate
    a, b = loop
    if b - a > 8 and pos.size and pos[-1] >= b:
        over = pos >= b
        pos[over] = a + np.mod(pos[over] - a, b - a)
    return np.minimum(pos, length - 1.001)


def _looped(z: Zone, sr: int) -> np.ndarray:
    """The zone's audio with its loop end crossfaded into its loop start (seamless jumps)."""
    a, b = z.loop
    x = z.audio.astype(np.float64).copy()
    xf = min(int(LOOP_XFADE_S * sr), a, (b - a) // 2)
    if xf > 4:
        r = np.linspace(0.0, 1.0, xf)
        x[b - xf:b] = x[b - xf:b] * (1.0 - r) + x[a - xf:a] * r
    return x


def play_note(z: Zone, note: Note, sr: int, transpose: int = 0, tempo: float = 1.0,
              tail_s: float = RELEASE_S) -> np.ndarray:
    """One target ``note`` played from zone ``z``: float32 audio from its onset (at ``sr``),
    ``(offset - onset) / tempo + tail_s`` seconds long."""
    dur = max(0.01, note.duration / tempo)
    n = int(round((dur + tail_s) * sr))
    t = np.arange(n) / sr
    ratio = midi_hz(pitch_contour(note, t * tempo, transpose)) / midi_hz(float(z.pitch))
    src = _looped(z, sr)
    pos = _read_position(np.asarray(ratio, np.float64), z.loop, src.shape[0])
    y = np.interp(pos, np.arange(src.shape[0]), src)
    # the zone's own end fades out: a target longer than it loops, a shorter one is cut
    env = np.ones(n)
    rel = int(tail_s * sr)
    k0 = max(0, n - rel)
    env[k0:] = np.linspace(1.0, 0.0, n - k0)
    gain = (max(1, note.velocity) / max(1, z.velocity)) ** 2
    return (y * env * min(gain, 8.0)).astype(np.float32)


def covered(track: Track, zs: list[Zone], transpose: int = 0) -> list[int]:
    """Indices of ``track``'s notes the sampler plays (an excerpt note within
    SAMPLER_MAX_SHIFT semitones)."""
    if not zs:
        return []
    pitches = np.array([z.pitch for z in zs])
    return [i for i, n in enumerate(track.notes)
            if np.min(np.abs(pitches - (n.pitch + transpose))) <= SAMPLER_MAX_SHIFT]


def render_sampler(track: Track, zs: list[Zone], sr: int, n_samples: int, *,
                   transpose: int = 0, tempo: float = 1.0) -> tuple[np.ndarray, list[int]]:
    """``(audio (n_samples,), indices of the notes played)``: the covered notes of ``track``
    played from the zones (the nearest pitch; among equals, the closest velocity)."""
    out = np.zeros(int(n_samples), np.float32)
    idx = covered(track, zs, transpose)
    for i in idx:
        n = track.notes[i]
        p = n.pitch + transpose
        z = min(zs, key=lambda z: (abs(z.pitch - p), abs(z.velocity - n.velocity)))
        s = int(round(n.onset / tempo * sr))
        if s >= out.shape[0] or s < 0:
            continue
        y = play_note(z, n, sr, transpose, tempo)
        e = min(out.shape[0], s + y.shape[0])
        out[s:e] += y[:e - s]
    return out, idx


# --- the decoder's hook -------------------------------------------------------------------

def decode_excerpt(sample, sr: int) -> np.ndarray | None:
    """A stored excerpt (``Sample``, codec ``opus``) decoded to mono float32 at ``sr`` Hz, or
    None when it cannot be read (the caller then plays the engine alone)."""
    import io  # noqa: PLC0415

    import soundfile as sf  # noqa: PLC0415

    from semcodec.synth import dsp  # noqa: PLC0415

    if sample.codec != "opus":
        return None
    try:
        data, rate = sf.read(io.BytesIO(sample.data), dtype="float32", always_2d=True)
    except Exception:  # noqa: BLE001 - libsndfile raises several types
        return None
    return dsp.resample(dsp.downmix(data), int(rate), int(sr))


def excerpt_zones(excerpts: list[tuple[np.ndarray, float]], sr: int, track: Track) -> list[Zone]:
    """The sampler zones of a track's excerpts (decoded at ``sr``, with their start times in
    s): each excerpt's notes of ``track`` cut out of it (:func:`zones`)."""
    return [z for x, st in excerpts for z in zones(x, sr, notes_in(track, st, x.shape[0] / sr), st)]


def voice_model(spec, excerpts: list[tuple[np.ndarray, float]], sr: int, track: Track):
    """The singer a ``"voice"`` render sings with: the one stored in ``spec`` (a
    ``TrackRender``), else measured on the excerpts; None when neither gives one."""
    from semcodec.synth import voice  # noqa: PLC0415

    if spec.voice:
        return voice.VoiceModel.from_params(spec.voice)
    return voice.analyze_excerpts(excerpts, sr, track) if excerpts else None


def render_track(track: Track, excerpts: list[tuple[np.ndarray, float]], sr: int,
                 n_samples: int, engine: Callable[[Track], np.ndarray], *,
                 transpose: int = 0, tempo: float = 1.0, seed: int = 0) -> np.ndarray:
    """One pitched track as its :class:`~semcodec.events.TrackRender` says, mono float32
    ``(n_samples,)`` at ``sr`` Hz, before the decoder's loudness matching.

    ``excerpts``: the track's stored excerpts, decoded at ``sr``, with their start times (s)
    in the original.  ``engine(track)`` renders a track (some of its notes) with the decoding
    engine.  Without a ``render`` (or without the excerpts its ``use`` needs) this is
    ``engine(track)``; ``eq_db``, ``room`` and ``gain_db`` apply to every use.
    """
    from dataclasses import replace  # noqa: PLC0415

    from semcodec.synth import voice  # noqa: PLC0415

    spec = track.render
    use = spec.use if spec is not None else ""
    y = None
    if use == "voice" and spec is not None and (excerpts or spec.voice):
        model = voice_model(spec, excerpts, sr, track)
        if model is not None:
            y = voice.render(model, track, sr, n_samples, transpose=transpose, tempo=tempo,
                             seed=seed)
    elif use == "sampler" and excerpts:
        zs = excerpt_zones(excerpts, sr, track)
        if zs:
            y, played = render_sampler(track, zs, sr, n_samples, transpose=transpose, tempo=tempo)
            rest = set(range(len(track.notes))) - set(played)
            if rest:
                y = y + engine(replace(track, notes=tuple(track.notes[i] for i in sorted(rest))))
    if y is None:
        y = engine(track)
        if use:  # the excerpt is missing or unreadable: the engine alone, as fitted for it
            return np.asarray(y, np.float32)
    if spec is None:
        return np.asarray(y, np.float32)
    if len(spec.room) == 2:
        y = apply_room(y, sr, float(spec.room[0]), float(spec.room[1]), seed=seed)
    if spec.eq_db:
        y = apply_eq(y, sr, np.asarray(spec.eq_db, np.float64))
    return (np.asarray(y, np.float32) * np.float32(10.0 ** (spec.gain_db / 20.0)))
