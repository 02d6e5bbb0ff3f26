"""Measure the tempo map (semcodec.beats.analyze) against known tempo and meter.

Clips:
* music21 corpus excerpts rendered like the bench's (bench/dataset.py: its ``score_notes``
  and the MuseScore General soundfont), 25 s each, with the score's tempo (quarter notes per
  minute as rendered) and its first time signature as the truth; a handful of the bench's
  pieces plus four in 6/8 (two jigs, two string-quartet movements);
* the Slakh eval stems and mixes in /work/shared/eval (``--eval``): the truth is the tempo and
  meter of the songs' source MIDI (Slakh ``all_src.mid``, as kept in basic-pitch's test
  resources): Track00001 80 BPM, written 4/4 with triplets throughout (a 12/8 feel: the
  stems' onsets lie on a 0.25 s grid = triplet 8ths at 80 BPM, bars 3.0 s), Track00049
  101 BPM 4/4 (piano chords every 2.376 s = one 4/4 bar at 101 BPM).

Cut time (2/2, the hornpipe) is scored as 4/4 in quarters, the meters semcodec writes.
Downbeats are scored on the corpus pieces only (the score's bar lines at the rendered tempo;
the Slakh MIDI grids are offset from their notes): right when half of the found downbeats lie
within 70 ms of a bar line, counted where the meter is right.  A tempo is right within 4 % of the truth (half or double counts as wrong); a meter is right
when the time signature matches.  Each clip is also written as MP3 (libsndfile, 128 kbps
VBR) and analysed again.

    .venv/bin/python scripts/beat_eval.py [--cache /tmp/beat-eval] [--eval /work/shared/eval]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import dataset  # noqa: E402
from bench.dataset import Piece, Voice  # noqa: E402

#: (piece, tempo as rendered in quarter notes per minute)
EXTRA = (
    Piece("jig_battle_the_cash", "ryansMammoth/BattleTheCashJig", 180, (Voice((0,), 73),),
          "Battle the Cash, jig: flute"),
    Piece("jig_belle_of_the_kitchen", "ryansMammoth/BelleOfTheKitchenJig", 165,
          (Voice((0,), 40),), "Belle of the Kitchen, jig: violin"),
    Piece("mozart_k458_6_8", "mozart/k458/movement1", 150,
          (Voice((0,), 40), Voice((1,), 40), Voice((2,), 41), Voice((3,), 42)),
          "Mozart K. 458/i: string quartet"),
    Piece("beethoven_op59n2_6_8", "beethoven/opus59no2/movement1", 150,
          (Voice((0,), 40), Voice((1,), 40), Voice((2,), 41), Voice((3,), 42)),
          "Beethoven op. 59 no. 2/i: string quartet"),
)
BENCH = ("m21_piano_maple_leaf_rag", "m21_piano_polonaise", "m21_flute_hornpipe",
         "m21_violin_haydn", "m21_trumpet_foster", "m21_voice_lascia", "m21_guitar_bwv253",
         "m21_harp_bwv846", "m21_ens_winds_bwv66.6", "m21_ens_strings_bwv84.5",
         "m21_ens_trio_corelli", "m21_ens_mixed_bwv8.6")
SLAKH = {"Track00001": (80.0, (12, 8)), "Track00049": (101.0, (4, 4))}


def _meter_of(p: Piece) -> tuple[tuple[int, int], np.ndarray]:
    """(time signature, downbeat times in s of the rendered excerpt) of piece ``p``."""
    from music21 import corpus, meter

    s = corpus.parse(p.corpus)
    if hasattr(s, "scores"):
        s = s.scores[p.opus_index]
    ts = s.recurse().getElementsByClass(meter.TimeSignature).first()
    parts = list(s.parts)
    sel = parts if p.voices[0].parts == ("all",) else [parts[i] for v in p.voices for i in v.parts]
    # as bench/dataset.score_notes: the excerpt starts LEAD_S before the first note
    q0 = min(float(n.offset) for part in sel for n in part.flatten().notes
             if n.duration.quarterLength > 0)
    downs = [float(m.offset) for m in parts[0].getElementsByClass("Measure")
             if not m.paddingLeft]
    t = np.array([dataset.LEAD_S + (q - q0) * 60.0 / p.bpm for q in downs])
    t = t[(t >= 0) & (t < dataset.EXCERPT_S)]
    if ts is None:
        return (4, 4), t
    sig = (2 * ts.numerator, 4) if ts.denominator == 2 else (ts.numerator, ts.denominator)
    return sig, t


def _beat_bpm(quarter_bpm: float, ts: tuple[int, int]) -> float:
    num, den = ts
    if den == 2:  # cut time is scored as 4/4: the same bar, counted in quarters
        return quarter_bpm
    compound = den == 8 and num % 3 == 0
    return quarter_bpm / (1.5 if compound else 4.0 / den)


def corpus_clips(cache: Path) -> list[tuple[str, np.ndarray, int, float, tuple[int, int]]]:
    from bench.render import MUSESCORE_SF, Renderer

    cache.mkdir(parents=True, exist_ok=True)
    pieces = [p for p in dataset.PIECES if p.name in BENCH] + list(EXTRA)
    out, renderer = [], None
    for p in pieces:
        wav = cache / f"{p.name}.flac"
        ts, downs = _meter_of(p)
        if not wav.exists():
            renderer = renderer or Renderer(MUSESCORE_SF)
            notes, programs = dataset.score_notes(p)
            end = max(n.offset for n in notes)
            y = renderer.render(notes, programs, min(dataset.EXCERPT_S, end + dataset.TAIL_S))
            y = y * (0.7 / max(1e-9, float(np.abs(y).max())))
            sf.write(str(wav), y, renderer.sr, subtype="PCM_16")
        y, sr = sf.read(str(wav), dtype="float32")
        out.append((p.name, y, sr, _beat_bpm(p.bpm, ts), ts, downs))
    if renderer is not None:
        renderer.close()
    return out


def eval_clips(folder: Path) -> list[tuple[str, np.ndarray, int, float, tuple[int, int]]]:
    out = []
    for f in sorted(folder.glob("slakh_Track*.flac")):
        song = f.stem.split("_")[1]
        if song in SLAKH:
            y, sr = sf.read(str(f), dtype="float32")
            bpm, ts = SLAKH[song]
            out.append((f.stem, y if y.ndim == 1 else y.mean(axis=1), sr, bpm, ts, None))
    return out


def mp3_roundtrip(y: np.ndarray, sr: int) -> np.ndarray:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="MP3")
    buf.seek(0)
    z, _ = sf.read(buf, dtype="float32")
    return z if z.ndim == 1 else z.mean(axis=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default="/tmp/beat-eval")
    ap.add_argument("--eval", default="/work/shared/eval")
    args = ap.parse_args()
    from semcodec.beats import analyze

    clips = corpus_clips(Path(args.cache)) + eval_clips(Path(args.eval))
    analyze(clips[0][1][: clips[0][2] * 5], clips[0][2])  # warm the imports
    rows, times, cpu = [], [], []
    print("| clip | true BPM | meter | est. BPM | meter | MP3 BPM | tempo ok | meter ok | downbeats ok "
          "| MP3 same | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    n_down = []
    for name, y, sr, bpm, ts, downs in clips:
        t0, c0 = time.perf_counter(), time.process_time()
        tm = analyze(y, sr)
        dt = time.perf_counter() - t0
        times.append(dt * 30.0 / (len(y) / sr))
        cpu.append((time.process_time() - c0) * 30.0 / (len(y) / sr))
        tm3 = analyze(mp3_roundtrip(y, sr), sr)
        est = tm.tempo_bpm if tm else float("nan")
        est3 = tm3.tempo_bpm if tm3 else float("nan")
        ok = abs(est / bpm - 1) <= 0.04
        mok = tm is not None and tuple(tm.time_signature) == tuple(ts)
        same = abs(est3 / est - 1) <= 0.04
        rows.append((ok, mok, same))
        down = "n/a"
        if downs is not None and tm is not None and mok and len(downs):
            hits = np.mean([np.min(np.abs(downs - d)) < 0.07 for d in tm.downbeats])
            n_down.append(hits >= 0.5)
            down = "yes" if hits >= 0.5 else "NO"
        ets = f"{tm.time_signature[0]}/{tm.time_signature[1]}" if tm else "-"
        print(f"| {name} | {bpm:.1f} | {ts[0]}/{ts[1]} | {est:.1f} | {ets} | {est3:.1f} | "
              f"{'yes' if ok else 'NO'} | {'yes' if mok else 'NO'} | {down} | "
              f"{'yes' if same else 'NO'} | {dt:.2f} |")
    r = np.array(rows)
    print(f"\ntempo within 4 %: {r[:, 0].sum()}/{len(r)} ({100 * r[:, 0].mean():.0f} %); "
          f"meter right: {r[:, 1].sum()}/{len(r)} ({100 * r[:, 1].mean():.0f} %); "
          f"FLAC and MP3 agree: {r[:, 2].sum()}/{len(r)}; downbeats right (half of ours within 70 ms "
          f"of the score's, where the meter is right): {sum(n_down)}/{len(n_down)}; "
          f"analysis time per 30 s of audio: median {np.median(times):.2f} s, max {max(times):.2f} s "
          f"wall clock, median {np.median(cpu):.2f} s, max {max(cpu):.2f} s CPU")


if __name__ == "__main__":
    main()
