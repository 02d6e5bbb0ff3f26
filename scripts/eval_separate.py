"""How well ``semcodec.separate.assign_tracks`` groups a mix's notes by instrument.

For each Slakh mix in the eval folder, the transcribed notes are labelled with the stem whose
ground-truth note they match (same pitch, onset within 50 ms); the script prints the number of
tracks chosen, purity (share of labelled notes in their track's majority stem) and, for the
solo stems (and the singing and trumpet clips), the number of tracks ``auto`` picks (1 is
right), with each track's instrument family (the classifier's) and the ensemble share
(``semcodec.separate.ensemble_share``).  Purity is given twice: with the mix's notes labelled
at the stems' written pitch, and also allowing an octave below it (Slakh's bass parts are
written an octave above where they sound, so a correctly heard bass note is otherwise
unlabelled).

``--stereo`` instead builds, per Slakh song, a mix of its stems in the eval folder placed at
pans spread evenly from -0.6 to 0.6 (in file order), and compares the grouping of the mono
downmix with that of the stereo mix (each note's pan as a feature).  The stems of one song
were cut at different points, so the music is not coherent, but the truth of every note is
known exactly.

``--rendered`` does the same on the benchmark's rendered ensembles (music21 chorales and a
trio, one GM program per part, from ``.bench-cache``: run ``make bench`` once first), with
every note labelled by its part, and prints the track count ``auto`` picks for the rendered
solos (1 is right).  (Purity rewards splitting: more tracks never lower it, so
read it together with the number of tracks, and with the solo stems staying one track.)

``--long MINUTES`` compares a long input's split with its excerpts': each Slakh mix looped to
MINUTES, and the mixes alternated (A B A B ...) to MINUTES, each transcribed and split
whole (``auto``), against the 30-s mix split alone (with the mixture's random states 0..9 too:
the spread of one excerpt's figure) and against every 30-s window of the long transcription
split alone (the window's audio with the long transcription's notes in it: the same music,
notes that differ only as the transcription's context makes them).  The alternated
file's truth is each song's stems at their offsets; its purity is given over all the stems and
per song (each song's notes alone: the two songs' basses in one track is not an error there).

    python scripts/eval_separate.py [EVAL_DIR] [--stems] [--stereo] [--rendered] [--long MINUTES]
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.families

from bench.families import align  # noqa: E402 - the stems put on the mix's time line
from semcodec.separate import assign_tracks, ensemble_share  # noqa: E402
from semcodec.transcribe import transcribe  # noqa: E402


def _truth(path: Path):
    return [tuple(x) for x in json.loads(path.read_text())]


def label(notes, stems: dict[str, list], octave: bool = False) -> list[str | None]:
    """The stem of each transcribed note (same pitch, onset within 50 ms), or None.
    ``octave``: a note an octave below a stem's note matches it too (when no note matches
    exactly): Slakh's bass parts are written an octave above where they sound."""
    out = []
    for n in notes:
        best = None
        for name, truth in stems.items():
            for on, off, p in truth:
                for penalty, dp in ((0, 0), (1, -12)) if octave else ((0, 0),):
                    if int(p) + dp == n.pitch and abs(on - n.onset) <= 0.05:
                        key = (penalty, abs(on - n.onset))
                        if best is None or key < best[0]:
                            best = (key, name)
        out.append(best[1] if best else None)
    return out


def _families(a) -> list[str]:
    from semcodec.instrument import FAMILY_NAMES

    return [FAMILY_NAMES[f] if f >= 0 else "?" for f in a.families]


def _purity(a, lab) -> tuple[float, list]:
    pur = []
    for t in range(a.n_tracks):
        ls = [lab[i] for i in np.nonzero(a.labels == t)[0] if lab[i]]
        if ls:
            top = max(set(ls), key=ls.count)
            pur.append((ls.count(top), len(ls), top))
    return sum(p[0] for p in pur) / max(1, sum(p[1] for p in pur)), pur


def stereo(d: Path) -> None:
    """Mono downmix against stereo mix of each song's stems (see the module docstring)."""
    songs = sorted({p.name.rsplit("_", 1)[0] for p in d.glob("slakh_*_S*.flac")})
    for song in songs:
        paths = sorted(d.glob(f"{song}_S*.flac"))
        xs = [sf.read(p, dtype="float32")[0] for p in paths]
        sr = sf.info(paths[0]).samplerate
        n = min(x.shape[0] for x in xs)
        pans = np.linspace(-0.6, 0.6, len(xs)) if len(xs) > 1 else np.zeros(1)
        left = sum(x[:n] * (1 - p) for x, p in zip(xs, pans)) / len(xs)
        right = sum(x[:n] * (1 + p) for x, p in zip(xs, pans)) / len(xs)
        mid, side = (left + right) / 2, (left - right) / 2
        notes = list(transcribe(mid, sr))
        stems = {p.name.split("_")[-1].split(".")[0]: _truth(p.with_suffix(".notes.json"))
                 for p in paths}
        lab = label(notes, stems)
        ls = [x for x in lab if x]
        print(f"{song}: {len(paths)} stems at pans {np.round(pans, 2).tolist()}, "
              f"labelled {len(ls)}/{len(notes)} notes, one track purity "
              f"{max(ls.count(s) for s in set(ls)) / len(ls):.3f}")
        for k in (None, len(paths)):
            for kind, sd in (("mono", None), ("stereo", side)):
                a = assign_tracks(mid, sr, notes, k, side=sd)
                purity, pur = _purity(a, lab)
                print(f"  {kind:6s} tracks={k or 'auto'} -> {a.n_tracks}, purity {purity:.3f}, "
                      f"majority stems {[p[2] + f'({p[0]}/{p[1]})' for p in pur]}")


