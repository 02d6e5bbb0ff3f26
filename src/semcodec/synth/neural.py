"""The neural engine: a score-driven harmonic-plus-noise (DDSP-style) synthesizer.

Two implementations of one signal model (see :mod:`semcodec.synth.ddsp`):

* ``backend="numpy"`` (the default on the CPU): :mod:`semcodec.synth.ddsp_np`, plain numpy,
  block by block with bounded memory; decoding then never imports torch.
* ``backend="torch"``: the torch model of :mod:`semcodec.synth.ddsp` (training, the encoder's
  fit), on the CPU or, with ``device="cuda"``, with the model and the synthesis on the GPU
  (the noise is drawn on the CPU generator so that both devices play the same noise).

Both agree to float32 rounding.  The committed weights live in ``semcodec/weights/`` as
``neural-<first 12 hex of their sha256>.safetensors`` (:mod:`semcodec.synth.weights` checks
the hash).  Drum tracks are played by a sampler (:func:`semcodec.synth.dsp.play_oneshots`) from
the container's keyed one-shot samples of that track; a drum track without any falls back to
fluidsynth's General MIDI kit (silence, with a warning, when fluidsynth is unavailable).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import threading
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from semcodec.errors import SynthError
from semcodec.events import Sample, Score, Timbre, Track
from semcodec.runtime import WORK_THREADS_ENV, work_threads
from semcodec.synth import dsp
from semcodec.synth.ddsp_np import N_ROOM, NoteArrays, NumpyNet, TrackRenderer
from semcodec.synth.weights import WEIGHTS_DIR, find_weights, load_arrays, verify_weights

__all__ = ["NeuralEngine", "NoteArrays", "WEIGHTS_DIR", "find_weights", "load_model",
           "render_drum_track", "render_notes_np", "torch_threads", "verify_weights",
           "weights_available", "engine_available"]

log = logging.getLogger(__name__)

_MODEL_CACHE: dict[tuple[str, int, float], object] = {}

#: Whole-track renders (numpy backend) kept for the same track rendered again with the same
#: weights, timbre, rate and length (the encoder measures its track renders, then the round
#: trip of the decode, on the same engine render): the latest RENDER_MEMO_SIZE, each of at
#: most RENDER_MEMO_MAX_SAMPLES samples (short inputs: no memory to speak of).
RENDER_MEMO_SIZE = 2
RENDER_MEMO_MAX_SAMPLES = 2_000_000
_RENDER_MEMO: list[tuple[object, bytes, np.ndarray]] = []  # (weights arrays, key, render)
_RENDER_MEMO_LOCK = threading.Lock()
#: Within :func:`keep_renders` (the encoder's passes over one input): whole-track renders of
#: any length are kept, the latest first, up to this many bytes in all (a 5-min track at the
#: measuring rate, 22.05 kHz, is 26 MB).
RENDER_MEMO_KEEP_BYTES = 256 << 20
_MEMO_KEEPING = [0]  # nesting depth of keep_renders()


@contextlib.contextmanager
def keep_renders() -> Iterator[None]:
    """Keep whole-track renders of any length (RENDER_MEMO_KEEP_BYTES in all, the latest
    used first) while inside: the encoder's round-trip repair and onset alignment decode
    the same input several times, most of its tracks unchanged from one decode to the next
    (:func:`semcodec.api.encode`).  On leaving, the memo is cut back to its usual limits."""
    with _RENDER_MEMO_LOCK:
        _MEMO_KEEPING[0] += 1
    try:
        yield
    finally:
        with _RENDER_MEMO_LOCK:
            _MEMO_KEEPING[0] -= 1
            if not _MEMO_KEEPING[0]:
                _RENDER_MEMO[:] = [e for e in _RENDER_MEMO
                                   if e[2].shape[0] <= RENDER_MEMO_MAX_SAMPLES][-RENDER_MEMO_SIZE:]


def _memo_trim() -> None:
    """Cut the memo (the latest used last) to its limits; called with the lock held."""
    if not _MEMO_KEEPING[0]:
        del _RENDER_MEMO[:-RENDER_MEMO_SIZE]
        return
    total = 0
    for k in range(len(_RENDER_MEMO) - 1, -1, -1):
        total += _RENDER_MEMO[k][2].nbytes
        if total > RENDER_MEMO_KEEP_BYTES:
            del _RENDER_MEMO[:k + 1]
            return

#: torch intra-op threads while rendering / fitting ($SEMCODEC_TORCH_THREADS, default 1): the
#: model's ops are small, and on a busy 2-core machine one thread is several times faster.
THREADS_ENV = "SEMCODEC_TORCH_THREADS"
BACKENDS = ("numpy", "torch")
#: Output samples per block of :meth:`NeuralEngine.blocks`.
STREAM_BLOCK = 1 << 15


@contextlib.contextmanager
def torch_threads(at_least: int = 1):
    """Run the block with $SEMCODEC_TORCH_THREADS (default 1) torch threads, or ``at_least``
    when more, then restore.  The count is the process's (measured: set on one thread, the
    others read it too; a thread that starts using torch meanwhile takes it): while the block
    runs, no other thread may set another, and torch work on other threads whose bits matter
    waits for its end (:func:`semcodec.timbre._engine_losses`' ``score_later``)."""
    import torch  # noqa: PLC0415

    try:
        n = max(1, int(os.environ.get(THREADS_ENV, "1")))
    except ValueError:
        n = 1
    n = max(n, at_least)
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


#: Threads rendering tracks in parallel (:data:`semcodec.runtime.WORK_THREADS_ENV`).
THREADS_ENV_RENDER = WORK_THREADS_ENV


def render_workers(n_tracks: int) -> int:
    """How many tracks to render at once (1 = no threads): :func:`semcodec.runtime.work_threads`."""
    return work_threads(n_tracks)


def weights_available() -> bool:
    """True when torch is importable and a weights file is present (the torch model can run:
    the encoder's timbre fit, ``--device cuda``)."""
    return torch_available() and find_weights() is not None


def engine_available() -> bool:
    """True when the neural engine can decode here (the numpy engine needs only the weights)."""
    return find_weights() is not None


def torch_available() -> bool:
    """True when torch can be imported (without importing it)."""
    return importlib.util.find_spec("torch") is not None


def load_model(path: Path | str | None = None):
    """Load (and cache) the torch :class:`~semcodec.synth.ddsp.DDSPNet` from verified weights."""
    path = Path(path) if path is not None else find_weights()
    if path is None or not path.is_file():
        raise SynthError(f"neural weights not found in {WEIGHTS_DIR} (run: make train)")
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime)
    if key in _MODEL_CACHE:
        return _MODEL_CACHE[key]
    arrays = load_arrays(path)
    try:
        import torch  # noqa: PLC0415 - lazy: torch is heavy

        from semcodec.synth import ddsp  # noqa: PLC0415
    except ImportError as exc:
        raise SynthError(f"the torch neural engine needs torch ({exc})") from exc
    try:
        state = {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}
        hidden, emb_dim = state["inp.weight"].shape[0], state["embedding.weight"].shape[1]
        model = ddsp.DDSPNet(hidden=hidden, emb_dim=emb_dim)
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # noqa: BLE001 - any malformed weights file is a SynthError
        raise SynthError(f"{path}: cannot load neural weights ({exc})") from exc
    model.eval()
    torch.set_grad_enabled(True)
    _MODEL_CACHE.clear()
    _MODEL_CACHE[key] = model
    return model


