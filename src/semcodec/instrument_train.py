"""Train the instrument classifier (:mod:`semcodec.instrument`) on notes rendered here.

    python -m semcodec.instrument_train [--out DIR] [--seed S] [--passes N] [--views V]
                                        [--mix-views M] [--steps K] [--soundfont PATH ...]
                                        [--programs P]

Data: every pitched General MIDI program (0..111) played through each soundfont (default: the
three Debian ones, FluidR3_GM, TimGM6mb and MuseScore_General) with
:func:`semcodec.synth.fluid.render_score` — one rendering per soundfont and pass holds every
program in a time slot of its own.  Each slot is a random phrase in the program's register
(durations 0.1-1.6 s, velocities 35-125, some two-note chords), then augmented ``--views``
times: random EQ (tilt and one peak), reverb (exponential noise tail, RT60 0.2-1.6 s), level and
background noise; onsets/offsets jittered as a transcriber would get them.  Per-note features
are :func:`semcodec.instrument.note_features` of the augmented slot.

Mixture augmentation (``--mix-views M``, default 0): each slot is also measured ``M`` more
times inside a mix, as the notes of a track split out of a band recording are (the encoder
measures a split track's notes on the whole mix): the slot plus the same-length slots of
:data:`MIX_OTHERS` other programs of the same rendering (another family each; one of them a
bass in half the mixes), each at a random level of :data:`MIX_LEVEL_DB` relative to the slot,
then the same EQ / reverb / level / noise; only the slot's own notes are labelled.

Model: standardised features -> 64 ReLU units -> softmax over 112 programs, Adam on
mini-batches with label smoothing and L2, seeded (the same arguments give the same weights on
the same libraries).  Written as ``instrument-<sha256[:12]>.safetensors`` +
``instrument-config.json`` (the run's settings and held-out accuracy) in ``--out``
(default: the package's weights directory).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from semcodec import instrument as ins
from semcodec.augment import eq_band_limit_room
from semcodec.events import Note, Score, Track

log = logging.getLogger(__name__)

SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2",
              "/usr/share/sounds/sf3/MuseScore_General.sf3")
SLOT_S = 10.0
TAIL_S = 1.5

#: Plausible MIDI register (low, high) per GM family, with per-program exceptions.
FAMILY_REGISTER = {0: (33, 96), 1: (55, 100), 2: (36, 84), 3: (40, 81), 4: (28, 60),
                   5: (40, 88), 6: (40, 84), 7: (45, 80), 8: (48, 84), 9: (60, 96),
                   10: (45, 84), 11: (40, 80), 12: (40, 84), 13: (50, 84)}
PROGRAM_REGISTER = {40: (55, 93), 41: (48, 81), 42: (36, 69), 43: (28, 55), 56: (54, 82),
                    57: (40, 72), 58: (28, 58), 60: (41, 77), 64: (56, 87), 66: (44, 75),
                    67: (36, 69), 68: (58, 91), 70: (34, 72), 72: (74, 100), 73: (60, 96),
                    8: (60, 100), 9: (72, 105), 12: (45, 96), 13: (65, 100), 14: (60, 77),
                    32: (28, 55), 105: (48, 79), 106: (50, 79), 108: (60, 88)}
#: Mixture augmentation: how many other programs (inclusive range) join a slot's mix, and
#: each one's level (dB, RMS over the slot, inclusive range) relative to the slot's own.
MIX_OTHERS = (1, 4)
MIX_LEVEL_DB = (-12.0, 6.0)
#: The chance that one of a mix's other programs is a bass (bands almost always have one).
MIX_BASS_P = 0.5
#: Families that often play chords (a two-note chord is drawn more often for them).
CHORDAL = {0, 2, 3, 5, 6, 11}


def register(program: int) -> tuple[int, int]:
    """(lowest, highest) MIDI pitch a GM ``program`` plausibly plays."""
    return PROGRAM_REGISTER.get(program, FAMILY_REGISTER[ins.family_of(program)])


def phrase(rng: np.random.Generator, program: int, t0: float, length: float) -> list[Note]:
    """A random phrase of ``program`` starting at ``t0`` (s), ending before ``t0 + length``."""
    lo, hi = register(program)
    notes = []
    t = t0 + 0.2
    pitch = int(rng.integers(lo, hi + 1))
    chord_p = 0.3 if ins.family_of(program) in CHORDAL else 0.08
    while True:
        dur = float(np.exp(rng.uniform(np.log(0.1), np.log(1.6))))
        if t + dur > t0 + length:
            break
        vel = int(rng.integers(35, 126))
        pitch = int(np.clip(pitch + rng.integers(-7, 8), lo, hi))
        notes.append(Note(onset=t, offset=t + dur, pitch=pitch, velocity=vel))
        if rng.random() < chord_p:
            other = int(np.clip(pitch + rng.choice([-12, -7, -5, -4, -3, 3, 4, 5, 7]), lo, hi))
            if other != pitch:
                notes.append(Note(onset=t, offset=t + dur, pitch=other, velocity=vel))
        legato = rng.random() < 0.4
        t += dur if legato else dur + float(rng.uniform(0.02, 0.4))
    return notes


def augment(rng: np.random.Generator, x: np.ndarray, sr: int) -> np.ndarray:
    """Random EQ, band limit, reverb (:func:`semcodec.augment.eq_band_limit_room`), level and
    noise on mono ``x`` (float32)."""
    n = x.shape[0]
    y = eq_band_limit_room(rng, x, sr, max_rt60_s=1.6, max_wet=0.5)
    rms = np.sqrt(np.mean(y ** 2)) + 1e-9
    y = y / rms * 10.0 ** (rng.uniform(-35, -15) / 20.0)
    y += rng.standard_normal(n) * np.sqrt(np.mean(y ** 2)) * 10.0 ** (rng.uniform(-70, -35) / 20.0)
    return y.astype(np.float32)


def mix_in(rng: np.random.Generator, seg: np.ndarray, others: list[np.ndarray],
           others_programs: list[int], program: int) -> np.ndarray:
    """``seg`` (the slot of ``program``) mixed with some of ``others`` (same-length slots of
    ``others_programs``): :data:`MIX_OTHERS` of them, of families other than ``program``'s and
    each other's, one a bass with probability :data:`MIX_BASS_P`, each at a level drawn from
    :data:`MIX_LEVEL_DB` relative to ``seg``'s RMS.  float32 ``(n,)``."""
    fam = ins.family_of(program)
    by_family: dict[int, list[int]] = {}
    for j, q in enumerate(others_programs):
        f = ins.family_of(q)
        if f != fam and np.sqrt(np.mean(others[j] ** 2)) > 1e-6:
            by_family.setdefault(f, []).append(j)
    fams = sorted(by_family)
    if not fams:
        return seg.astype(np.float32)
    k = min(len(fams), int(rng.integers(MIX_OTHERS[0], MIX_OTHERS[1] + 1)))
    chosen = [int(f) for f in rng.choice(fams, size=k, replace=False)]
    bass = ins.family_of(32)
    if bass in by_family and bass not in chosen and rng.random() < MIX_BASS_P:
        chosen[0] = bass
    ref = np.sqrt(np.mean(seg.astype(np.float64) ** 2)) + 1e-9
    y = seg.astype(np.float64).copy()
    for f in chosen:
        o = others[by_family[f][int(rng.integers(len(by_family[f])))]].astype(np.float64)
        gain = ref / (np.sqrt(np.mean(o ** 2)) + 1e-9) * 10.0 ** (rng.uniform(*MIX_LEVEL_DB) / 20.0)
        o = o[: y.shape[0]]
        y[: o.shape[0]] += o * gain
    return y.astype(np.float32)