def rendered() -> None:
    """Grouping of the benchmark's rendered ensembles, notes labelled by part (channel)."""
    from bench.dataset import DATASET_DIR, PIECES, score_notes

    total = {}
    for p in PIECES:
        audio_path = DATASET_DIR / f"{p.name}.flac"
        if not audio_path.exists():
            continue
        audio, sr = sf.read(audio_path, dtype="float32")
        if len(p.voices) < 2:  # a solo: auto should keep it one track
            notes = list(transcribe(audio, sr))
            print(f"{p.name} (solo): auto -> {assign_tracks(audio, sr, notes).n_tracks} "
                  f"track(s), ensemble share {ensemble_share(notes):.2f}")
            continue
        dur = audio.shape[0] / sr
        truth, _ = score_notes(p)
        parts = {}
        for n in truth:
            if n.onset < dur - 0.3:
                parts.setdefault(f"ch{n.channel}", []).append((n.onset, n.offset, n.pitch))
        notes = list(transcribe(audio, sr))
        lab = label(notes, parts)
        ls = [x for x in lab if x]
        print(f"{p.name}: {len(parts)} parts, labelled {len(ls)}/{len(notes)} notes, one track "
              f"purity {max(ls.count(s) for s in set(ls)) / len(ls):.3f}")
        for k in (None, len(parts)):
            a = assign_tracks(audio, sr, notes, k)
            purity, pur = _purity(a, lab)
            total.setdefault(k is None, []).append(purity)
            print(f"  tracks={k or 'auto'} -> {a.n_tracks}, purity {purity:.3f}, "
                  f"majority parts {[q[2] + f'({q[0]}/{q[1]})' for q in pur]}")
    for auto, v in total.items():
        print(f"mean purity, tracks={'auto' if auto else 'parts'}: {np.mean(v):.3f}")


#: ``--long``: the 30-s split is also measured with the Gaussian mixture's random states
#: 0..SEEDS-1 (``assign_tracks(..., seed=)``): how far one excerpt's figure moves by luck.
SEEDS = 10


def _windows(audio, sr: int, notes, lab, window_s: float = 30.0) -> list[tuple[float, int]]:
    """(purity, tracks) of each ``window_s`` window of ``audio`` split alone, with the notes of
    the whole transcription whose onsets fall in it (shifted to its start)."""
    out = []
    for t0 in np.arange(0.0, audio.shape[0] / sr - window_s / 2, window_s):
        idx = [i for i, n in enumerate(notes) if t0 <= n.onset < t0 + window_s]
        sub = [replace(notes[i], onset=notes[i].onset - t0, offset=notes[i].offset - t0)
               for i in idx]
        a = assign_tracks(audio[int(t0 * sr):int((t0 + window_s) * sr)], sr, sub, None)
        out.append((_purity(a, [lab[i] for i in idx])[0], a.n_tracks))
    return out


