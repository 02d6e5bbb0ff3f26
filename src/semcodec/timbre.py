"""Encode-time timbre fitting for the neural engine (sample extraction: :mod:`semcodec.excerpts`).

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

torch is imported lazily (only when fitting).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from semcodec.background import in_background
from semcodec.constants import VOICE_PROGRAMS, is_voice_name
from semcodec.events import Sample, Score, Timbre, Track
from semcodec.excerpts import FIT_WINDOW_S, excerpt_notes, fit_windows, isolate
from semcodec.excerpts import decode_sample as decode_sample  # re-exported: the encoder's API
from semcodec.excerpts import extract_samples as extract_samples
from semcodec.synth import dsp

log = logging.getLogger(__name__)

#: Programs whose model rendering is compared in step 2.
SHORTLIST = 3
#: Common General MIDI programs always rendered in step 2 (piano, e-piano, organ, guitars, bass,
#: strings, brass, reeds, flute): a prior on what real recordings mostly contain.
#: Programs from here on (percussive, sound effects) are never chosen for a pitched track.
PITCHED_PROGRAMS_END = 112
COMMON_PROGRAMS = (0, 4, 16, 24, 25, 26, 29, 33, 40, 48, 56, 65, 71, 73)
#: GM programs per GM family (the family of program p is p // this).
PROGRAMS_PER_FAMILY = 8
#: Steps of the deterministic fit (no budget given): proxy steps, then rendering steps.
#: No proxy steps (step 3a not done): with 30, the rendering of their result was never
#: better than the program selection's on the bench clips measured (Slakh S07, S02 of 1 and
#: 49, flute, winds, violin: 2026-11-30), so they changed no file and cost ~0.7-1.3 s of
#: CPU each.
DET_PROXY_STEPS = 0
DET_STEPS = 4
MAX_STEPS = 40
PROXY_STEPS = 150
#: Proxy steps done even when the budget is spent (they are cheap).
PROXY_MIN_STEPS = 20


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


def _shortlist(model, proxy: _Proxy, k: int, rows: int = 64) -> list[int]:
    """The ``k`` pitched GM programs whose stored embeddings the proxy (on ``rows`` frames)
    finds closest."""
    import torch  # noqa: PLC0415

    if not proxy.ok:
        return list(range(k))
    with torch.no_grad():
        dist = proxy(model, model.embedding.weight, max_rows=rows)
    # percussive and sound-effect programs (112..127) are not candidates for a pitched track:
    # a near-miss there (a taiko for a guitar) makes a poor fluidsynth fallback
    return [int(p) for p in torch.argsort(dist) if int(p) < PITCHED_PROGRAMS_END][:k]


# --- fitting ------------------------------------------------------------------------------

#: Most threads the fit uses (tracks of a mix, or a lone track's program candidates); more
#: gain little: the Python between the torch operations holds the GIL.
MAX_WORKERS = 4


#: torch threads of step 3b when a track is fitted alone (a solo, a stem): its renderings and
#: their back-propagation, one after the other, are the fit's longest part, with the other
#: core idle (S07: 3 steps 1.47 -> 0.97 s on two cores).  A fixed number, not the machine's
#: cores, so that the same input gives the same bytes on any machine (the sums of a torch op
#: split over threads depend on their number); tracks of a mix, fitted on parallel threads,
#: keep one each.
LONE_REFINE_THREADS = 2


#: Step 3b keeps the whole harmonic synthesis of a track's excerpts for back-propagation
#: (~0.5 GB): for an input longer than this (s), whose samples already take much memory, the
#: tracks fitted on parallel threads take turns for it (the results do not depend on the order).
LONG_INPUT_S = 600.0


def _n_workers() -> int:
    """Threads for the fit: the processors this process may use, at most MAX_WORKERS."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        n = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, n))