def resolve_device(device: str) -> tuple[str, str]:
    """(device, backend) for a ``--device`` value: ``auto`` and ``cpu`` run the numpy engine
    on the CPU (``auto`` never imports torch to look for a GPU: ask for ``cuda``); ``cuda``
    runs the torch engine on the GPU, or raises one clean :class:`SynthError` when torch or
    CUDA is missing."""
    if device not in ("auto", "cpu", "cuda"):
        raise SynthError(f"unknown device {device!r} (auto, cpu or cuda)")
    if device != "cuda":
        return "cpu", "numpy"
    if not torch_available():
        raise SynthError("device cuda requested but torch is not installed")
    import torch  # noqa: PLC0415

    if not torch.cuda.is_available():
        raise SynthError("device cuda requested but CUDA is not available")
    return "cuda", "torch"


class NeuralEngine:
    """Decoding engine over the DDSP model; see the module docstring.

    ``device``: ``auto``/``cpu`` (numpy) or ``cuda`` (torch on the GPU); ``backend`` forces
    ``numpy`` or ``torch`` (``torch`` on ``cpu`` is the training code's path).
    """

    name = "neural"

    def __init__(self, device: str = "auto", weights: Path | str | None = None,
                 backend: str | None = None) -> None:
        self.device, default = resolve_device(device)
        self.backend = backend or default
        if self.backend not in BACKENDS:
            raise SynthError(f"unknown neural backend {self.backend!r} (numpy or torch)")
        if self.backend == "numpy" and self.device != "cpu":
            raise SynthError("the numpy neural backend runs on the CPU only")
        arrays = load_arrays(weights)
        self._arrays = arrays  # the cached weights: the same object for the same file
        self.net = NumpyNet(arrays)
        self._weights = weights
        self._model = None
        if self.backend == "torch":
            if not torch_available():
                raise SynthError("the torch neural backend needs torch")
            self._model = load_model(weights)

    @property
    def model(self):
        """The torch model (loaded on first use: the numpy backend never needs it)."""
        if self._model is None:
            self._model = load_model(self._weights)
        return self._model

    # -- embeddings ---------------------------------------------------------------------
    def program_embedding(self, program: int) -> tuple[np.ndarray, np.ndarray]:
        """(embedding, room params) the model learned for GM ``program``."""
        p = max(0, min(127, int(program)))
        return self.net.embedding[p].copy(), self.net.room[p].copy()

    def track_params(self, i: int, track: Track, timbres: tuple[Timbre, ...] = (),
                     programs: dict[int, int] | None = None):
        """(embedding, room params, gain dB) of track ``i``: its stored timbre, else the
        learned embedding of its program (a ``programs`` override drops the fitted one)."""
        by_track = {t.track: t for t in timbres}
        program = (programs or {}).get(i, track.program)
        emb, room = self.program_embedding(program)
        gain_db = 0.0
        tb = by_track.get(i)
        if tb is not None:
            gain_db = float(tb.gain_db) if math.isfinite(tb.gain_db) else 0.0
            if len(tb.room) == N_ROOM and all(map(math.isfinite, tb.room)):
                room = np.asarray(tb.room, np.float32)
            overridden = programs is not None and i in programs
            if (not overridden and len(tb.embedding) == emb.shape[0]
                    and all(map(math.isfinite, tb.embedding))):
                emb = np.asarray(tb.embedding, np.float32)
        return emb, room, gain_db

    # -- rendering ----------------------------------------------------------------------
    def render(self, score: Score, sr: int, n_samples: int, *, timbres: tuple[Timbre, ...] = (),
               programs: dict[int, int] | None = None, transpose: int = 0, tempo: float = 1.0,
               samples: tuple[Sample, ...] = (),
               progress: Callable[[float], None] | None = None) -> np.ndarray:
        """Mono float32 audio ``(n_samples,)`` at ``sr`` Hz; loudness is left to the caller.
        ``progress(fraction)`` is called as tracks finish."""
        n_samples = int(n_samples)
        out = np.zeros(n_samples, np.float32)

        live = [i for i, t in enumerate(score.tracks) if t.notes]
        # one track: its notes evaluated on a second core while the first adds the noise,
        # the room and the resampling (TrackRenderer's pipeline; the same samples)
        pipelined = len(live) == 1 and render_workers(2) > 1

        def one(i: int) -> np.ndarray | None:
            return self.render_track(score, i, sr, n_samples, timbres=timbres,
                                     programs=programs, transpose=transpose, tempo=tempo,
                                     samples=samples, pipelined=pipelined)

        finished = [0]

        def one_reported(i: int) -> np.ndarray | None:
            y = one(i)
            finished[0] += 1
            if progress is not None and finished[0] < len(live):
                progress(finished[0] / len(live))
            return y

        workers = render_workers(len(live)) if self.backend == "numpy" else 1
        if workers > 1:  # numpy releases the GIL in its heavy loops: tracks in parallel
            from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

            with ThreadPoolExecutor(workers, thread_name_prefix="semcodec-track") as pool:
                parts = list(pool.map(one_reported, live))
        else:
            parts = [one_reported(i) for i in live]
        for y in parts:  # summed in track order: the result does not depend on the threads
            if y is not None:
                out += y
        if progress is not None:
            progress(1.0)
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)

    def blocks(self, score: Score, sr: int, n_samples: int, *, timbres: tuple[Timbre, ...] = (),
               programs: dict[int, int] | None = None, transpose: int = 0, tempo: float = 1.0,
               samples: tuple[Sample, ...] = ()) -> Iterator[np.ndarray]:
        """:meth:`render` as consecutive float32 blocks (every track block by block, mixed)."""
        from semcodec.synth.engine import mix_blocks  # noqa: PLC0415

        parts = []
        for i in range(len(score.tracks)):
            it = self.track_blocks(score, i, sr, n_samples, timbres=timbres, programs=programs,
                                   transpose=transpose, tempo=tempo, samples=samples)
            if it is not None:
                parts.append((it, 1.0))
        return mix_blocks(parts, int(n_samples), STREAM_BLOCK)

    def render_track(self, score: Score, i: int, sr: int, n_samples: int, *,
                     timbres: tuple[Timbre, ...] = (), programs: dict[int, int] | None = None,
                     transpose: int = 0, tempo: float = 1.0,
                     samples: tuple[Sample, ...] = (),
                     pipelined: bool = False) -> np.ndarray | None:
        """Track ``i`` alone, gain included: float32 ``(n_samples,)``, or None when silent.
        ``pipelined``: rendered on two threads (:class:`TrackRenderer`; the same samples)."""
        key = self._memo_key(score, i, sr, n_samples, timbres, programs, transpose, tempo)
        if key is not None:
            with _RENDER_MEMO_LOCK:
                for j, (arrays, k, y) in enumerate(_RENDER_MEMO):
                    if arrays is self._arrays and k == key:
                        _RENDER_MEMO.append(_RENDER_MEMO.pop(j))  # the latest used
                        return y.copy()
        blocks = self.track_blocks(score, i, sr, n_samples, timbres=timbres, programs=programs,
                                   transpose=transpose, tempo=tempo, samples=samples,
                                   pipelined=pipelined)
        if blocks is None:
            return None
        out = np.empty(int(n_samples), np.float32)
        pos = 0
        for y in blocks:
            out[pos:pos + y.shape[0]] = y
            pos += y.shape[0]
        if key is not None:
            with _RENDER_MEMO_LOCK:
                _RENDER_MEMO.append((self._arrays, key, out.copy()))
                _memo_trim()
        return out

    def _memo_key(self, score: Score, i: int, sr: int, n_samples: int,
                  timbres: tuple[Timbre, ...], programs: dict[int, int] | None,
                  transpose: int, tempo: float) -> bytes | None:
        """What :meth:`render_track` of a pitched track depends on (besides the weights), as
        a digest; None when its render is not kept (torch backend, drums, a long track)."""
        track = score.tracks[i]
        if (self.backend != "numpy" or track.is_drum or not track.notes
                or not 0 < int(n_samples) <= (RENDER_MEMO_KEEP_BYTES // 4 if _MEMO_KEEPING[0]
                                              else RENDER_MEMO_MAX_SAMPLES)):
            return None
        import hashlib  # noqa: PLC0415

        emb, room, gain_db = self.track_params(i, track, timbres, programs)
        h = hashlib.blake2b(digest_size=20)
        h.update(repr((i, int(sr), int(n_samples), int(transpose), float(tempo), float(gain_db),
                       track.notes)).encode())
        h.update(np.ascontiguousarray(emb, np.float32).tobytes())
        h.update(np.ascontiguousarray(room, np.float32).tobytes())
        return h.digest()

    def track_blocks(self, score: Score, i: int, sr: int, n_samples: int, *,
                     timbres: tuple[Timbre, ...] = (), programs: dict[int, int] | None = None,
                     transpose: int = 0, tempo: float = 1.0, samples: tuple[Sample, ...] = (),
                     block: int | None = None,
                     pipelined: bool = False) -> Iterator[np.ndarray] | None:
        """Track ``i`` as consecutive float32 blocks adding up to ``n_samples`` (gain
        included), or None when the track is silent.  ``block``: samples at the model's rate
        per step of the numpy backend (bounded memory); the torch backend yields one block.
        ``pipelined``: the numpy backend's notes evaluated on a second thread
        (:class:`TrackRenderer`)."""
        if tempo <= 0 or not math.isfinite(tempo):
            raise SynthError(f"tempo factor must be > 0, got {tempo}")
        n_samples = int(n_samples)
        track = score.tracks[i]
        if n_samples == 0 or not track.notes:
            return None
        if track.is_drum:
            y = render_drum_track(track, [s for s in samples if s.track == i], sr, n_samples,
                                  tempo=tempo)
            tb = {t.track: t for t in timbres}.get(i)
            if tb is not None and math.isfinite(tb.gain_db):
                y = y * np.float32(10.0 ** (tb.gain_db / 20.0))
            return iter([np.nan_to_num(y.astype(np.float32))])
        notes = NoteArrays.from_track(track, tempo, transpose, n_samples / sr)
        if len(notes) == 0:
            return None
        emb, room, gain_db = self.track_params(i, track, timbres, programs)
        gain = np.float32(10.0 ** (gain_db / 20.0))
        if self.backend == "torch":
            y = render_notes_np(self.model, notes, emb, room, sr, n_samples, seed=i,
                                device=self.device)
            return iter([np.nan_to_num(y * gain)])
        kw = {} if block is None else {"block": int(block)}
        rend = TrackRenderer(self.net, notes, emb, room, sr, n_samples, seed=i,
                             pipelined=pipelined, **kw)
        return (np.nan_to_num(y * gain) for y in rend.blocks())


