"""The "plain pipeline" baseline: basic-pitch -> gzipped MIDI -> FluidR3_GM piano.

What a user could do without semcodec: transcribe with basic-pitch (default settings, run on
onnxruntime), store the MIDI file gzipped, and render it with fluidsynth and the FluidR3_GM
soundfont on program 0 (Acoustic Grand Piano), peak-normalised to -1 dBFS.

Command line (run as a child process so that its time and memory can be measured)::

    python -m bench.plain encode IN.flac OUT.mid.gz [--notes NOTES.json]
    python -m bench.plain decode IN.mid.gz OUT.wav
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
from pathlib import Path

import numpy as np

PEAK_DBFS = -1.0
TAIL_S = 1.0


def encode(inp: Path, out: Path, notes_json: Path | None = None) -> None:
    from bench.bp import transcribe

    notes, midi = transcribe(inp)
    buf = io.BytesIO()
    midi.write(buf)
    out.write_bytes(gzip.compress(buf.getvalue(), compresslevel=9, mtime=0))
    if notes_json is not None:
        notes_json.write_text(json.dumps(notes))


def decode(inp: Path, out: Path) -> None:
    import pretty_midi
    import soundfile as sf

    from bench.render import FLUIDR3_SF, SR, Renderer, RNote

    midi = pretty_midi.PrettyMIDI(io.BytesIO(gzip.decompress(inp.read_bytes())))
    notes = [RNote(n.start, n.end, n.pitch, max(1, min(127, n.velocity)), 0)
             for inst in midi.instruments if not inst.is_drum for n in inst.notes]
    end = max((n.offset for n in notes), default=0.0) + TAIL_S
    r = Renderer(FLUIDR3_SF)
    try:
        y = r.render(notes, {0: 0}, end)
    finally:
        r.close()
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak > 0:
        y = y * (10 ** (PEAK_DBFS / 20) / peak)
    sf.write(str(out), y, SR, subtype="PCM_16")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.plain", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("encode")
    e.add_argument("inp", type=Path)
    e.add_argument("out", type=Path)
    e.add_argument("--notes", type=Path)
    d = sub.add_parser("decode")
    d.add_argument("inp", type=Path)
    d.add_argument("out", type=Path)
    a = ap.parse_args(argv)
    if a.cmd == "encode":
        encode(a.inp, a.out, a.notes)
    else:
        decode(a.inp, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
