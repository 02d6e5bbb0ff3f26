#!/usr/bin/env bash
# Installs the Debian packages semcodec needs, when they are missing.
#   libfluidsynth3                      the FluidSynth library (fluidsynth decoding engine)
#   fluid-soundfont-gm                  FluidR3_GM, the decoder's default General MIDI soundfont
#   timgm6mb-soundfont                  TimGM6mb, a second GM soundfont (neural training data)
#   musescore3                          MuseScore 3: `make test` renders an exported MusicXML with it
#                                       (headless) and fails on its errors; skipped without it
#   musescore-general-soundfont-small   MuseScore General, used ONLY by the benchmark to render references
#   ffmpeg                              libopus reference codec for the benchmark (Opus 6/12 kbps)
#   opus-tools                          opusenc/opusdec, timed next to semcodec (the speed comparison)
# Usage: scripts/install-sysdeps.sh [--bench]
set -euo pipefail
pkgs=(libfluidsynth3 fluid-soundfont-gm timgm6mb-soundfont musescore3)
if [ "${1:-}" = "--bench" ]; then pkgs+=(musescore-general-soundfont-small ffmpeg opus-tools); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || true
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "semcodec needs these system packages; run:" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
