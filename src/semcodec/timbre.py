"""Encode-time timbre fitting for the neural engine, and short-sample extraction.

:func:`fit_timbres` works by analysis by synthesis on a few short excerpts of each pitched
track (the given samples' regions, else the cleanest stretches the score covers):

1. shortlist General MIDI programs with a cheap proxy: the model's per-frame harmonic spectrum
   (no audio synthesis) against the harmonic magnitudes measured in the original at the notes'
   f0 — one global level offset, so the proxy compares spectral *and* temporal shape;
2. render the excerpts with the model for the shortlisted programs and keep the best under the
   multi-resolution STFT loss: its embedding is the starting point and it is the track's GM
   program (the fluidsynth fallback's patch);
3. refine embedding + gain + room with Adam on that loss within the time budget, keeping the
   best parameters seen.

torch is imported lazily (only when fitting).  Samples are Opus in OGG at 24 kHz.
"""

from __future__ import annotations

import io
import logging
import math
import time
from typing import Any, Callable

import numpy as np

from semcodec.constants import VOICE_PROGRAMS, is_voice_name
from semcodec.events import Sample, Score, Timbre
from semcodec.audio import canonical_ogg, read_sample
from semcodec.synth import dsp

log = logging.getLogger(__name__)

#: Excerpts used for fitting: at most this many windows of this length per track (s).
FIT_WINDOWS = 3
FIT_WINDOW_S = 2.0
#: Programs whose model rendering is compared in step 2.
SHORTLIST = 3
#: Common General MIDI programs always rendered in step 2 (piano, e-piano, organ, guitars, bass,
#: strings, brass, reeds, flute): a prior on what real recordings mostly contain.
#: Programs from here on (percussive, sound effects) are never chosen for a pitched track.
PITCHED_PROGRAMS_END = 112
COMMON_PROGRAMS = (0, 4, 16, 24, 25, 26, 29, 33, 40, 48, 56, 65, 71, 73)
#: Steps of the deterministic fit (no budget given): proxy steps, then rendering steps.
DET_PROXY_STEPS = 30
DET_STEPS = 4
MAX_STEPS = 40
PROXY_STEPS = 150
#: Proxy steps done even when the budget is spent (they are cheap).
PROXY_MIN_STEPS = 20
SAMPLE_RATE_OPUS = 24000
SAMPLE_SEGMENT_S = 2.0


# --- excerpt selection ------------------------------------------------------------------

def _sounding(score: Score, n_frames: int, fps: float, skip: int) -> np.ndarray:
    """Per frame: number of notes sounding in tracks other than ``skip`` (drums included)."""
    cnt = np.zeros(n_frames, np.int32)
    for i, t in enumerate(score.tracks):
        if i == skip:
            continue
        for n in t.notes:
            a, b = int(n.onset * fps), int(math.ceil(n.offset * fps))
            cnt[max(0, a):max(0, min(n_frames, b))] += 1
    return cnt


def _windows(score: Score, ti: int, duration: float, samples: tuple[Sample, ...]) -> list[float]:
    """Start times of up to FIT_WINDOWS excerpts of track ``ti``."""
    own = [s.start for s in samples if s.track == ti][:FIT_WINDOWS]
    notes = score.tracks[ti].notes
    fps = 20.0
    n_frames = int(duration * fps) + 2
    others = _sounding(score, n_frames, fps, ti)
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


def _excerpt_notes(score: Score, ti: int, starts: list[float]):
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


