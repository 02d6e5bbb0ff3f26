"""One prepared check of the neural engine on a GPU: ``python scripts/gpu_check.py [FILE.smc ...]``.

For a session lent a CUDA machine (nothing in ``make test`` needs one).  Prints, per file:
seconds on the CPU (numpy engine) and on CUDA (torch engine: model and synthesis on the GPU),
the peak CUDA memory, and the distance between the two outputs (the benchmark's mel distance
when librosa is there, else a log-spectrogram L1 named as such); then renders many files'
tracks together in one batch (``neural.render_batch``) and prints its aggregate speed as a
multiple of real time.  Without files it makes ``--synthetic N`` random scores of
``--seconds`` s (4 tracks of random GM programs), so it needs nothing but this repository.
Exit status 1 when CUDA is missing or a CPU/CUDA distance exceeds ``--tolerance``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.metrics
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def synthetic(n: int, seconds: float, seed: int):
    from semcodec.container import Container
    from semcodec.events import BendPoint, Note, Score, Track

    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        tracks = []
        for t in range(4):
            notes, pos = [], float(rng.uniform(0, 0.5))
            base = int(rng.integers(36, 72))
            while pos < seconds - 0.3:
                dur = float(rng.uniform(0.08, 1.2))
                bends = (BendPoint(0.05, float(rng.uniform(-1, 1))),) if rng.random() < 0.1 else ()
                notes.append(Note(pos, pos + dur, base + int(rng.integers(-7, 8)),
                                  int(rng.integers(40, 127)), bends))
                pos += float(rng.uniform(0.1, 0.6))
            tracks.append(Track(f"t{t}", program=int(rng.integers(0, 100))).with_notes(notes))
        sr = 44100
        c = Container(duration=seconds, sample_rate=sr, channels=1, n_samples=int(seconds * sr),
                      loudness_lufs=-20.0, score=Score(tracks=tuple(tracks)))
        out.append((f"synthetic{k}", c))
    return out


def distance(a: np.ndarray, b: np.ndarray, sr: int) -> tuple[str, float]:
    try:
        from bench.metrics import mel_distance

        return "mel", float(mel_distance(a, b, sr))
    except ImportError:
        def spec(x):
            n = 2048
            f = np.lib.stride_tricks.sliding_window_view(x, n)[::512] * np.hanning(n)
            return np.log10(np.maximum(np.abs(np.fft.rfft(f, axis=1)), 1e-5))

        return "logspec-L1", float(np.mean(np.abs(spec(a) - spec(b))))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", help=".smc files (default: synthetic scores)")
    ap.add_argument("--synthetic", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--batch", type=int, default=64, help="files rendered together at the end")
    ap.add_argument("--tolerance", type=float, default=0.005)
    args = ap.parse_args()

    import torch

    import semcodec
    from semcodec.synth import neural
    from semcodec.synth.ddsp_np import NoteArrays

    if not torch.cuda.is_available():
        print("CUDA is not available: nothing to check")
        return 1
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    items = ([(p, semcodec.load(p)) for p in args.files] if args.files
             else synthetic(args.synthetic, args.seconds, 1))
    cpu = neural.NeuralEngine(device="cpu")
    gpu = neural.NeuralEngine(device="cuda")
    gpu.render(items[0][1].score, 44100, 44100, timbres=items[0][1].timbres)  # warm-up
    worst = 0.0
    for name, c in items:
        sr, n = c.sample_rate, c.n_samples
        kw = dict(timbres=c.timbres, samples=c.samples)
        t0 = time.perf_counter()
        a = cpu.render(c.score, sr, n, **kw)
        t_cpu = time.perf_counter() - t0
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        b = gpu.render(c.score, sr, n, **kw)
        torch.cuda.synchronize()
        t_gpu = time.perf_counter() - t0
        mem = torch.cuda.max_memory_allocated() / 2**20
        kind, d = distance(a, b, sr)
        worst = max(worst, d)
        print(f"{name}: {n / sr:.1f} s audio; cpu {t_cpu:.2f} s ({n / sr / t_cpu:.0f}x), "
              f"cuda {t_gpu:.2f} s ({n / sr / t_gpu:.0f}x), peak CUDA memory {mem:.0f} MiB, "
              f"{kind} cpu vs cuda {d:.4f}")
    # many files' tracks in one batch
    many = synthetic(args.batch, args.seconds, 2)
    sr = 44100
    n = int(args.seconds * sr)
    batch, seeds = [], []
    for _, c in many:
        for i, t in enumerate(c.score.tracks):
            emb, room, _ = gpu.track_params(i, t, c.timbres)
            batch.append((NoteArrays.from_track(t, limit_s=args.seconds), emb, room))
            seeds.append(i)
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    y = neural.render_batch(gpu.model, batch, sr, n, device="cuda", seeds=seeds)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    mem = torch.cuda.max_memory_allocated() / 2**20
    audio_s = args.batch * args.seconds
    print(f"batch: {args.batch} files x {len(many[0][1].score.tracks)} tracks, "
          f"{audio_s:.0f} s of audio in {dt:.2f} s = {audio_s / dt:.0f}x real time, "
          f"peak CUDA memory {mem:.0f} MiB, output {y.shape}, finite {bool(np.isfinite(y).all())}")
    c0 = many[0][1]
    for i in range(len(c0.score.tracks)):  # batch rows = the same tracks decoded alone
        alone = cpu.render_track(c0.score, i, sr, n, timbres=c0.timbres)
        kind, d = distance(alone, y[i], sr)
        worst = max(worst, d)
        print(f"batch row {i} vs the track decoded alone on the cpu: {kind} {d:.4f}")
    ok = worst <= args.tolerance
    print(f"worst cpu/cuda distance {worst:.4f} ({'within' if ok else 'OVER'} {args.tolerance})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
