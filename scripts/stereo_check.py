"""Stereo round trip on stereo mixes built from the eval folder's Slakh stems.

For each Slakh song with stems in the eval folder, the stems are placed at pans spread evenly
from -0.6 to 0.6 (file order) with the decoder's own law (gains ``1 - pan``, ``1 + pan``),
summed and written as a stereo WAV.  The script encodes it as stems (``encode_stems``, each
stem its own track: the pans should come back exactly) and as a mix (``encode``, tracks found
by the separation), decodes both with the default engine, and prints:

* the pans measured per track against the pans used;
* the mel distance (the benchmark's metric, ``bench.metrics.mel_distance``) of each decoded
  channel against the same channel of the original, for the stereo decoding and for the mono
  decoding played on both channels, so the gain from placing the tracks shows.

The stems of one song were cut at different points, so the music is not coherent; the test is
about positions.

    python scripts/stereo_check.py [EVAL_DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import metrics  # noqa: E402
from semcodec import api  # noqa: E402
from semcodec.synth import dsp  # noqa: E402


def _channel_mels(ref: np.ndarray, out: np.ndarray, sr: int) -> list[float]:
    def at(x):
        return dsp.resample(np.ascontiguousarray(x, np.float32), sr, metrics.SR)
    return [metrics.mel_distance(at(ref[:, k]), at(out[:, k])) for k in (0, 1)]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    d = Path(argv[0]) if argv else REPO / ".." / "shared" / "eval"
    songs = sorted({p.name.rsplit("_", 1)[0] for p in d.glob("slakh_*_S*.flac")})
    with tempfile.TemporaryDirectory() as tmp:
        for song in songs:
            paths = sorted(d.glob(f"{song}_S*.flac"))
            xs = [sf.read(p, dtype="float32")[0] for p in paths]
            sr = sf.info(paths[0]).samplerate
            n = min(x.shape[0] for x in xs)
            pans = np.round(np.linspace(-0.6, 0.6, len(xs)), 2) if len(xs) > 1 else np.zeros(1)
            placed = [dsp.pan_stereo(x[:n], p) / len(xs) for x, p in zip(xs, pans)]
            stems = []
            for p, st in zip(paths, placed):
                stems.append((p.stem.split("_")[-1], Path(tmp) / f"{p.stem}.wav"))
                sf.write(stems[-1][1], st, sr, subtype="FLOAT")
            mix = np.sum(placed, axis=0)
            mix_path = Path(tmp) / f"{song}_stereo.wav"
            sf.write(mix_path, mix, sr, subtype="FLOAT")
            print(f"{song}: {len(paths)} stems at pans {pans.tolist()}")
            for kind, c in (("stems", api.encode_stems([(k, str(v)) for k, v in stems])),
                            ("mix", api.encode(str(mix_path)))):
                st, _ = api.decode(c)
                mono, _ = api.decode(c, channels=1)
                m_st = _channel_mels(mix, st, sr)
                m_mono = _channel_mels(mix, np.stack([mono, mono], axis=1), sr)
                print(f"  {kind:5s} {len(c.to_bytes())} bytes, tracks "
                      f"{[(t.name, len(t.notes), t.pan) for t in c.score.tracks]}")
                print(f"        per-channel mel: stereo decoding L {m_st[0]:.3f} R {m_st[1]:.3f} "
                      f"(mean {np.mean(m_st):.3f}); mono decoding on both channels "
                      f"L {m_mono[0]:.3f} R {m_mono[1]:.3f} (mean {np.mean(m_mono):.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