def jitter(rng: np.random.Generator, notes: list[Note], t0: float) -> list[Note]:
    """``notes`` shifted by ``-t0`` with transcriber-like timing errors."""
    out = []
    for n in notes:
        on = max(0.0, n.onset - t0 + float(rng.normal(0.0, 0.012)))
        dur = (n.offset - n.onset) * float(np.exp(rng.normal(0.0, 0.2)))
        out.append(Note(onset=on, offset=on + max(0.05, dur), pitch=n.pitch, velocity=n.velocity))
    return out


def generate(soundfonts: tuple[str, ...], programs: list[int], passes: int, views: int,
             seed: int, sr: int = ins.SR, jobs: int = 1,
             mix_views: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features (N, F), program labels (N,), soundfont index (N,)) of the rendered notes
    (``mix_views``: measured in that many mixes too, see the module docstring).
    Each soundfont has its own random stream (seeded by ``seed`` and its index), so ``jobs``
    worker processes give the same data as one."""
    args = [(sf, si, programs, passes, views, seed, sr, mix_views)
            for si, sf in enumerate(soundfonts)]
    if jobs > 1 and len(args) > 1:
        from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

        with ProcessPoolExecutor(min(jobs, len(args))) as pool:
            parts = list(pool.map(_generate_one, args))
    else:
        parts = [_generate_one(a) for a in args]
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]))


def _generate_one(job) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`generate` for one soundfont."""
    from semcodec.synth.fluid import render_score  # noqa: PLC0415

    sf, si, programs, passes, views, seed, sr, mix_views = job
    rng = np.random.default_rng([seed, si])
    # the mixes draw from a stream of their own: without them the data are as before
    mix_rng = np.random.default_rng([seed, si, 1])
    feats, labels, sf_idx = [], [], []
    for ps in range(passes):
        t_start = time.monotonic()
        slots = []
        tracks = []
        for k, p in enumerate(programs):
            t0 = k * SLOT_S
            notes = phrase(rng, p, t0, SLOT_S - TAIL_S)
            slots.append((t0, notes))
            tracks.append(Track(name=f"p{p}", program=p).with_notes(notes))
        n_samples = int(len(programs) * SLOT_S * sr)
        audio = render_score(Score(tracks=tuple(tracks)), sr, n_samples, soundfont=sf)
        segs = [audio[int(t0 * sr):int((t0 + SLOT_S) * sr)] for t0, _ in slots]
        for (t0, notes), p, seg in zip(slots, programs, segs):
            if not notes or np.sqrt(np.mean(seg ** 2)) < 1e-6:
                continue
            for _ in range(views):
                x = augment(rng, seg, sr)
                feats.append(ins.note_features(x, sr, jitter(rng, notes, t0)))
                labels.append(np.full(len(notes), p))
                sf_idx.append(np.full(len(notes), si))
            for _ in range(mix_views):
                x = augment(mix_rng, mix_in(mix_rng, seg, segs, programs, p), sr)
                feats.append(ins.note_features(x, sr, jitter(mix_rng, notes, t0)))
                labels.append(np.full(len(notes), p))
                sf_idx.append(np.full(len(notes), si))
        print(f"{Path(sf).name} pass {ps + 1}: {time.monotonic() - t_start:.0f} s", flush=True)
    return np.concatenate(feats), np.concatenate(labels), np.concatenate(sf_idx)