def long(d: Path, minutes: float) -> None:
    """Long inputs against their excerpts (see the module docstring)."""
    mixes = []
    for mix in sorted(d.glob("*_mix.flac")):
        prefix = mix.name[: -len("_mix.flac")]
        audio, sr = sf.read(mix, dtype="float32")
        mix_truth = _truth(d / f"{prefix}_mix.notes.json")
        stems = {f"{prefix.split('_')[-1]}_{p.name.split('_')[-1].split('.')[0]}":
                 align(mix_truth, _truth(p)) for p in sorted(d.glob(f"{prefix}_S*.notes.json"))}
        mixes.append((mix.name, audio, sr, stems))
    pieces = [[m] for m in mixes]
    if len(mixes) > 1:
        pieces.append(mixes)
    for piece in pieces:
        sr = piece[0][2]
        reps = max(1, int(round(minutes * 60 / (piece[0][1].shape[0] / sr))))
        audio, truth, song = [], {}, []
        t0 = 0.0
        for r in range(reps):
            _, x, _, stems = piece[r % len(piece)]
            audio.append(x)
            for k, v in stems.items():
                truth.setdefault(k, []).extend((on + t0, off + t0, p) for on, off, p in v)
            song.append((t0, r % len(piece)))
            t0 += x.shape[0] / sr
        audio = np.concatenate(audio)
        name = piece[0][0] if len(piece) == 1 else " + ".join(m[0] for m in piece) + " alternated"
        if len(piece) == 1:
            x = piece[0][1]
            notes = list(transcribe(x, sr))
            lab = label(notes, piece[0][3])
            seeds = [assign_tracks(x, sr, notes, None, seed=s) for s in range(SEEDS)]
            pur = [_purity(a, lab)[0] for a in seeds]
            print(f"{name} 30 s: {seeds[0].n_tracks} tracks, purity {pur[0]:.3f}; over mixture "
                  f"seeds 0..{SEEDS - 1}: purity mean {np.mean(pur):.3f} (min {min(pur):.3f}, "
                  f"max {max(pur):.3f}), tracks {[a.n_tracks for a in seeds]}", flush=True)
        notes = list(transcribe(audio, sr))
        lab = label(notes, truth)
        a = assign_tracks(audio, sr, notes, None)
        purity, pur = _purity(a, lab)
        line = (f"{name} {audio.shape[0] / sr / 60:.1f} min: {a.n_tracks} tracks, purity "
                f"{purity:.3f}")
        if len(piece) > 1:
            starts = np.array([s[0] for s in song])
            which = np.array([song[int(np.searchsorted(starts, n.onset, "right")) - 1][1]
                              for n in notes])
            right = total = 0
            for s in range(len(piece)):  # each song's notes alone
                idx = np.nonzero(which == s)[0]
                sub = SimpleNamespace(labels=a.labels[idx], n_tracks=a.n_tracks)
                for top, count, _ in _purity(sub, [lab[i] for i in idx])[1]:
                    right, total = right + top, total + count
            line += f" (per song {right / max(1, total):.3f})"
        print(f"{line}, families {_families(a)}, majority stems "
              f"{[p[2] + f'({p[0]}/{p[1]})' for p in pur]}", flush=True)
        win = _windows(audio, sr, notes, lab)
        print(f"  its 30-s windows split alone: purity mean {np.mean([w[0] for w in win]):.3f} "
              f"(min {min(w[0] for w in win):.3f}, max {max(w[0] for w in win):.3f}), tracks "
              f"{[w[1] for w in win]}", flush=True)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    minutes = float(argv[argv.index("--long") + 1]) if "--long" in argv else None
    args = [a for i, a in enumerate(argv) if not a.startswith("--")
            and not (i and argv[i - 1] == "--long")]
    d = Path(args[0]) if args else Path(__file__).resolve().parent.parent / ".." / "shared" / "eval"
    if "--rendered" in argv:
        rendered()
        return 0
    if minutes is not None:
        long(d, minutes)
        return 0
    if "--stereo" in argv:
        stereo(d)
        return 0
    for mix in sorted(d.glob("*_mix.flac")):
        prefix = mix.name[: -len("_mix.flac")]
        audio, sr = sf.read(mix, dtype="float32")
        notes = list(transcribe(audio, sr))
        mix_truth = _truth(d / f"{prefix}_mix.notes.json")
        stems = {p.name.split("_")[-1].split(".")[0]: align(mix_truth, _truth(p))
                 for p in sorted(d.glob(f"{prefix}_S*.notes.json"))}
        print(mix.name, "stems aligned:", {k: len(v) for k, v in stems.items()})
        lab = label(notes, stems)
        lab8 = label(notes, stems, octave=True)
        print(f"  ensemble share {ensemble_share(notes):.2f}")
        for k in (None, 2, 3, 4):
            a = assign_tracks(audio, sr, notes, k)
            purity, pur = _purity(a, lab)
            print(f"{mix.name}: tracks={k or 'auto'} -> {a.n_tracks}, purity {purity:.3f} "
                  f"(octave-aware labels {_purity(a, lab8)[0]:.3f}), families {_families(a)}, "
                  f"majority stems {[p[2] + f'({p[0]}/{p[1]})' for p in pur]}")
        ls = [x for x in lab if x]
        print(f"  one track purity {max(ls.count(s) for s in set(ls)) / len(ls):.3f}; "
              f"labelled {len(ls)}/{len(notes)} notes")
    others = sorted(d.glob("*_S*.flac")) + sorted(d.glob("vocadito*.flac")) + sorted(
        d.glob("real_*.flac"))
    for stem in others if "--stems" in argv else ():
        audio, sr = sf.read(stem, dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        notes = list(transcribe(audio, sr))
        a = assign_tracks(audio, sr, notes, None)
        print(f"{stem.name}: auto -> {a.n_tracks} track(s) ({len(notes)} notes, ensemble share "
              f"{ensemble_share(notes):.2f}, families {_families(a)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
