"""Print what `make demo` did: input size, .smc size, bitrate and where the output went.

Usage: demo_report.py INPUT.flac OUTPUT.smc DECODED.wav
"""

from __future__ import annotations

import sys
from pathlib import Path

import soundfile as sf


def main(src: str, smc: str, wav: str) -> None:
    info = sf.info(src)
    duration = info.frames / info.samplerate
    in_bytes = Path(src).stat().st_size
    smc_bytes = Path(smc).stat().st_size
    print(f"input    {src}: {in_bytes:,} bytes ({in_bytes * 8 / duration / 1000:.1f} kbps, {duration:.1f} s)")
    print(f"encoded  {smc}: {smc_bytes:,} bytes ({smc_bytes * 8 / duration / 1000:.3f} kbps, "
          f"{in_bytes / smc_bytes:.0f}x smaller)")
    print(f"decoded  {wav} ({sf.info(wav).samplerate} Hz, {sf.info(wav).frames / sf.info(wav).samplerate:.2f} s)")
    print(f"try      .venv/bin/semcodec info {smc}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
