"""Training recipe of the neural synthesizer (``make train``).

    python -m semcodec.synth.train [--minutes M] [--out DIR] [--seed S] [--clips-per-program N]
        [--soundfonts SF ...] [--augment P] [--init PATH] [--threads T]

Data are generated locally with fluidsynth: for every General MIDI program 0..127, short clips
(``CLIP_S`` s at ``ddsp.SR_INT`` Hz) of single notes, legato and staccato phrases and small chords
over the program family's pitch range, random velocities, some with pitch bends.  Fluidsynth's
reverb/chorus are part of the target sound.  ``--soundfonts`` (default: those of
``DEFAULT_SOUNDFONTS`` that are installed) splits each program's clips evenly across several
soundfonts; the first one's sound is what the saved program embeddings learn, the others get a
learned per-(soundfont, program) offset of embedding and room during training only (so the
network learns to render their timbres from nearby embeddings, as the encoder's per-track fit
needs).  ``--augment P`` gives a share P of the targets, drawn anew at every step, the
eval-style degradation of :func:`augment` (EQ tilt/peak, band limit, reverb, level) and
level-matches the prediction to them.  ``--init`` warm-starts from existing weights
(fine-tuning).  The defaults, with ``--init`` the previous model as ``make train`` passes it,
are the recipe of the committed model (its ``neural-config.json``; the step count depends on the
machine's speed and load within the wall-clock budget).
The model (:class:`semcodec.synth.ddsp.DDSPNet`) is trained with a multi-resolution STFT loss
(FFT 256..2048) until the wall-clock budget ``--minutes`` is spent (cosine learning-rate decay
over that budget, a checkpoint every ``--checkpoint-minutes``), then written as
``neural-<sha256[:12]>.safetensors`` + ``neural-config.json`` (every option and the data in
words).  Runs on the CPU (a 2-core machine is enough; CUDA is not used — the model is small and
the signal path is memory-bound).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from semcodec.augment import eq_band_limit_room
from semcodec.constants import PACKAGE_DIR, SYNTH_BEND_RANGE_SEMITONES

TRAIN_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
#: The Debian General MIDI soundfonts ``--soundfonts`` uses by default (those installed), in this
#: order; the first one is the canonical sound of the model's program embeddings.
DEFAULT_SOUNDFONTS = (TRAIN_SOUNDFONT, "/usr/share/sounds/sf3/MuseScore_General.sf3",
                      "/usr/share/sounds/sf2/TimGM6mb.sf2")
CLIP_S = 1.5
#: Pitch range (MIDI) per GM family (program // 8).
FAMILY_RANGE = [(28, 100), (55, 100), (36, 96), (40, 88), (28, 60), (36, 96), (40, 90),
                (40, 84), (45, 90), (60, 96), (45, 96), (36, 90), (36, 90), (45, 90),
                (40, 84), (40, 84)]


def _rand_clip(rng: random.Random, program: int) -> list[tuple[float, float, int, int, tuple]]:
    """Notes (onset, offset, pitch, velocity, bends) of one random clip."""
    lo, hi = FAMILY_RANGE[program // 8]
    kind = rng.random()
    notes = []
    t = rng.uniform(0.02, 0.1)
    vel = lambda: int(rng.triangular(25, 127, 95))  # noqa: E731
    if kind < 0.35:  # single note
        p = rng.randint(lo, hi)
        d = math.exp(rng.uniform(math.log(0.08), math.log(1.3)))
        notes.append((t, t + d, p, vel(), ()))
    elif kind < 0.6:  # legato phrase
        p = rng.randint(lo + 5, hi - 5)
        for _ in range(rng.randint(2, 4)):
            d = rng.uniform(0.15, 0.45)
            notes.append((t, t + d, p, vel(), ()))
            t += d
            p = min(hi, max(lo, p + rng.choice([-5, -3, -2, -1, 1, 2, 3, 4, 7])))
    elif kind < 0.8:  # staccato phrase
        p = rng.randint(lo + 5, hi - 5)
        gap = rng.uniform(0.2, 0.35)
        for _ in range(rng.randint(3, 5)):
            notes.append((t, t + rng.uniform(0.04, 0.15), p, vel(), ()))
            t += gap
            p = min(hi, max(lo, p + rng.choice([-4, -2, -1, 1, 2, 5])))
    else:  # chord
        p = rng.randint(lo, max(lo, hi - 12))
        d = rng.uniform(0.2, 1.2)
        v = vel()
        for iv in rng.sample([0, 3, 4, 7, 12], rng.randint(2, 3)):
            notes.append((t, t + d, p + iv, max(1, v + rng.randint(-10, 10)), ()))
    out = []
    for (on, off, p, v, _) in notes:
        if on >= CLIP_S - 0.05:
            continue
        bends: tuple[tuple[float, float], ...] = ()
        if rng.random() < 0.1 and off - on > 0.2:
            bends = ((round((off - on) * rng.uniform(0.3, 0.7), 3), rng.choice([-2.0, -1.0, 1.0, 2.0, 0.5])),)
        out.append((on, min(off, CLIP_S), p, v, bends))
    return out


def available_soundfonts(paths: Sequence[str] = DEFAULT_SOUNDFONTS) -> list[str]:
    """Those of ``paths`` that exist (symbolic links resolved), in order."""
    return [p for p in paths if Path(p).exists()]


def generate_data(clips_per_program: int, seed: int, sr: int,
                  soundfonts: Sequence[str] = (TRAIN_SOUNDFONT,),
                  program_list: Sequence[int] = range(128)):
    """Render the training set: (audio int16 (n_clips, n), notes list, programs array,
    soundfont index array).  Clip ``k`` of each program is rendered with soundfont
    ``k % len(soundfonts)`` (the data are split evenly across them)."""
    from semcodec.synth.fluid import import_fluidsynth, pull, set_bend_range  # noqa: PLC0415

    fluidsynth = import_fluidsynth()

    rng = random.Random(seed)
    n = int(CLIP_S * sr)
    synth = fluidsynth.Synth(gain=0.5, samplerate=float(sr), channels=16)
    sfids = []
    for soundfont in soundfonts:
        sfid = synth.sfload(str(soundfont))
        if sfid < 0:
            raise SystemExit(f"cannot load {soundfont}")
        sfids.append(sfid)
    chans = [c for c in range(16) if c != 9]
    set_bend_range(synth, chans)

    def take(k: int) -> np.ndarray:  # the synth's next k frames, mono float32
        block = np.zeros(max(0, int(k)), np.float32)
        pull(synth, block)
        return block

    audio = np.zeros((len(program_list) * clips_per_program, n), np.int16)
    all_notes, programs, sf_index = [], [], []
    k = 0
    for program in program_list:
        for j in range(clips_per_program):
            si = j % len(sfids)
            for c in chans:
                synth.program_select(c, sfids[si], 0, program)
            notes = _rand_clip(rng, program)
            ev: list[tuple] = []
            for i, (on, off, p, v, bends) in enumerate(notes):
                ch = chans[i % len(chans)]
                ev.append((int(on * sr), 1, "bend", ch, 8192))
                for bt, semis in bends:
                    ev.append((int((on + bt) * sr), 1, "bend", ch,
                               8192 + int(round(semis / SYNTH_BEND_RANGE_SEMITONES * 8192))))
                ev.append((int(on * sr), 2, "on", ch, p, v))
                ev.append((int(off * sr), 0, "off", ch, p))
            ev.sort(key=lambda e: (e[0], e[1]))
            blocks: list[np.ndarray] = []
            pos = 0
            for e in ev:
                if e[0] > pos:
                    blocks.append(take(e[0] - pos))
                    pos = e[0]
                if e[2] == "on":
                    synth.noteon(e[3], e[4], e[5])
                elif e[2] == "off":
                    synth.noteoff(e[3], e[4])
                else:
                    synth.pitch_bend(e[3], min(16383, max(0, e[4])) - 8192)
            if n > pos:
                blocks.append(take(n - pos))
            clip = np.concatenate(blocks)[:n]
            audio[k] = np.clip(clip * 32767.0, -32768, 32767).astype(np.int16)
            for c in chans:
                synth.all_sounds_off(c)
                synth.pitch_bend(c, 0)
            take(int(1.5 * sr))  # let the reverb die out
            all_notes.append(notes)
            programs.append(program)
            sf_index.append(si)
            k += 1
    synth.delete()
    return audio, all_notes, np.asarray(programs, np.int64), np.asarray(sf_index, np.int64)


def augment(rng: np.random.Generator, x: np.ndarray, sr: int) -> np.ndarray:
    """Eval-style degradation of one target clip ``x`` (mono float32, ``sr`` Hz): a random EQ
    (tilt of -3..3 dB/octave around 1 kHz and one peak/notch of -8..8 dB), in 30 % of the cases
    a band limit (4-9 kHz), in 70 % a reverb tail (RT60 0.2-1.2 s, 5-40 % wet), and a level
    change of -6..+6 dB.  The same family of changes as the instrument classifier's
    :func:`semcodec.instrument_train.augment`, without its background noise and loudness
    normalisation (the synthesizer's loss is level-matched instead, as the encoder fits gain)."""
    y = eq_band_limit_room(rng, x, sr, max_rt60_s=1.2, max_wet=0.4)
    y *= 10.0 ** (rng.uniform(-6.0, 6.0) / 20.0)
    return y.astype(np.float32)


def save_weights(state: dict, out_dir: Path, config: dict, previous: Path | None = None) -> Path:
    """Write ``neural-<sha12>.safetensors`` and ``neural-config.json``, removing ``previous``
    (this run's last checkpoint).  Other weights files stay: files encoded with an earlier
    model name it and decode with it."""
    from safetensors.torch import save_file  # noqa: PLC0415

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "neural-tmp.safetensors"
    save_file({k: v.detach().contiguous().float().cpu() for k, v in state.items()}, str(tmp))
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:12]
    final = out_dir / f"neural-{digest}.safetensors"
    if previous is not None and previous != final and previous.is_file():
        previous.unlink()
    os.replace(tmp, final)
    config = dict(config, weights_file=final.name, sha256_12=digest)
    (out_dir / "neural-config.json").write_text(json.dumps(config, indent=2) + "\n")
    return final


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m semcodec.synth.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=42.0, help="wall-clock budget (default 42)")
    ap.add_argument("--out", type=Path, default=PACKAGE_DIR / "weights")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--clips-per-program", type=int, default=24)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--soundfonts", nargs="+", default=None, metavar="SF",
                    help="soundfonts to render the data with, split evenly (default: those of "
                         + ", ".join(DEFAULT_SOUNDFONTS) + " that are installed)")
    ap.add_argument("--augment", type=float, default=0.3, metavar="P",
                    help="share of targets given the eval-style augmentation (EQ, band limit, "
                         "reverb, level; default 0.3; 0 = none)")
    ap.add_argument("--init", type=Path, default=None, metavar="PATH",
                    help="warm-start from these neural weights (a .safetensors file or a "
                         "weights directory); default: random initialisation")
    ap.add_argument("--programs", type=int, default=128,
                    help="train on GM programs 0..N-1 only (smoke tests; default 128)")
    ap.add_argument("--checkpoint-minutes", type=float, default=5.0,
                    help="write the weights every this many minutes (partial=true in the config)")
    return ap.parse_args(argv)


