"""The ``.smc`` container, format version 1 (byte-level specification: docs/FORMAT.md).

A file is: magic, version, a compact JSON header protected by a CRC32, then CRC-protected
chunks (``SCOR`` score, ``TIMB`` timbres, ``SAMP`` audio samples, ``SKEY`` sample keys,
``TAGS`` long texts, ``BEAT`` tempo map, ``RESD`` residual envelope, or ``RESS`` the same in
time segments) and a final ``END``
chunk.  The reader treats every byte as hostile: every length is capped by a constant and by
the bytes that remain, decompression is bounded, the JSON header is depth-checked before it is
parsed, and every decoded value is range-checked.  Any problem raises
:class:`~semcodec.errors.ContainerError` and nothing else.

The package imports only the standard library and semcodec's stdlib-only modules.  One module
per job:

- ``spec``: version, magic, chunk types, codecs, value ranges, binary layouts
- ``primitives``: varints, the bounds-checked reader, float16, time quantisation
- ``compression``: the codec byte and bounded decompression
- ``strictjson``: JSON for hostile input
- ``header``: the JSON header's fields and their validation
- ``score_chunk``: the SCOR chunk; ``chunks``: TIMB, SAMP, SKEY and TAGS; ``beat_chunk``:
  BEAT; ``resd``: RESD and RESS
- ``framing``: preamble, chunk records and CRCs
- ``smcfile``: :class:`SmcFile`, everything a file holds (the API's ``semcodec.Container``
  subclasses it)
"""

from __future__ import annotations

from semcodec.container.framing import ChunkInfo, chunk_table, header_dict
from semcodec.container.header import TrackHeader
from semcodec.container.smcfile import (PARTS, SmcFile, bitrate_kbps, dumps, loads, part_sizes,
                                        track_sizes)
from semcodec.container.spec import (
    CHUNK_END,
    CHUNK_RESIDUAL,
    CHUNK_RESIDUAL_SEGMENTS,
    CHUNK_SAMPLE_KEYS,
    CHUNK_SAMPLES,
    CHUNK_SCORE,
    CHUNK_TAGS,
    CHUNK_TEMPO_MAP,
    CHUNK_TIMBRE,
    CODEC_DEFLATE,
    CODEC_LZMA2,
    CODEC_NONE,
    END_SLACK_S,
    FORMAT_MAJOR,
    FORMAT_MINOR,
    FORMAT_MINOR_LATEST,
    FORMAT_MINOR_PAN,
    FORMAT_MINOR_NEURAL_MODEL,
    FORMAT_MINOR_RESIDUAL,
    FORMAT_MINOR_RESIDUAL_SEGMENTS,
    FORMAT_MINOR_SAMPLE_KEYS,
    FORMAT_MINOR_SYNTH_LOUDNESS,
    FORMAT_MINOR_TEMPO_MAP,
    LZMA2_DICT_SIZE,
    MAGIC,
    MAX_BEATS,
    MAX_BEAT_GAP_MS,
    MAX_BEND_UNITS,
    MAX_DECOMPRESSED_BYTES,
    MAX_ENGINE_GAIN_DB,
    MAX_LOUDNESS_LUFS,
    MAX_TEMPO_BPM,
    MIN_BEAT_GAP_MS,
    MIN_LOUDNESS_LUFS,
    MIN_TEMPO_BPM,
    PAN_DECIMALS,
    TRACK_ENGINES,
)

#: Former name of :class:`SmcFile`, kept so that code written against it still imports; new
#: code names ``SmcFile`` (format level) or ``semcodec.Container`` (the API class).
Container = SmcFile

__all__ = [
    "FORMAT_MAJOR",
    "FORMAT_MINOR",
    "FORMAT_MINOR_LATEST",
    "FORMAT_MINOR_SAMPLE_KEYS",
    "FORMAT_MINOR_PAN",
    "FORMAT_MINOR_TEMPO_MAP",
    "FORMAT_MINOR_NEURAL_MODEL",
    "FORMAT_MINOR_RESIDUAL",
    "FORMAT_MINOR_RESIDUAL_SEGMENTS",
    "FORMAT_MINOR_SYNTH_LOUDNESS",
    "MAGIC",
    "CHUNK_SCORE",
    "CHUNK_TIMBRE",
    "CHUNK_SAMPLES",
    "CHUNK_TAGS",
    "CHUNK_SAMPLE_KEYS",
    "CHUNK_TEMPO_MAP",
    "CHUNK_RESIDUAL",
    "CHUNK_RESIDUAL_SEGMENTS",
    "CHUNK_END",
    "CODEC_NONE",
    "CODEC_DEFLATE",
    "CODEC_LZMA2",
    "END_SLACK_S",
    "LZMA2_DICT_SIZE",
    "MAX_BEATS",
    "MAX_BEAT_GAP_MS",
    "MIN_BEAT_GAP_MS",
    "MAX_BEND_UNITS",
    "MAX_DECOMPRESSED_BYTES",
    "MAX_ENGINE_GAIN_DB",
    "MAX_LOUDNESS_LUFS",
    "MAX_TEMPO_BPM",
    "MIN_LOUDNESS_LUFS",
    "MIN_TEMPO_BPM",
    "PAN_DECIMALS",
    "TRACK_ENGINES",
    "ChunkInfo",
    "SmcFile",
    "bitrate_kbps",
    "TrackHeader",
    "dumps",
    "loads",
    "chunk_table",
    "header_dict",
    "track_sizes",
    "part_sizes",
    "PARTS",
]