def train(x: np.ndarray, y: np.ndarray, *, seed: int, steps: int, hidden: int = 64,
          lr: float = 3e-3, batch: int = 512, l2: float = 1e-4,
          smoothing: float = 0.1) -> ins.Model:
    """Fit the classifier on features ``x`` (N, F) and program labels ``y`` (N,)."""
    rng = np.random.default_rng(seed)
    mean = x.mean(axis=0)
    std = x.std(axis=0) + 1e-6
    xs = (x - mean) / std
    n_feat, n_cls = x.shape[1], ins.N_PROGRAMS
    params = {"w1": rng.normal(0, np.sqrt(2.0 / n_feat), (n_feat, hidden)), "b1": np.zeros(hidden),
              "w2": rng.normal(0, np.sqrt(1.0 / hidden), (hidden, n_cls)), "b2": np.zeros(n_cls)}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(v) for k, v in params.items()}
    target = np.full((x.shape[0], n_cls), smoothing / n_cls)
    target[np.arange(x.shape[0]), y] += 1.0 - smoothing
    b1, b2 = 0.9, 0.999
    for step in range(1, steps + 1):
        idx = rng.choice(x.shape[0], min(batch, x.shape[0]), replace=False)
        xb = xs[idx] + rng.normal(0, 0.05, (idx.shape[0], n_feat))
        h_pre = xb @ params["w1"] + params["b1"]
        h = np.maximum(h_pre, 0.0)
        z = h @ params["w2"] + params["b2"]
        z -= z.max(axis=1, keepdims=True)
        pz = np.exp(z)
        pz /= pz.sum(axis=1, keepdims=True)
        dz = (pz - target[idx]) / idx.shape[0]
        grads = {"w2": h.T @ dz + l2 * params["w2"], "b2": dz.sum(axis=0)}
        dh = (dz @ params["w2"].T) * (h_pre > 0)
        grads["w1"] = xb.T @ dh + l2 * params["w1"]
        grads["b1"] = dh.sum(axis=0)
        lr_t = lr * min(1.0, 2.0 * (1.0 - step / steps) + 0.05)
        for k in params:
            m[k] = b1 * m[k] + (1 - b1) * grads[k]
            v[k] = b2 * v[k] + (1 - b2) * grads[k] ** 2
            params[k] -= lr_t * (m[k] / (1 - b1 ** step)) / (np.sqrt(v[k] / (1 - b2 ** step)) + 1e-8)
    return ins.Model(mean=mean, std=std, **params)


