"""The benchmark's evaluation set, cached under ``.bench-cache/dataset``.

Three sources:

* the development clips in ``$SEMCODEC_EVAL_DIR`` (default ``../shared/eval`` relative to the
  repository root): Slakh stems ("solo"), sung voice ("singing", vocadito), Slakh mixes
  ("ensemble") and a real trumpet ("real", no ground truth);
* excerpts of scores from music21's bundled corpus, rendered deterministically to mono
  44.1 kHz through pyfluidsynth with MuseScore General (the *benchmark* soundfont, never the
  decoder's default), with ground-truth notes taken from the score at the rendered tempo;
* General MIDI drum patterns ("drums") rendered the same way on the percussion channel, with
  ground-truth hits ``[onset, offset, gm_key]``; one of them plays over a music21 ensemble.

A clip is a plain dict: ``name, group, source, audio (path), notes (path or None),
duration_s, description``; drum clips add ``drums`` (path of their drum hits).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".bench-cache"
DATASET_DIR = CACHE / "dataset"
#: Bump to invalidate every cached rendered clip.
DATASET_VERSION = 1
#: Length of a rendered excerpt (s), before trimming to the end of the music.
EXCERPT_S = 25.0
#: Silence before the first note of a rendered excerpt (s).
LEAD_S = 0.3
#: Release kept after the last note when the piece ends before EXCERPT_S (s).
TAIL_S = 1.5
#: Sounding fraction of a note's written duration (a slight detache).
ARTICULATION = 0.92
#: Peak level of a rendered clip (linear).
PEAK = 0.7

logger = logging.getLogger(__name__)


def eval_dir() -> Path:
    """The development clip folder: ``$SEMCODEC_EVAL_DIR`` or ``../shared/eval``."""
    env = os.environ.get("SEMCODEC_EVAL_DIR")
    return Path(env).expanduser().resolve() if env else (REPO / ".." / "shared" / "eval").resolve()


#: Group of the development clips of sung voice (name contains ``_singing``): a table of their
#: own, so that the solo instruments' means are Slakh stems only and the singing row can be
#: read against Opus.
SINGING_GROUP = "singing"


def _eval_group(name: str) -> str:
    if name.startswith("real_"):
        return "real"
    if "singing" in name.split("_"):
        return SINGING_GROUP
    if name.endswith("_mix") or "mix" in name.split("_"):
        return "ensemble"
    return "solo"


def eval_clips() -> list[dict]:
    """The clips of the development folder (sorted by name); empty when it is missing."""
    import soundfile as sf

    d = eval_dir()
    if not d.is_dir():
        print(f"bench: evaluation folder {d} not found; using rendered clips only", file=sys.stderr)
        return []
    out = []
    for audio in sorted(list(d.glob("*.flac")) + list(d.glob("*.wav"))):
        name = audio.stem
        notes = audio.with_name(name + ".notes.json")
        out.append(dict(
            name=name, group=_eval_group(name), source="eval", audio=str(audio),
            notes=str(notes) if notes.exists() else None,
            duration_s=float(sf.info(str(audio)).duration),
            description=f"{d.name}/{audio.name}",
        ))
    return out


# --- rendered music21 excerpts ------------------------------------------------------------

@dataclass(frozen=True)
class Voice:
    """Parts of a score played by one General MIDI instrument."""
    parts: tuple  # part indices, or ("all",)
    program: int  # GM program, 0-based
    transpose: int = 0  # semitones


@dataclass(frozen=True)
class Piece:
    name: str
    corpus: str  # music21 corpus path
    bpm: float  # quarter notes per minute
    voices: tuple
    description: str
    opus_index: int = 0
    group: str = field(default="")  # derived when empty: solo for one voice, else ensemble


GM = {0: "Acoustic Grand Piano", 6: "Harpsichord", 24: "Nylon Guitar", 32: "Acoustic Bass",
      33: "Finger Bass", 40: "Violin", 41: "Viola", 42: "Cello", 43: "Contrabass",
      46: "Harp", 52: "Choir Aahs", 53: "Voice Oohs", 56: "Trumpet", 57: "Trombone",
      58: "Tuba", 60: "French Horn", 68: "Oboe", 70: "Bassoon", 71: "Clarinet", 73: "Flute"}

PIECES: tuple[Piece, ...] = (
    # solo: piano
    Piece("m21_piano_maple_leaf_rag", "joplin/maple_leaf_rag", 100, (Voice(("all",), 0),),
          "Joplin, Maple Leaf Rag: piano"),
    Piece("m21_piano_polonaise", "schumann_clara/polonaise_op1n1", 120, (Voice(("all",), 0),),
          "C. Schumann, Polonaise op. 1 no. 1: piano"),
    # solo: melody instruments
    Piece("m21_flute_hornpipe", "ryansMammoth/AcrobatsHornpipe", 140, (Voice((0,), 73),),
          "Acrobat's Hornpipe (Ryan's Mammoth): flute"),
    Piece("m21_violin_haydn", "haydn/opus74no1/movement1", 120, (Voice((0,), 40),),
          "Haydn, op. 74 no. 1/i, violin I: violin"),
    Piece("m21_trumpet_foster", "leadSheet/fosterBrownHair", 100, (Voice((0,), 56),),
          "Foster, Jeanie with the Light Brown Hair (lead sheet melody): trumpet"),
    Piece("m21_voice_lascia", "handel/rinaldo/Lascia_chio_pianga", 70, (Voice((0,), 52),),
          "Handel, Lascia ch'io pianga, voice part: Choir Aahs"),
    # solo: plucked
    Piece("m21_guitar_bwv253", "bach/bwv253", 80, (Voice(("all",), 24),),
          "Bach chorale BWV 253, all voices: nylon guitar"),
    Piece("m21_harp_bwv846", "bach/bwv846", 66, (Voice(("all",), 46),),
          "Bach, Prelude in C BWV 846: harp"),
    # solo: bass lines (chorale bass voice an octave down)
    Piece("m21_bass_finger_bwv10.7", "bach/bwv10.7", 100, (Voice((3,), 33, -12),),
          "Bach chorale BWV 10.7, bass voice -8va: finger bass"),
    Piece("m21_bass_acoustic_bwv101.7", "bach/bwv101.7", 90, (Voice((3,), 32, -12),),
          "Bach chorale BWV 101.7, bass voice -8va: acoustic bass"),
    # ensembles
    Piece("m21_ens_winds_bwv66.6", "bach/bwv66.6", 90,
          (Voice((0,), 73), Voice((1,), 68), Voice((2,), 71), Voice((3,), 70)),
          "Bach chorale BWV 66.6: flute, oboe, clarinet, bassoon"),
    Piece("m21_ens_strings_bwv84.5", "bach/bwv84.5", 90,
          (Voice((0,), 40), Voice((1,), 41), Voice((2,), 42), Voice((3,), 43)),
          "Bach chorale BWV 84.5: violin, viola, cello, contrabass"),
    Piece("m21_ens_brass_bwv86.6", "bach/bwv86.6", 90,
          (Voice((0,), 56), Voice((1,), 60), Voice((2,), 57), Voice((3,), 58, -12)),
          "Bach chorale BWV 86.6: trumpet, horn, trombone, tuba (-8va)"),
    Piece("m21_ens_trio_corelli", "corelli/opus3no1/1grave", 60,
          (Voice((0,), 40), Voice((1,), 73), Voice((2,), 6)),
          "Corelli, op. 3 no. 1, Grave: violin, flute, harpsichord"),
    Piece("m21_ens_mixed_bwv8.6", "bach/bwv8.6", 90,
          (Voice((0,), 53), Voice((1, 2), 0), Voice((3,), 32, -12)),
          "Bach chorale BWV 8.6: Voice Oohs, piano (alto+tenor), acoustic bass (-8va)"),
)


def piece_group(p: Piece) -> str:
    return p.group or ("solo" if len(p.voices) == 1 else "ensemble")


def _piece_key(p: Piece) -> str:
    from bench.render import MUSESCORE_SF

    sf = MUSESCORE_SF.resolve()
    blob = json.dumps([DATASET_VERSION, asdict(p), EXCERPT_S, LEAD_S, TAIL_S, ARTICULATION, PEAK,
                       str(sf), sf.stat().st_size if sf.exists() else 0], sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def _velocity(base: float, beat_strength: float, t: float, ch: int, i: int, pitch: int) -> int:
    """Deterministic velocity: dynamics + metric accent + phrase contour + small jitter."""
    v = (base + 14.0 * (beat_strength - 0.5) + 10.0 * math.sin(2 * math.pi * t / 6.5 + 1.3 * ch)
         + (((i * 37 + pitch * 11) % 9) - 4))
    return int(min(124, max(20, round(v))))


def score_notes(p: Piece) -> tuple[list, dict]:
    """(render notes, channel -> program) of the excerpt of ``p`` (times in s)."""
    from music21 import corpus, dynamics, harmony, note as m21note, chord as m21chord

    from bench.render import RNote

    score = corpus.parse(p.corpus)
    if hasattr(score, "scores"):
        score = score.scores[p.opus_index]
    parts = list(score.parts)
    spq = 60.0 / p.bpm  # seconds per quarter

    # dynamics of the whole score (pooled over parts), as (offset_q, velocity base)
    dyn = []
    for part in parts:
        for d in part.flatten().getElementsByClass(dynamics.Dynamic):
            vs = d.volumeScalar
            if vs is not None:
                dyn.append((float(d.offset), 30.0 + 90.0 * float(vs)))
    dyn.sort()

    def base_at(q: float) -> float:
        b = 80.0
        for off, v in dyn:
            if off <= q + 1e-6:
                b = v
            else:
                break
        return b

    raw = []  # (onset_q, dur_q, pitch, channel, beat_strength, staccato)
    programs = {}
    for ci, voice in enumerate(p.voices):
        ch = ci if ci < 9 else ci + 1
        programs[ch] = voice.program
        sel = parts if voice.parts == ("all",) else [parts[i] for i in voice.parts]
        for part in sel:
            flat = part.stripTies(inPlace=False).flatten()
            for el in flat.notes:
                if isinstance(el, harmony.ChordSymbol) or isinstance(el, harmony.NoChord):
                    continue
                ql = float(el.duration.quarterLength)
                if ql <= 0:
                    continue  # grace notes
                stacc = any(a.name in ("staccato", "staccatissimo") for a in el.articulations)
                try:
                    bs = float(el.beatStrength)
                except Exception:
                    bs = 0.5
                pitches = el.pitches if isinstance(el, (m21chord.Chord, m21note.Note)) else ()
                for pt in pitches:
                    raw.append((float(el.offset), ql, int(pt.midi) + voice.transpose, ch, bs, stacc))
    if not raw:
        raise RuntimeError(f"{p.corpus}: no notes")
    q0 = min(r[0] for r in raw)
    notes = []
    for i, (oq, ql, pitch, ch, bs, stacc) in enumerate(sorted(raw)):
        on = LEAD_S + (oq - q0) * spq
        if on >= EXCERPT_S - 0.3:
            continue
        dur = ql * spq * (0.5 if stacc else ARTICULATION)
        off = min(on + max(dur, 0.03), EXCERPT_S)
        vel = _velocity(base_at(oq), bs, on, ch, i, pitch)
        if 0 <= pitch <= 127:
            notes.append([on, off, pitch, vel, ch])

    # one sounding note per (channel, pitch): drop unisons, cut overlaps
    notes.sort(key=lambda n: (n[4], n[2], n[0], -n[1]))
    clean = []
    for n in notes:
        if clean and clean[-1][4] == n[4] and clean[-1][2] == n[2]:
            prev = clean[-1]
            if n[0] - prev[0] < 0.01:
                continue  # unison doubling: keep the longer (sorted first)
            if prev[1] > n[0] - 0.005:
                prev[1] = max(prev[0] + 0.01, n[0] - 0.005)
        clean.append(n)
    clean.sort(key=lambda n: (n[0], n[2], n[4]))
    rnotes = [RNote(round(a, 6), round(b, 6), int(c), int(d), int(e)) for a, b, c, d, e in clean]
    return rnotes, programs


def _cached_clip(key: str, meta_path: Path, *paths: Path) -> dict | None:
    """The cached clip dict when ``meta_path`` and ``paths`` exist and the key matches."""
    if meta_path.exists() and all(q.exists() for q in paths):
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key:
            return meta["clip"]
    return None


def _write_rendering(y: np.ndarray, sr: int, audio: Path) -> np.ndarray:
    """Peak-normalise ``y`` to PEAK, fade its last 5 ms (the cut) and write it as 16-bit FLAC."""
    import soundfile as sf

    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak > 0:
        y = y * (PEAK / peak)
    nf = int(0.005 * sr)
    y[-nf:] *= np.linspace(1.0, 0.0, nf, dtype=np.float32)
    DATASET_DIR.mkdir(parents=True, exist_ok=True)
    sf.write(str(audio), y, sr, subtype="PCM_16")
    return y


def render_piece(p: Piece, renderer) -> dict:
    """Render ``p`` into the cache (if not there yet) and return its clip dict."""
    key = _piece_key(p)
    audio = DATASET_DIR / f"{p.name}.flac"
    notes_path = DATASET_DIR / f"{p.name}.notes.json"
    meta_path = DATASET_DIR / f"{p.name}.meta.json"
    cached = _cached_clip(key, meta_path, audio, notes_path)
    if cached is not None:
        return cached
    if renderer is None:
        raise LookupError  # caller builds a renderer and retries
    rnotes, programs = score_notes(p)
    end = max(n.offset for n in rnotes)
    duration = min(EXCERPT_S, end + TAIL_S)
    y = _write_rendering(renderer.render(rnotes, programs, duration), renderer.sr, audio)
    notes_path.write_text(json.dumps([[n.onset, n.offset, n.pitch] for n in rnotes]))
    clip = dict(name=p.name, group=piece_group(p), source="music21", audio=str(audio),
                notes=str(notes_path), duration_s=len(y) / renderer.sr,
                description=p.description + f" (music21 {p.corpus}, {p.bpm:g} bpm)")
    meta_path.write_text(json.dumps(dict(
        key=key, clip=clip, programs={str(k): v for k, v in programs.items()},
        velocities=[n.velocity for n in rnotes], channels=[n.channel for n in rnotes]), indent=1))
    return clip


def _cached_renders(items: list, render, what: str, progress: bool) -> list[dict]:
    """``render(item, renderer)`` for every item: from the cache (``renderer`` None raises
    LookupError on a miss), rendering the missing ones with the benchmark soundfont."""
    from tqdm import tqdm

    from bench.render import MUSESCORE_SF, Renderer

    out: list[dict | None] = [None] * len(items)
    todo = []
    for i, item in enumerate(items):
        try:
            out[i] = render(item, None)
        except LookupError:
            todo.append(i)
    if todo:
        if not MUSESCORE_SF.exists():
            raise SystemExit(f"bench: soundfont {MUSESCORE_SF} missing (scripts/install-sysdeps.sh --bench)")
        renderer = Renderer(MUSESCORE_SF)
        try:
            for i in tqdm(todo, desc=f"rendering {what}", disable=not progress, file=sys.stderr):
                out[i] = render(items[i], renderer)
        finally:
            renderer.close()
    return [c for c in out if c is not None]


def rendered_clips(progress: bool = True) -> list[dict]:
    """Every music21 excerpt, rendering the ones missing from the cache."""
    return _cached_renders(PIECES, render_piece, "music21 clips", progress)


# --- rendered General MIDI drum patterns ----------------------------------------------------

#: Bump to invalidate the cached drum clips (the music21 excerpts keep DATASET_VERSION).
DRUM_VERSION = 1
#: MIDI channel of the GM percussion (channel 10).
DRUM_CHANNEL = 9
#: Velocity of each step symbol of a drum bar ("." is a rest): accent, normal, soft, ghost.
STEP_VELOCITY = {"X": 112, "x": 88, "o": 66, "g": 42}
#: Written length of a drum note (s); the GM kit plays its sample whatever the note-off.
DRUM_NOTE_S = 0.1

#: Bars of 16 sixteenth-note steps, one string per GM drum key.
DRUM_BARS: dict[str, dict[int, str]] = {
    "rock": {42: "x.x.x.x.x.x.x.x.", 38: "....X.......X...", 36: "X.......X.x....."},
    "rock_b": {42: "x.x.x.x.x.x.x.x.", 38: "....X.......X..g", 36: "X..x....X.x..x.."},
    "rock_crash": {49: "X...............", 42: "..x.x.x.x.x.x.x.", 38: "....X.......X...",
                   36: "X.......X.x....."},
    "rock_fill": {42: "x.x.x.x.........", 38: "....X...X.xoX.xX", 36: "X.......X......."},
    "disco": {42: "x...x...x...x...", 46: "..x...x...x...x.", 38: "....X.......X...",
              36: "X...X...X...X..."},
    "disco_crash": {49: "X...............", 42: "....x...x...x...", 46: "..x...x...x...x.",
                    38: "....X.......X...", 36: "X...X...X...X..."},
    "ride": {51: "x.x.x.x.x.x.x.x.", 38: "....X.......X...", 36: "X.......X.X....."},
    "ride_crash": {49: "X...............", 51: "..x.x.x.x.x.x.x.", 38: "....X.......X...",
                   36: "X.......X.X....."},
    "toms_groove": {42: "x.x.x.x.x.x.x.x.", 38: "....X.......X...", 36: "X......xX......."},
    "toms_groove_crash": {49: "X...............", 42: "..x.x.x.x.x.x.x.", 38: "....X.......X...",
                          36: "X......xX......."},
    "tom_fill_down": {42: "x.x.x.x.........", 38: "....X...........", 36: "X.......X.......",
                      50: "........XxXx....", 45: "............XxX.", 43: "...............X"},
    "tom_fill_quarters": {38: "X...............", 50: "....X...........", 47: "........X.......",
                          45: "............X...", 43: "..............X.", 36: "X...........X..."},
    "tom_fill_mix": {38: "X.x.....X.......", 48: "..x.X...........", 45: ".....x....X.x...",
                     43: "...........x..X.", 36: "X.......X.....X."},
    "funk16": {42: "XoxoXoxoXoxoXoxo", 38: "....X..g.g..X..g", 36: "X..x..X...x..x.."},
    "funk16_open": {42: "XoxoXoxoXoxoXo..", 46: "..............x.", 38: "....X..g.g..X...",
                    36: "X..x..X...x..x.."},
    "funk16_crash": {49: "X...............", 42: "..xoXoxoXoxoXoxo", 38: "....X..g.g..X..g",
                     36: "X..x..X...x..x.."},
}


@dataclass(frozen=True)
class DrumClip:
    """A drum pattern (bar names of DRUM_BARS in order) at ``bpm``, optionally over a piece."""
    name: str
    bpm: float
    bars: tuple
    description: str
    piece: str = ""  # name of a PIECES entry played with the drums (a "band" clip)
    drum_gain: float = 1.0  # velocity scale of the drums


DRUM_CLIPS: tuple[DrumClip, ...] = (
    DrumClip("drums_rock_100", 100,
             ("rock_crash", "rock", "rock", "rock_fill", "rock_crash", "rock_b", "rock", "rock_fill"),
             "GM kit, rock beat: 8th closed hats, kick, snare, crash each 4 bars, snare fills"),
    DrumClip("drums_openhat_ride_120", 120,
             ("disco_crash", "disco", "disco", "disco", "ride_crash", "ride", "ride", "ride"),
             "GM kit, four-on-the-floor with open hats on the off-beats, then a ride-cymbal groove; "
             "crashes"),
    DrumClip("drums_tom_fills_90", 90,
             ("toms_groove_crash", "tom_fill_down", "toms_groove_crash", "tom_fill_quarters",
              "toms_groove_crash", "tom_fill_mix"),
             "GM kit, groove bars alternating with tom fills (high, mid, low and floor toms)"),
    DrumClip("drums_funk16_132", 132,
             ("funk16_crash", "funk16", "funk16", "funk16_open", "funk16_crash", "funk16", "funk16",
              "funk16_open", "funk16", "funk16_open"),
             "GM kit, 16th-note hi-hat funk groove with accents, syncopated kick, ghost snares, "
             "open hats"),
    DrumClip("band_chorale_rock_90", 90,
             ("rock_crash", "rock", "rock", "rock_fill", "rock_crash", "rock_b", "rock", "rock_fill",
              "rock_crash"),
             "band: Bach chorale BWV 8.6 (Voice Oohs, piano, acoustic bass) with a rock beat",
             piece="m21_ens_mixed_bwv8.6", drum_gain=0.85),
)


def _jitter(*ints: int) -> int:
    """Deterministic pseudo-random integer in -4..4 from a few integers."""
    h = 0
    for v in ints:
        h = (h * 1000003 + int(v) * 7919 + 12345) % 2147483647
    return h % 9 - 4


def drum_notes(d: DrumClip) -> list:
    """The drum hits of ``d`` as RNotes on the percussion channel (times in s, from LEAD_S).

    Steps are sixteenth notes; each hit gets a deterministic timing offset of at most ±4 ms
    and a velocity jitter of at most ±4 (a slightly human performance).
    """
    from bench.render import RNote

    step_s = 60.0 / d.bpm / 4.0
    out = []
    for bi, bar in enumerate(d.bars):
        for key, steps in sorted(DRUM_BARS[bar].items()):
            if len(steps) != 16:
                raise ValueError(f"drum bar {bar!r}, key {key}: {len(steps)} steps (need 16)")
            for si, ch in enumerate(steps):
                if ch == ".":
                    continue
                on = LEAD_S + (bi * 16 + si) * step_s + 0.001 * _jitter(bi, si, key)
                vel = STEP_VELOCITY[ch] * d.drum_gain + _jitter(key, si, bi)
                out.append(RNote(round(on, 6), round(on + DRUM_NOTE_S, 6), int(key),
                                 int(min(127, max(1, round(vel)))), DRUM_CHANNEL))
    out.sort(key=lambda n: (n.onset, n.pitch))
    return out


def _drum_key(d: DrumClip) -> str:
    from bench.render import MUSESCORE_SF

    sf = MUSESCORE_SF.resolve()
    piece = next((asdict(p) for p in PIECES if p.name == d.piece), None) if d.piece else None
    blob = json.dumps([DRUM_VERSION, DATASET_VERSION, asdict(d), DRUM_BARS, STEP_VELOCITY,
                       DRUM_NOTE_S, piece, EXCERPT_S, LEAD_S, TAIL_S, PEAK, str(sf),
                       sf.stat().st_size if sf.exists() else 0], sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def render_drum_clip(d: DrumClip, renderer) -> dict:
    """Render drum clip ``d`` into the cache (if not there yet) and return its clip dict.

    Writes ``<name>.drums.json`` (``[onset_s, offset_s, gm_key]`` per hit) and, for a band
    clip, ``<name>.notes.json`` with the pitched notes (drums excluded, as in the Slakh clips).
    """
    key = _drum_key(d)
    audio = DATASET_DIR / f"{d.name}.flac"
    drums_path = DATASET_DIR / f"{d.name}.drums.json"
    notes_path = DATASET_DIR / f"{d.name}.notes.json"
    meta_path = DATASET_DIR / f"{d.name}.meta.json"
    cached = _cached_clip(key, meta_path, audio, drums_path)
    if cached is not None:
        return cached
    if renderer is None:
        raise LookupError
    hits = drum_notes(d)
    pitched, programs = [], {}
    if d.piece:
        piece = next(p for p in PIECES if p.name == d.piece)
        pitched, programs = score_notes(piece)
    end = max(n.offset for n in hits + pitched)
    duration = min(EXCERPT_S, end + TAIL_S)
    hits = [h for h in hits if h.onset < duration - 0.3]
    pitched = [n for n in pitched if n.onset < duration - 0.3]
    y = _write_rendering(renderer.render(pitched + hits, programs, duration), renderer.sr, audio)
    drums_path.write_text(json.dumps([[n.onset, n.offset, n.pitch] for n in hits]))
    if pitched:
        notes_path.write_text(json.dumps([[n.onset, n.offset, n.pitch] for n in pitched]))
    clip = dict(name=d.name, group="drums", source="drums", audio=str(audio),
                notes=str(notes_path) if pitched else None, drums=str(drums_path),
                duration_s=len(y) / renderer.sr,
                description=d.description + f" ({d.bpm:g} bpm, {len(hits)} hits)")
    meta_path.write_text(json.dumps(dict(
        key=key, clip=clip, programs={str(k): v for k, v in programs.items()},
        drum_velocities=[n.velocity for n in hits]), indent=1))
    return clip


def drum_clips(progress: bool = True) -> list[dict]:
    """Every drum clip, rendering the ones missing from the cache (benchmark soundfont)."""
    return _cached_renders(DRUM_CLIPS, render_drum_clip, "drum clips", progress)


# --- stereo mixes of the eval stems --------------------------------------------------------

#: Group of the stereo clips: the Slakh stems of one song in the eval folder, placed at pans
#: spread evenly over -STEREO_PAN..STEREO_PAN (in file order) with gains (1 - pan, 1 + pan),
#: summed, peak-normalised to PEAK and written as 16-bit stereo FLAC.  The stems were cut at
#: different points of the song, so the music is not coherent, but every note's truth is known.
STEREO_GROUP = "stereo"
STEREO_PAN = 0.6


def stereo_clips() -> list[dict]:
    """One stereo clip per Slakh song with stems in the eval folder (built once, cached)."""
    import soundfile as sf

    d = eval_dir()
    if not d.is_dir():
        return []
    out = []
    for song in sorted({p.name.rsplit("_", 1)[0] for p in d.glob("slakh_*_S*.flac")}):
        paths = sorted(d.glob(f"{song}_S*.flac"))
        truths = [p.with_suffix(".notes.json") for p in paths]
        if len(paths) < 2 or not all(t.exists() for t in truths):
            continue
        name = f"stereo_{song}"
        audio = DATASET_DIR / f"{name}.flac"
        notes_path = DATASET_DIR / f"{name}.notes.json"
        meta_path = DATASET_DIR / f"{name}.meta.json"
        pans = [round(float(v), 3) for v in np.linspace(-STEREO_PAN, STEREO_PAN, len(paths))]
        key = hashlib.sha1(json.dumps([[p.name, p.stat().st_size] for p in paths] + [pans, PEAK])
                           .encode()).hexdigest()[:12]
        cached = _cached_clip(key, meta_path, audio, notes_path)
        if cached is not None:
            out.append(cached)
            continue
        xs = [sf.read(str(p), dtype="float32", always_2d=True)[0].mean(axis=1) for p in paths]
        sr = sf.info(str(paths[0])).samplerate
        n = min(x.shape[0] for x in xs)
        y = np.zeros((n, 2), np.float32)
        for x, pan in zip(xs, pans):
            y[:, 0] += x[:n] * (1.0 - pan)
            y[:, 1] += x[:n] * (1.0 + pan)
        peak = float(np.abs(y).max())
        if peak > 0:
            y *= PEAK / peak
        DATASET_DIR.mkdir(parents=True, exist_ok=True)
        sf.write(str(audio), y, sr, subtype="PCM_16")
        notes = sorted(tuple(v) for t in truths for v in json.loads(t.read_text()) if v[0] < n / sr)
        notes_path.write_text(json.dumps([list(v) for v in notes]))
        clip = dict(name=name, group=STEREO_GROUP, source="stereo", audio=str(audio),
                    notes=str(notes_path), duration_s=n / sr,
                    description=f"{song}: its {len(paths)} eval stems "
                                f"({', '.join(p.stem.split('_')[-1] for p in paths)}) at pans {pans}")
        meta_path.write_text(json.dumps(dict(key=key, clip=clip), indent=1))
        out.append(clip)
    return out


def build(progress: bool = True) -> list[dict]:
    """The whole evaluation set: development clips, rendered excerpts, drum clips, stereo clips."""
    return eval_clips() + rendered_clips(progress) + drum_clips(progress) + stereo_clips()


def load_notes(clip: dict) -> list | None:
    """Ground-truth ``[onset_s, offset_s, midi_pitch]`` list of ``clip`` (None without one)."""
    if not clip.get("notes"):
        return None
    return [(float(a), float(b), int(c)) for a, b, c in json.loads(Path(clip["notes"]).read_text())]


def load_drums(clip: dict) -> list | None:
    """Ground-truth drum hits ``[onset_s, offset_s, gm_key]`` of ``clip`` (None without any)."""
    if not clip.get("drums"):
        return None
    return [(float(a), float(b), int(c)) for a, b, c in json.loads(Path(clip["drums"]).read_text())]


if __name__ == "__main__":
    for c in build():
        n = load_notes(c)
        d = load_drums(c)
        print(f"{c['name']:32s} {c['group']:9s} {c['duration_s']:6.2f}s {len(n) if n else '-':>5} notes"
              + (f" {len(d):>5} drum hits" if d else ""))
