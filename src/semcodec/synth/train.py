"""Training recipe of the neural synthesizer (``make train``).

    python -m semcodec.synth.train [--minutes M] [--out DIR] [--seed S] [--clips-per-program N]

Data are generated locally with fluidsynth from FluidR3_GM (never the benchmark's soundfont):
for every General MIDI program 0..127, short clips (``CLIP_S`` s at ``ddsp.SR_INT`` Hz) of single
notes, legato and staccato phrases and small chords over the program family's pitch range, random
velocities, some with pitch bends.  Fluidsynth's reverb/chorus are part of the target sound.
The model (:class:`semcodec.synth.ddsp.DDSPNet`) is trained with a multi-resolution STFT loss
(FFT 256..2048) until the wall-clock budget ``--minutes`` is spent (cosine learning-rate decay
over that budget), then written as ``neural-<sha256[:12]>.safetensors`` + ``neural-config.json``.
Runs on the CPU (a 2-core machine is enough; CUDA is not used — the model is small and the
signal path is memory-bound).
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
from typing import Any

import numpy as np

from semcodec.constants import PACKAGE_DIR, SYNTH_BEND_RANGE_SEMITONES

TRAIN_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
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


def generate_data(clips_per_program: int, seed: int, sr: int, soundfont: str = TRAIN_SOUNDFONT):
    """Render the training set: (audio int16 (n_clips, n), notes list, programs array)."""
    from semcodec.synth.fluid import import_fluidsynth, pull, set_bend_range  # noqa: PLC0415

    fluidsynth = import_fluidsynth()

    rng = random.Random(seed)
    n = int(CLIP_S * sr)
    synth = fluidsynth.Synth(gain=0.5, samplerate=float(sr), channels=16)
    sfid = synth.sfload(soundfont)
    if sfid < 0:
        raise SystemExit(f"cannot load {soundfont}")
    chans = [c for c in range(16) if c != 9]
    set_bend_range(synth, chans)

    def take(k: int) -> np.ndarray:  # the synth's next k frames, mono float32
        block = np.zeros(max(0, int(k)), np.float32)
        pull(synth, block)
        return block

    audio = np.zeros((128 * clips_per_program, n), np.int16)
    all_notes, programs = [], []
    k = 0
    for program in range(128):
        for c in chans:
            synth.program_select(c, sfid, 0, program)
        for _ in range(clips_per_program):
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
            k += 1
    synth.delete()
    return audio, all_notes, np.asarray(programs, np.int64)


def save_weights(state: dict, out_dir: Path, config: dict) -> Path:
    """Write ``neural-<sha12>.safetensors`` (removing older ones) and ``neural-config.json``."""
    from safetensors.torch import save_file  # noqa: PLC0415

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "neural-tmp.safetensors"
    save_file({k: v.detach().contiguous().float().cpu() for k, v in state.items()}, str(tmp))
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:12]
    final = out_dir / f"neural-{digest}.safetensors"
    for old in out_dir.glob("neural-*.safetensors"):
        if old != tmp and old != final:
            old.unlink()
    os.replace(tmp, final)
    config = dict(config, weights_file=final.name, sha256_12=digest)
    (out_dir / "neural-config.json").write_text(json.dumps(config, indent=2) + "\n")
    return final


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m semcodec.synth.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=85.0, help="wall-clock budget (default 85)")
    ap.add_argument("--out", type=Path, default=PACKAGE_DIR / "weights")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--clips-per-program", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
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
    print(f"generating data: {args.clips_per_program} clips x 128 programs ...", flush=True)
    audio, notes, programs = generate_data(args.clips_per_program, args.seed, sr)
    t_data = time.monotonic() - t_start
    print(f"data ready in {t_data:.0f} s: {audio.shape}", flush=True)
    model = ddsp.DDSPNet()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params} parameters", flush=True)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed)
    n_clip = audio.shape[1]
    step, ema, t_train0 = 0, None, time.monotonic()
    train_budget = max(1.0, deadline - t_train0)
    ckpt_every = 300.0
    last_ckpt = time.monotonic()
    config = {
        "command": "python -m semcodec.synth.train " + " ".join(argv if argv is not None else sys.argv[1:]),
        "minutes": args.minutes, "seed": args.seed, "batch": args.batch, "lr": args.lr,
        "data": (f"FluidR3_GM.sf2 (fluidsynth gain 0.5, default reverb/chorus), GM programs 0..127 x "
                 f"{args.clips_per_program} random clips of {CLIP_S} s at {sr} Hz: single notes, "
                 "legato/staccato phrases, 2-3 note chords, velocities 25..127, 10% with pitch bends"),
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
        idx = rng.choice(audio.shape[0], args.batch, replace=False)
        nb, grp = _note_batch(ddsp, notes, idx)
        progs = torch.from_numpy(programs[idx])
        target = torch.from_numpy(audio[idx].astype(np.float32) / 32767.0)
        pred = ddsp.render_groups(model, nb, np.asarray(grp), model.embedding(progs),
                                  model.room(progs), n_clip, sr=sr,
                                  generator=torch.Generator().manual_seed(step))
        loss = ddsp.mrstft_loss(pred, target)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % 25 == 0:
            print(f"step {step} loss {loss.item():.4f} ema {ema:.4f} lr {lr:.2e} "
                  f"t {time.monotonic() - t_start:.0f}s", flush=True)
        if time.monotonic() - last_ckpt > ckpt_every:
            save_weights(model.state_dict(), args.out,
                         dict(config, steps=step, final_loss_ema=ema, partial=True,
                              wall_minutes=(time.monotonic() - t_start) / 60))
            last_ckpt = time.monotonic()
    path = save_weights(model.state_dict(), args.out,
                        dict(config, steps=step, final_loss_ema=ema, partial=False,
                             wall_minutes=(time.monotonic() - t_start) / 60,
                             data_seconds=round(t_data, 1)))
    print(f"wrote {path} after {step} steps, loss ema {ema:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
