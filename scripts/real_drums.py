"""Drum detection on produced music that nobody on this project made: game soundtracks in Debian.

Everything else the drum detector was tuned and measured on is drums rendered through the Debian
GM soundfonts (the bench's ``drums_*`` and ``band_chorale_rock_90`` clips).  This script takes
30-s excerpts of real produced tracks (electronic, rock-like and pop game music with a drum kit,
and two without drums) straight from the Debian packages that ship them, and prints, per
excerpt:

* ``detect_drums`` alone: the hits, per class, and the hits with the presence test as it was
  before the kick-and-snare route (``--`` "metal gate": ``KIT_MIN_HITS`` out of reach);
* how the hits line up with the audio's percussive onsets: librosa's onset detection on the
  HPSS percussive part (margin 2) as a rough reference, precision / recall / F1 of the distinct
  hit times within 50 ms (``mir_eval.onset``);
* unless ``--no-encode``: ``semcodec encode`` with ``--drums auto`` (the default) and with
  ``--drums off``, each decoded with the default engine: whether a drum track is found, its hits,
  the mel distance of the decode to the original (``bench.metrics.mel_distance``), and the
  pitched notes, with those that are short (< 0.15 s) and start within 30 ms of a drum hit
  (notes transcribed from drum hits: the leakage the drum suppression is there to stop).

Needs the network once: ``apt-get download`` fetches the three packages (about 140 MB) into
``--debs`` (default /tmp/realdrums/debs); the excerpts are cut from the extracted ``.ogg`` files
(downmixed to mono, 44.1 kHz) into ``--work``.  Nothing here is part of ``make test``; no audio
is committed.

    .venv/bin/python scripts/real_drums.py [--no-encode] [--only SUBSTR ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: (name, Debian package, version, file in the package, start s, drums?, licence of the file as
#: the package's /usr/share/doc/<package>/copyright gives it ("Files: *")).
EXCERPTS = (
    ("frozen_main_120", "frozen-bubble-data", "2.212-11",
     "usr/share/games/frozen-bubble/snd/frozen-mainzik-1p.ogg", 120.0, True,
     "GPL-2, (c) 2000-2010 The Frozen-Bubble Team"),
    ("frozen_intro_30", "frozen-bubble-data", "2.212-11",
     "usr/share/games/frozen-bubble/snd/introzik.ogg", 30.0, True,
     "GPL-2, (c) 2000-2010 The Frozen-Bubble Team"),
    ("blupi_008_120", "planetblupi-music-ogg", "1.14.2-3",
     "usr/share/planetblupi/music/music008.ogg", 120.0, True,
     "GPL-3+, (c) 1997 Daniel Roux, EPSITEC SA & Denis Dumoulin; 2017-2018 Mathieu Schroeter"),
    ("blupi_000_120", "planetblupi-music-ogg", "1.14.2-3",
     "usr/share/planetblupi/music/music000.ogg", 120.0, True,
     "GPL-3+, (c) 1997 Daniel Roux, EPSITEC SA & Denis Dumoulin; 2017-2018 Mathieu Schroeter"),
    ("colobot_hv2_90", "colobot-common-sounds", "0.2.0-2",
     "usr/share/games/colobot/music/Hv2.ogg", 90.0, True,
     "GPL-3+, (c) 2001-2016 Daniel Roux, EPSITEC SA & TerranovaTeam"),
    ("colobot_infinite_90", "colobot-common-sounds", "0.2.0-2",
     "usr/share/games/colobot/music/Infinite.ogg", 90.0, True,
     "GPL-3+, (c) 2001-2016 Daniel Roux, EPSITEC SA & TerranovaTeam"),
    ("colobot_004_0", "colobot-common-sounds", "0.2.0-2",
     "usr/share/games/colobot/music/music004.ogg", 0.0, False,
     "GPL-3+, (c) 2001-2016 Daniel Roux, EPSITEC SA & TerranovaTeam"),
    ("colobot_007_60", "colobot-common-sounds", "0.2.0-2",
     "usr/share/games/colobot/music/music007.ogg", 60.0, False,
     "GPL-3+, (c) 2001-2016 Daniel Roux, EPSITEC SA & TerranovaTeam"),
)
EXCERPT_S = 30.0
#: Matching window of a hit and a reference onset (s), and of a note and a hit (s).
ONSET_WINDOW_S = 0.05
LEAK_WINDOW_S = 0.03
#: A pitched note shorter than this (s) starting at a drum hit counts as leaked from the hit.
LEAK_MAX_S = 0.15


def _deb(pkg: str, version: str, debs: Path) -> Path:
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{pkg}_{version.split(':')[-1]}_*.deb"))
    if not found:
        subprocess.run(["apt-get", "download", f"{pkg}={version}"], cwd=debs, check=True)
        found = sorted(debs.glob(f"{pkg}_{version.split(':')[-1]}_*.deb"))
    if not found:
        raise SystemExit(f"{pkg} {version}: no .deb in {debs}")
    return found[0]


def extract(debs: Path, work: Path) -> dict[str, Path]:
    """Each excerpt as a mono 44.1-kHz FLAC in ``work`` (cut from the package's own file)."""
    import soundfile as sf  # noqa: PLC0415

    from semcodec.synth import dsp  # noqa: PLC0415

    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    unpacked: dict[str, Path] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, pkg, ver, member, start, _, _ in EXCERPTS:
            dst = work / f"{name}.flac"
            out[name] = dst
            if dst.exists():
                continue
            if pkg not in unpacked:
                unpacked[pkg] = Path(tmp) / pkg
                subprocess.run(["dpkg-deb", "-x", str(_deb(pkg, ver, debs)), str(unpacked[pkg])],
                               check=True)
            src = unpacked[pkg] / member
            info = sf.info(str(src))
            y, sr = sf.read(str(src), start=int(start * info.samplerate),
                            frames=int(EXCERPT_S * info.samplerate), dtype="float32",
                            always_2d=True)
            y = y.mean(axis=1)
            if sr != 44100:
                y = dsp.resample(y, sr, 44100)
            sf.write(str(dst), y, 44100, subtype="PCM_16")
    return out


def reference_onsets(y: np.ndarray, sr: int) -> np.ndarray:
    """Onset times (s) of the percussive part (librosa HPSS, margin 2): a rough drum reference."""
    import librosa  # noqa: PLC0415

    p = librosa.effects.percussive(y, margin=2.0)
    return librosa.onset.onset_detect(y=p, sr=sr, units="time", backtrack=False)


def distinct_times(times, merge_s: float = 0.02) -> np.ndarray:
    out: list[float] = []
    for t in sorted(times):
        if not out or t - out[-1] > merge_s:
            out.append(float(t))
    return np.asarray(out)


def onset_prf(ref: np.ndarray, est: np.ndarray) -> tuple[float, float, float]:
    import mir_eval  # noqa: PLC0415

    if len(ref) == 0 or len(est) == 0:
        return 0.0, 0.0, 0.0
    f, p, r = mir_eval.onset.f_measure(ref, est, window=ONSET_WINDOW_S)
    return p, r, f


def detection_row(y: np.ndarray, sr: int) -> dict:
    from semcodec.drums import detect_drums, detection  # noqa: PLC0415

    hits = detect_drums(y, sr)
    saved = detection.KIT_MIN_HITS
    detection.KIT_MIN_HITS = 10 ** 9  # the presence test before the kick-and-snare route
    try:
        old = detect_drums(y, sr)
    finally:
        detection.KIT_MIN_HITS = saved
    ref = reference_onsets(y, sr)
    p, r, f = onset_prf(ref, distinct_times([h.onset for h in hits]))
    return dict(hits=hits, old=len(old), ref=len(ref), p=p, r=r, f=f,
                classes=Counter(h.pitch for h in hits))


def encode_row(src: Path, work: Path, drums: str, y_ref: np.ndarray, hit_times: np.ndarray,
               ref_cache: dict) -> dict:
    from bench import metrics  # noqa: PLC0415
    from bench.run import load_mono  # noqa: PLC0415
    from semcodec import api  # noqa: PLC0415

    exe = str(Path(sys.executable).with_name("semcodec"))
    smc = work / f"{src.stem}.{drums}.smc"
    wav = work / f"{src.stem}.{drums}.wav"
    t0 = time.perf_counter()
    subprocess.run([exe, "encode", "-q", "--drums", drums, str(src), str(smc)], check=True)
    wall = time.perf_counter() - t0
    subprocess.run([exe, "decode", "-q", str(smc), str(wav)], check=True)
    c = api.load(smc)
    drum_notes = [n for t in c.score.tracks if t.is_drum for n in t.notes]
    pitched = [n for t in c.score.tracks if not t.is_drum for n in t.notes]
    leak = 0
    for n in pitched:
        if n.offset - n.onset < LEAK_MAX_S and hit_times.size and \
                np.min(np.abs(hit_times - n.onset)) <= LEAK_WINDOW_S:
            leak += 1
    mel = metrics.mel_distance(y_ref, load_mono(str(wav)), metrics.SR, ref_cache=ref_cache)
    return dict(drum_track=any(t.is_drum for t in c.score.tracks), drum_hits=len(drum_notes),
                tracks=sum(1 for t in c.score.tracks if not t.is_drum), pitched=len(pitched),
                leak=leak, mel=mel, wall=wall, kb=smc.stat().st_size / 1000)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--debs", type=Path, default=Path("/tmp/realdrums/debs"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/realdrums/excerpts"))
    ap.add_argument("--no-encode", action="store_true", help="detection figures only")
    ap.add_argument("--only", nargs="*", default=None, help="excerpts whose name contains these")
    args = ap.parse_args(argv)

    from bench import metrics  # noqa: PLC0415
    from bench.run import load_mono  # noqa: PLC0415

    paths = extract(args.debs, args.work)
    sel = [e for e in EXCERPTS if not args.only or any(s in e[0] for s in args.only)]
    print("excerpts (30 s, mono; package version file @start, licence):")
    for name, pkg, ver, member, start, has, lic in sel:
        print(f"  {name:20s} {'drums' if has else 'no drums':8s} {pkg} {ver} "
              f"{member.rsplit('/', 1)[-1]} @{start:g} s; {lic}")
    print()
    print(f"{'excerpt':20s} {'kit':5s} {'hits':>5s} {'metal gate':>10s} {'ref onsets':>10s} "
          f"{'P':>5s} {'R':>5s} {'F1':>5s}  classes")
    rows = {}
    for name, _, _, _, _, has, _ in sel:
        y = load_mono(str(paths[name]))
        d = detection_row(y, metrics.SR)
        rows[name] = (y, d)
        by_class = Counter()
        for k, v in d["classes"].items():
            by_class[metrics.drum_class(k)] += v
        cls = ", ".join(f"{k} {v}" for k, v in sorted(by_class.items()))
        print(f"{name:20s} {'yes' if has else 'no':5s} {len(d['hits']):5d} {d['old']:10d} "
              f"{d['ref']:10d} {d['p']:5.2f} {d['r']:5.2f} {d['f']:5.2f}  {cls}", flush=True)
    if args.no_encode:
        return 0
    print()
    print(f"{'excerpt':20s} {'--drums':7s} {'drum trk':>8s} {'hits':>5s} {'tracks':>6s} "
          f"{'notes':>5s} {'leaked':>6s} {'mel':>6s} {'kB':>5s} {'enc s':>6s}")
    for name, _, _, _, _, _, _ in sel:
        y, d = rows[name]
        cache: dict = {}
        hit_times = distinct_times([h.onset for h in d["hits"]])
        for mode in ("auto", "off"):
            e = encode_row(paths[name], args.work, mode, y, hit_times, cache)
            print(f"{name:20s} {mode:7s} {'yes' if e['drum_track'] else 'no':>8s} "
                  f"{e['drum_hits']:5d} {e['tracks']:6d} {e['pitched']:5d} {e['leak']:6d} "
                  f"{e['mel']:6.3f} {e['kb']:5.1f} {e['wall']:6.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