def render_notes_np(model, notes: NoteArrays, emb, room, sr, n_samples, *, seed=0,
                    tail_s: float | None = None, device: str = "cpu") -> np.ndarray:
    """Render one track's notes with the torch model (no gradients) on ``device``: float32
    numpy ``(n_samples,)`` at ``sr``.  ``notes`` may also be a tuple of the five parallel lists
    ``(onsets, offsets, pitches, velocities, bends)``."""
    import torch  # noqa: PLC0415

    from semcodec.synth import ddsp  # noqa: PLC0415

    if not isinstance(notes, NoteArrays):
        notes = NoteArrays.from_lists(*notes)
    on, off, pit, vel, bends = notes.to_lists()
    dev = torch.device(device)
    tail = ddsp.TAIL_S if tail_s is None else tail_s
    total_s = n_samples / sr
    model = model.to(dev)
    emb_t = torch.as_tensor(np.asarray(emb, np.float32), device=dev)[None, :]
    room_t = torch.as_tensor(np.asarray(room, np.float32), device=dev)[None, :]
    with torch.no_grad(), torch_threads():
        nb = ddsp.NoteBatch(on, off, pit, vel, bends, total_s, tail_s=tail)
        outputs = ddsp.eval_sparse(model, nb, emb_t.expand(len(on), -1))
        amp, _, bands = outputs
        # cut each release tail where the note has decayed (-60 dB re. its peak)
        level = (amp + bands.sum(-1)).cpu().numpy() * nb.valid
        peak = level.max(axis=1, keepdims=True) + 1e-9
        loud = (level > peak * 1e-3) | (nb.t_abs < nb.offsets[:, None])
        loud &= nb.valid
        last = np.where(loud.any(axis=1), loud.shape[1] - 1 - np.argmax(loud[:, ::-1], axis=1), 1)
        ends = np.minimum(nb.ends, (nb.f0 + last + 1) / ddsp.FRAME_RATE + ddsp.END_FADE_S)
        ends = np.maximum(ends, nb.offsets + 0.02)
        tails = np.maximum(ends - nb.offsets, 0.02)
        nb2 = ddsp.NoteBatch(on, off, pit, vel, bends, total_s, tail_s=tails)
        y = ddsp.render_groups(model, nb2, np.zeros(len(on), np.int64), emb_t, room_t, n_samples,
                               sr=sr, seed=seed, resample=dsp.resample, fast=True,
                               outputs=outputs, oscillator="torch" if dev.type != "cpu" else "auto")
    return y[0].cpu().numpy().astype(np.float32)


