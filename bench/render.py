"""A small, self-contained pyfluidsynth renderer (no semcodec code).

Used to render the reference clips (MuseScore General) and the "plain pipeline" decoder
(FluidR3_GM, piano).  Deterministic: the same events give the same samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SR = 44100
#: MIDI channel of General MIDI percussion (channel 10, 0-based 9): its notes play the GM kit.
GM_DRUM_CHANNEL = 9
MUSESCORE_SF = Path("/usr/share/sounds/sf3/MuseScore_General.sf3")
FLUIDR3_SF = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


@dataclass(frozen=True)
class RNote:
    onset: float  # s
    offset: float  # s
    pitch: int  # MIDI
    velocity: int  # 1..127
    channel: int  # 0..15; 9 (GM_DRUM_CHANNEL) is the percussion channel: pitch = GM drum key


class Renderer:
    """Holds one loaded soundfont; ``render`` starts every clip from a reset synth."""

    def __init__(self, soundfont: Path, sr: int = SR):
        from semcodec.synth.fluid import import_fluidsynth

        fluidsynth = import_fluidsynth()
        self.sr = sr
        self.synth = fluidsynth.Synth(samplerate=float(sr))
        self.sfid = self.synth.sfload(str(soundfont))
        if self.sfid < 0:
            raise RuntimeError(f"could not load soundfont {soundfont}")

    def close(self) -> None:
        self.synth.delete()

    def _flush(self) -> None:
        """Silence everything and let reverb/chorus tails die out."""
        for ch in range(16):
            self.synth.cc(ch, 123, 0)  # all notes off
            self.synth.cc(ch, 120, 0)  # all sound off
        self.synth.system_reset()
        self.synth.get_samples(self.sr * 4)

    def render(self, notes: list[RNote], programs: dict[int, int], duration_s: float) -> np.ndarray:
        """Render ``notes`` (channels -> GM ``programs``) to ``duration_s`` s of mono float32.

        Notes on channel ``GM_DRUM_CHANNEL`` play the soundfont's drum kit (bank 128, kit
        ``programs.get(9, 0)``) with their pitch as the GM drum key.
        """
        self._flush()
        for ch, prog in programs.items():
            if ch != GM_DRUM_CHANNEL:
                self.synth.program_select(ch, self.sfid, 0, int(prog))
        if any(n.channel == GM_DRUM_CHANNEL for n in notes):  # the standard kit (bank 128)
            self.synth.program_select(GM_DRUM_CHANNEL, self.sfid, 128,
                                      int(programs.get(GM_DRUM_CHANNEL, 0)))
        n_total = int(round(duration_s * self.sr))
        events = []  # (sample, kind 0=off 1=on, channel, pitch, velocity)
        for n in notes:
            s_on = int(round(n.onset * self.sr))
            s_off = int(round(n.offset * self.sr))
            if s_on >= n_total:
                continue
            events.append((s_on, 1, n.channel, n.pitch, n.velocity))
            events.append((max(s_off, s_on + 1), 0, n.channel, n.pitch, 0))
        events.sort()  # note-offs before note-ons at the same sample
        out = []
        pos = 0
        for s, kind, ch, pitch, vel in events:
            s = min(s, n_total)
            if s > pos:
                out.append(self.synth.get_samples(s - pos))
                pos = s
            if kind:
                self.synth.noteon(ch, pitch, vel)
            else:
                self.synth.noteoff(ch, pitch)
        if n_total > pos:
            out.append(self.synth.get_samples(n_total - pos))
        stereo = np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)
        mono = stereo.reshape(-1, 2).mean(axis=1) / 32768.0
        return mono[:n_total].astype(np.float32)
