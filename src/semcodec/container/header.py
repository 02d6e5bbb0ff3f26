"""The JSON header: building a track's object, and validating a parsed header (shared by the
reader and the writer)."""

from __future__ import annotations

from typing import Any, NamedTuple

from semcodec.constants import (
    GM_PROGRAM_MAX,
    GM_PROGRAM_MIN,
    MAX_CHANNELS,
    MAX_DURATION_S,
    MAX_NAME_CHARS,
    MAX_NOTES,
    MAX_SAMPLE_RATE,
    MAX_TAG_KEY_CHARS,
    MAX_TAG_VALUE_CHARS,
    MAX_TRACKS,
    MIN_SAMPLE_RATE,
)
from semcodec.container.primitives import _fail, _is_int, _is_num, _round_float
from semcodec.container.spec import (
    _MAX_TIME_SIG_NUMERATOR,
    _REQUIRED_KEYS,
    _RESERVED_KEYS,
    _TIME_SIG_DENOMINATORS,
    MAX_ENGINE_GAIN_DB,
    MAX_EQ_BANDS,
    MAX_EQ_DB,
    MAX_RENDER_GAIN_DB,
    MAX_ROOM_RT60_S,
    MAX_ROOM_WET,
    MAX_VOICE_DB,
    MAX_VOICE_PARAMS,
    MAX_LOUDNESS_LUFS,
    MAX_NEURAL_MODEL_CHARS,
    MAX_TEMPO_BPM,
    MIN_LOUDNESS_LUFS,
    MIN_TEMPO_BPM,
    PAN_DECIMALS,
    RENDER_USES,
    TRACK_ENGINES,
)
from semcodec.events import Track, TrackRender


def _int_field(h: dict, key: str, lo: int, hi: int) -> int:
    value = h.get(key)
    if not _is_int(value) or not lo <= value <= hi:
        raise _fail(f"header: {key!r} must be an integer in {lo}..{hi}, got {value!r}")
    return value


def _str_field(value: Any, what: str, max_chars: int, min_chars: int = 0) -> str:
    if not isinstance(value, str) or not min_chars <= len(value) <= max_chars:
        raise _fail(f"{what} must be a string of {min_chars}..{max_chars} characters, got {value!r}")
    return value


def _str_map(value: Any, what: str, max_value_chars: int | None) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _fail(f"{what} must be an object of strings")
    for key, item in value.items():
        _str_field(key, f"{what} key", MAX_TAG_KEY_CHARS, 1)
        if not isinstance(item, str):
            raise _fail(f"{what}[{key!r}] must be a string")
        if max_value_chars is not None and len(item) > max_value_chars:
            raise _fail(f"{what}[{key!r}] is longer than {max_value_chars} characters")
    return dict(value)


def _track_object(t: Track) -> dict[str, Any]:
    """A track's header object; "pan" (format 1.2) only when the track is off centre, "engine"
    and "engine_gain_db" (1.2) only when it names one."""
    obj: dict[str, Any] = {"name": t.name, "program": t.program, "drum": t.is_drum,
                           "notes": len(t.notes)}
    pan = _round_float(float(t.pan), PAN_DECIMALS)
    if pan != 0.0:
        if not -1.0 <= pan <= 1.0:
            raise _fail(f"track {t.name!r}: pan {t.pan!r} outside -1..1")
        obj["pan"] = pan
    if t.engine:
        if t.engine not in TRACK_ENGINES:
            raise _fail(f"track {t.name!r}: unknown engine {t.engine!r} (known: {TRACK_ENGINES})")
        obj["engine"] = t.engine
        obj["engine_gain_db"] = _round_float(float(t.engine_gain_db), 2)
    if t.render is not None:
        r = _render_object(t.render, t.name)
        if r:
            obj["render"] = r
    return obj


def _render_object(r: TrackRender, name: str) -> dict[str, Any]:
    """A track's "render" object (format 1.3); keys only when they say something."""
    obj: dict[str, Any] = {}
    if r.use:
        if r.use not in RENDER_USES:
            raise _fail(f"track {name!r}: unknown sample use {r.use!r} (known: {RENDER_USES})")
        obj["use"] = r.use
    gain = _round_float(float(r.gain_db), 2)
    if gain:
        obj["gain_db"] = gain
    if r.eq_db:
        obj["eq"] = [_round_float(float(v), 1) for v in r.eq_db]
    if r.room:
        obj["room"] = [_round_float(float(v), 2) for v in r.room]
    if r.voice:
        obj["voice"] = [_round_float(float(v), 1) for v in r.voice]
    return obj


