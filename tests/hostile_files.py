"""Builders of small ``.smc`` files that obey the format's framing but are built to cost a
decoder minutes or gigabytes, or to break its output (issue 13's audit).

Every builder returns the bytes of a whole file (correct CRCs; see :mod:`smc_bytes`).  The
files are described by what a naive reader would do with them; the tests in
``tests/test_hostile.py`` check that semcodec refuses them in one line or handles them
within the documented budgets.
"""

from __future__ import annotations

import json
import lzma
import struct

from semcodec.container import (
    CHUNK_SAMPLE_KEYS,
    CHUNK_SAMPLES,
    CHUNK_SCORE,
    CHUNK_TAGS,
    CHUNK_TIMBRE,
)
from smc_bytes import build

_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": 1 << 20}]


def uv(value: int) -> bytes:
    """Unsigned LEB128 varint."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def lzma_payload(raw: bytes) -> bytes:
    """A SCOR/TAGS payload: codec byte 2 (raw LZMA2, 1 MiB dictionary) + the stream."""
    return b"\x02" + lzma.compress(raw, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)


def header(duration: float = 1.0, sample_rate: int = 8000, tracks=None, **extra) -> bytes:
    """Compact JSON header; ``tracks`` is a list of track objects (default: none)."""
    h = {"format": "smc", "duration": duration, "n_samples": int(round(duration * sample_rate)),
         "sample_rate": sample_rate, "channels": 1, "loudness_lufs": -20,
         "tracks": tracks or []}
    h.update(extra)
    return json.dumps(h, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def track(n_notes: int, name: str = "t", program: int = 0, drum: bool = False) -> dict:
    return {"name": name, "program": program, "drum": drum, "notes": n_notes}


def score_stream(tracks: list[list[tuple[int, int, int, int, list[tuple[int, int]]]]]) -> bytes:
    """Raw SCOR stream of ``tracks``: each a list of (onset tick, duration ticks, pitch,
    velocity, [(bend tick, bend units), ...]) sorted by (onset, pitch)."""
    out = bytearray(uv(len(tracks)))
    for rows in tracks:
        out += uv(len(rows))
        prev = 0
        for on, *_ in rows:
            out += uv(on - prev)
            prev = on
        for row in rows:
            out += uv(row[1])
        for col, start in ((2, 60), (3, 64)):
            prev = start
            for row in rows:
                d = row[col] - prev
                out += uv(d * 2 if d >= 0 else -d * 2 - 1)
                prev = row[col]
        for row in rows:
            out += uv(len(row[4]))
        for row in rows:
            prev = 0
            for bt, _ in row[4]:
                out += uv(bt - prev)
                prev = bt
        for row in rows:
            prev = 0
            for _, units in row[4]:
                d = units - prev
                out += uv(d * 2 if d >= 0 else -d * 2 - 1)
                prev = units
    return bytes(out)


# --- 1: a score chunk that expands to millions of notes ------------------------------------

def score_bomb(n_notes: int = 2_000_000, bends_per_note: int = 2) -> bytes:
    """One track of ``n_notes`` identical notes at 0 s with ``bends_per_note`` bend points
    each; every count is within the format's caps (2 M notes, 4 M bend points) and the LZMA
    stream is a few kB (2 M notes: ~3 kB)."""
    n = n_notes
    raw = bytearray(uv(1) + uv(n))
    raw += b"\x00" * n  # onset deltas
    raw += b"\x01" * n  # durations (1 tick)
    raw += b"\x00" * n  # pitch deltas (60)
    raw += b"\x00" * n  # velocity deltas (64)
    raw += bytes([bends_per_note]) * n  # bend counts
    raw += b"\x00" * (n * bends_per_note)  # bend time deltas
    raw += b"\x00" * (n * bends_per_note)  # bend value deltas
    hdr = header(duration=86400.0, sample_rate=8000, tracks=[track(n)])
    return build(hdr, [(CHUNK_SCORE, lzma_payload(bytes(raw)))])


# --- 2: a TAGS chunk that expands to tens of MB of lyrics ---------------------------------

def lyrics_bomb(n_chars: int = 60_000_000, n_notes: int = 4) -> bytes:
    """A valid short score plus a TAGS chunk whose LZMA stream expands to ``n_chars`` of
    lyrics (60 MB: a ~9 kB chunk, under the 64 MiB decompression cap)."""
    rows = [(i * 40, 20, 60 + i, 100, []) for i in range(n_notes)]
    text = json.dumps({"lyrics": "la " * (n_chars // 3)}, separators=(",", ":")).encode()
    hdr = header(duration=1.0, tracks=[track(n_notes, program=52)])
    return build(hdr, [(CHUNK_SCORE, b"\x00" + score_stream([rows])),
                       (CHUNK_TAGS, lzma_payload(text))])


# --- 3: a drum one-shot whose embedded audio declares an absurd rate ----------------------

def wav_bytes(rate: int, n_frames: int, channels: int = 1) -> bytes:
    """A 16-bit PCM WAV declaring ``rate`` Hz (any u32), ``n_frames`` frames of a click."""
    block = 2 * channels
    data = bytearray(n_frames * block)
    if n_frames:
        data[0:2] = struct.pack("<h", 20000)
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * block) & 0xFFFFFFFF, block, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + bytes(data)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def oneshot_file(audio: bytes, rate_field: int = 24000, duration_ms: int = 300) -> bytes:
    """A 2-s file with one drum track (4 kick hits) and one keyed one-shot (key 36) whose
    data is ``audio`` (named "opus"; a reader that trusts the payload decodes whatever it is)."""
    rows = [(i * 100, 20, 36, 100, []) for i in range(4)]
    hdr = header(duration=2.0, sample_rate=24000, tracks=[track(4, name="drums", drum=True)])
    samp = (uv(1) + uv(0) + struct.pack("<III", 0, duration_ms, rate_field) + bytes([4]) + b"opus"
            + struct.pack("<I", len(audio)) + audio)
    return build(hdr, [(CHUNK_SCORE, b"\x00" + score_stream([rows])), (CHUNK_SAMPLES, samp),
                       (CHUNK_SAMPLE_KEYS, uv(1) + uv(0) + bytes([36]))], minor=1)


# --- 4: a tiny file declaring a day of audio ----------------------------------------------

def long_declared_file(duration_s: float = 86400.0, sample_rate: int = 8000) -> bytes:
    """Two notes at the start of a file that declares ``duration_s`` of audio (~260 bytes)."""
    rows = [(0, 100, 60, 100, []), (100, 100, 64, 100, [])]
    hdr = header(duration=duration_s, sample_rate=sample_rate, tracks=[track(2)])
    return build(hdr, [(CHUNK_SCORE, b"\x00" + score_stream([rows]))])


# --- 6: a timbre gain at the float16 maximum ----------------------------------------------

def timbre_gain_file(gain_db: float = 65504.0) -> bytes:
    """One pitched track with a TIMB entry of an empty embedding and ``gain_db``."""
    rows = [(0, 100, 60, 100, []), (100, 100, 64, 100, [])]
    hdr = header(duration=1.0, tracks=[track(2)])
    timb = uv(1) + uv(0) + uv(0) + struct.pack("<e", gain_db) + uv(0)
    return build(hdr, [(CHUNK_SCORE, b"\x00" + score_stream([rows])), (CHUNK_TIMBRE, timb)])


# --- 7: header values at the edges of the reader's ranges ---------------------------------

def edge_header_file(**fields) -> bytes:
    """Two notes; the header fields given (e.g. ``tempo_bpm=1.5``) replace the defaults."""
    rows = [(0, 100, 60, 100, [(0, 32), (5, -384)]), (100, 100, 64, 100, [])]
    duration = fields.pop("duration", 1.0)
    tracks = [track(2, **{k[6:]: fields.pop(k) for k in list(fields) if k.startswith("track_")})]
    hdr = header(duration=duration, tracks=tracks, **fields)
    return build(hdr, [(CHUNK_SCORE, b"\x00" + score_stream([rows]))])


# --- 8: control characters in every text field --------------------------------------------

#: Screen clear, colour, window title (OSC ... BEL), carriage return, C1 CSI, a bidi override.
NASTY = "\x1b[2J\x1b[31mred\x1b]0;pwned\x07\rX\x9b1m\u202e"


def escapes_file() -> bytes:
    """Track name, tag key and value, encoder, key and lyrics all carry :data:`NASTY`."""
    rows = [(0, 100, 60, 100, []), (100, 100, 64, 100, [])]
    hdr = header(duration=1.0, tracks=[track(2, name="lead" + NASTY)],
                 encoder="enc" + NASTY, key="C major" + NASTY,
                 tags={"title" + NASTY: "song" + NASTY})
    texts = json.dumps({"lyrics": "la" + NASTY + " la", "k" + NASTY: "v"},
                       ensure_ascii=False).encode()
    return build(hdr, [(CHUNK_SCORE, b"\x00" + score_stream([rows])),
                       (CHUNK_TAGS, b"\x00" + texts)])
