"""Bitrate of a full 3-minute song with several tracks and drums (issue: full songs).

Builds a 3-minute band from the eval folder's Slakh Track00049 stems (bass, steel guitar,
honky-tonk piano; each 30-s stem looped 6 times, so the notes repeat but are transcribed and
fitted as a whole song) plus a GM drum groove rendered with TimGM6mb, then encodes it

* as stems (``--stem``: one named track per stem, a drum track from the drum stem), and
* as one mixed file (tracks and drums found automatically),

and prints ``semcodec info``'s size per chunk and per track for both.

    python scripts/song_bitrate.py [OUT_DIR]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from semcodec.events import Note, Score, Track
from semcodec.synth.fluid import find_soundfont, render_score

REPO = Path(__file__).resolve().parent.parent
EVAL = REPO / ".." / "shared" / "eval"
SR = 44100
SECONDS = 180.0


def drum_groove(seconds: float, bpm: float = 101.0) -> Track:
    """Kick on 1 and 3, snare on 2 and 4, closed hats on eighths, a crash every 8 bars."""
    beat = 60.0 / bpm
    notes = []
    t, i = 0.0, 0
    while t < seconds - 0.5:
        if i % 8 == 0:
            notes.append(Note(t, t + 0.1, 36, 110))
            if i % 64 == 0:
                notes.append(Note(t, t + 0.1, 49, 100))
        if i % 8 == 4:
            notes.append(Note(t, t + 0.1, 36, 100))
        if i % 8 in (2, 6):
            notes.append(Note(t, t + 0.1, 38, 105))
        notes.append(Note(t, t + 0.1, 42, 70 + 15 * (i % 2 == 0)))
        t += beat / 2
        i += 1
    return Track(name="drums", is_drum=True).with_notes(notes)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else Path("song-bitrate")
    out.mkdir(parents=True, exist_ok=True)
    n = int(SECONDS * SR)
    stems = {}
    for name, stem in (("bass", "S00"), ("guitar", "S02"), ("piano", "S05")):
        x, sr = sf.read(EVAL / f"slakh_Track00049_{stem}.flac", dtype="float32")
        assert sr == SR
        stems[name] = np.tile(x, int(np.ceil(n / x.shape[0])))[:n]
    tsf = "/usr/share/sounds/sf2/TimGM6mb.sf2"
    drums = render_score(Score(tracks=(drum_groove(SECONDS),)), SR, n,
                         soundfont=find_soundfont(tsf if Path(tsf).exists() else None))
    stems["drums"] = (0.5 * drums / max(1e-9, float(np.abs(drums).max()))).astype(np.float32)
    paths = []
    for name, x in stems.items():
        p = out / f"{name}.flac"
        sf.write(p, x, SR)
        paths.append((name, p))
    mix = sum(stems.values())
    mix = (0.9 * mix / float(np.abs(mix).max())).astype(np.float32)
    sf.write(out / "song.flac", mix, SR)
    exe = [sys.executable, "-m", "semcodec"]
    subprocess.run([*exe, "encode", "-f", *[f"--stem={k}={p}" for k, p in paths],
                    str(out / "stems.smc")], check=True)
    subprocess.run([*exe, "encode", "-f", str(out / "song.flac"), str(out / "song.smc")], check=True)
    for smc in ("stems.smc", "song.smc"):
        print(f"--- {smc}")
        subprocess.run([*exe, "info", str(out / smc)], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
