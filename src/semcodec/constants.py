"""The fixed numbers semcodec's modules share: rates, hops, MIDI ranges, caps, option ranges.

A number used by one module only is a named, commented constant at the top of that module
(the drum detector's thresholds, the neural synthesizer's sizes, the format's own ranges in
``container/spec.py``); a number two modules need lives here, once.  Units are stated in each
name or comment: seconds (s), hertz (Hz), MIDI note numbers.  This module imports nothing but
the standard library.
"""

from __future__ import annotations

import os
from pathlib import Path

# --- audio -------------------------------------------------------------------------------
#: Default output sample rate of the decoder (Hz) when the container does not say otherwise.
DEFAULT_SAMPLE_RATE = 44100
#: Lowest / highest sample rate accepted for input and output audio (Hz).
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 192000
#: Most input channels accepted before refusing the file (they are downmixed to mono).
MAX_CHANNELS = 64
#: Largest input sample magnitude accepted (float files may exceed full scale a little; +24
#: dBFS keeps the loudness within what the container stores).
MAX_INPUT_PEAK = 16.0
#: Most bytes read from stdin: audio for ``encode -`` (about 100 min of 16-bit stereo WAV at
#: 44.1 kHz; a file on disk has no such cap, it is read block by block), and a ``.smc`` for
#: ``decode -``/``info -``/``test -``.
MAX_STDIN_AUDIO_BYTES = 1 << 30
MAX_STDIN_SMC_BYTES = 256 << 20
#: Target loudness when the original loudness is unknown or silent (LUFS).
DEFAULT_LOUDNESS_LUFS = -23.0
#: Below this integrated loudness a signal counts as silence (LUFS).
SILENCE_LUFS = -70.0

#: The rate (Hz) semcodec analyses and models audio at: basic-pitch's input rate, and that of
#: the track split's features, the stereo measurement and the neural synthesizer.
ANALYSIS_SAMPLE_RATE = 22050

# --- transcription (basic-pitch) ---------------------------------------------------------
#: basic-pitch model input rate (Hz), FFT hop (samples) and frames per second.
BP_SAMPLE_RATE = ANALYSIS_SAMPLE_RATE
BP_HOP = 256
BP_FRAMES_PER_S = BP_SAMPLE_RATE / BP_HOP  # ~86.13 frames/s
#: basic-pitch model window: 2 s of audio (43844 samples) of which 30 frames overlap each side.
BP_AUDIO_N_SAMPLES = 43844
BP_N_OVERLAP_FRAMES = 30
BP_N_OVERLAP_SAMPLES = BP_N_OVERLAP_FRAMES * BP_HOP
#: Pitch range of basic-pitch's note output (MIDI numbers): piano A0..C8.
BP_MIDI_MIN = 21
BP_MIDI_MAX = 108
#: Pitch-contour bins per semitone in basic-pitch's contour output.
BP_CONTOUR_BINS_PER_SEMITONE = 3
#: Long inputs are transcribed in windows of this many seconds (plus context each side).
TRANSCRIBE_WINDOW_S = 60.0
TRANSCRIBE_CONTEXT_S = 2.0

# --- MIDI --------------------------------------------------------------------------------
MIDI_MIN = 0
MIDI_MAX = 127
VELOCITY_MIN = 1
VELOCITY_MAX = 127
GM_PROGRAM_MIN = 0
GM_PROGRAM_MAX = 127
GM_DRUM_CHANNEL = 9
#: General MIDI program of the Acoustic Grand Piano, the fallback patch.
GM_PIANO = 0

# --- decode-time edits -------------------------------------------------------------------
#: Pitched tracks may be transposed by at most this many semitones either way.
TRANSPOSE_MAX_SEMITONES = 48
#: Range of the tempo factor (> 1 plays faster).
TEMPO_FACTOR_MIN = 0.25
TEMPO_FACTOR_MAX = 4.0
#: Pitch bends are stored in 1/BEND_UNITS_PER_SEMITONE semitone steps, at most this range.
BEND_UNITS_PER_SEMITONE = 32
BEND_MAX_SEMITONES = 12.0
#: Pitch bend range the fluidsynth engine programs into each channel (semitones).
SYNTH_BEND_RANGE_SEMITONES = 12

