"""Drum transcription and drum one-shots: audio -> General MIDI drum hits -> a drum track.

The detector is hand-designed (no trained model, nothing downloaded); every threshold is a
named constant below.  For mono audio at any rate it

1. resamples to ``ANALYSIS_SR`` and splits the STFT magnitude into harmonic and percussive
   parts by median filtering (HPSS, Fitzgerald 2010: a median across ``HPSS_KERNEL`` frames
   against a median across ``HPSS_KERNEL`` bins, soft Wiener masks; the same algorithm as
   ``librosa.decompose.hpss``, done with numpy so that 30 s take a fraction of a second);
2. sums the power of each part into 17 half-octave bands (30 Hz .. 16 kHz) and finds onsets in
   the percussive part: a log-spectral flux, peak-picked over the full band and separately over
   the low / mid / high regions, so that a soft hi-hat after a loud hit is not lost;
3. explains the attack spectrum of every onset (its rise above the pre-onset level) as a
   non-negative mix of four spectral templates -- kick, drum (snare or tom), metal (hi-hat or
   ride) and crash -- with an Itakura-Saito NMF over the recording's onsets whose templates
   start from hand-made shapes and adapt to the recording.  Several templates can be active at
   one onset (kick + hi-hat is the common case): each is judged on its own;
4. decides that the recording has drums at all only on strong evidence: enough confident
   hits of the metal template (hi-hat, ride or cymbal: every kit plays them), where
   *confident* means loud, well fitted, percussive at the attack (much more than the harmonic
   part grows) and without a harmonic tail, some of them at onsets where no note starts at all;
   or, as many confident kick hits *and* confident snare/tom hits at such onsets (in produced
   mixes the snare's noise and the reverb often cover the hi-hat).  Guitars, pianos, slap
   basses and kalimbas produce percussive attacks too, but not these;
5. names each accepted hit from its decay: a drum hit whose low band rings while its 2-9 kHz
   band dies is a tom (the snare's wires do the opposite), toms are ordered by pitch; a metal
   hit that sustains is an open hi-hat, the others are closed hi-hats or a ride (clustered by
   decay within the recording); the crash template with a long tail is a crash.

:func:`drum_oneshots` then cuts, for every drum key used, one short Opus one-shot from its
cleanest hit, for the neural engine's sampler (:func:`semcodec.synth.dsp.play_oneshots`).

Times are seconds, audio is mono float32 ``(n,)`` at ``sr`` Hz, velocities are MIDI 1..127.
Everything is deterministic: the same input gives the same hits and bytes.
"""

from __future__ import annotations

from semcodec.drums.common import (
    CLOSED_HAT,
    CRASH,
    GM_DRUM_CLASSES,
    HIGH_TOM,
    KICK,
    LOW_TOM,
    MID_TOM,
    OPEN_HAT,
    RIDE,
    SNARE,
)
from semcodec.drums.detection import detect_drums
from semcodec.drums.oneshots import drum_oneshots, encode_drums
from semcodec.drums.suppression import suppress_percussion

__all__ = [
    "GM_DRUM_CLASSES",
    "KICK", "SNARE", "CLOSED_HAT", "OPEN_HAT", "LOW_TOM", "MID_TOM", "HIGH_TOM", "CRASH", "RIDE",
    "detect_drums",
    "drum_oneshots",
    "encode_drums",
    "suppress_percussion",
]