def _parse_render(value: Any, i: int) -> TrackRender | None:
    """Validate a track's "render" object; None when it says nothing this reader plays."""
    what = f"header: track {i} 'render'"
    if not isinstance(value, dict):
        raise _fail(f"{what} must be an object")
    use = _str_field(value.get("use", ""), f"{what} 'use'", MAX_NAME_CHARS)
    if use not in RENDER_USES:
        use = ""  # a use this reader does not know: the engine
    gain = value.get("gain_db", 0.0)
    if not _is_num(gain) or abs(gain) > MAX_RENDER_GAIN_DB:
        raise _fail(f"{what} 'gain_db' must be a number in -{MAX_RENDER_GAIN_DB:g}.."
                    f"{MAX_RENDER_GAIN_DB:g}, got {gain!r}")
    eq = value.get("eq", [])
    if (not isinstance(eq, list) or len(eq) > MAX_EQ_BANDS
            or not all(_is_num(v) and abs(v) <= MAX_EQ_DB for v in eq)):
        raise _fail(f"{what} 'eq' must be a list of at most {MAX_EQ_BANDS} numbers in "
                    f"-{MAX_EQ_DB:g}..{MAX_EQ_DB:g}")
    room = value.get("room", [])
    if (not isinstance(room, list) or len(room) not in (0, 2)
            or not all(_is_num(v) for v in room)
            or (room and not (0 <= room[0] <= MAX_ROOM_RT60_S and 0 <= room[1] <= MAX_ROOM_WET))):
        raise _fail(f"{what} 'room' must be [rt60 0..{MAX_ROOM_RT60_S:g} s, "
                    f"wet 0..{MAX_ROOM_WET:g}]")
    voice = value.get("voice", [])
    if (not isinstance(voice, list) or len(voice) % 2 or len(voice) > MAX_VOICE_PARAMS
            or not all(_is_num(v) and abs(v) <= MAX_VOICE_DB for v in voice)):
        raise _fail(f"{what} 'voice' must be an even-length list of at most {MAX_VOICE_PARAMS} "
                    f"numbers in -{MAX_VOICE_DB:g}..{MAX_VOICE_DB:g}")
    r = TrackRender(use=use, gain_db=float(gain), eq_db=tuple(float(v) for v in eq),
                    room=tuple(float(v) for v in room), voice=tuple(float(v) for v in voice))
    return r if r != TrackRender() else None


class TrackHeader(NamedTuple):
    """A track's entry in the JSON header (its notes are in the SCOR chunk)."""

    name: str
    program: int
    drum: bool
    n_notes: int
    pan: float
    engine: str
    engine_gain_db: float
    render: TrackRender | None = None


class _Header(NamedTuple):
    duration: float
    n_samples: int
    sample_rate: int
    channels: int
    loudness_lufs: float | None
    tempo_bpm: float
    time_signature: tuple[int, int]
    key: str
    tracks: tuple[TrackHeader, ...]
    encoder: str
    tags: dict[str, str]
    extra: dict[str, Any]
    neural_model: str = ""
    synth_lufs: float | None = None


def _track_header(i: int, t: Any, notes_left: int) -> TrackHeader:
    """Track ``i``'s header object, checked; at most ``notes_left`` notes remain allowed."""
    if not isinstance(t, dict):
        raise _fail(f"header: track {i} must be an object")
    for k in ("name", "program", "drum", "notes"):
        if k not in t:
            raise _fail(f"header: track {i} lacks {k!r}")
    name = _str_field(t["name"], f"header: track {i} 'name'", MAX_NAME_CHARS)
    program = _int_field(t, "program", GM_PROGRAM_MIN, GM_PROGRAM_MAX)
    if not isinstance(t["drum"], bool):
        raise _fail(f"header: track {i} 'drum' must be true or false")
    n_notes = _int_field(t, "notes", 0, MAX_NOTES)
    if n_notes > notes_left:
        raise _fail(f"header: more than {MAX_NOTES} notes")
    pan = t.get("pan", 0.0)
    if not _is_num(pan) or not -1.0 <= pan <= 1.0:
        raise _fail(f"header: track {i} 'pan' must be a number in -1..1, got {pan!r}")
    engine = _str_field(t.get("engine", ""), f"header: track {i} 'engine'", MAX_NAME_CHARS)
    engine_gain = t.get("engine_gain_db", 0.0)
    if not _is_num(engine_gain) or abs(engine_gain) > MAX_ENGINE_GAIN_DB:
        raise _fail(f"header: track {i} 'engine_gain_db' must be a number in "
                    f"-{MAX_ENGINE_GAIN_DB:g}..{MAX_ENGINE_GAIN_DB:g}, got {engine_gain!r}")
    if engine not in TRACK_ENGINES:
        engine, engine_gain = "", 0.0  # an engine this reader does not know: none
    render = _parse_render(t["render"], i) if "render" in t else None
    return TrackHeader(name, program, t["drum"], n_notes, float(pan), engine, float(engine_gain),
                       render)


