"""Constants of the ``.smc`` format: version, magic, chunk types, codecs, value ranges and the
fixed binary layouts (docs/FORMAT.md).  Limits shared with the rest of semcodec live in
:mod:`semcodec.constants`."""

from __future__ import annotations

import struct

from semcodec.constants import BEND_MAX_SEMITONES, BEND_UNITS_PER_SEMITONE, MAX_CHUNK_BYTES

FORMAT_MAJOR = 1
FORMAT_MINOR = 0
MAGIC = b"\x89SMC"

CHUNK_SCORE = b"SCOR"
CHUNK_TIMBRE = b"TIMB"
CHUNK_SAMPLES = b"SAMP"
CHUNK_TAGS = b"TAGS"
CHUNK_SAMPLE_KEYS = b"SKEY"
CHUNK_TEMPO_MAP = b"BEAT"
CHUNK_RESIDUAL = b"RESD"
#: The residual in time segments, each decodable on its own (format 1.7).
CHUNK_RESIDUAL_SEGMENTS = b"RESS"
CHUNK_END = b"END\x00"
_KNOWN_CHUNKS = (CHUNK_SCORE, CHUNK_TIMBRE, CHUNK_SAMPLES, CHUNK_TAGS, CHUNK_SAMPLE_KEYS,
                 CHUNK_TEMPO_MAP, CHUNK_RESIDUAL, CHUNK_RESIDUAL_SEGMENTS)
#: Minor version written when a file uses a 1.1 feature (the SKEY chunk); 1.0 otherwise.
FORMAT_MINOR_SAMPLE_KEYS = 1
#: Minor version written when a track has a stereo position or an engine preference ("pan",
#: "engine" in its header object).
FORMAT_MINOR_PAN = 2
#: Minor version written when the file has a tempo map (the BEAT chunk).
FORMAT_MINOR_TEMPO_MAP = 3
#: Caps of the BEAT chunk: number of beats, and the gap between two beats (ms).
MAX_BEATS = 500_000
MIN_BEAT_GAP_MS = 20
MAX_BEAT_GAP_MS = 10_000
#: Minor version written when a track says how its excerpt is played or carries a spectral
#: correction / room (the "render" object of its header entry).
FORMAT_MINOR_RENDER = 4
#: Uses of a track's excerpt a "render" object may name (others, from newer writers, are read
#: as none: the engine, with the eq and room still applied).
RENDER_USES = ("sampler", "voice")
#: Bounds of a "render" object: gain and eq values (dB), eq bands, room rt60 (s) and wet gain.
MAX_RENDER_GAIN_DB = 100.0
MAX_EQ_DB = 60.0
MAX_EQ_BANDS = 64
MAX_ROOM_RT60_S = 10.0
MAX_ROOM_WET = 4.0
#: Bounds of a "render" object's "voice" list: numbers (even count) and their range (dB).
MAX_VOICE_PARAMS = 256
MAX_VOICE_DB = 120.0
#: Minor version written when the file has a residual envelope (the RESD chunk).
FORMAT_MINOR_RESIDUAL = 5
#: Minor version written when the header names the neural model of its timbres ("neural_model").
FORMAT_MINOR_NEURAL_MODEL = 6
#: Longest "neural_model" value read (the writer stores 12 hex digits).
MAX_NEURAL_MODEL_CHARS = 64
#: Minor version written when the residual is in time segments (the RESS chunk).
FORMAT_MINOR_RESIDUAL_SEGMENTS = 7
#: Minor version written when the header holds the loudness of the default decode's mix
#: before its gain ("synth_lufs"): the decoder knows the gain before rendering anything.
FORMAT_MINOR_SYNTH_LOUDNESS = 8
#: Range of "synth_lufs" (LUFS) a writer stores (it is omitted outside); readers accept
#: MIN_LOUDNESS_LUFS..MAX_LOUDNESS_LUFS.
SYNTH_LUFS_RANGE = (-99.999, 29.999)
#: Decimals "synth_lufs" is stored with (0.001 dB: a gain within 0.012 %).
SYNTH_LUFS_DECIMALS = 3
#: The newest minor version this reader and writer know (``--version`` names it).
FORMAT_MINOR_LATEST = FORMAT_MINOR_SYNTH_LOUDNESS
#: Engines a track may name as preferred (others, from newer writers, are read as none).
TRACK_ENGINES = ("fluidsynth",)
#: Bound on a track's engine gain (dB).
MAX_ENGINE_GAIN_DB = 100.0
#: Decimals a track's pan is stored with.
PAN_DECIMALS = 2

#: Compression codecs of the SCOR and TAGS payloads (first payload byte).
CODEC_NONE = 0
CODEC_DEFLATE = 1
CODEC_LZMA2 = 2
#: Most bytes a compressed payload may expand to.
MAX_DECOMPRESSED_BYTES = 4 * MAX_CHUNK_BYTES
#: Dictionary size of the raw LZMA2 stream (writers must not use a larger one).
LZMA2_DICT_SIZE = 1 << 20

#: Slack after the clip's end that note offsets, bend points and samples may reach (s).
END_SLACK_S = 1.0
#: Bend values are clamped to +/- this many 1/BEND_UNITS_PER_SEMITONE units.
MAX_BEND_UNITS = int(round(BEND_MAX_SEMITONES * BEND_UNITS_PER_SEMITONE))
#: Tempo range accepted in the header (BPM).
MIN_TEMPO_BPM = 1.0
MAX_TEMPO_BPM = 1000.0
#: Loudness range accepted in the header (LUFS).
MIN_LOUDNESS_LUFS = -200.0
MAX_LOUDNESS_LUFS = 30.0
_TIME_SIG_DENOMINATORS = (1, 2, 4, 8, 16, 32, 64)
_MAX_TIME_SIG_NUMERATOR = 64

_PREAMBLE = struct.Struct("<4sBBI")  # magic, major, minor, header length
_CHUNK_HEAD = struct.Struct("<4sI")  # type, payload length
_U32 = struct.Struct("<I")
_F16 = struct.Struct("<e")

_RESERVED_KEYS = (
    "format",
    "duration",
    "n_samples",
    "sample_rate",
    "channels",
    "loudness_lufs",
    "tempo_bpm",
    "time_signature",
    "key",
    "tracks",
    "encoder",
    "tags",
    "neural_model",
    "synth_lufs",
)
_REQUIRED_KEYS = ("format", "duration", "n_samples", "sample_rate", "channels", "tracks")