def render_batch(model, items, sr: int, n_samples: int, *, device: str = "cuda",
                 seeds=None) -> np.ndarray:
    """Render many tracks' notes together with the torch model on ``device`` (one model call,
    one oscillator pass, one noise draw for all): float32 ``(len(items), n_samples)``.

    ``items``: ``[(NoteArrays, embedding (EMB_DIM,), room params (3,)), ...]``, e.g. the
    tracks of many files (each cut or padded to ``n_samples`` at ``sr``); ``seeds`` (one per
    item, default 0..): the track index each would have in its file, so that every item's
    noise is the one it gets when decoded alone.
    """
    import torch  # noqa: PLC0415

    from semcodec.synth import ddsp  # noqa: PLC0415

    dev = torch.device(device)
    model = model.to(dev)
    total_s = n_samples / sr
    on, off, pit, vel, bends, group = [], [], [], [], [], []
    for g, (notes, _, _) in enumerate(items):
        o, f, p, v, b = notes.to_lists()
        on += o
        off += f
        pit += p
        vel += v
        bends += b
        group += [g] * len(o)
    grp = np.asarray(group, np.int64)
    emb_t = torch.as_tensor(np.stack([np.asarray(e, np.float32) for _, e, _ in items]),
                            device=dev)
    room_t = torch.as_tensor(np.stack([np.asarray(r, np.float32) for _, _, r in items]),
                             device=dev)
    with torch.no_grad():
        nb = ddsp.NoteBatch(on, off, pit, vel, bends, total_s)
        rows = emb_t[torch.from_numpy(grp).to(dev)]
        outputs = ddsp.eval_sparse(model, nb, rows)
        amp, _, bands = outputs
        level = (amp + bands.sum(-1)).cpu().numpy() * nb.valid
        peak = level.max(axis=1, keepdims=True) + 1e-9
        loud = ((level > peak * 1e-3) | (nb.t_abs < nb.offsets[:, None])) & nb.valid
        last = np.where(loud.any(axis=1), loud.shape[1] - 1 - np.argmax(loud[:, ::-1], axis=1), 1)
        ends = np.minimum(nb.ends, (nb.f0 + last + 1) / ddsp.FRAME_RATE + ddsp.END_FADE_S)
        ends = np.maximum(ends, nb.offsets + 0.02)
        tails = np.maximum(ends - nb.offsets, 0.02)
        nb2 = ddsp.NoteBatch(on, off, pit, vel, bends, total_s, tail_s=tails)
        y = ddsp.render_groups(model, nb2, grp, emb_t, room_t, n_samples, sr=sr,
                               resample=dsp.resample, fast=True, outputs=outputs,
                               oscillator="torch", note_chunk=256,
                               seeds=list(seeds) if seeds is not None else list(range(len(items))))
    return y.cpu().numpy().astype(np.float32)