def _map(fn: Callable, items, workers: int) -> list:
    """``[fn(x) for x in items]``, on ``workers`` threads when more than one (same order)."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    with ThreadPoolExecutor(max_workers=min(workers, len(items)),
                            thread_name_prefix="semcodec-fit") as pool:
        return list(pool.map(fn, items))

class _Progress:
    """Overall progress of tracks fitted in parallel: each track reports its own fraction
    (0..1) from any thread; ``progress`` gets their mean, only when it grows."""

    def __init__(self, progress: Callable[[float], None] | None, n_tracks: int) -> None:
        self.progress, self.done = progress, [0.0] * max(1, n_tracks)
        self.last, self.lock = -1.0, threading.Lock()

    def track(self, k: int) -> Callable[[float], None]:
        """The reporting function of track number ``k`` (of the pitched tracks)."""
        return lambda frac: self.set(k, frac)

    def set(self, k: int, frac: float) -> None:
        if self.progress is None:
            return
        with self.lock:
            self.done[k] = max(self.done[k], min(1.0, frac))
            total = sum(self.done) / len(self.done)
            if total > self.last:
                self.last = total
                self.progress(total)


def _no_report(_frac: float) -> None:
    pass


@dataclass(frozen=True)
class FitSettings:
    """Step counts, learning rates and factors of the fit (steps as in the module docstring)."""

    #: 3a: proxy steps without a budget (deterministic) / at most with one / done in any case
    det_proxy_steps: int = DET_PROXY_STEPS
    proxy_steps: int = PROXY_STEPS
    proxy_min_steps: int = PROXY_MIN_STEPS
    #: 3b: rendering steps without a budget (deterministic) / at most with one
    det_steps: int = DET_STEPS
    max_steps: int = MAX_STEPS
    #: 1: proxy frames (evenly spread) on which all programs are ranked
    shortlist_rows: int = 64
    #: 3a: Adam learning rate of the embedding, weight of the pull back to the program's
    #: embedding, and the share of the track's remaining budget the step may use
    proxy_lr: float = 0.05
    proxy_anchor: float = 0.01
    proxy_budget_share: float = 0.4
    #: 3b: Adam learning rates of the embedding, the room parameters and the gain (dB)
    emb_lr: float = 0.03
    room_lr: float = 0.1
    gain_lr: float = 0.3


class _Adam:
    """Adam as ``torch.optim.Adam`` computes it with its defaults (betas 0.9/0.999, eps 1e-8,
    no weight decay, the same tensor operations, so the same numbers) on ``[(tensor, lr)]``.

    Written out because constructing ``torch.optim.Adam`` imports ``torch._dynamo``: 2-8 s of a
    30-s clip's encode on two cores, for a handful of tensors."""

    def __init__(self, params, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        import torch  # noqa: PLC0415

        self.params = [(p, float(lr), torch.zeros_like(p), torch.zeros_like(p)) for p, lr in params]
        self.b1, self.b2 = betas
        self.eps = eps
        self.t = 0

    def step(self, loss) -> None:
        """Back-propagate ``loss`` (a scalar tensor) and update the parameters."""
        import torch  # noqa: PLC0415

        for p, *_ in self.params:
            p.grad = None
        loss.backward()
        self.t += 1
        bc1 = 1.0 - self.b1 ** float(self.t)
        bc2_sqrt = (1.0 - self.b2 ** float(self.t)) ** 0.5
        with torch.no_grad():
            for p, lr, m, v in self.params:
                if p.grad is None:
                    continue
                m.lerp_(p.grad, 1.0 - self.b1)
                v.mul_(self.b2).addcmul_(p.grad, p.grad, value=1.0 - self.b2)
                p.addcdiv_(m, (v.sqrt() / bc2_sqrt).add_(self.eps), value=-(lr / bc1))


@dataclass
class _Excerpts:
    """Track ``ti``'s fitting excerpts: window starts (s), their notes (``nb``, ``grp``: each
    note's window), the target audio (G, n) at the model rate (numpy and torch), and the other
    pitched tracks of the same audio (a mix) it was isolated from."""

    ti: int
    starts: list[float]
    nb: Any
    grp: np.ndarray
    target: np.ndarray
    tgt: Any
    others: list[int]


def _track_excerpts(audio: np.ndarray, sr: int, score: Score, ti: int, pitched: list[int],
                    samples: tuple[Sample, ...]) -> _Excerpts | None:
    """The excerpts track ``ti`` is fitted on (None when none of its notes fall in one)."""
    import torch  # noqa: PLC0415

    from semcodec.synth import ddsp  # noqa: PLC0415

    starts = fit_windows(score, ti, audio.shape[0] / sr, samples)
    on, off, pit, vel, bends, grp = excerpt_notes(score, ti, starts)
    if not on:
        return None
    n_win = int(FIT_WINDOW_S * ddsp.SR_INT)
    target = np.zeros((len(starts), n_win), np.float32)
    for g, st in enumerate(starts):
        # resample only the excerpt (not the whole input: an hour would cost ~300 MB)
        a = int(st * sr)
        seg = dsp.resample(audio[a:a + int(FIT_WINDOW_S * sr) + 64], sr, ddsp.SR_INT)[:n_win]
        target[g, :seg.shape[0]] = seg
    others = [tj for tj in pitched if tj != ti]
    if others:  # one of several tracks of a mix: fit it against its own part of the mix
        target = isolate(target, starts, score, ti, others, ddsp.SR_INT)
    nb = ddsp.NoteBatch(on, off, pit, vel, bends, FIT_WINDOW_S)
    return _Excerpts(ti, starts, nb, grp, target, torch.from_numpy(target), others)


class _Renderer:
    """The model's rendering of one track's excerpts for an embedding, room and gain (dB)."""

    #: wavetable oscillator of the ``fast`` renderings (see ddsp.render_groups): torch's costs
    #: ~50 ms more per rendering of a track's excerpts than numba's kernel, which costs ~1.3 s
    #: of CPU to import and load in every encoding process
    oscillator = "torch"

    def __init__(self, model, ex: _Excerpts) -> None:
        self.model, self.ex = model, ex
        self.n_win = int(ex.target.shape[1])
        self._target_mags: list | None = None
        #: ddsp.render_groups's harmonic_cache for the differentiable renderings while it is a
        #: dict (step 3b: what depends on the notes only is made once for all its steps)
        self.harmonic_cache: dict | None = None

    def __call__(self, emb, room, gain_db, fast: bool = False):
        """(G, n) torch tensor; differentiable w.r.t. the parameters unless ``fast``."""
        from semcodec.synth import ddsp  # noqa: PLC0415

        G = len(self.ex.starts)
        y = ddsp.render_groups(self.model, self.ex.nb, self.ex.grp, emb[None].expand(G, -1),
                               room[None].expand(G, -1), self.n_win, seed=self.ex.ti,
                               fast=fast, oscillator=self.oscillator,
                               harmonic_cache=None if fast else self.harmonic_cache)
        return y * (10.0 ** (gain_db / 20.0))

    def evaluate(self, emb, room, gain_db: float | None = None) -> tuple[float, float]:
        """(multi-resolution STFT loss against the target, gain dB): the gain level-matches
        the rendering when not given."""
        import torch  # noqa: PLC0415

        from semcodec.synth import ddsp  # noqa: PLC0415

        with torch.no_grad():
            y = self(emb, room, 0.0, fast=True)
            g_db = _level_gain_db(y, self.ex.tgt) if gain_db is None else gain_db
            return float(ddsp.mrstft_loss(y * 10.0 ** (g_db / 20.0), self.ex.tgt,
                                          target_mags=self.target_mags())), g_db

    def target_mags(self) -> list:
        """The target's STFT magnitudes of the loss (computed once; threads may race to make
        them: the same numbers either way)."""
        from semcodec.synth import ddsp  # noqa: PLC0415

        if self._target_mags is None:
            self._target_mags = ddsp.mrstft_target(self.ex.tgt)
        return self._target_mags


#: A fit's best parameters so far: (loss, embedding, room, gain dB).
_Best = tuple
#: The instrument classifier's word on a track: (its GM program, the GM families (0..15)
#: whose COMMON_PROGRAMS are worth rendering).
Prior = tuple[int, frozenset[int]]


def _select_program(model, ex: _Excerpts, render: _Renderer, track: Track, proxy: _Proxy,
                    deadline: float, settings: FitSettings, workers: int = 1,
                    report: Callable[[float], None] = _no_report,
                    prior: Prior | None = None) -> tuple[list[int], int, _Best]:
    """Steps 1 and 2: (candidates, best program, its parameters and loss) among the proxy's
    shortlist, the track's own program (the voice programs for a voice), the instrument
    classifier's program and those of COMMON_PROGRAMS in its likely families (``prior``; all
    of them without one), each rendered with its stored embedding and room, level-matched;
    ``workers`` threads render them (the first in candidate order wins a tie, as one thread
    would choose); ``report`` gets the track's progress (0.3 when all are rendered)."""
    t_sel = time.monotonic()
    cand = _shortlist(model, proxy, SHORTLIST, settings.shortlist_rows)
    voice = is_voice_name(track.name) or track.program in VOICE_PROGRAMS
    common = COMMON_PROGRAMS if prior is None else (prior[0], *(
        p for p in COMMON_PROGRAMS if p // PROGRAMS_PER_FAMILY in prior[1]))
    for p in (track.program, *(VOICE_PROGRAMS if voice else ()), *common):
        if p not in cand:
            cand.append(p)
    n_done = [0]
    lock = threading.Lock()

    def one(p: int):
        if p != cand[0] and time.monotonic() > deadline:
            return None
        emb = model.embedding.weight[p].detach().clone()
        room = model.room.weight[p].detach().clone()
        loss, g_db = render.evaluate(emb, room)
        log.debug("program %d: loss %.3f (%.1f s)", p, loss, time.monotonic() - t_sel)
        with lock:
            n_done[0] += 1
            report(0.3 * n_done[0] / len(cand))
        return loss, p, emb, room, g_db

    best: tuple | None = None
    for r in _map(one, cand, workers):
        if r is not None and (best is None or r[0] < best[0]):
            best = r
    assert best is not None  # the first candidate is always rendered
    loss, program, emb, room, g_db = best
    log.info("track %d: program selection %.1f s", ex.ti, time.monotonic() - t_sel)
    return cand, program, (loss, emb, room, float(g_db))


def _refine_on_proxy(model, proxy: _Proxy, render: _Renderer, best: _Best, n_steps: int,
                     deadline: float, settings: FitSettings,
                     report: Callable[[float], None] = _no_report) -> tuple[_Best, int]:
    """Step 3a: the embedding on the frame-domain proxy (cheap), kept if a rendering confirms
    it; returns (best parameters, steps done); ``report``: the track's progress 0.3 -> 0.4."""
    emb0, room0 = best[1], best[2]
    emb = emb0.clone().requires_grad_(True)
    opt = _Adam([(emb, settings.proxy_lr)])
    proxy_deadline = time.monotonic() + settings.proxy_budget_share * max(0.0, deadline - time.monotonic())
    step = 0
    for step in range(n_steps):
        if step >= settings.proxy_min_steps and time.monotonic() > proxy_deadline:
            break
        opt.step(proxy(model, emb[None])[0] + settings.proxy_anchor * ((emb - emb0) ** 2).mean())
        report(0.3 + 0.1 * (step + 1) / n_steps)
    cand_loss, g_db = render.evaluate(emb.detach(), room0)
    if cand_loss < best[0]:
        best = (cand_loss, emb.detach().clone(), room0.clone(), g_db)
    return best, step


def _refine_on_render(render: _Renderer, best: _Best, max_steps: int, deadline: float,
                      settings: FitSettings, report: Callable[[float], None] = _no_report,
                      ) -> tuple[_Best, int]:
    """Step 3b: embedding, room and gain on the spectral loss of the renderings (as many of
    ``max_steps`` as the deadline allows); returns (best parameters, steps done);
    ``report``: the track's progress 0.4 -> 0.95."""
    import torch  # noqa: PLC0415

    from semcodec.synth import ddsp  # noqa: PLC0415

    emb = best[1].clone().requires_grad_(True)
    room = best[2].clone().requires_grad_(True)
    gain = torch.tensor(float(best[3]), requires_grad=True)
    opt = _Adam([(emb, settings.emb_lr), (room, settings.room_lr), (gain, settings.gain_lr)])
    step_t, n_steps = 0.0, 0
    render.harmonic_cache = {}  # the sine bases of the notes, made in the first step
    try:
        for n_steps in range(max_steps):
            ts = time.monotonic()
            if ts + step_t > deadline:
                break
            opt.step(ddsp.mrstft_loss(render(emb, room, gain), render.ex.tgt,
                                      target_mags=render.target_mags()))
            step_t = time.monotonic() - ts
            report(0.4 + 0.55 * (n_steps + 1) / max_steps)
    finally:
        render.harmonic_cache = None  # their memory (the size of a step's synthesis) freed
    if n_steps:
        cand_loss, _ = render.evaluate(emb.detach(), room.detach(), float(gain.detach()))
        if cand_loss < best[0]:
            best = (cand_loss, emb.detach().clone(), room.detach().clone(), float(gain.detach()))
    return best, n_steps


def _fit_track(model, score: Score, ex: _Excerpts, deadline: float, deterministic: bool,
               settings: FitSettings, workers: int = 1, slots: Any = None,
               report: Callable[[float], None] = _no_report, prior: Prior | None = None,
               refine_threads: int = 1,
               ) -> tuple[Timbre, int, tuple[str, float] | None]:
    """Steps 1-3 for one track, then the engine comparison: (its Timbre, its GM program,
    ``("fluidsynth", gain dB)`` when that engine renders its excerpts closer, else None);
    ``workers`` threads for step 2; step 3b holds one of ``slots`` (a semaphore) and runs on
    ``refine_threads`` torch threads at least; ``report`` gets the track's progress (0..1);
    ``prior``: see :func:`_select_program`."""
    slots = slots if slots is not None else threading.Semaphore(1)
    from semcodec.synth import ddsp  # noqa: PLC0415
    from semcodec.synth.neural import torch_threads  # noqa: PLC0415

    t0 = time.monotonic()
    ti = ex.ti
    render = _Renderer(model, ex)
    obs, usable = _harmonic_obs(ex.target, ex.nb, ex.grp, ddsp.SR_INT)
    proxy = _Proxy(ex.nb, obs, usable)
    cand, program, best = _select_program(model, ex, render, score.tracks[ti], proxy, deadline,
                                          settings, workers, report, prior)
    start_loss, steps = best[0], 0
    # the fluidsynth side of the engine comparison needs only the program: rendered meanwhile
    renders: dict = {}
    fluid_losses = in_background(_engine_losses, score, ti, ex.starts, None, program, ex.tgt,
                                 engines=("fluidsynth",), keep=renders, score_later=True)
    # 3a: not for a track of a mix, whose harmonic observations the other instruments
    # contaminate (on the bench's mixes it cost round-trip note F1: 0.59 -> 0.33 on one, with
    # no mel gain)
    proxy_steps = settings.det_proxy_steps if deterministic else settings.proxy_steps
    if proxy.ok and not ex.others and proxy_steps > 0:
        best, steps = _refine_on_proxy(model, proxy, render, best, proxy_steps, deadline,
                                       settings, report)
    with slots, torch_threads(refine_threads):  # step 3b's memory (LONG_INPUT_S)
        # the renderings before (on other threads too) leave freed memory in the C heap's
        # per-thread arenas: hand it back first, so that this peak does not come on top of it
        dsp.release_free_memory()
        best, n_steps = _refine_on_render(
            render, best, settings.det_steps if deterministic else settings.max_steps, deadline,
            settings, report)
    log.info("track %d: program %d (candidates %s), loss %.3f -> %.3f in %s steps, %.1f s",
             ti, program, cand, start_loss, best[0], (steps, n_steps), time.monotonic() - t0)
    timbre = Timbre(track=ti, embedding=tuple(float(v) for v in best[1]), gain_db=float(best[3]),
                    room=tuple(float(v) for v in best[2]))
    engine = None
    neural_renders: dict = {}
    losses = _engine_losses(score, ti, ex.starts, timbre, program, ex.tgt, engines=("neural",),
                            keep=neural_renders)
    fluid = fluid_losses()()  # scored here, on this thread's torch threads
    losses = None if losses is None or fluid is None else {**losses, **fluid}
    if losses is not None:
        log.info("track %d: excerpts as decoded: neural loss %.3f, fluidsynth (program %d) "
                 "%.3f", ti, losses["neural"][0], program, losses["fluidsynth"][0])
        if (losses["fluidsynth"][0] < losses["neural"][0]
                and _fluid_keeps_notes(ti, {**renders, **neural_renders})):
            engine = ("fluidsynth", losses["fluidsynth"][1])
    report(1.0)
    return timbre, program, engine


def fit_timbres(audio: np.ndarray, sr: int, score: Score, *, samples: tuple[Sample, ...] = (),
                budget_s: float | None = None, device: str = "cpu",  # noqa: ARG001
                settings: FitSettings | None = None,
                progress: Callable[[float], None] | None = None,
                priors: dict[int, Prior] | None = None,
                ) -> tuple[tuple[Timbre, ...], dict[int, int], dict[int, tuple[str, float]]]:
    """audio: mono float32 original (n,), sr Hz. Returns one Timbre per pitched track (with
    notes), the best-matching GM program per track index, and ``{track: (engine, gain_dB)}``
    for the tracks whose excerpts the fallback engine (fluidsynth, the GM program through the
    soundfont, level-matched by gain_dB) renders closer than the fitted neural timbre, under
    the same multi-resolution STFT loss (:func:`_engine_losses`).

    ``budget_s`` None (default): a fixed number of steps, deterministic.  A number: a wall-clock
    cap in seconds on the whole fit (all tracks), results then depend on the machine's speed.
    ``progress(fraction)`` (0..1 over all the pitched tracks, which may be fitted on parallel
    threads: the mean of their fractions) is called as it goes, from the fitting threads.

    ``priors`` ``{track: (GM program, GM families)}``: the instrument classifier's guesses;
    a track's program candidates are then its program and the common programs of those
    families (besides the model's own shortlist), fewer renderings than all of them.

    Without neural weights/torch, returns no timbres and each track's own program.
    """
    from semcodec.synth.neural import torch_threads, weights_available  # noqa: PLC0415

    programs = {i: t.program for i, t in enumerate(score.tracks)}
    pitched = [i for i, t in enumerate(score.tracks) if not t.is_drum and t.notes]
    if not pitched or not weights_available():
        return (), programs, {}
    with torch_threads():
        return _fit_timbres(audio, sr, score, samples, budget_s, pitched, programs,
                            settings or FitSettings(), progress, priors or {})


def _fit_timbres(audio, sr, score, samples, budget_s, pitched, programs, settings, progress,
                 priors):
    from semcodec.synth.neural import load_model  # noqa: PLC0415

    # Without a wall-clock budget the fit runs a fixed number of steps, so that encoding the same
    # input twice gives the same bytes (on any machine load); a budget trades that for a cap.
    deterministic = budget_s is None
    total_budget = math.inf if deterministic else budget_s
    model = load_model()
    audio = np.asarray(audio, np.float32)
    t0 = time.monotonic()  # the budget covers the fitting, not imports / model loading
    workers = _n_workers()
    slots = threading.Semaphore(1 if audio.shape[0] > LONG_INPUT_S * sr else workers)
    overall = _Progress(progress, len(pitched))
    if progress is not None:
        progress(0.0)

    def fit(k: int):
        ti = pitched[k]
        ex = _track_excerpts(audio, sr, score, ti, pitched, samples)
        if ex is None:
            overall.set(k, 1.0)
            return None
        deadline = t0 + total_budget * (k + 1) / len(pitched)
        # the tracks share the threads; a lone track uses them for its program candidates
        lone = len(pitched) == 1
        return _fit_track(model, score, ex, deadline, deterministic, settings,
                          workers if lone else 1, slots, overall.track(k), priors.get(ti),
                          LONE_REFINE_THREADS if lone else 1)

    timbres = []
    engines: dict[int, tuple[str, float]] = {}
    # only the timbre parameters are optimised: no gradients for the model's own weights
    # (the cached model is shared with the decoder; its flags are restored afterwards)
    grads = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        # tracks are independent (each its own excerpts, parameters and noise seed): fitted on
        # several threads (torch and numpy release the GIL), the results are the same as one
        # after the other, in track order
        for ti, r in zip(pitched, _map(fit, range(len(pitched)), workers)):
            if r is not None:
                timbre, programs[ti], engine = r
                timbres.append(timbre)
                if engine is not None:
                    engines[ti] = engine
    finally:
        for p, g in zip(model.parameters(), grads):
            p.requires_grad_(g)
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


def _engine_losses(score: Score, ti: int, starts: list[float], fitted: Timbre | None,
                   program: int, tgt, engines: tuple[str, ...] = ("neural", "fluidsynth"),
                   keep: dict | None = None, score_later: bool = False) -> Any:
    """``{"neural": (loss, gain dB), "fluidsynth": (loss, gain dB)}``: track ``ti``'s excerpts
    (windows at ``starts``, with ENGINE_CONTEXT_S of lead-in) rendered as the decoder renders
    them, by the neural engine with the ``fitted`` timbre and by fluidsynth with GM ``program``
    (``engines``: those of the two to render), each level-matched to ``tgt`` ((G, n) at the
    model rate) and scored by ``ddsp.mrstft_loss``.  None when an engine is unavailable or
    renders nothing.  All excerpts go through one rendering per engine, ENGINE_GAP_S apart.
    ``keep`` (a dict), if given, receives ``"notes"`` (the rendered notes, times in the
    rendering) and, per engine, its whole rendering (float32 at ``ddsp.SR_INT``).
    ``score_later``: the renderings only; returns a function that scores them (on the thread
    that calls it): torch's sums depend on the thread count, which a new thread takes from
    whatever another thread has set meanwhile (a lone track's step 3b sets two)."""
    import torch  # noqa: PLC0415

    from dataclasses import replace  # noqa: PLC0415

    from semcodec.errors import SynthError  # noqa: PLC0415
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
    timbres = (replace(fitted, track=0),) if fitted is not None else ()
    renders: dict[str, Any] = {}
    try:
        for name in engines:
            eng = NeuralEngine(device="cpu") if name == "neural" else FluidsynthEngine()
            renders[name] = eng.render(one, sr, hop * G, timbres=timbres)
            if keep is not None:
                keep["notes"], keep[name] = notes, np.asarray(renders[name], np.float32)
    except SynthError as exc:
        log.info("engines not compared: %s", exc)
        renders = {}

    def scored() -> dict[str, tuple[float, float]] | None:
        out = {}
        for name, y in renders.items():
            y = torch.from_numpy(np.stack([y[g * hop + ctx:g * hop + ctx + n_win]
                                           for g in range(G)]).astype(np.float32))
            if float(torch.sqrt((y ** 2).mean())) <= 1e-9:
                return None  # an engine that renders nothing is not compared
            gain_db = _level_gain_db(y, tgt)
            with torch.no_grad():
                out[name] = (float(ddsp.mrstft_loss(y * (10.0 ** (gain_db / 20.0)), tgt)), gain_db)
        return out or None

    return scored if score_later else scored()


def _fluid_keeps_notes(ti: int, renders: dict) -> bool:
    """The round-trip check of the engine choice (:mod:`semcodec.roundtrip`): True unless
    fluidsynth's rendering of the excerpts (``renders["fluidsynth"]``) lets their notes
    (``renders["notes"]``) be transcribed back clearly worse than the neural engine's
    (``renders["neural"]``), at ``ddsp.SR_INT``."""
    from semcodec import roundtrip  # noqa: PLC0415
    from semcodec.synth import ddsp  # noqa: PLC0415

    if not all(k in renders for k in ("notes", "neural", "fluidsynth")):
        return True
    f1 = {k: roundtrip.agreement(renders[k], ddsp.SR_INT, renders["notes"])
          for k in ("neural", "fluidsynth")}
    ok = roundtrip.keeps_notes(f1["fluidsynth"], f1["neural"], len(renders["notes"]))
    log.info("track %d: excerpts transcribed back: note F1 neural %s, fluidsynth %s%s", ti,
             f1["neural"], f1["fluidsynth"], "" if ok else ": fluidsynth refused")
    return ok
