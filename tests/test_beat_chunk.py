"""The BEAT chunk (format 1.3): the tempo map round trip, older readers, hostile payloads."""

from __future__ import annotations

import pytest

from semcodec.container import (
    CHUNK_TEMPO_MAP,
    FORMAT_MINOR_TEMPO_MAP,
    SmcFile,
    chunk_table,
)
from semcodec.container.framing import _chunk
from semcodec.container.primitives import _uvarint, _zigzag
from semcodec.errors import ContainerError
from semcodec.events import Note, Score, TempoMap, Track

TM = TempoMap(beats=tuple(round(0.31 + 0.5 * i + 0.002 * (i % 3), 3) for i in range(40)),
              downbeat=1, time_signature=(6, 8))


def _file(tm: TempoMap | None) -> SmcFile:
    sc = Score(tracks=(Track("a", 0).with_notes([Note(0.5, 1.0, 60, 80)]),),
               tempo_bpm=90.0, time_signature=(6, 8), tempo_map=tm)
    return SmcFile(duration=30.0, sample_rate=8000, channels=1, n_samples=240000,
                   loudness_lufs=-20.0, score=sc)


def _with_payload(payload: bytes, ctype: bytes = CHUNK_TEMPO_MAP) -> bytes:
    data = _file(TM).to_bytes()
    rec = next(r for r in chunk_table(data) if r.type == "BEAT")
    return data[:rec.offset] + _chunk(ctype, payload) + data[rec.offset + rec.length:]


def _payload(num=6, den=8, down=1, count=None, first=310, gaps=(500, 500, 501)) -> bytes:
    count = len(gaps) + 1 if count is None else count
    out = bytearray([num, den]) + _uvarint(down) + _uvarint(count) + _uvarint(first)
    out += _uvarint(gaps[0])
    for a, b in zip(gaps, gaps[1:]):
        out += _uvarint(_zigzag(b - a))
    return bytes(out)


def test_round_trip_and_version():
    data = _file(TM).to_bytes()
    assert data[5] == FORMAT_MINOR_TEMPO_MAP == 3
    assert [r.type for r in chunk_table(data)] == ["HEAD", "SCOR", "BEAT", "END"]
    back = SmcFile.from_bytes(data).score.tempo_map
    assert back == TM
    assert back.downbeats[:2] == (TM.beats[1], TM.beats[3])


def test_without_tempo_map_nothing_changes():
    data = _file(None).to_bytes()
    assert data[5] < FORMAT_MINOR_TEMPO_MAP
    assert "BEAT" not in [r.type for r in chunk_table(data)]
    assert SmcFile.from_bytes(data).score.tempo_map is None


def test_an_older_reader_skips_it():
    # a reader that does not know BEAT sees an unknown chunk: simulated by renaming it
    data = _with_payload(_payload(), ctype=b"BEAX")
    c = SmcFile.from_bytes(data)
    assert c.score.tempo_map is None and c.score.time_signature == (6, 8)


def test_valid_hand_made_payload():
    tm = SmcFile.from_bytes(_with_payload(_payload())).score.tempo_map
    assert tm.beats == (0.31, 0.81, 1.31, 1.811)


@pytest.mark.parametrize("payload,message", [
    (_payload(gaps=(500, 0, 500)), "ms after the previous"),
    (_payload(gaps=(500, 20000)), "ms after the previous"),
    (_payload(count=1), "beats outside"),
    (_payload(count=10 ** 6), "beats"),
    (_payload(count=50), "beats in"),
    (_payload(down=2), "downbeat"),
    (_payload(den=3), "time signature"),
    (_payload(num=0), "time signature"),
    (_payload(first=31_001), "past the end"),
    (_payload(gaps=(9000, 9000, 9000, 9000)), "past the end"),
    (_payload() + b"\x00", "unexpected bytes"),
    (_payload()[:-1], "truncated"),
    (b"", "truncated"),
])
def test_hostile_payloads_are_rejected(payload, message):
    with pytest.raises(ContainerError, match=message):
        SmcFile.from_bytes(_with_payload(payload))


def test_unstorable_tempo_maps_fail_cleanly():
    for tm in (TempoMap(beats=(0.5,), time_signature=(4, 4)),
               TempoMap(beats=(0.5, 0.5, 1.0), time_signature=(4, 4)),
               TempoMap(beats=(0.5, 1.0), downbeat=4, time_signature=(4, 4)),
               TempoMap(beats=(0.5, 40.0), time_signature=(4, 4))):
        with pytest.raises(ContainerError):
            _file(tm).to_bytes()


def test_the_encoder_stores_the_beat(encoded_chorale):
    import semcodec

    _wav, smc, _truth = encoded_chorale
    c = semcodec.load(smc)
    tm = c.score.tempo_map
    assert tm is not None and len(tm.beats) >= 8
    assert abs(tm.tempo_bpm / 90.0 - 1) <= 0.04  # rendered at 90 quarter notes per minute
    assert c.score.time_signature == tm.time_signature
    from semcodec.summary import container_summary

    assert container_summary(c, smc.read_bytes(), "x")["beats"] == len(tm.beats)