# --- score chunk -------------------------------------------------------------------------
#: Time quantum of note onsets and durations in the score chunk (s).
SCORE_TICK_S = 0.005
#: Time quantum of pitch-bend breakpoints relative to their note onset (s).
BEND_TICK_S = BP_HOP / BP_SAMPLE_RATE

# --- container caps ----------------------------------------------------------------------
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADER_DEPTH = 8
MAX_CHUNK_BYTES = 16 * 1024 * 1024
MAX_CHUNKS = 1024
MAX_TRACKS = 64
MAX_NOTES = 2_000_000
MAX_BEND_POINTS = 4_000_000
MAX_DURATION_S = 24 * 3600.0
#: Caps of the TIMB / SAMP chunks and of header strings (see docs/FORMAT.md).
MAX_TIMBRES = 256
MAX_EMBEDDING_DIM = 1024
MAX_ROOM_PARAMS = 64
MAX_SAMPLES = 1024
MAX_CODEC_NAME_BYTES = 16
MAX_NAME_CHARS = 256
MAX_TAG_KEY_CHARS = 64
MAX_TAG_VALUE_CHARS = 1024
#: Bound on a timbre's output gain in the TIMB chunk (dB).
MAX_TIMBRE_GAIN_DB = 100.0

# --- reader budgets (docs/FORMAT.md "Budgets", docs/ROBUSTNESS.md) -------------------------
# What a file may make a reader build grows with the file's bytes, so that a small file cannot
# cost minutes or gigabytes; every budget is checked before the work it bounds starts.
#: A compressed SCOR/TAGS payload may expand to at most max(EXPANSION_FLOOR_BYTES,
#: MAX_EXPANSION_RATIO x its compressed bytes) (and never past 4 x MAX_CHUNK_BYTES).
MAX_EXPANSION_RATIO = 32
EXPANSION_FLOOR_BYTES = 1 << 20
#: Notes + pitch-bend points of a file: at most max(SCORE_OBJECTS_FLOOR,
#: SCORE_OBJECTS_PER_BYTE x the SCOR payload's bytes).  Real encodes hold 0.3-0.4 notes per
#: byte (the 60-min reference: 5485 notes in 21920 bytes); the floor covers any score of
#: ordinary size however well it compresses.
SCORE_OBJECTS_FLOOR = 250_000
SCORE_OBJECTS_PER_BYTE = 0.5
#: Most bytes of the TAGS chunk's JSON text once decompressed (the CLI's lyrics cap is 256 kB).
MAX_TEXT_BYTES = 1 << 20
#: Longest output the decoder renders unless told otherwise (s): a 200-byte file may declare
#: 24 h; decoding refuses such an output in one line (``--max-duration`` lifts the cap).
DEFAULT_MAX_DECODE_S = 4 * 3600.0

# --- paths -------------------------------------------------------------------------------
PACKAGE_DIR = Path(__file__).resolve().parent
#: Soundfonts searched in order for the fluidsynth engine when no --soundfont is given.
SOUNDFONT_ENV = "SEMCODEC_SOUNDFONT"
SOUNDFONT_CANDIDATES = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf3/MuseScore_General.sf3",
)
#: The soundfont the benchmark renders its reference set with; never the decoder's default.
#: The instrument classifier and the neural synthesizer (``make train``) are trained on it among
#: others, so the bench's *rendered* clips are not held out for them (its real recordings are).
BENCH_SOUNDFONT = "/usr/share/sounds/sf3/MuseScore_General.sf3"


def env_soundfont() -> str | None:
    """The soundfont named by the SEMCODEC_SOUNDFONT environment variable, if any."""
    value = os.environ.get(SOUNDFONT_ENV, "").strip()
    return value or None


#: General MIDI programs of a sung line: Choir Aahs, Voice Oohs, Synth Voice, Lead 6 (voice).
#: The timbre fit of a voice track always tries these (the first is its starting program).
VOICE_PROGRAMS = (52, 53, 54, 85)
#: Words that mark a stem or track name as a singing voice.
VOICE_WORDS = ("voice", "vocal", "vox", "sing", "choir", "lead_vox")


def is_voice_name(name: str) -> bool:
    """True when a track/stem ``name`` says it is a voice (``vocals``, ``lead voice``, ...)."""
    low = name.lower()
    return any(w in low for w in VOICE_WORDS)
