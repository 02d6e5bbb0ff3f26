"""Behaviour of the .smc container (semcodec.container); see docs/FORMAT.md."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from semcodec import io as smcio
from semcodec.constants import BEND_TICK_S, MAX_CHUNK_BYTES, MAX_HEADER_BYTES, SCORE_TICK_S
from semcodec.container import (
    CHUNK_END,
    CHUNK_SCORE,
    ChunkInfo,
    SmcFile as Container,
    chunk_table,
    dumps,
    header_dict,
    loads,
)
from semcodec.errors import ContainerError, InputError, OutputError
from semcodec.events import BendPoint, Note, Sample, Score, Timbre, Track

REPO = Path(__file__).resolve().parents[1]

# --- helpers ------------------------------------------------------------------------------

from smc_bytes import build, split  # noqa: E402


def with_header(data: bytes, **changes) -> bytes:
    header, chunks = split(data)
    h = json.loads(header)
    for key, value in changes.items():
        if value is ...:
            del h[key]
        else:
            h[key] = value
    return build(json.dumps(h, separators=(",", ":")).encode(), chunks)


def tiny() -> Container:
    """The example of docs/FORMAT.md."""
    return Container(
        duration=1.0,
        sample_rate=8000,
        n_samples=8000,
        loudness_lufs=-20.0,
        score=Score(
            tracks=(
                Track(
                    "lead",
                    0,
                    False,
                    (
                        Note(0.0, 0.5, 60, 100),
                        Note(0.5, 1.0, 64, 90, (BendPoint(0.0, 0.0), BendPoint(0.1, 1.0))),
                    ),
                ),
            )
        ),
    )


# the hex dump in docs/FORMAT.md, section "Example"
GOLDEN_HEX = (
    "89534d430100d70000007b22666f726d6174223a22736d63222c226475726174696f6e223a312c226e5f"
    "73616d706c6573223a383030302c2273616d706c655f72617465223a383030302c226368616e6e656c73"
    "223a312c226c6f75646e6573735f6c756673223a2d32302c2274656d706f5f62706d223a3132302c2274"
    "696d655f7369676e6174757265223a5b342c345d2c226b6579223a2243206d616a6f72222c2274726163"
    "6b73223a5b7b226e616d65223a226c656164222c2270726f6772616d223a302c226472756d223a66616c"
    "73652c226e6f746573223a327d5d7d3446aa5653434f52110000000001020064646400084813000200"
    "090040735261bc454e440000000000be55a284"
)


def rich() -> Container:
    lead = tuple(
        Note(
            0.1 + 0.25 * i,
            0.1 + 0.25 * i + 0.2,
            60 + (i * 7) % 24,
            30 + (i * 13) % 97,
            (BendPoint(0.0, -0.5), BendPoint(0.03, 0.25), BendPoint(0.07, 1.5)) if i % 4 == 0 else (),
        )
        for i in range(40)
    )
    drums = tuple(Note(0.5 * i, 0.5 * i + 0.05, (36, 38, 42)[i % 3], 100) for i in range(20))
    chord = tuple(Note(2.0, 4.0, p, 70) for p in (60, 64, 67))  # simultaneous onsets
    return Container(
        duration=10.5,
        sample_rate=48000,
        channels=2,
        n_samples=504000,
        loudness_lufs=-14.234,
        score=Score(
            tracks=(
                Track("lead", 73, False, lead),
                Track("drums", 0, True, drums),
                Track("pad", 89, False, chord),
                Track("empty", 5, False, ()),
            ),
            tempo_bpm=97.333,
            time_signature=(6, 8),
            key="F# minor",
        ),
        timbres=(
            Timbre(0, tuple(i / 10 - 1.6 for i in range(32)), -3.25, (0.4, 0.25, 1.0)),
            Timbre(2, (0.5, -0.125), 2.0, ()),
        ),
        samples=(
            Sample(0, 1.234, 0.5, 48000, "opus", bytes(range(256)) * 3),
            Sample(1, 0.0, 0.25, 24000, "pcm16", b""),
        ),
        tags={"title": "Tëst \u266b", "artist": "me"},
        texts={"lyrics": "la la la\nsecond line " * 20, "comment": "ünïcode \U0001f3b5"},
        encoder="semcodec 0.1.0",
        extra={"engine": "neural", "settings": {"bends": True, "level": [1, 2.5, None]}},
    )


# --- round trips --------------------------------------------------------------------------


def assert_notes_close(a: Note, b: Note) -> None:
    assert abs(a.onset - b.onset) <= SCORE_TICK_S / 2 + 1e-9
    assert abs(a.offset - b.offset) <= SCORE_TICK_S / 2 + 1e-9
    assert (a.pitch, a.velocity) == (b.pitch, b.velocity)
    assert len(a.bends) == len(b.bends)
    for p, q in zip(a.bends, b.bends):
        assert abs(p.time - q.time) <= BEND_TICK_S / 2 + 1e-9
        assert abs(p.semitones - q.semitones) <= 1 / 64 + 1e-9


def test_round_trip_rich():
    c = rich()
    data = dumps(c)
    assert data == c.to_bytes()
    d = loads(data)
    assert isinstance(d, Container)
    assert d.sample_rate == 48000 and d.channels == 2 and d.n_samples == 504000
    assert d.duration == 10.5
    assert d.loudness_lufs == pytest.approx(-14.23)
    assert d.score.tempo_bpm == pytest.approx(97.33)
    assert d.score.time_signature == (6, 8) and d.score.key == "F# minor"
    assert [(t.name, t.program, t.is_drum) for t in d.score.tracks] == [
        ("lead", 73, False), ("drums", 0, True), ("pad", 89, False), ("empty", 5, False)]
    for ta, tb in zip(c.score.tracks, d.score.tracks):
        assert len(ta.notes) == len(tb.notes)
        for a, b in zip(sorted(ta.notes, key=lambda n: (n.onset, n.pitch)), tb.notes):
            assert_notes_close(a, b)
    assert len(d.timbres) == 2
    for ta, tb in zip(c.timbres, d.timbres):
        assert ta.track == tb.track
        assert tb.embedding == pytest.approx(ta.embedding, abs=2e-3)
        assert tb.gain_db == pytest.approx(ta.gain_db, abs=1e-2)
        assert tb.room == pytest.approx(ta.room, abs=1e-3)
    assert [(s.track, s.start, s.duration, s.sample_rate, s.codec, s.data) for s in d.samples] == [
        (s.track, round(s.start, 3), s.duration, s.sample_rate, s.codec, s.data) for s in c.samples]
    assert d.tags == c.tags and d.texts == c.texts
    assert d.encoder == "semcodec 0.1.0"
    assert d.extra == c.extra
    # a second round trip is exact
    assert dumps(d) == data


def test_round_trip_empty_and_silent():
    for c in (
        Container(duration=0.0, sample_rate=44100),
        Container(duration=3.0, sample_rate=22050, n_samples=66150),
        Container(duration=2.0, sample_rate=16000, n_samples=32000,
                  score=Score(tracks=(Track("quiet", 1),))),
    ):
        d = loads(dumps(c))
        assert d.duration == c.duration and d.n_samples == c.n_samples
        assert d.loudness_lufs is None
        assert [len(t.notes) for t in d.score.tracks] == [len(t.notes) for t in c.score.tracks]
        assert d.timbres == () and d.samples == () and d.tags == {} and d.texts == {}


def test_n_samples_derived_and_duration_exact():
    c = Container(duration=1.5, sample_rate=44100)  # n_samples left at 0
    d = loads(dumps(c))
    assert d.n_samples == 66150 and d.duration == 1.5
    odd = loads(dumps(Container(duration=12345 / 44100, sample_rate=44100, n_samples=12345)))
    assert odd.duration == 12345 / 44100


def test_notes_sorted_and_zero_length_note_kept():
    notes = (Note(1.0, 1.0, 70, 50), Note(0.5, 0.7, 72, 60), Note(0.5, 0.6, 65, 60))
    c = Container(duration=2.0, sample_rate=8000, n_samples=16000,
                  score=Score(tracks=(Track("x", 0, False, notes),)))
    got = loads(dumps(c)).score.tracks[0].notes
    assert [(n.onset, n.pitch) for n in got] == [(0.5, 65), (0.5, 72), (1.0, 70)]
    assert got[2].offset == pytest.approx(1.0 + SCORE_TICK_S)


def test_subclass_is_constructed(tmp_path):
    class Mine(Container):
        def hello(self):
            return "hi"

    data = dumps(rich())
    assert isinstance(Mine.from_bytes(data), Mine)
    path = tmp_path / "a.smc"
    path.write_bytes(data)
    assert Mine.load(path).hello() == "hi"


def test_hypothesis_round_trip():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    note = st.builds(
        lambda on, d, p, v, bends: Note(on, on + d, p, v, tuple(BendPoint(t, s) for t, s in bends)),
        st.floats(0, 20), st.floats(0, 5), st.integers(0, 127), st.integers(1, 127),
        st.lists(st.tuples(st.floats(0, 0.5), st.floats(-12, 12)), max_size=3),
    )

    @hypothesis.settings(max_examples=60, deadline=None)
    @hypothesis.given(st.lists(st.lists(note, max_size=30), max_size=4))
    def check(tracks):
        c = Container(duration=25.0, sample_rate=44100, n_samples=25 * 44100,
                      score=Score(tracks=tuple(Track(f"t{i}", i, False, tuple(n))
                                               for i, n in enumerate(tracks))))
        d = loads(dumps(c))
        for ta, tb in zip(c.score.tracks, d.score.tracks):
            key = lambda n: (round(n.onset / SCORE_TICK_S), n.pitch)  # noqa: E731
            for a, b in zip(sorted(ta.notes, key=key), tb.notes):
                assert abs(a.onset - b.onset) <= SCORE_TICK_S / 2 + 1e-9
                assert (a.pitch, a.velocity) == (b.pitch, b.velocity)
                assert b.offset - b.onset >= SCORE_TICK_S - 1e-12
                if a.offset - a.onset >= SCORE_TICK_S:
                    assert abs(a.offset - b.offset) <= SCORE_TICK_S / 2 + 1e-9

    check()


# --- golden bytes, chunk table, header ----------------------------------------------------


def test_golden_bytes():
    data = dumps(tiny())
    assert data.hex() == GOLDEN_HEX
    d = loads(bytes.fromhex(GOLDEN_HEX))
    assert [(n.onset, n.offset, n.pitch, n.velocity) for n in d.score.tracks[0].notes] == [
        (0.0, 0.5, 60, 100), (0.5, 1.0, 64, 90)]
    assert d.score.tracks[0].notes[1].bends == (BendPoint(0.0, 0.0), BendPoint(9 * BEND_TICK_S, 1.0))


def test_golden_matches_format_doc():
    doc = (REPO / "docs" / "FORMAT.md").read_text(encoding="utf-8")
    dump_lines = [ln for ln in doc.splitlines() if ln[:9].rstrip(":").isalnum() and ln[8:10] == ": "]
    hexdata = "".join(ln[10:49].replace(" ", "") for ln in dump_lines)
    assert hexdata == GOLDEN_HEX


def test_chunk_table_and_header_dict():
    data = dumps(rich())
    table = chunk_table(data)
    assert [t.type for t in table] == ["HEAD", "SCOR", "TIMB", "SAMP", "TAGS", "END"]
    assert all(isinstance(t, ChunkInfo) for t in table)
    assert table[0].offset == 0
    assert sum(t.length for t in table) == len(data)
    for a, b in zip(table, table[1:]):
        assert a.offset + a.length == b.offset
    h = header_dict(data)
    assert h["format"] == "smc" and h["n_samples"] == 504000 and h["engine"] == "neural"
    assert h["tracks"][1] == {"name": "drums", "program": 0, "drum": True, "notes": 20}
    with pytest.raises(ContainerError):
        chunk_table(data[:-1])
    with pytest.raises(ContainerError):
        header_dict(b"\x89SMC\x02\x00")


def test_header_is_compact_json():
    data = dumps(tiny())
    header, _ = split(data)
    assert b": " not in header and b", " not in header and b"\n" not in header


# --- corruption ---------------------------------------------------------------------------


def test_truncation_at_every_offset():
    for c in (tiny(), rich()):
        data = dumps(c)
        for n in range(len(data)):
            with pytest.raises(ContainerError):
                loads(data[:n])


def test_every_single_bit_flip_is_rejected():
    data = dumps(tiny())
    for i in range(len(data)):
        for bit in range(8):
            buf = bytearray(data)
            buf[i] ^= 1 << bit
            with pytest.raises(ContainerError):
                loads(bytes(buf))


def test_not_bytes_and_empty():
    for bad in (b"", b"\x89SM", "text", None, 12):
        with pytest.raises(ContainerError):
            loads(bad)  # type: ignore[arg-type]


def test_wrong_magic():
    data = dumps(tiny())
    with pytest.raises(ContainerError, match="magic"):
        loads(b"RIFF" + data[4:])


def test_future_major_version_rejected_with_message():
    header, chunks = split(dumps(tiny()))
    with pytest.raises(ContainerError, match=r"unsupported format version 2\.0 \(this semcodec reads 1\.x\)"):
        loads(build(header, chunks, major=2, minor=0))
    with pytest.raises(ContainerError, match="unsupported format version 0.0"):
        loads(build(header, chunks, major=0))


def test_future_minor_version_accepted():
    header, chunks = split(dumps(tiny()))
    d = loads(build(header, chunks, minor=7))
    assert len(d.score.tracks[0].notes) == 2


def test_unknown_chunk_skipped_but_crc_checked():
    header, chunks = split(dumps(tiny()))
    data = build(header, [(b"ZZZZ", b"future stuff")] + chunks + [(b"x\x00\xff1", b"")])
    assert len(loads(data).score.tracks[0].notes) == 2
    assert [t.type for t in chunk_table(data)] == ["HEAD", "ZZZZ", "SCOR", "x\x00\\xff1", "END"]
    pos = data.index(b"future")
    corrupt = data[:pos] + b"F" + data[pos + 1 :]
    with pytest.raises(ContainerError, match="CRC"):
        loads(corrupt)


def test_duplicate_known_chunk_rejected():
    header, chunks = split(dumps(tiny()))
    with pytest.raises(ContainerError, match="duplicate SCOR"):
        loads(build(header, chunks + chunks))


def test_missing_score_and_missing_end():
    header, chunks = split(dumps(tiny()))
    with pytest.raises(ContainerError, match="missing SCOR"):
        loads(build(header, []))
    with pytest.raises(ContainerError, match="END"):
        loads(build(header, chunks, end=False))
    bad_end = build(header, chunks, end=False)
    rec = CHUNK_END + struct.pack("<I", 1) + b"\x00"
    with pytest.raises(ContainerError, match="END chunk must be empty"):
        loads(bad_end + rec + struct.pack("<I", zlib.crc32(rec)))


def test_trailing_garbage_rejected():
    data = dumps(tiny())
    for tail in (b"\x00", b"garbage", dumps(tiny())):
        with pytest.raises(ContainerError, match="trailing"):
            loads(data + tail)


def test_over_cap_and_over_remaining_lengths():
    data = dumps(tiny())
    scor = chunk_table(data)[1]
    assert scor.type == "SCOR"
    for value, message in (
        (MAX_CHUNK_BYTES + 1, "exceeds the cap"),
        (0xFFFFFFFF, "exceeds the cap"),
        (len(data), "truncated"),
        (len(data) - scor.offset - 12 + 1, "truncated"),
    ):
        buf = bytearray(data)
        struct.pack_into("<I", buf, scor.offset + 4, value)
        with pytest.raises(ContainerError, match=message):
            loads(bytes(buf))
    # a chunk claiming the cap but with less data behind it, CRC irrelevant
    header, _ = split(data)
    rec = CHUNK_SCORE + struct.pack("<I", MAX_CHUNK_BYTES)
    short = build(header, [], end=False) + rec + b"\x00" * 100
    with pytest.raises(ContainerError, match="truncated"):
        loads(short)


def test_huge_header_length():
    data = dumps(tiny())
    for value, message in ((0xFFFFFFFF, "exceeds the cap"), (MAX_HEADER_BYTES + 1, "exceeds the cap"),
                           (len(data), "truncated"), (0, "CRC")):
        buf = bytearray(data)
        struct.pack_into("<I", buf, 6, value)
        with pytest.raises(ContainerError, match=message):
            loads(bytes(buf))


def test_deeply_nested_header_rejected_quickly():
    _, chunks = split(dumps(tiny()))
    for header in (b"[" * 100000, b"{\"a\":" * 10000 + b"1" + b"}" * 10000,
                   b'{"x":' + b"[" * 60000 + b"]" * 60000 + b"}"):
        header = header[:MAX_HEADER_BYTES]
        start = time.perf_counter()
        with pytest.raises(ContainerError, match="nested|JSON"):
            loads(build(header, chunks))
        assert time.perf_counter() - start < 1.0
    # over the cap entirely
    with pytest.raises(ContainerError, match="exceeds the cap"):
        loads(build(b"[" * 100000, chunks))


def test_brackets_inside_strings_do_not_count_as_nesting():
    c = tiny()
    c.extra = {"note": "[[[[[[[[[[[[{{{{{{{{{{ \\\" [[[["}
    assert loads(dumps(c)).extra == c.extra
    c.extra = {"deep": [[[[[[1]]]]]]}  # header depth 7: allowed
    assert loads(dumps(c)).extra == c.extra
    c.extra = {"deep": [[[[[[[[1]]]]]]]]}
    with pytest.raises(ContainerError, match="nested"):
        dumps(c)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"format": "wav"}, "format"),
        ({"sample_rate": 100}, "sample_rate"),
        ({"sample_rate": 8000.0}, "sample_rate"),
        ({"sample_rate": True}, "sample_rate"),
        ({"channels": 0}, "channels"),
        ({"n_samples": 8002}, "disagrees"),
        ({"n_samples": -1}, "n_samples"),
        ({"duration": -1}, "duration"),
        ({"duration": "1"}, "duration"),
        ({"duration": ...}, "missing required field 'duration'"),
        ({"tracks": ...}, "missing required field 'tracks'"),
        ({"loudness_lufs": "loud"}, "loudness"),
        ({"loudness_lufs": 1e300}, "loudness"),
        ({"tempo_bpm": 0}, "tempo"),
        ({"time_signature": [4, 3]}, "time_signature"),
        ({"time_signature": [4]}, "time_signature"),
        ({"key": 5}, "key"),
        ({"tracks": [{"name": "a", "program": 128, "drum": False, "notes": 2}]}, "program"),
        ({"tracks": [{"name": "a", "program": 0, "drum": 0, "notes": 2}]}, "drum"),
        ({"tracks": [{"name": "a", "program": 0, "drum": False, "notes": 3}]}, "notes"),
        ({"tracks": [{"name": "a", "program": 0, "drum": False}]}, "lacks 'notes'"),
        ({"tracks": []}, "tracks"),
        ({"tracks": [{"name": "a", "program": 0, "drum": False, "notes": 2}] * 2}, "tracks"),
        ({"tracks": [{"name": "a", "program": 0, "drum": False, "notes": 0}] * 65}, "tracks"),
        ({"tags": {"a": 1}}, "tags"),
        ({"tags": ["a"]}, "tags"),
        ({"encoder": None}, "encoder"),
    ],
)
def test_invalid_header_fields_rejected(changes, message):
    with pytest.raises(ContainerError, match=message):
        loads(with_header(dumps(tiny()), **changes))


@pytest.mark.parametrize(
    "header",
    [b'{"format":"smc","format":"smc"}', b'{"duration":NaN}', b'{"duration":1e999}',
     b'{"n_samples":' + b"9" * 5000 + b"}", b'{"a":"\\ud800"}', b"\xff\xfe", b"[]", b"",
     b'{"a":1} x', b'"smc"'],
)
def test_malformed_header_json_rejected(header):
    _, chunks = split(dumps(tiny()))
    with pytest.raises(ContainerError):
        loads(build(header, chunks))


def test_unknown_header_fields_become_extra():
    d = loads(with_header(dumps(tiny()), future_field={"x": [1, 2]}))
    assert d.extra == {"future_field": {"x": [1, 2]}}


def _score_payload(raw: bytes) -> bytes:
    return b"\x00" + raw


@pytest.mark.parametrize(
    "raw, message",
    [
        (bytes([1, 2, 0, 100, 100, 100, 0, 8, 72, 19, 0, 0, 0]), "unexpected bytes"),
        (bytes([1, 2, 0, 100, 100, 100, 0, 8, 72, 19, 0]), "truncated|more than the data"),
        (bytes([1, 2, 0, 100, 100, 0, 0, 8, 72, 19, 0, 0]), "invalid length"),  # duration 0
        (bytes([1, 2, 0, 100, 100, 100, 0, 200, 1, 72, 19, 0, 0]), "pitch"),
        (bytes([1, 2, 0, 100, 100, 100, 0, 8, 72, 0x7E, 0, 0]), "velocity"),
        (bytes([1, 2, 0, 0x90, 0x4E, 100, 100, 0, 8, 72, 19, 0, 0]), "after the clip"),
        (bytes([1, 2, 0, 100, 100, 100, 0, 8, 72, 19, 0, 1, 0x90, 0x4E, 0]), "bend point after"),
        (bytes([1, 2, 0, 100, 100, 100, 0, 8, 72, 19, 0, 1, 0, 0x82, 0x06]), "bend beyond"),
        (bytes([1, 2, 0x80, 0x00, 100, 100, 100, 0, 8, 72, 19, 0, 0]), "overlong"),
        (bytes([1, 2] + [0xFF] * 10 + [1]), "varint"),
        (bytes([1, 0x80, 0x80, 0x80, 0x80, 0x01]), "notes"),
        (bytes([2]), "tracks|notes|truncated"),
        (bytes([65]), "tracks"),
        (b"", "truncated"),
    ],
)
def test_invalid_score_payload_rejected(raw, message):
    header, _ = split(dumps(tiny()))
    with pytest.raises(ContainerError, match=message):
        loads(build(header, [(CHUNK_SCORE, _score_payload(raw))]))


def test_valid_handmade_score_payload_accepted():
    header, _ = split(dumps(tiny()))
    raw = bytes([1, 2, 0, 100, 100, 100, 0, 8, 72, 19, 0, 2, 0, 9, 0, 64])
    d = loads(build(header, [(CHUNK_SCORE, _score_payload(raw))]))
    assert d.score.tracks[0].notes[1].bends[1].semitones == 1.0


def test_compressed_score_codecs_and_bounds():
    header, _ = split(dumps(tiny()))
    raw = bytes([1, 2, 0, 100, 100, 100, 0, 8, 72, 19, 0, 2, 0, 9, 0, 64])
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = deflate.compress(raw) + deflate.flush()
    import lzma

    lz = lzma.compress(raw, format=lzma.FORMAT_RAW,
                       filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 20}])
    for payload in (b"\x01" + body, b"\x02" + lz):
        assert len(loads(build(header, [(CHUNK_SCORE, payload)])).score.tracks[0].notes) == 2
    for payload, message in (
        (b"\x03" + raw, "unknown compression codec"),
        (b"\x01" + body[:-1], "truncated|corrupt"),
        (b"\x01" + body + b"\x00", "after the end"),
        (b"\x02" + lz[:-1], "truncated|corrupt"),
        (b"\x02" + lz + b"\x00", "after the end"),
        (b"\x01" + b"\xff" * 20, "corrupt|truncated"),
        (b"", "empty payload"),
    ):
        with pytest.raises(ContainerError, match=message):
            loads(build(header, [(CHUNK_SCORE, payload)]))


def test_decompression_bomb_is_bounded():
    header, _ = split(dumps(tiny()))
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    size = 4 * MAX_CHUNK_BYTES + 1024
    body = deflate.compress(bytes(size)) + deflate.flush()
    start = time.perf_counter()
    with pytest.raises(ContainerError, match="more than"):
        loads(build(header, [(CHUNK_SCORE, b"\x01" + body)]))
    assert time.perf_counter() - start < 2.0


def test_invalid_timbre_sample_and_tags_chunks():
    c = rich()
    header, chunks = split(dumps(c))
    by_type = dict(chunks)
    timb, samp = by_type[b"TIMB"], by_type[b"SAMP"]
    cases = [
        (b"TIMB", b"\x01\x09\x00\x00\x00\x00", "track index"),  # track 9 of 4
        (b"TIMB", b"\x01\x00\x81\x7f", "embedding"),  # 16257 values
        (b"TIMB", b"\x01\x00\x01\x00\x7c\x00\x00\x00", "non-finite"),  # +inf
        (b"TIMB", timb + b"\x00", "unexpected bytes"),
        (b"TIMB", timb[:-1], "truncated"),
        (b"SAMP", samp[:-1], "truncated"),
        (b"SAMP", samp + b"\x00", "unexpected bytes"),
        (b"SAMP", b"\x01\x00" + struct.pack("<III", 0, 0, 100) + b"\x04opus" + b"\0" * 4, "sample rate"),
        (b"SAMP", b"\x01\x00" + struct.pack("<III", 20000, 0, 8000) + b"\x04opus" + b"\0" * 4, "outside"),
        (b"SAMP", b"\x01\x00" + struct.pack("<III", 0, 0, 8000) + b"\x00" + b"\0" * 4, "codec"),
        (b"SAMP", b"\x01\x00" + struct.pack("<III", 0, 0, 8000) + b"\x02o " + b"\0" * 4, "codec"),
        (b"SAMP", b"\x01\x00" + struct.pack("<III", 0, 0, 8000) + b"\x04opus" + b"\xff" * 4, "truncated"),
        (b"TAGS", b"\x00" + b'{"a":1}', "TAGS"),
        (b"TAGS", b"\x00" + b'{"a":{"b":"c"}}', "TAGS"),
        (b"TAGS", b"\x00" + b"[]", "TAGS"),
        (b"TAGS", b"\x00" + b"{", "TAGS"),
        (b"TAGS", b"\x00" + b"[" * 70000, "nested"),
    ]
    for ctype, payload, message in cases:
        new = [(t, payload if t == ctype else p) for t, p in chunks]
        with pytest.raises(ContainerError, match=message):
            loads(build(header, new))


# --- writer validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: Container(duration=1.0, sample_rate=100),
        lambda: Container(duration=-1.0, sample_rate=8000),
        lambda: Container(duration=float("nan"), sample_rate=8000),
        lambda: Container(duration=1.0, sample_rate=8000, n_samples=9000),
        lambda: Container(duration=1.0, sample_rate=8000, channels=0),
        lambda: Container(duration=1.0, sample_rate=8000, extra={"tracks": 1}),
        lambda: Container(duration=1.0, sample_rate=8000, extra={"x": float("inf")}),
        lambda: Container(duration=1.0, sample_rate=8000, extra={"x": object()}),
        lambda: Container(duration=1.0, sample_rate=8000, tags={"t": "x" * 5000}),
        lambda: Container(duration=1.0, sample_rate=8000, texts={"t": 5}),  # type: ignore[dict-item]
        lambda: Container(duration=1.0, sample_rate=8000,
                          score=Score(tracks=(Track("a", 0, False, (Note(0, 1, 128, 64),)),))),
        lambda: Container(duration=1.0, sample_rate=8000,
                          score=Score(tracks=(Track("a", 0, False, (Note(0, 1, 60, 0),)),))),
        lambda: Container(duration=1.0, sample_rate=8000,
                          score=Score(tracks=(Track("a", 0, False, (Note(0, 5, 60, 64),)),))),
        lambda: Container(duration=1.0, sample_rate=8000,
                          score=Score(tracks=(Track("a", 0, False, (Note(-1, 0.5, 60, 64),)),))),
        lambda: Container(duration=1.0, sample_rate=8000,
                          score=Score(tracks=(Track("a", 200),))),
        lambda: Container(duration=1.0, sample_rate=8000, score=Score(tempo_bpm=0.0)),
        lambda: Container(duration=1.0, sample_rate=8000, timbres=(Timbre(0, (1.0,)),)),
        lambda: Container(duration=1.0, sample_rate=8000, score=Score(tracks=(Track("a"),)),
                          timbres=(Timbre(0, (1e6,)),)),
        lambda: Container(duration=1.0, sample_rate=8000, score=Score(tracks=(Track("a"),)),
                          samples=(Sample(0, 0.0, 0.1, 8000, "b@d codec name!", b""),)),
        lambda: Container(duration=1.0, sample_rate=8000, score=Score(tracks=(Track("a"),)),
                          samples=(Sample(0, 5.0, 0.1, 8000, "opus", b""),)),
    ],
)
def test_writer_rejects_unstorable_values(make):
    with pytest.raises(ContainerError):
        dumps(make())


def test_bends_are_clamped_to_range():
    note = Note(0.0, 0.5, 60, 64, (BendPoint(0.0, 30.0), BendPoint(0.1, -30.0)))
    c = Container(duration=1.0, sample_rate=8000, score=Score(tracks=(Track("a", 0, False, (note,)),)))
    bends = loads(dumps(c)).score.tracks[0].notes[0].bends
    assert [b.semitones for b in bends] == [12.0, -12.0]


# --- files --------------------------------------------------------------------------------


def test_save_and_load(tmp_path):
    c = rich()
    path = tmp_path / "song.smc"
    c.save(path)
    assert path.read_bytes() == dumps(c)
    assert Container.load(str(path)).texts == c.texts
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.smc"]
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    path.chmod(0o640)
    c.save(path)  # overwriting keeps the existing file's mode
    assert path.stat().st_mode & 0o777 == 0o640


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        Container.load(tmp_path / "missing.smc")
    with pytest.raises(InputError):
        Container.load(tmp_path)
    bad = tmp_path / "bad.smc"
    bad.write_bytes(dumps(tiny())[:-3])
    with pytest.raises(ContainerError, match=r"bad\.smc.*truncated"):
        Container.load(bad)


@pytest.mark.parametrize("fail_at", ["fsync", "replace", "write"])
def test_save_is_atomic(tmp_path, monkeypatch, fail_at):
    path = tmp_path / "out.smc"
    old = dumps(tiny())
    path.write_bytes(old)

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    if fail_at == "write":
        real_fdopen = os.fdopen

        class Failing:
            def __init__(self, fh):
                self.fh = fh

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.fh.close()

            def write(self, data):
                self.fh.write(data[: len(data) // 2])
                self.fh.flush()
                boom()

            def __getattr__(self, name):
                return getattr(self.fh, name)

        monkeypatch.setattr(smcio.os, "fdopen", lambda *a, **k: Failing(real_fdopen(*a, **k)))
    else:
        monkeypatch.setattr(smcio.os, fail_at, boom)
    with pytest.raises(OutputError, match="No space left"):
        rich().save(path)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.smc"]
    # and with no previous file, nothing is left at all
    new = tmp_path / "new.smc"
    monkeypatch.setattr(smcio.os, "fsync", boom)
    with pytest.raises(OutputError):
        rich().save(new)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.smc"]


def test_atomic_write_into_missing_folder(tmp_path):
    with pytest.raises(OutputError):
        smcio.atomic_write_bytes(tmp_path / "nope" / "x.bin", b"123")


# --- size ---------------------------------------------------------------------------------


def solo_30s() -> Container:
    import random

    rng = random.Random(7)
    notes, t = [], 0.2
    pitch = 67
    for i in range(150):
        step = rng.choice([0.125, 0.25, 0.25, 0.375])
        pitch = max(48, min(88, pitch + rng.choice([-5, -3, -2, -1, 0, 1, 2, 3, 4])))
        bends = (BendPoint(0.0, -0.5), BendPoint(0.03, 0.0)) if i % 25 == 0 else ()
        notes.append(Note(t, t + step * rng.uniform(0.6, 0.95), pitch, rng.randint(55, 100), bends))
        t += step * rng.uniform(0.97, 1.03) * 0.78
    assert t < 30.0
    return Container(
        duration=30.0, sample_rate=44100, channels=2, n_samples=30 * 44100, loudness_lufs=-16.73,
        score=Score(tracks=(Track("Violin", 40, False, tuple(notes)),), tempo_bpm=123.05,
                    key="D major"),
        encoder="semcodec 0.1.0",
    )


def test_size_of_a_30s_solo():
    c = solo_30s()
    data = dumps(c)
    kbps = c.bitrate_kbps
    assert kbps == pytest.approx(len(data) * 8 / 30 / 1000)
    print(f"30 s solo, 150 notes: {len(data)} bytes = {kbps:.3f} kbps, table {chunk_table(data)}")
    assert len(data) < 1000
    assert kbps < 0.3
    assert Container(duration=0.0, sample_rate=8000).bitrate_kbps == 0.0


# --- fuzz ---------------------------------------------------------------------------------


def test_fuzz_harness_short_run(tmp_path):
    (tmp_path / "seed.smc").write_bytes(dumps(rich()))
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "fuzz_container.py"), "--seconds", "3",
         "--seed", "12345", "--seed-dir", str(tmp_path), "--crash-dir", str(tmp_path / "crashes")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tried = int(proc.stdout.split("fuzz_container: ")[1].split()[0])
    assert tried > 100


def _keyed_container(keys):
    notes = (Note(0.1, 0.2, 36, 100), Note(0.5, 0.6, 38, 90))
    score = Score(tracks=(Track("drums", 0, True, notes),))
    samples = tuple(Sample(0, 0.1 + 0.4 * i, 0.1, 24000, "opus", bytes([i]) * 5, key=k)
                    for i, k in enumerate(keys))
    return Container(duration=1.0, sample_rate=8000, n_samples=8000, score=score, samples=samples)


def test_sample_keys_round_trip_and_minor_version():
    data = _keyed_container([36, None]).to_bytes()
    assert data[4:6] == b"\x01\x01"  # a 1.1 feature: minor version 1
    back = Container.from_bytes(data)
    assert [s.key for s in back.samples] == [36, None]
    plain = _keyed_container([None, None]).to_bytes()
    assert plain[4:6] == b"\x01\x00" and b"SKEY" not in plain
    with pytest.raises(ContainerError, match="key"):
        _keyed_container([200, None]).to_bytes()


@pytest.mark.parametrize("payload,message", [
    (b"\x03\x00\x24\x01\x26\x02\x26", "keys for"),   # more keys than samples
    (b"\x02\x01\x24\x00\x26", "out of order"),       # indices must increase
    (b"\x01\x05\x24", "beyond"),                     # index past the last sample
    (b"\x01\x00\x90", "outside"),                    # key > 127
    (b"\x01\x00\x24\x00", "unexpected bytes"),
])
def test_bad_sample_keys_are_rejected(payload, message):
    header, chunks = split(_keyed_container([36, None]).to_bytes())
    chunks = [(t, payload if t == b"SKEY" else p) for t, p in chunks]
    with pytest.raises(ContainerError, match=message):
        Container.from_bytes(build(header, chunks, minor=1))


# --- format 1.4: a track's "render" object --------------------------------------------------

def _rendered(render, samples=()):
    from semcodec.events import TrackRender  # noqa: F401

    t = Track("vocals", 53, notes=(Note(0.1, 0.9, 60, 90),), render=render)
    return Container(duration=2.0, sample_rate=8000, score=Score(tracks=(t,)), samples=samples)


def test_track_render_round_trips_with_minor_version_4():
    from semcodec.events import TrackRender

    r = TrackRender(use="voice", gain_db=-2.5, eq_db=(1.0, -3.0, 12.0), room=(1.5, 0.5),
                    voice=(0.0, -6.0, -20.0, -3.0))
    data = _rendered(r).to_bytes()
    assert data[4:6] == b"\x01\x04"
    assert loads(data).score.tracks[0].render == r
    assert header_dict(data)["tracks"][0]["render"] == {
        "use": "voice", "gain_db": -2.5, "eq": [1, -3, 12], "room": [1.5, 0.5],
        "voice": [0, -6, -20, -3]}
    # a render that says nothing is not written (and the file stays 1.0)
    plain = _rendered(TrackRender()).to_bytes()
    assert "render" not in header_dict(plain)["tracks"][0] and plain[4:6] == b"\x01\x00"


def test_track_render_rules():
    from semcodec.events import TrackRender

    data = _rendered(TrackRender(use="voice")).to_bytes()
    # an unknown use (a newer writer's) is read as none: the engine, eq and room still apply
    newer = with_header(data, tracks=[{"name": "vocals", "program": 53, "drum": False, "notes": 1,
                                       "render": {"use": "granular", "eq": [2]}}])
    assert loads(newer).score.tracks[0].render == TrackRender(eq_db=(2.0,))
    for bad in ({"eq": [1e3]}, {"eq": "loud"}, {"eq": [0] * 65}, {"room": [1.0]},
                {"room": [20.0, 0.5]}, {"gain_db": 1e9}, {"use": 3}, [], {"voice": [0] * 3},
                {"voice": [500, 0]}, {"voice": [0] * 258}):
        broken = with_header(data, tracks=[{"name": "vocals", "program": 53, "drum": False,
                                            "notes": 1, "render": bad}])
        with pytest.raises(ContainerError, match="render"):
            loads(broken)
    with pytest.raises(ContainerError, match="unknown sample use"):
        _rendered(TrackRender(use="granular")).to_bytes()


def test_part_sizes_add_up():
    from semcodec.container import part_sizes
    from semcodec.events import TrackRender

    smp = (Sample(0, 0.1, 0.5, 8000, "opus", b"x" * 300),
           Sample(0, 0.5, 0.2, 8000, "opus", b"y" * 50, key=38))
    c = _rendered(TrackRender(use="sampler", eq_db=(1.0,) * 24), samples=smp)
    data = c.to_bytes()
    parts = part_sizes(c, data)
    assert sum(parts.values()) == len(data)
    assert parts["samples"] > 300 and 50 < parts["oneshots"] < 100
    assert parts["timbres"] > 24  # the eq travels in the header: counted with the timbres


# --- format 1.6: the header's "neural_model" ------------------------------------------------

def test_neural_model_round_trips_with_minor_version_6():
    data = _rendered(None).to_bytes()
    assert "neural_model" not in header_dict(data) and data[4:6] == b"\x01\x00"
    assert loads(data).neural_model == ""  # none named: the legacy model
    c = Container(duration=2.0, sample_rate=8000, score=_rendered(None).score,
                  neural_model="ad4fe9a4ea1d")
    data = c.to_bytes()
    assert data[4:6] == b"\x01\x06" and header_dict(data)["neural_model"] == "ad4fe9a4ea1d"
    assert loads(data).neural_model == "ad4fe9a4ea1d"
    with pytest.raises(ContainerError, match="neural_model"):
        loads(with_header(data, neural_model=12))
    with pytest.raises(ContainerError, match="neural_model"):
        Container(duration=1.0, sample_rate=8000, neural_model="x" * 65).to_bytes()


# --- format 1.8: the header's "synth_lufs" --------------------------------------------------

def test_synth_lufs_round_trips_with_minor_version_8():
    from dataclasses import replace

    base = Container(duration=2.0, sample_rate=8000, loudness_lufs=-20.0,
                     score=_rendered(None).score, neural_model="ad4fe9a4ea1d")
    assert "synth_lufs" not in header_dict(base.to_bytes()) and loads(base.to_bytes()).synth_lufs is None
    data = replace(base, synth_lufs=-23.45678).to_bytes()
    assert data[4:6] == b"\x01\x08" and header_dict(data)["synth_lufs"] == -23.457
    assert loads(data).synth_lufs == -23.457
    # the writer's bytes bound (encode_budget.SYNTH_LUFS_BYTES) holds at the range's ends
    from semcodec.encode_budget import SYNTH_LUFS_BYTES
    for v in (-99.999, -9.5, 29.999):
        assert len(replace(base, synth_lufs=v).to_bytes()) - len(base.to_bytes()) <= SYNTH_LUFS_BYTES
    # omitted out of range, or when the original is silent (no gain to know)
    assert "synth_lufs" not in header_dict(replace(base, synth_lufs=-150.0).to_bytes())
    assert "synth_lufs" not in header_dict(replace(base, synth_lufs=-20.0,
                                                   loudness_lufs=None).to_bytes())
    for bad in ("-20", -300.0, 31.0, True):
        with pytest.raises(ContainerError, match="synth_lufs"):
            loads(with_header(data, synth_lufs=bad))