def _note_batch(ddsp: Any, notes: list, idx: np.ndarray) -> tuple[Any, list[int]]:
    """The notes of clips ``idx`` as one ``ddsp.NoteBatch`` and each note's place in the
    batch (its group)."""
    on, off, pit, vel, bends, grp = [], [], [], [], [], []
    for b, i in enumerate(idx):
        for (o, f, p, v, bl) in notes[i]:
            on.append(o)
            off.append(f)
            pit.append(p)
            vel.append(v)
            bends.append(bl)
            grp.append(b)
    return ddsp.NoteBatch(on, off, pit, vel, bends, CLIP_S), grp


def _load_init(model: Any, path: Path) -> str:
    """Load the weights at ``path`` (a file, or the directory whose config names one) into
    ``model``; return the file name."""
    from semcodec.synth.weights import find_weights, load_arrays  # noqa: PLC0415
    import torch  # noqa: PLC0415

    f = find_weights(path) if Path(path).is_dir() else Path(path)
    if f is None or not f.is_file():
        raise SystemExit(f"--init {path}: no neural weights there")
    arrays = load_arrays(f)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})
    return f.name


def _data_description(args: argparse.Namespace, soundfonts: list[str], sr: int,
                      init_name: str | None = None) -> str:
    names = ", ".join(Path(sf).name for sf in soundfonts)
    text = (f"{names} (fluidsynth gain 0.5, default reverb/chorus; clip k of a program uses "
            f"soundfont k mod {len(soundfonts)}), GM programs 0..{args.programs - 1} x "
            f"{args.clips_per_program} random clips of {CLIP_S} s at {sr} Hz: single notes, "
            "legato/staccato phrases, 2-3 note chords, velocities 25..127, 10% with pitch bends")
    if len(soundfonts) > 1:
        text += (f"; soundfonts after the first get a learned per-(soundfont, program) offset of "
                 f"the embedding and room (not saved: the saved embeddings are {Path(soundfonts[0]).name}'s)")
    if args.augment > 0:
        text += (f"; {args.augment:.0%} of the targets augmented per step (random EQ tilt/peak, "
                 "30% band-limited, 70% reverb, +-6 dB level) with the prediction level-matched "
                 "to the target on those clips")
    if init_name:
        text += f"; warm-started from {init_name}"
    return text


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    t_start = time.monotonic()
    deadline = t_start + args.minutes * 60.0

    import torch  # noqa: PLC0415

    from semcodec.synth import ddsp  # noqa: PLC0415

    if args.threads:
        torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    sr = ddsp.SR_INT
    soundfonts = list(args.soundfonts) if args.soundfonts else available_soundfonts()
    if not soundfonts:
        raise SystemExit("no soundfont found: install fluid-soundfont-gm or pass --soundfonts")
    n_prog = max(1, min(128, args.programs))
    args.programs = n_prog
    print(f"generating data: {args.clips_per_program} clips x {n_prog} programs from "
          f"{len(soundfonts)} soundfont(s) ...", flush=True)
    audio, notes, programs, sf_idx = generate_data(args.clips_per_program, args.seed, sr,
                                                   soundfonts, range(n_prog))
    t_data = time.monotonic() - t_start
    print(f"data ready in {t_data:.0f} s: {audio.shape}", flush=True)
    model = ddsp.DDSPNet()
    init_name = _load_init(model, args.init) if args.init is not None else None
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params} parameters" + (f", from {init_name}" if init_name else ""), flush=True)
    # soundfonts after the first: learned offsets of embedding and room per (soundfont, program)
    n_sf = len(soundfonts)
    sf_emb = torch.nn.Embedding(n_sf * 128, ddsp.EMB_DIM)
    sf_room = torch.nn.Embedding(n_sf * 128, ddsp.N_ROOM)
    torch.nn.init.zeros_(sf_emb.weight)
    torch.nn.init.zeros_(sf_room.weight)
    params = list(model.parameters()) + (list(sf_emb.parameters()) + list(sf_room.parameters())
                                         if n_sf > 1 else [])
    opt = torch.optim.Adam(params, lr=args.lr)
    rng = np.random.default_rng(args.seed)
    n_clip = audio.shape[1]
    step, ema, t_train0 = 0, None, time.monotonic()
    train_budget = max(1.0, deadline - t_train0)
    ckpt_every = args.checkpoint_minutes * 60.0
    last_ckpt = time.monotonic()
    ckpt: Path | None = None
    config = {
        "command": "python -m semcodec.synth.train " + " ".join(argv if argv is not None else sys.argv[1:]),
        "minutes": args.minutes, "seed": args.seed, "batch": args.batch, "lr": args.lr,
        "soundfonts": [Path(sf).name for sf in soundfonts], "augment": args.augment,
        "init": init_name,
        "data": _data_description(args, soundfonts, sr, init_name),
        "loss": "multi-resolution STFT (FFT 256/512/1024/2048, hop n/4): spectral convergence"
                " + log-magnitude L1",
        "n_params": n_params, "sr_internal": sr, "hop": ddsp.HOP, "n_harmonics": ddsp.N_HARM,
        "n_noise_bands": ddsp.N_BANDS, "embedding_dim": ddsp.EMB_DIM,
        "device": "cpu", "torch": torch.__version__,
    }
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        frac = (now - t_train0) / train_budget
        lr = args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = rng.choice(audio.shape[0], min(args.batch, audio.shape[0]), replace=False)
        nb, grp = _note_batch(ddsp, notes, idx)
        progs = torch.from_numpy(programs[idx])
        tgt = audio[idx].astype(np.float32) / 32767.0
        aug = rng.random(len(idx)) < args.augment
        for b in np.flatnonzero(aug):
            tgt[b] = augment(rng, tgt[b], sr)
        target = torch.from_numpy(tgt)
        emb, room = model.embedding(progs), model.room(progs)
        if n_sf > 1:
            key = torch.from_numpy(sf_idx[idx] * 128 + programs[idx])
            on = torch.from_numpy((sf_idx[idx] > 0).astype(np.float32))[:, None]
            emb = emb + on * sf_emb(key)
            room = room + on * sf_room(key)
        pred = ddsp.render_groups(model, nb, np.asarray(grp), emb, room, n_clip, sr=sr,
                                  generator=torch.Generator().manual_seed(step))
        if aug.any():  # level-match the augmented clips (the encoder fits a gain)
            rms_p = pred.detach().pow(2).mean(dim=-1).sqrt() + 1e-7
            rms_t = target.pow(2).mean(dim=-1).sqrt()
            scale = torch.where(torch.from_numpy(aug), rms_t / rms_p, torch.ones_like(rms_p))
            pred = pred * scale[:, None]
        loss = ddsp.mrstft_loss(pred, target)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        step += 1
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % 25 == 0:
            print(f"step {step} loss {loss.item():.4f} ema {ema:.4f} lr {lr:.2e} "
                  f"t {time.monotonic() - t_start:.0f}s", flush=True)
        if time.monotonic() - last_ckpt > ckpt_every:
            ckpt = save_weights(model.state_dict(), args.out,
                                dict(config, steps=step, final_loss_ema=ema, partial=True,
                                     wall_minutes=(time.monotonic() - t_start) / 60), ckpt)
            last_ckpt = time.monotonic()
    path = save_weights(model.state_dict(), args.out,
                        dict(config, steps=step, final_loss_ema=ema, partial=False,
                             wall_minutes=(time.monotonic() - t_start) / 60,
                             data_seconds=round(t_data, 1)), ckpt)
    print(f"wrote {path} after {step} steps, loss ema "
          + (f"{ema:.4f}" if ema is not None else "-"), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
