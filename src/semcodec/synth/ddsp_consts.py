"""The numbers of the DDSP model and synthesizer (:mod:`semcodec.synth.ddsp` and its numpy
twin :mod:`semcodec.synth.ddsp_np`, which re-exports them): rates in Hz, lengths in samples
or seconds as named."""

from __future__ import annotations

import numpy as np

from semcodec.constants import ANALYSIS_SAMPLE_RATE

#: Internal rate of the harmonic synthesizer and of training (Hz).
SR_INT = ANALYSIS_SAMPLE_RATE
#: Control hop at SR_INT (samples) and control frame rate (Hz).
HOP = 128
FRAME_RATE = SR_INT / HOP
N_HARM = 48
#: Harmonics above this frequency are masked (the model is trained at SR_INT).
HARM_MAX_HZ = 10500.0
N_BANDS = 32
#: Noise band centres: log-spaced from 40 Hz to 10.5 kHz.
BAND_LO_HZ, BAND_HI_HZ = 40.0, 10500.0
N_FEAT = 7
EMB_DIM = 24
N_ROOM = 3
N_PROGRAMS = 128
#: Release tail rendered after a note's offset (s), cut earlier when the note has decayed.
TAIL_S = 1.0
#: Onset ramp and end-of-tail fade (s).
ONSET_RAMP_S = 0.002
END_FADE_S = 0.03
#: Room impulse response length (s).
IR_S = 1.0
NOISE_SEED = 7919
WT_SIZE = 512
#: Noise PSD per Hz (one-sided) at SR_INT of a band magnitude m is NOISE_PSD_PER_M2 * m**2.
NOISE_PSD_PER_M2 = 1.75e-7
#: Length of the periodic high-passed noise table of :func:`hf_noise` (samples).
HF_TABLE = 1 << 18
#: Noise STFT at SR_INT: size and hop (the hop equals HOP: one STFT frame per control frame).
NOISE_NFFT = 512
NOISE_HOP = 128
#: Default block length of :class:`TrackRenderer` (samples at SR_INT, ~11.9 s).
BLOCK = 1 << 18


def band_centers() -> np.ndarray:
    return np.geomspace(BAND_LO_HZ, BAND_HI_HZ, N_BANDS)
