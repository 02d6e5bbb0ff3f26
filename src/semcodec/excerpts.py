"""Excerpts of a track at encode time: the windows the timbre fit (:mod:`semcodec.timbre`)
renders (where its notes sound most cleanly, the notes inside them, the track's own part of a
mix's excerpts), and the short Opus samples stored in the file.

Times in seconds, audio mono float32.  Samples are Opus in OGG at 24 kHz.
"""

from __future__ import annotations

import io
import math

import numpy as np

from semcodec.audio import canonical_ogg, read_sample
from semcodec.events import Sample, Score
from semcodec.synth import dsp

#: Excerpts used for fitting: at most this many windows of this length per track (s).
FIT_WINDOWS = 3
FIT_WINDOW_S = 2.0
SAMPLE_RATE_OPUS = 24000
SAMPLE_SEGMENT_S = 2.0


def sounding(score: Score, n_frames: int, fps: float, skip: int) -> np.ndarray:
    """Per frame: number of notes sounding in tracks other than ``skip`` (drums included)."""
    cnt = np.zeros(n_frames, np.int32)
    for i, t in enumerate(score.tracks):
        if i == skip:
            continue
        for n in t.notes:
            a, b = int(n.onset * fps), int(math.ceil(n.offset * fps))
            cnt[max(0, a):max(0, min(n_frames, b))] += 1
    return cnt


def fit_windows(score: Score, ti: int, duration: float, samples: tuple[Sample, ...]) -> list[float]:
    """Start times of up to FIT_WINDOWS excerpts of track ``ti``."""
    own = [s.start for s in samples if s.track == ti][:FIT_WINDOWS]
    notes = score.tracks[ti].notes
    fps = 20.0
    n_frames = int(duration * fps) + 2
    others = sounding(score, n_frames, fps, ti)
    mine = np.zeros(n_frames, np.int32)
    for n in notes:
        mine[max(0, int(n.onset * fps)):max(0, min(n_frames, int(math.ceil(n.offset * fps))))] += 1
    w = int(FIT_WINDOW_S * fps)
    cands = []
    for n in notes:
        st = max(0.0, n.onset - 0.02)
        a = int(st * fps)
        if st + 0.3 > duration:
            continue
        seg_m, seg_o = mine[a:a + w], others[a:a + w]
        # prefer: our notes sound, few other notes, no note of ours already sounding at start
        held = sum(1 for m in notes if m.onset < st - 0.01 and m.offset > st)
        score_w = float((seg_m > 0).mean()) - 0.5 * float(np.minimum(seg_o, 3).mean()) - 0.5 * held
        cands.append((score_w, st))
    cands.sort(key=lambda c: -c[0])
    chosen: list[float] = list(own)
    for _, st in cands:
        if all(abs(st - c) >= FIT_WINDOW_S for c in chosen):
            chosen.append(st)
        if len(chosen) >= FIT_WINDOWS:
            break
    return sorted(chosen[:FIT_WINDOWS])


def excerpt_notes(score: Score, ti: int, starts: list[float]):
    """Notes of track ``ti`` starting inside each window, relative to it, with group ids."""
    on, off, pit, vel, bends, grp = [], [], [], [], [], []
    for g, st in enumerate(starts):
        for n in score.tracks[ti].notes:
            if st - 1e-6 <= n.onset < st + FIT_WINDOW_S - 0.05:
                on.append(n.onset - st)
                off.append(max(n.offset - st, n.onset - st + 0.01))
                pit.append(min(127, max(0, n.pitch)))
                vel.append(max(1, min(127, n.velocity)))
                bends.append(tuple((b.time, b.semitones) for b in n.bends))
                grp.append(g)
    return on, off, pit, vel, bends, np.asarray(grp, np.int64)


