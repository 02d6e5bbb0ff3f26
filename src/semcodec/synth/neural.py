"""The neural engine: a score-driven harmonic-plus-noise (DDSP-style) synthesizer.

torch is imported lazily: importing this module costs only numpy; torch and the model
(:mod:`semcodec.synth.ddsp`) are loaded on first use (``NeuralEngine(...)`` or
:func:`load_model`).  The committed weights live in ``semcodec/weights/`` as
``neural-<first 12 hex of their sha256>.safetensors``; the loader checks that hash.

Rendering is done on the CPU in float32 and is deterministic (noise generators are seeded from
the track index).  Drum tracks are played by a sampler (:func:`semcodec.synth.dsp.play_oneshots`)
from the container's keyed one-shot samples of that track; a drum track without any falls back to
fluidsynth's General MIDI kit (silence, with a warning, when fluidsynth is unavailable).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Callable

import numpy as np

from semcodec.constants import MIDI_MAX, MIDI_MIN, PACKAGE_DIR
from semcodec.errors import SynthError
from semcodec.events import Sample, Score, Timbre, Track
from semcodec.synth import dsp

log = logging.getLogger(__name__)

WEIGHTS_DIR = PACKAGE_DIR / "weights"
_WEIGHTS_RE = re.compile(r"^neural-([0-9a-f]{12})\.safetensors$")
_MODEL_CACHE: dict[tuple[str, int, float], object] = {}


#: torch intra-op threads while rendering / fitting ($SEMCODEC_TORCH_THREADS, default 1): the
#: model's ops are small, and on a busy 2-core machine one thread is several times faster.
THREADS_ENV = "SEMCODEC_TORCH_THREADS"


@contextlib.contextmanager
def torch_threads():
    """Run the block with $SEMCODEC_TORCH_THREADS (default 1) torch threads, then restore."""
    import torch  # noqa: PLC0415

    try:
        n = max(1, int(os.environ.get(THREADS_ENV, "1")))
    except ValueError:
        n = 1
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def find_weights(directory: Path | None = None) -> Path | None:
    """The weights file named by ``neural-config.json`` (else the only ``neural-*.safetensors``)."""
    d = Path(directory) if directory is not None else WEIGHTS_DIR
    cfg = d / "neural-config.json"
    if cfg.is_file():
        try:
            name = json.loads(cfg.read_text()).get("weights_file")
        except (OSError, ValueError):
            name = None
        if name and (d / name).is_file():
            return d / name
    files = sorted(p for p in d.glob("neural-*.safetensors") if _WEIGHTS_RE.match(p.name))
    return files[-1] if files else None


def weights_available() -> bool:
    """True when torch is importable and a weights file is present (the engine can run)."""
    return importlib.util.find_spec("torch") is not None and find_weights() is not None


def verify_weights(path: Path) -> None:
    """Raise :class:`SynthError` unless the sha256 prefix in the file name matches its content."""
    m = _WEIGHTS_RE.match(path.name)
    if not m:
        raise SynthError(f"{path}: weights file name must be neural-<12 hex of sha256>.safetensors")
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError as exc:
        raise SynthError(f"{path}: cannot read neural weights ({exc})") from exc
    if digest != m.group(1):
        raise SynthError(f"{path}: neural weights are corrupt (sha256 {digest}..., "
                         f"name says {m.group(1)})")


def load_model(path: Path | str | None = None):
    """Load (and cache) the :class:`~semcodec.synth.ddsp.DDSPNet` from verified weights."""
    path = Path(path) if path is not None else find_weights()
    if path is None or not path.is_file():
        raise SynthError(f"neural weights not found in {WEIGHTS_DIR} (run: make train)")
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime)
    if key in _MODEL_CACHE:
        return _MODEL_CACHE[key]
    verify_weights(path)
    try:
        import torch  # noqa: PLC0415 - lazy: torch is heavy
        from safetensors.torch import load_file  # noqa: PLC0415

        from semcodec.synth import ddsp  # noqa: PLC0415
    except ImportError as exc:
        raise SynthError(f"the neural engine needs torch and safetensors ({exc})") from exc
    try:
        state = load_file(str(path))
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


def _track_notes(track: Track, tempo: float, transpose: int, limit_s: float):
    """(onsets, offsets, pitches, velocities, bends) of a pitched track, time-scaled/transposed."""
    on, off, pit, vel, bends = [], [], [], [], []
    for n in track.notes:
        p = n.pitch + transpose
        if not MIDI_MIN <= p <= MIDI_MAX:
            continue
        o = n.onset / tempo
        if o >= limit_s or o < 0:
            continue
        on.append(o)
        off.append(max(o + 0.005, n.offset / tempo))
        pit.append(p)
        vel.append(max(1, min(127, n.velocity)))
        bends.append(tuple((bp.time / tempo, bp.semitones) for bp in n.bends))
    return on, off, pit, vel, bends


class NeuralEngine:
    """Decoding engine over the DDSP model; see the module docstring."""

    name = "neural"

    def __init__(self, device: str = "auto", weights: Path | str | None = None) -> None:
        try:
            import torch  # noqa: PLC0415
        except ImportError as exc:
            raise SynthError(f"the neural engine needs torch ({exc})") from exc
        if device not in ("auto", "cpu", "cuda"):
            raise SynthError(f"unknown device {device!r} (auto, cpu or cuda)")
        if device == "cuda" and not torch.cuda.is_available():
            raise SynthError("device cuda requested but CUDA is not available")
        # The model is tiny: the signal path is memory-bound and runs on the CPU in every case,
        # which keeps the output deterministic and bit-identical across machines.
        self.device = ("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available())
                       else "cpu")
        self.model = load_model(weights)

    # -- embeddings ---------------------------------------------------------------------
    def program_embedding(self, program: int) -> tuple[np.ndarray, np.ndarray]:
        """(embedding, room params) the model learned for GM ``program``."""
        p = max(0, min(127, int(program)))
        m = self.model
        return (m.embedding.weight[p].detach().numpy().copy(), m.room.weight[p].detach().numpy().copy())

    def render(self, score: Score, sr: int, n_samples: int, *, timbres: tuple[Timbre, ...] = (),
               programs: dict[int, int] | None = None, transpose: int = 0, tempo: float = 1.0,
               samples: tuple[Sample, ...] = (),
               progress: Callable[[float], None] | None = None) -> np.ndarray:
        """Mono float32 audio ``(n_samples,)`` at ``sr`` Hz; loudness is left to the caller.
        ``progress(fraction)`` is called after each track."""
        import torch  # noqa: PLC0415

        if tempo <= 0 or not math.isfinite(tempo):
            raise SynthError(f"tempo factor must be > 0, got {tempo}")
        n_samples = int(n_samples)
        out = np.zeros(n_samples, np.float32)
        if n_samples == 0:
            return out
        by_track = {t.track: t for t in timbres}
        limit_s = n_samples / sr
        with torch.no_grad(), torch_threads():
            for i, track in enumerate(score.tracks):
                if progress is not None and i:
                    progress(i / len(score.tracks))
                if track.is_drum and track.notes:
                    y = render_drum_track(track, [smp for smp in samples if smp.track == i],
                                          sr, n_samples, tempo=tempo)
                    tb = by_track.get(i)
                    if tb is not None and math.isfinite(tb.gain_db):
                        y = y * 10.0 ** (tb.gain_db / 20.0)
                    out += y.astype(np.float32)
                    continue
                if track.is_drum or not track.notes:
                    continue
                on, off, pit, vel, bends = _track_notes(track, tempo, transpose, limit_s)
                if not on:
                    continue
                emb, room, gain_db = self._track_params(i, track, by_track, programs)
                y = self._render_track(on, off, pit, vel, bends, emb, room, sr, n_samples, seed=i)
                out += (y * 10.0 ** (gain_db / 20.0)).astype(np.float32)
        if progress is not None:
            progress(1.0)
        out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
        return out.astype(np.float32)

    def _track_params(self, i: int, track: Track, by_track: dict[int, Timbre],
                      programs: dict[int, int] | None):
        from semcodec.synth import ddsp  # noqa: PLC0415

        program = (programs or {}).get(i, track.program)
        emb, room = self.program_embedding(program)
        gain_db = 0.0
        tb = by_track.get(i)
        if tb is not None:
            gain_db = float(tb.gain_db) if math.isfinite(tb.gain_db) else 0.0
            if len(tb.room) == ddsp.N_ROOM and all(map(math.isfinite, tb.room)):
                room = np.asarray(tb.room, np.float32)
            overridden = programs is not None and i in programs
            if (not overridden and len(tb.embedding) == emb.shape[0]
                    and all(map(math.isfinite, tb.embedding))):
                emb = np.asarray(tb.embedding, np.float32)
        return emb, room, gain_db

    def _render_track(self, on, off, pit, vel, bends, emb, room, sr, n_samples, seed=0):
        return render_notes_np(self.model, on, off, pit, vel, bends, emb, room, sr, n_samples,
                               seed=seed)


def render_notes_np(model, on, off, pit, vel, bends, emb, room, sr, n_samples, *, seed=0,
                    tail_s: float | None = None) -> np.ndarray:
    """Render one track's notes (no gradients) to float32 numpy ``(n_samples,)`` at ``sr``."""
    import torch  # noqa: PLC0415

    from semcodec.synth import ddsp  # noqa: PLC0415

    tail = ddsp.TAIL_S if tail_s is None else tail_s
    total_s = n_samples / sr
    emb_t = torch.as_tensor(np.asarray(emb, np.float32))[None, :]
    room_t = torch.as_tensor(np.asarray(room, np.float32))[None, :]
    with torch.no_grad():
        nb = ddsp.NoteBatch(on, off, pit, vel, bends, total_s, tail_s=tail)
        outputs = ddsp.eval_sparse(model, nb, emb_t.expand(len(on), -1))
        amp, _, bands = outputs
        # cut each release tail where the note has decayed (-60 dB re. its peak)
        level = (amp + bands.sum(-1)).numpy() * nb.valid
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
                               outputs=outputs)
    return y[0].numpy().astype(np.float32)


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