def fit(x: np.ndarray, y: np.ndarray, *, seed: int, steps: int,
        hidden: int) -> tuple[ins.Model, dict[str, float]]:
    """Train on a random 90 % of the notes to measure accuracy on the rest, then on all of
    them: (the model trained on all notes, held-out accuracy).  BLAS runs on one thread (small
    matrices: more threads only contend, ~20x slower on a loaded 2-core machine)."""
    from threadpoolctl import threadpool_limits  # noqa: PLC0415

    with threadpool_limits(1):
        rng = np.random.default_rng(seed + 1)
        val = rng.random(x.shape[0]) < 0.1
        model = train(x[~val], y[~val], seed=seed, steps=steps, hidden=hidden)
        held = accuracy(model, x[val], y[val])
        print(f"held-out notes: program {held['program']:.3f}, family {held['family']:.3f}",
              flush=True)
        return train(x, y, seed=seed, steps=steps, hidden=hidden), held


def accuracy(model: ins.Model, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Per-note program and family accuracy of ``model`` on ``x`` / ``y``."""
    pred = np.argmax(model.log_proba(x), axis=1)
    return {"program": float(np.mean(pred == y)),
            "family": float(np.mean(pred // ins.PROGRAMS_PER_FAMILY == y // ins.PROGRAMS_PER_FAMILY))}


def save(model: ins.Model, out_dir: Path, config: dict) -> Path:
    """Write ``instrument-<sha12>.safetensors`` (removing older ones) and its config JSON."""
    from safetensors.numpy import save_file  # noqa: PLC0415

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "instrument-tmp.safetensors"
    save_file(model.tensors(), str(tmp))
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:12]
    final = out_dir / f"instrument-{digest}.safetensors"
    for old in out_dir.glob("instrument-*.safetensors"):
        if old != tmp:
            old.unlink()
    tmp.rename(final)
    config = dict(config, weights_file=final.name, sha256_12=digest)
    (out_dir / ins.CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return final


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m semcodec.instrument_train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ins.WEIGHTS_DIR)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--passes", type=int, default=2, help="renderings per soundfont")
    ap.add_argument("--views", type=int, default=2, help="augmented copies of each rendering")
    ap.add_argument("--mix-views", type=int, default=0,
                    help="copies of each rendering measured inside a mix of other programs")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--programs", type=int, default=ins.N_PROGRAMS,
                    help="train on programs 0..P-1 only (tests)")
    ap.add_argument("--soundfont", action="append", default=None)
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (one per soundfont)")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    sfs = tuple(args.soundfont or SOUNDFONTS)
    programs = list(range(args.programs))
    x, y, s = generate(sfs, programs, args.passes, args.views, args.seed, jobs=args.jobs,
                       mix_views=args.mix_views)
    t_data = time.monotonic() - t0
    print(f"{x.shape[0]} notes, {x.shape[1]} features in {t_data:.0f} s", flush=True)
    model, held = fit(x, y, seed=args.seed, steps=args.steps, hidden=args.hidden)
    config = {
        "command": "python -m semcodec.instrument_train " + " ".join(argv if argv is not None
                                                                    else sys.argv[1:]),
        "seed": args.seed, "passes": args.passes, "views": args.views,
        "mix_views": args.mix_views, "steps": args.steps,
        "hidden": args.hidden, "programs": args.programs,
        "soundfonts": [Path(p).name for p in sfs],
        "data": f"{len(programs)} programs x {len(sfs)} soundfonts x {args.passes} passes of "
                f"{SLOT_S - TAIL_S:.1f}-s phrases, {args.views} augmented views each "
                "(EQ tilt + peak, reverb, level, noise, timing jitter)"
                + (f" + {args.mix_views} views mixed with {MIX_OTHERS[0]}-{MIX_OTHERS[1]} other "
                   f"programs' slots (other families, a bass in {MIX_BASS_P:.0%}) at "
                   f"{MIX_LEVEL_DB[0]:+.0f}..{MIX_LEVEL_DB[1]:+.0f} dB" if args.mix_views else "")
                + f" at {ins.SR} Hz",
        "n_notes": int(x.shape[0]), "features": list(ins.feature_names()),
        "heldout_10pct_note_accuracy": held,
        "train_note_accuracy": accuracy(model, x, y),
        "wall_s": round(time.monotonic() - t0, 1), "data_s": round(t_data, 1),
    }
    path = save(model, args.out, config)
    print(f"wrote {path} in {time.monotonic() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    raise SystemExit(main())