def _isolate(target: np.ndarray, starts: list[float], score: Score, ti: int,
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
        np.add.at(acc, idx, y)
        np.add.at(norm, idx, np.broadcast_to(win ** 2, y.shape))
        rec = acc / np.maximum(norm, 1e-8)
        out[g] = rec[n_fft // 2:n_fft // 2 + n].astype(target.dtype)
    return out


# --- program shortlist (no synthesis) ---------------------------------------------------

def _harmonic_obs(x: np.ndarray, nb, grp: np.ndarray, sr: int):
    """Observed harmonic magnitudes (N, F, H) at the model's frames + mask of usable entries."""
    from semcodec.synth import ddsp  # noqa: PLC0415

    n_fft = 2048
    win = np.hanning(n_fft).astype(np.float32)
    N, F = nb.valid.shape
    H = ddsp.N_HARM
    obs = np.zeros((N, F, H), np.float32)
    f0 = nb.f0_hz()
    k = np.arange(1, H + 1)
    usable = nb.valid & (nb.t_abs >= nb.onsets[:, None])
    for i in range(N):
        xs = x[grp[i]]
        for j in range(0, F, 2):  # every other frame: enough, halves the cost
            if not usable[i, j]:
                continue
            c = int(round(nb.t_abs[i, j] * sr))
            a, b = c - n_fft // 2, c + n_fft // 2
            if a < 0 or b > xs.shape[0]:
                usable[i, j] = False
                continue
            spec = np.abs(np.fft.rfft(xs[a:b] * win))
            bins = k * f0[i, j] * n_fft / sr
            ok = bins < spec.shape[0] - 2
            bi = np.round(bins[ok]).astype(np.int64)
            obs[i, j, :ok.sum()] = np.maximum(np.maximum(spec[bi - 1], spec[bi]), spec[bi + 1]) / (n_fft / 4)
        usable[i, 1::2] = False
    return obs, usable


class _Proxy:
    """Frame-domain loss without audio synthesis: model harmonic magnitudes vs observed ones
    (log, one free global offset), differentiable w.r.t. the embedding."""

    def __init__(self, nb, obs, usable) -> None:
        import torch  # noqa: PLC0415

        from semcodec.synth import ddsp  # noqa: PLC0415

        self.ok = bool(usable.any())
        self.feats = torch.from_numpy(nb.features()[usable])
        self.f0 = torch.from_numpy(nb.f0_hz()[usable].astype(np.float32))
        self.o = torch.from_numpy(np.log(obs[usable] + 1e-4))
        self.hmask = ((self.f0[:, None] * torch.arange(1, ddsp.N_HARM + 1)) < ddsp.HARM_MAX_HZ).float()
        # weight the louder observed partials more (quiet ones are mostly leakage / noise)
        self.wt = self.hmask * torch.clamp(self.o - self.o.max() + 6.0, 0.0, 6.0) / 6.0

    def __call__(self, model, emb, max_rows: int | None = None):
        """emb (P, E) → loss (P,); ``max_rows`` evenly subsamples the frames (cheaper)."""
        import torch  # noqa: PLC0415

        from semcodec.synth import ddsp  # noqa: PLC0415

        sel: Any = slice(None)
        if max_rows is not None and self.feats.shape[0] > max_rows:
            sel = torch.linspace(0, self.feats.shape[0] - 1, max_rows).long()
        feats, f0, o, wt = self.feats[sel], self.f0[sel], self.o[sel], self.wt[sel]
        P = emb.shape[0]
        amp, harm, _ = model(feats[None].expand(P, -1, -1), emb[:, None, :])
        pred = torch.log(ddsp.harmonic_amps(amp, harm, f0[None].expand(P, -1)) + 1e-4)
        d = (pred - o[None]) * wt[None]
        norm = wt.sum().clamp(min=1e-6)
        off = d.sum(dim=(1, 2)) / norm
        return ((d - off[:, None, None] * wt[None]).abs()).sum(dim=(1, 2)) / norm


def _shortlist(model, proxy: _Proxy, k: int) -> list[int]:
    import torch  # noqa: PLC0415

    if not proxy.ok:
        return list(range(k))
    with torch.no_grad():
        dist = proxy(model, model.embedding.weight, max_rows=64)
    # percussive and sound-effect programs (112..127) are not candidates for a pitched track:
    # a near-miss there (a taiko for a guitar) makes a poor fluidsynth fallback
    return [int(p) for p in torch.argsort(dist) if int(p) < PITCHED_PROGRAMS_END][:k]


# --- fitting ------------------------------------------------------------------------------

def fit_timbres(audio: np.ndarray, sr: int, score: Score, *, samples: tuple[Sample, ...] = (),
                budget_s: float | None = None, device: str = "cpu",  # noqa: ARG001
                progress: Callable[[float], None] | None = None,
                ) -> tuple[tuple[Timbre, ...], dict[int, int], dict[int, tuple[str, float]]]:
    """audio: mono float32 original (n,), sr Hz. Returns one Timbre per pitched track (with
    notes), the best-matching GM program per track index, and ``{track: (engine, gain_dB)}``
    for the tracks whose excerpts the fallback engine (fluidsynth, the GM program through the
    soundfont, level-matched by gain_dB) renders closer than the fitted neural timbre, under
    the same multi-resolution STFT loss (:func:`_engine_losses`).

    ``budget_s`` None (default): a fixed number of steps, deterministic.  A number: a wall-clock
    cap in seconds on the whole fit (all tracks), results then depend on the machine's speed.

    Without neural weights/torch, returns no timbres and each track's own program.
    ``progress(fraction)`` (0..1 over all the pitched tracks, in order) is called as it goes.
    """
    from semcodec.synth.neural import torch_threads, weights_available  # noqa: PLC0415

    programs = {i: t.program for i, t in enumerate(score.tracks)}
    pitched = [i for i, t in enumerate(score.tracks) if not t.is_drum and t.notes]
    if not pitched or not weights_available():
        return (), programs, {}
    with torch_threads():
        return _fit_timbres(audio, sr, score, samples, budget_s, pitched, programs,
                            progress or (lambda _frac: None))


def _fit_timbres(audio, sr, score, samples, budget_s, pitched, programs, progress):
    import torch  # noqa: PLC0415

    from semcodec.synth import ddsp  # noqa: PLC0415
    from semcodec.synth.neural import load_model  # noqa: PLC0415

    # Without a wall-clock budget the fit runs a fixed number of steps, so that encoding the same
    # input twice gives the same bytes (on any machine load); a budget trades that for a cap.
    deterministic = budget_s is None
    total_budget = math.inf if deterministic else budget_s
    proxy_steps = DET_PROXY_STEPS if deterministic else PROXY_STEPS
    max_steps = DET_STEPS if deterministic else MAX_STEPS
    model = load_model()
    audio = np.asarray(audio, np.float32)
    ddsp.warmup()
    _p = torch.zeros(1, requires_grad=True)  # the first optimizer step imports a lot: do it now
    _o = torch.optim.Adam([_p])
    (_p * 2).sum().backward()
    _o.step()
    t0 = time.monotonic()  # the budget covers the fitting, not imports / model loading
    duration = audio.shape[0] / sr
    timbres = []
    engines: dict[int, tuple[str, float]] = {}
    for n_done, ti in enumerate(pitched):
        progress(n_done / len(pitched))
        deadline = t0 + total_budget * (n_done + 1) / len(pitched)
        starts = _windows(score, ti, duration, samples)
        on, off, pit, vel, bends, grp = _excerpt_notes(score, ti, starts)
        if not on:
            continue
        n_win = int(FIT_WINDOW_S * ddsp.SR_INT)
        target = np.zeros((len(starts), n_win), np.float32)
        for g, st in enumerate(starts):
            # resample only the excerpt (not the whole input: an hour would cost ~300 MB)
            a = int(st * sr)
            seg = dsp.resample(audio[a:a + int(FIT_WINDOW_S * sr) + 64], sr, ddsp.SR_INT)[:n_win]
            target[g, :seg.shape[0]] = seg
        others = [tj for tj in pitched if tj != ti]
        if others:  # one of several tracks of a mix: fit it against its own part of the mix
            target = _isolate(target, starts, score, ti, others, ddsp.SR_INT)
        nb = ddsp.NoteBatch(on, off, pit, vel, bends, FIT_WINDOW_S)
        tgt = torch.from_numpy(target)
        G = len(starts)

        def render(emb, room, gain_db, fast=False):
            y = ddsp.render_groups(model, nb, grp, emb[None].expand(G, -1),
                                   room[None].expand(G, -1), n_win, seed=ti, fast=fast,
                                   oscillator="numba")
            return y * (10.0 ** (gain_db / 20.0))

        def evaluate(emb, room, gain_db=None):
            with torch.no_grad():
                y = render(emb, room, 0.0, fast=True)
                g_db = _level_gain_db(y, tgt) if gain_db is None else gain_db
                return float(ddsp.mrstft_loss(y * 10.0 ** (g_db / 20.0), tgt)), g_db

        # 1. shortlist from harmonic spectra; 2. model renderings of the shortlist
        t_sel = time.monotonic()
        obs, usable = _harmonic_obs(target, nb, grp, ddsp.SR_INT)
        proxy = _Proxy(nb, obs, usable)
        cand = _shortlist(model, proxy, SHORTLIST)
        track = score.tracks[ti]
        voice = is_voice_name(track.name) or track.program in VOICE_PROGRAMS
        for p in (track.program, *(VOICE_PROGRAMS if voice else ()), *COMMON_PROGRAMS):
            if p not in cand:
                cand.append(p)
        best = None
        for p in cand:
            emb = model.embedding.weight[p].detach().clone()
            room = model.room.weight[p].detach().clone()
            loss, g_db = evaluate(emb, room)
            if best is None or loss < best[0]:
                best = (loss, p, emb, room, g_db)
            log.debug("program %d: loss %.3f (%.1f s)", p, loss, time.monotonic() - t_sel)
            progress((n_done + 0.3 * (cand.index(p) + 1) / len(cand)) / len(pitched))
            if time.monotonic() > deadline:
                break
        start_loss, program, emb0, room0, g0 = best
        programs[ti] = program
        log.info("track %d: program selection %.1f s", ti, time.monotonic() - t_sel)
        best_fit = (start_loss, emb0.clone(), room0.clone(), float(g0))
        step = 0
        # 3a. embedding on the frame-domain proxy (cheap), checked by a rendering; not for a
        # track of a mix, whose harmonic observations the other instruments contaminate (on the
        # bench's mixes it cost round-trip note F1: 0.59 -> 0.33 on one, with no mel gain)
        if proxy.ok and not others:
            emb = emb0.clone().requires_grad_(True)
            opt = torch.optim.Adam([emb], lr=0.05)
            proxy_deadline = time.monotonic() + 0.4 * max(0.0, deadline - time.monotonic())
            for step in range(proxy_steps):
                if step >= PROXY_MIN_STEPS and time.monotonic() > proxy_deadline:
                    break
                loss = proxy(model, emb[None])[0] + 0.01 * ((emb - emb0) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                progress((n_done + 0.3 + 0.1 * (step + 1) / proxy_steps) / len(pitched))
            cand_loss, g_db = evaluate(emb.detach(), room0)
            if cand_loss < best_fit[0]:
                best_fit = (cand_loss, emb.detach().clone(), room0.clone(), g_db)
        # 3b. embedding + room + gain on the spectral loss of the renderings (time permitting)
        emb = best_fit[1].clone().requires_grad_(True)
        room = best_fit[2].clone().requires_grad_(True)
        gain = torch.tensor(float(best_fit[3]), requires_grad=True)
        opt = torch.optim.Adam([{"params": [emb], "lr": 0.03}, {"params": [room], "lr": 0.1},
                                {"params": [gain], "lr": 0.3}])
        step_t, n_steps = 0.0, 0
        for n_steps in range(max_steps):
            ts = time.monotonic()
            if ts + step_t > deadline:
                break
            loss = ddsp.mrstft_loss(render(emb, room, gain), tgt)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step_t = time.monotonic() - ts
            progress((n_done + 0.4 + 0.55 * (n_steps + 1) / max_steps) / len(pitched))
        if n_steps:
            cand_loss, _ = evaluate(emb.detach(), room.detach(), float(gain.detach()))
            if cand_loss < best_fit[0]:
                best_fit = (cand_loss, emb.detach().clone(), room.detach().clone(), float(gain.detach()))
        step = (step, n_steps)
        log.info("track %d: program %d (candidates %s), loss %.3f -> %.3f in %s steps, %.1f s",
                 ti, program, cand, start_loss, best_fit[0], step, time.monotonic() - t0)
        timbres.append(Timbre(track=ti, embedding=tuple(float(v) for v in best_fit[1]),
                              gain_db=float(best_fit[3]),
                              room=tuple(float(v) for v in best_fit[2])))
        losses = _engine_losses(score, ti, starts, timbres[-1], program, tgt)
        if losses is not None:
            log.info("track %d: excerpts as decoded: neural loss %.3f, fluidsynth (program %d) "
                     "%.3f", ti, losses["neural"][0], program, losses["fluidsynth"][0])
            if losses["fluidsynth"][0] < losses["neural"][0]:
                engines[ti] = ("fluidsynth", losses["fluidsynth"][1])
    progress(1.0)
    return tuple(timbres), programs, engines


def _level_gain_db(y, tgt) -> float:
    """Gain (dB) that gives rendering ``y`` the RMS of target ``tgt`` (torch tensors)."""
    import torch  # noqa: PLC0415

    num = float(torch.sqrt((tgt ** 2).mean()))
    den = float(torch.sqrt((y ** 2).mean())) + 1e-9
    return 20.0 * math.log10(max(num, 1e-9) / den)


#: Silence between the excerpts when they are rendered in one go (s).  A release tail longer
#: than this plus ENGINE_CONTEXT_S sounds into the next excerpt, for both engines alike; short
#: renderings keep the comparison at ~0.5 s per track.
ENGINE_GAP_S = 1.0
#: Seconds before each excerpt rendered too, so that the notes sounding into it are there.
ENGINE_CONTEXT_S = 0.5


def _engine_losses(score: Score, ti: int, starts: list[float], fitted: Timbre, program: int,
                   tgt) -> dict[str, tuple[float, float]] | None:
    """``{"neural": (loss, gain dB), "fluidsynth": (loss, gain dB)}``: track ``ti``'s excerpts
    (windows at ``starts``, with ENGINE_CONTEXT_S of lead-in) rendered as the decoder renders
    them, by the neural engine with the fitted timbre and by fluidsynth with GM ``program``,
    each level-matched to ``tgt`` ((G, n) at the model rate) and scored by ``ddsp.mrstft_loss``.
    None when either engine is unavailable.  All excerpts go through one rendering per engine,
    ENGINE_GAP_S apart."""
    import torch  # noqa: PLC0415

    from dataclasses import replace  # noqa: PLC0415

    from semcodec.errors import SynthError  # noqa: PLC0415
    from semcodec.events import Track  # noqa: PLC0415
    from semcodec.synth import ddsp  # noqa: PLC0415
    from semcodec.synth.fluid import FluidsynthEngine  # noqa: PLC0415
    from semcodec.synth.neural import NeuralEngine  # noqa: PLC0415

    sr = ddsp.SR_INT
    G, n_win = int(tgt.shape[0]), int(tgt.shape[1])
    ctx, gap = int(ENGINE_CONTEXT_S * sr), int(ENGINE_GAP_S * sr)
    hop = ctx + n_win + gap
    notes = []
    for g, st in enumerate(starts[:G]):
        shift = g * hop / sr - (st - ENGINE_CONTEXT_S)
        for n in score.tracks[ti].notes:
            if st - ENGINE_CONTEXT_S <= n.onset < st + FIT_WINDOW_S:
                notes.append(replace(n, onset=n.onset + shift, offset=n.offset + shift))
    one = Score(tracks=(Track("t", program).with_notes(notes),))
    out = {}
    try:
        engines = (("neural", NeuralEngine(device="cpu")), ("fluidsynth", FluidsynthEngine()))
        for name, eng in engines:
            y: Any = eng.render(one, sr, hop * G, timbres=(replace(fitted, track=0),))
            y = torch.from_numpy(np.stack([y[g * hop + ctx:g * hop + ctx + n_win]
                                           for g in range(G)]).astype(np.float32))
            if float(torch.sqrt((y ** 2).mean())) <= 1e-9:
                return None  # an engine that renders nothing is not compared
            gain_db = _level_gain_db(y, tgt)
            with torch.no_grad():
                out[name] = (float(ddsp.mrstft_loss(y * (10.0 ** (gain_db / 20.0)), tgt)), gain_db)
    except SynthError as exc:
        log.info("engines not compared: %s", exc)
        return None
    return out


# --- samples ------------------------------------------------------------------------------

def extract_samples(audio: np.ndarray, sr: int, score: Score, *,
                    max_total_s: float = 3.0) -> tuple[Sample, ...]:
    """Per pitched track, one excerpt of at most ``min(max_total_s, SAMPLE_SEGMENT_S)`` seconds
    where its notes sound most cleanly (few notes of other tracks, little self-overlap, enough
    energy), coded as Opus (OGG, 24 kHz, lowest bitrate setting, ~8 kbps + ~0.1 kB of stream
    headers once canonical_ogg has shrunk the comment header): ``Sample(codec="opus")``.  One stream
    per track keeps the header overhead down."""
    import soundfile as sf  # noqa: PLC0415

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
        others = _sounding(score, n_frames, fps, ti)
        mine = np.zeros(n_frames, np.int32)
        for n in track.notes:
            mine[max(0, int(n.onset * fps)):max(0, min(n_frames, int(math.ceil(n.offset * fps))))] += 1
        best = None
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
            if best is None or value > best[0]:
                best = (value, st, ln)
        if best is None:
            continue
        _, st, ln = best
        seg = audio[int(round(st * sr)):int(round((st + ln) * sr))]
        seg = dsp.resample(seg, sr, SAMPLE_RATE_OPUS)
        seg = dsp.fade_edges(np.clip(seg, -1.0, 1.0), SAMPLE_RATE_OPUS, 0.005)
        buf = io.BytesIO()
        sf.write(buf, seg, SAMPLE_RATE_OPUS, format="OGG", subtype="OPUS", compression_level=1.0)
        out.append(Sample(track=ti, start=float(st), duration=float(seg.shape[0] / SAMPLE_RATE_OPUS),
                          sample_rate=SAMPLE_RATE_OPUS, codec="opus",
                          data=canonical_ogg(buf.getvalue())))
    return tuple(out)


def decode_sample(sample: Sample) -> tuple[np.ndarray, int]:
    """Decode a :class:`Sample` to (mono float32 audio, sample rate); checked by
    :func:`semcodec.audio.read_sample` (ContainerError when the payload is unusable)."""
    data, rate = read_sample(sample)
    return dsp.downmix(data), rate