def isolate(target: np.ndarray, starts: list[float], score: Score, ti: int,
             others: list[int], sr: int, n_harm: int = 12) -> np.ndarray:
    """Track ``ti``'s part of mix excerpts ``target`` (G, n) by harmonic masking.

    In an STFT of each excerpt, bins near a harmonic of one of ``ti``'s sounding notes (and
    of no other track's) are kept, bins near other tracks' harmonics only are removed, shared
    ones are halved, and the remaining bins (noise, transients) are scaled by the track's share
    of the frame's harmonic energy.  Fitting a track against this, instead of the whole mix,
    keeps it from imitating the other instruments and gives it its own level.
    """
    n_fft, hop = 2048, 512
    win = np.hanning(n_fft + 1)[:-1]
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    out = np.zeros_like(target)
    for g, st in enumerate(starts):
        x = target[g].astype(np.float64)
        n = x.shape[0]
        xp = np.pad(x, (n_fft // 2, n_fft // 2 + hop))
        n_fr = 1 + (xp.shape[0] - n_fft) // hop
        idx = np.arange(n_fr)[:, None] * hop + np.arange(n_fft)[None, :]
        spec = np.fft.rfft(xp[idx] * win, axis=1)
        t = st + np.arange(n_fr) * hop / sr
        m_mine = np.zeros(spec.shape, bool)
        m_other = np.zeros(spec.shape, bool)
        for tj in [ti, *others]:
            for note in score.tracks[tj].notes:
                if note.offset < st - 0.1 or note.onset > st + FIT_WINDOW_S:
                    continue
                fr = (t >= note.onset - 0.02) & (t <= note.offset + 0.05)
                if not fr.any():
                    continue
                f0 = 440.0 * 2.0 ** ((note.pitch - 69) / 12.0)
                near = np.zeros(freqs.shape[0], bool)
                for k in range(1, n_harm + 1):
                    if k * f0 > sr / 2:
                        break
                    near |= np.abs(freqs - k * f0) <= max(0.03 * k * f0, 1.5 * sr / n_fft)
                if tj == ti:
                    m_mine[fr] |= near
                else:
                    m_other[fr] |= near
        power = np.abs(spec) ** 2
        e_mine = (power * m_mine).sum(axis=1)
        e_all = (power * (m_mine | m_other)).sum(axis=1)
        share = np.where(e_all > 0, e_mine / np.maximum(e_all, 1e-30),
                         (m_mine.any(axis=1)).astype(np.float64))
        mask = np.where(m_mine & ~m_other, 1.0, np.where(m_mine & m_other, 0.5,
                        np.where(m_other, 0.0, share[:, None])))
        y = np.fft.irfft(spec * mask, n_fft, axis=1) * win
        acc = np.zeros(xp.shape[0])
        norm = np.zeros(xp.shape[0])
        dsp.overlap_add(acc, y, 0, hop)
        dsp.overlap_add(norm, np.broadcast_to(win ** 2, y.shape), 0, hop)
        rec = acc / np.maximum(norm, 1e-8)
        out[g] = rec[n_fft // 2:n_fft // 2 + n].astype(target.dtype)
    return out


# --- samples ------------------------------------------------------------------------------

def extract_samples(audio: np.ndarray, sr: int, score: Score, *,
                    max_total_s: float = 3.0, count: int = 1) -> tuple[Sample, ...]:
    """Per pitched track, up to ``count`` non-overlapping excerpts of at most
    ``min(max_total_s, SAMPLE_SEGMENT_S)`` seconds each where its notes sound most cleanly (few
    notes of other tracks, little self-overlap, enough energy), best first, coded as Opus (OGG,
    24 kHz, lowest bitrate setting, ~8 kbps + ~0.1 kB of stream headers once canonical_ogg has
    shrunk the comment header): ``Sample(codec="opus")``.  One stream per excerpt keeps the
    header overhead down; a long input may afford several (the encoder's budget decides)."""
    audio = np.asarray(audio, np.float32)
    duration = audio.shape[0] / sr
    out = []
    fps = 100.0
    n_frames = int(duration * fps) + 2
    seg_s = min(max_total_s, SAMPLE_SEGMENT_S)
    if seg_s < 0.1:
        return ()
    for ti, track in enumerate(score.tracks):
        if track.is_drum or not track.notes:
            continue
        others = sounding(score, n_frames, fps, ti)
        mine = np.zeros(n_frames, np.int32)
        for n in track.notes:
            mine[max(0, int(n.onset * fps)):max(0, min(n_frames, int(math.ceil(n.offset * fps))))] += 1
        cands = []
        for n in track.notes:
            st = max(0.0, n.onset - 0.01)
            ln = min(seg_s, duration - st)
            if ln < 0.1:
                continue
            a, b = int(st * fps), int((st + ln) * fps)
            held = any(m.onset < st - 0.01 and m.offset > st + 0.02 for m in track.notes)
            clean = 1.0 - float(np.minimum(others[a:b], 2).mean()) / 2.0
            poly = float(np.maximum(mine[a:b] - 1, 0).mean())
            busy = float((mine[a:b] > 0).mean())
            seg = audio[int(st * sr):int((st + ln) * sr)]
            rms = float(np.sqrt(np.mean(seg.astype(np.float64) ** 2))) if seg.size else 0.0
            if rms <= 1e-5:
                continue
            # prefer full-length excerpts: a 0.2-s sample costs the same stream headers
            value = (clean + 0.5 * busy - 0.3 * poly - 0.3 * held + 0.05 * math.log10(rms)
                     + 0.5 * min(ln / seg_s, 1.0))
            cands.append((value, st, ln))
        cands.sort(key=lambda c: -c[0])
        chosen: list[tuple[float, float, float]] = []
        for cand in cands:
            if all(cand[1] + cand[2] <= c[1] or c[1] + c[2] <= cand[1] for c in chosen):
                chosen.append(cand)
            if len(chosen) >= max(1, count):
                break
        for _, st, ln in chosen:
            out.append(_opus_sample(audio, sr, ti, st, ln))
    return tuple(out)


def _opus_sample(audio: np.ndarray, sr: int, ti: int, st: float, ln: float) -> Sample:
    """The excerpt ``[st, st + ln)`` (s) of ``audio`` as an Opus ``Sample`` of track ``ti``."""
    import soundfile as sf  # noqa: PLC0415

    seg = audio[int(round(st * sr)):int(round((st + ln) * sr))]
    seg = dsp.resample(seg, sr, SAMPLE_RATE_OPUS)
    seg = dsp.fade_edges(np.clip(seg, -1.0, 1.0), SAMPLE_RATE_OPUS, 0.005)
    buf = io.BytesIO()
    sf.write(buf, seg, SAMPLE_RATE_OPUS, format="OGG", subtype="OPUS", compression_level=1.0)
    return Sample(track=ti, start=float(st), duration=float(seg.shape[0] / SAMPLE_RATE_OPUS),
                  sample_rate=SAMPLE_RATE_OPUS, codec="opus", data=canonical_ogg(buf.getvalue()))


def decode_sample(sample: Sample) -> tuple[np.ndarray, int]:
    """Decode a :class:`Sample` to (mono float32 audio, sample rate); checked by
    :func:`semcodec.audio.read_sample` (ContainerError when the payload is unusable)."""
    data, rate = read_sample(sample)
    return dsp.downmix(data), rate
