"""Small frozen dataclasses for what a score is made of.

Times are seconds from the start of the clip, pitches are MIDI note numbers, velocities are
MIDI velocities 1..127 and pitch bends are in semitones.  This module imports only the
standard library.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class BendPoint:
    """A pitch-bend breakpoint: ``time`` (s, relative to the note onset), ``semitones``."""

    time: float
    semitones: float


@dataclass(frozen=True)
class Note:
    """One note: ``onset``/``offset`` in seconds, MIDI ``pitch``, MIDI ``velocity`` (1..127).

    ``bends`` is a piecewise-constant pitch-bend contour: each point holds from its time until
    the next point (or the note's end).  An empty tuple means no bend.
    """

    onset: float
    offset: float
    pitch: int
    velocity: int
    bends: tuple[BendPoint, ...] = ()

    @property
    def duration(self) -> float:
        """Length of the note in seconds."""
        return self.offset - self.onset


@dataclass(frozen=True)
class TrackRender:
    """How the decoder plays a pitched track beyond its engine (format 1.3, measured by the
    encoder, see :mod:`semcodec.sampleuse`).

    ``use``: ``""`` (the engine), ``"sampler"`` (the notes its stored excerpt covers are played
    from the excerpt, the others by the engine) or ``"voice"`` (sung from the excerpt's
    spectral envelope, :mod:`semcodec.synth.voice`).  ``gain_db``: gain (dB) of that rendering.
    ``eq_db``: correction gains (dB) on log-spaced bands (empty: none).  ``room``:
    ``(rt60_s, wet)`` of an added diffuse room (empty: none).  ``voice``: the singer's
    spectral envelope then aperiodicity (dB) on a log-frequency grid, measured by the encoder
    on the original (:meth:`semcodec.synth.voice.VoiceModel.to_params`); with it, ``"voice"``
    needs no excerpt.
    """

    use: str = ""
    gain_db: float = 0.0
    eq_db: tuple[float, ...] = ()
    room: tuple[float, ...] = ()
    voice: tuple[float, ...] = ()


@dataclass(frozen=True)
class Track:
    """One instrument: its notes (sorted by onset), General MIDI program and drum flag.

    ``pan`` is its stereo position, -1 (left) .. 0 (centre) .. 1 (right): a decoded stereo
    output plays it with gains ``(1 - pan, 1 + pan)``, so that the mono downmix is unchanged.
    ``engine`` is the engine the encoder found closer to this track than the neural one
    (``"fluidsynth"``: its GM program through the soundfont), ``""`` for none; the automatic
    engine choice then plays the track with it, scaled by ``engine_gain_db`` (dB).
    """

    name: str
    program: int = 0
    is_drum: bool = False
    notes: tuple[Note, ...] = ()
    pan: float = 0.0
    engine: str = ""
    engine_gain_db: float = 0.0
    render: TrackRender | None = None

    def with_notes(self, notes: tuple[Note, ...] | list[Note]) -> "Track":
        """A copy with other notes, sorted by (onset, pitch)."""
        return replace(self, notes=tuple(sorted(notes, key=lambda n: (n.onset, n.pitch))))


@dataclass(frozen=True)
class Timbre:
    """Fitted timbre of one track for the neural engine.

    ``embedding`` is a vector of a few dozen floats; ``gain_db`` the output gain (dB);
    ``room`` the reverb parameters (engine-specific, floats).
    """

    track: int
    embedding: tuple[float, ...]
    gain_db: float = 0.0
    room: tuple[float, ...] = ()


@dataclass(frozen=True)
class Sample:
    """A short coded audio excerpt of one track.

    ``start`` is its position in the original clip (s), ``duration`` its length (s),
    ``codec`` the name of the audio coding of ``data`` (e.g. ``"opus"``), ``sample_rate`` Hz.
    ``key`` is the MIDI key a one-shot plays (a drum sample: the GM drum key of its hit);
    ``None`` for an excerpt of a pitched track.
    """

    track: int
    start: float
    duration: float
    sample_rate: int
    codec: str
    data: bytes = field(repr=False)
    key: int | None = None


@dataclass(frozen=True)
class TempoMap:
    """Where the beats fall: ``beats`` (s, increasing), ``downbeat`` (index in ``beats`` of the
    first bar's first beat, ``0 <= downbeat < beats_per_bar``) and the meter.

    A beat is the counted pulse: a quarter note in 2/4, 3/4 and 4/4, a dotted quarter in 6/8.
    """

    beats: tuple[float, ...]
    downbeat: int = 0
    time_signature: tuple[int, int] = (4, 4)

    @property
    def beats_per_bar(self) -> int:
        """Beats in a bar (2 in 6/8, 3 in 9/8, the numerator in simple meters)."""
        num, den = self.time_signature
        return num // 3 if den == 8 and num % 3 == 0 else num

    @property
    def quarters_per_beat(self) -> float:
        """Quarter notes in one beat (1.5 in 6/8, 1 in x/4)."""
        num, den = self.time_signature
        return (num / self.beats_per_bar) * 4.0 / den

    @property
    def tempo_bpm(self) -> float:
        """Beat tempo (beats per minute): the median over the beats of the mean gap across the
        next 8 beats (robust to a misplaced beat, finer than one gap); 120 with < 2 beats."""
        b = self.beats
        if len(b) < 2 or b[-1] <= b[0]:
            return 120.0
        k = min(8, len(b) - 1)
        spans = sorted((b[i + k] - b[i]) / k for i in range(len(b) - k))
        mid = len(spans) // 2
        gap = spans[mid] if len(spans) % 2 else 0.5 * (spans[mid - 1] + spans[mid])
        return 60.0 / gap if gap > 0 else 120.0

    @property
    def downbeats(self) -> tuple[float, ...]:
        """Times (s) of the bars' first beats."""
        return self.beats[self.downbeat::self.beats_per_bar]


@dataclass(frozen=True)
class Score:
    """What is played: tracks plus tempo (BPM), meter and key estimates.

    ``tempo_map`` is the beat grid found in the audio (``None`` when there is none): when set,
    ``tempo_bpm`` and ``time_signature`` agree with it.
    """

    tracks: tuple[Track, ...] = ()
    tempo_bpm: float = 120.0
    time_signature: tuple[int, int] = (4, 4)
    key: str = "C major"
    tempo_map: TempoMap | None = None

    @property
    def n_notes(self) -> int:
        """Total number of notes over all tracks."""
        return sum(len(t.notes) for t in self.tracks)

    @property
    def end_time(self) -> float:
        """Offset of the last note (s), 0 if there are none."""
        return max((n.offset for t in self.tracks for n in t.notes), default=0.0)