def _validate_header(h: Any) -> _Header:
    if not isinstance(h, dict):
        raise _fail("header: must be a JSON object")
    for key in _REQUIRED_KEYS:
        if key not in h:
            raise _fail(f"header: missing required field {key!r}")
    if h["format"] != "smc":
        raise _fail(f"header: 'format' must be \"smc\", got {h['format']!r}")
    sample_rate = _int_field(h, "sample_rate", MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)
    channels = _int_field(h, "channels", 1, MAX_CHANNELS)
    max_n = int(MAX_DURATION_S * sample_rate)
    n_samples = _int_field(h, "n_samples", 0, max_n)
    duration = h["duration"]
    if not _is_num(duration) or not 0.0 <= duration <= MAX_DURATION_S:
        raise _fail(f"header: 'duration' must be a number in 0..{MAX_DURATION_S:g}, got {duration!r}")
    if abs(n_samples - duration * sample_rate) > 1.0:
        raise _fail(
            f"header: 'n_samples' {n_samples} disagrees with duration {duration} s "
            f"at {sample_rate} Hz"
        )
    loudness = h.get("loudness_lufs")
    if loudness is not None and (
        not _is_num(loudness) or not MIN_LOUDNESS_LUFS <= loudness <= MAX_LOUDNESS_LUFS
    ):
        raise _fail(f"header: 'loudness_lufs' must be null or a number in "
                    f"{MIN_LOUDNESS_LUFS:g}..{MAX_LOUDNESS_LUFS:g}, got {loudness!r}")
    tempo = h.get("tempo_bpm", 120.0)
    if not _is_num(tempo) or not MIN_TEMPO_BPM <= tempo <= MAX_TEMPO_BPM:
        raise _fail(f"header: 'tempo_bpm' must be a number in "
                    f"{MIN_TEMPO_BPM:g}..{MAX_TEMPO_BPM:g}, got {tempo!r}")
    ts = h.get("time_signature", [4, 4])
    if (
        not isinstance(ts, list)
        or len(ts) != 2
        or not all(_is_int(v) for v in ts)
        or not 1 <= ts[0] <= _MAX_TIME_SIG_NUMERATOR
        or ts[1] not in _TIME_SIG_DENOMINATORS
    ):
        raise _fail(f"header: 'time_signature' must be [numerator, power-of-2 denominator], got {ts!r}")
    key = _str_field(h.get("key", "C major"), "header: 'key'", MAX_TAG_KEY_CHARS)
    raw_tracks = h["tracks"]
    if not isinstance(raw_tracks, list) or len(raw_tracks) > MAX_TRACKS:
        raise _fail(f"header: 'tracks' must be a list of at most {MAX_TRACKS} objects")
    tracks = []
    total_notes = 0
    for i, t in enumerate(raw_tracks):
        tracks.append(_track_header(i, t, MAX_NOTES - total_notes))
        total_notes += tracks[-1].n_notes
    encoder = _str_field(h.get("encoder", ""), "header: 'encoder'", MAX_NAME_CHARS)
    tags = _str_map(h.get("tags", {}), "header: 'tags'", MAX_TAG_VALUE_CHARS)
    neural_model = _str_field(h.get("neural_model", ""), "header: 'neural_model'",
                              MAX_NEURAL_MODEL_CHARS)
    synth = h.get("synth_lufs")
    if synth is not None and (
        not _is_num(synth) or not MIN_LOUDNESS_LUFS <= synth <= MAX_LOUDNESS_LUFS
    ):
        raise _fail(f"header: 'synth_lufs' must be a number in "
                    f"{MIN_LOUDNESS_LUFS:g}..{MAX_LOUDNESS_LUFS:g}, got {synth!r}")
    extra = {k: v for k, v in h.items() if k not in _RESERVED_KEYS}
    return _Header(
        duration=float(duration),
        n_samples=n_samples,
        sample_rate=sample_rate,
        channels=channels,
        loudness_lufs=None if loudness is None else float(loudness),
        tempo_bpm=float(tempo),
        time_signature=(ts[0], ts[1]),
        key=key,
        tracks=tuple(tracks),
        encoder=encoder,
        tags=tags,
        extra=extra,
        neural_model=neural_model,
        synth_lufs=None if synth is None else float(synth),
    )