def _decode_oneshot(sample: Sample, sr: int) -> np.ndarray | None:
    """A keyed Opus sample decoded to mono float32 at ``sr`` Hz (None if it cannot be read)."""
    if sample.codec != "opus":
        log.warning("drum one-shot of key %s: codec %r not supported, skipped", sample.key,
                    sample.codec)
        return None
    try:
        from semcodec.audio import read_sample  # noqa: PLC0415 - the checked sample decoder
        data, rate = read_sample(sample)
    except Exception as exc:  # noqa: BLE001 - libsndfile raises several types
        log.warning("drum one-shot of key %s cannot be decoded (%s), skipped", sample.key, exc)
        return None
    return dsp.resample(dsp.downmix(data), int(rate), int(sr))


def render_drum_track(track: Track, samples, sr: int, n_samples: int, *,
                      tempo: float = 1.0) -> np.ndarray:
    """Mono float32 ``(n_samples,)`` at ``sr`` Hz of a drum ``track``.

    ``samples`` are the container's samples of this track: those with a ``key`` are one-shots,
    played by :func:`semcodec.synth.dsp.play_oneshots` (each one-shot's reference velocity is
    that of the track's hit it was cut from, so that hit sounds as in the original).  Note
    times are divided by ``tempo``; drums are never transposed.  Without any one-shot the track
    is played by fluidsynth's GM kit, or is silent (with a warning) when fluidsynth is missing.
    """
    n_samples = int(n_samples)
    shots: dict[int, np.ndarray] = {}
    refs: dict[int, int] = {}
    for smp in samples:
        if smp.key is None or smp.key in shots:
            continue
        y = _decode_oneshot(smp, sr)
        if y is None or y.size == 0:
            continue
        shots[int(smp.key)] = y
        near = [n for n in track.notes if n.pitch == smp.key and abs(n.onset - smp.start) < 0.05]
        refs[int(smp.key)] = min(near, key=lambda n: abs(n.onset - smp.start)).velocity if near else 100
    sampled = [n for n in track.notes if dsp.oneshot_for(n.pitch, shots) is not None]
    rest = [n for n in track.notes if dsp.oneshot_for(n.pitch, shots) is None]
    out = np.zeros(n_samples, np.float32)
    if sampled:
        hits = [(n.onset / tempo, n.pitch, n.velocity) for n in sampled]
        out += dsp.play_oneshots(hits, shots, sr, n_samples, ref_velocity=refs)
    if not rest:
        return out
    # hits with no one-shot of their own or of a related drum (the bitrate budget kept only
    # some): the GM kit, at the level the sampled hits would have at the same velocity
    try:
        from semcodec.events import Note  # noqa: PLC0415
        from semcodec.synth.fluid import render_notes  # noqa: PLC0415

        notes = [Note(n.onset / tempo, max(n.onset / tempo + 0.005, n.offset / tempo), n.pitch,
                      n.velocity) for n in rest]
        kit = render_notes(notes, 0, sr, n_samples, is_drum=True)
    except SynthError as exc:
        log.warning("drum track %r: %d hits without one-shots and no fluidsynth (%s): silent",
                    track.name, len(rest), exc)
        return out
    if sampled:
        # match the kit to the sampler by the RMS per hit of each part
        k_rms = float(np.sqrt(np.mean(kit.astype(np.float64) ** 2))) / math.sqrt(len(rest))
        s_rms = float(np.sqrt(np.mean(out.astype(np.float64) ** 2))) / math.sqrt(len(sampled))
        if k_rms > 0 and s_rms > 0:
            kit = kit * np.float32(s_rms / k_rms)
    return out + kit
