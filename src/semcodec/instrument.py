"""Instrument recognition: the General MIDI family and program of each note and track.

A small classifier (one hidden layer, numpy) over cheap, decode-free per-note features, trained
in this repository on notes it renders itself through the Debian General MIDI soundfonts
(recipe: ``python -m semcodec.instrument_train``, ``make train-instrument``).

Features of a note (:func:`note_features`), measured on the audio around it:

* :func:`semcodec.separate.note_features`: harmonics 2..8 relative to the fundamental, attack,
  decay slope, noisiness, pitch, log duration;
* harmonics 9..16 relative to the fundamental (in pairs), spectral centroid over f0 (octaves),
  spectral flatness, time to the peak level, sustain (level 0.3-0.6 s after the onset against
  the head), and a 20-band log-spaced spectral envelope of the note's head (50 Hz - 10 kHz,
  mean removed).

A track's family probabilities are the mean of its notes' family log probabilities (a note's
family probability: the sum of its 8 programs'; softmax again), its program the likeliest of
that family by the mean of the notes' program log probabilities.  Programs 112..127 (percussive, sound
effects) are not classes: a pitched track is never given one.

Weights live in ``weights/instrument-<first 12 hex of sha256>.safetensors`` (numpy tensors,
no pickle) with ``instrument-config.json`` recording the run; the loader checks the hash.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semcodec.errors import SynthError
from semcodec.events import Note, Score
from semcodec.synth import dsp
from semcodec.synth import weights as _weights

log = logging.getLogger(__name__)

WEIGHTS_DIR = _weights.WEIGHTS_DIR
WEIGHTS_KIND = "instrument"
CONFIG_NAME = f"{WEIGHTS_KIND}-config.json"

#: Classes: GM programs 0..N_PROGRAMS-1 (the pitched ones); families of 8 programs.
N_PROGRAMS = 112
N_FAMILIES = 16
PROGRAMS_PER_FAMILY = 8

#: Analysis rate (Hz), FFT size and hop of the feature STFT (as in semcodec.separate).
SR = 22050
N_FFT = 2048
HOP = 256
N_BANDS = 20
BAND_LO_HZ, BAND_HI_HZ = 50.0, 10000.0
#: Seconds of a note's head measured (from its onset), and the sustain window.
HEAD_S = 0.35
SUSTAIN_S = (0.3, 0.6)
#: A track uses at most this many notes (the loudest-headed are not preferred: evenly spaced).
MAX_NOTES_PER_TRACK = 400

EXTRA_NAMES = tuple(["h9_10_db", "h11_12_db", "h13_14_db", "h15_16_db", "centroid_oct",
                     "flatness", "peak_time", "sustain_db"] + [f"band{k}" for k in range(N_BANDS)])

FAMILY_NAMES = ("Piano", "Chromatic Percussion", "Organ", "Guitar", "Bass", "Strings",
                "Ensemble", "Brass", "Reed", "Pipe", "Synth Lead", "Synth Pad", "Synth Effects",
                "Ethnic", "Percussive", "Sound Effects")


def family_of(program: int) -> int:
    """GM family (0..15) of GM program ``program`` (0..127)."""
    return int(program) // PROGRAMS_PER_FAMILY


def program_name(program: int) -> str:
    """The General MIDI name of ``program`` (0..127), e.g. ``"Acoustic Grand Piano"``."""
    import pretty_midi  # noqa: PLC0415 - imported when used

    return str(pretty_midi.program_to_instrument_name(int(program)))


def feature_names() -> tuple[str, ...]:
    """Names of the columns of :func:`note_features`."""
    from semcodec.separate import FEATURE_NAMES  # noqa: PLC0415

    return tuple(FEATURE_NAMES) + EXTRA_NAMES


def _stft(audio: np.ndarray, sr: int) -> np.ndarray:
    """Power STFT (frames, bins) of mono ``audio`` resampled to :data:`SR`; frame t is centred
    on ``t * HOP / SR`` s."""
    x = dsp.resample(np.asarray(audio, np.float32), sr, SR)
    x = np.pad(x, (N_FFT // 2, N_FFT // 2))
    if x.shape[0] < N_FFT:
        x = np.pad(x, (0, N_FFT - x.shape[0]))
    n_frames = 1 + (x.shape[0] - N_FFT) // HOP
    win = np.hanning(N_FFT).astype(np.float32)
    out = np.empty((n_frames, N_FFT // 2 + 1), np.float32)
    for s in range(0, n_frames, 256):
        idx = np.arange(s, min(n_frames, s + 256))[:, None] * HOP + np.arange(N_FFT)[None, :]
        out[s:s + idx.shape[0]] = np.abs(dsp.rfft_rows(x[idx] * win)) ** 2
    return out


@functools.lru_cache(maxsize=1)
def _band_matrix() -> np.ndarray:
    """(N_BANDS, bins) triangular filters on log-spaced centres between BAND_LO_HZ and BAND_HI_HZ."""
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / SR)
    edges = np.geomspace(BAND_LO_HZ, BAND_HI_HZ, N_BANDS + 2)
    fb = np.zeros((N_BANDS, freqs.shape[0]))
    for k in range(N_BANDS):
        lo, c, hi = edges[k], edges[k + 1], edges[k + 2]
        fb[k] = np.clip(np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)), 0.0, None)
    return fb / np.maximum(fb.sum(axis=1, keepdims=True), 1e-9)


def _extra_features(spec: np.ndarray, notes: list[Note]) -> np.ndarray:
    """The :data:`EXTRA_NAMES` columns of ``notes`` from power STFT ``spec``."""
    n_frames, n_bins = spec.shape
    fps = SR / HOP
    bin_hz = SR / N_FFT
    freqs = np.arange(n_bins) * bin_hz
    fb = _band_matrix()
    eps = 1e-10
    out = np.zeros((len(notes), len(EXTRA_NAMES)))
    for i, n in enumerate(notes):
        f0 = 440.0 * 2.0 ** ((n.pitch - 69) / 12.0)
        dur = max(n.offset - n.onset, 0.02)
        a = min(n_frames - 1, max(0, int(round((n.onset + 0.01) * fps))))
        b = min(n_frames, max(a + 1, int(round((n.onset + min(dur, HEAD_S)) * fps))))
        head = spec[a:b]
        p = head.mean(axis=0) + eps
        # harmonics 1..16: peak power within +-3 % of k f0
        ks = np.arange(1, 17)
        centre = ks * f0 / bin_hz
        valid = centre < n_bins - 2
        lo = np.clip(np.floor(centre * 0.97).astype(int), 0, n_bins - 1)
        hi = np.clip(np.ceil(centre * 1.03).astype(int) + 1, 1, n_bins)
        harm = np.array([p[lo[k]:max(hi[k], lo[k] + 1)].max() for k in range(16)])
        hdb = 10.0 * np.log10(harm + eps)
        rel = np.where(valid, hdb - hdb[0], -60.0)
        out[i, 0:4] = np.clip(rel[8:16].reshape(4, 2).mean(axis=1), -60.0, 20.0)
        band = (freqs >= 0.5 * f0) & (freqs <= BAND_HI_HZ)
        pb = p[band]
        centroid = float((pb * freqs[band]).sum() / pb.sum()) if pb.size else f0
        out[i, 4] = math.log2(max(centroid, 1.0) / f0)
        out[i, 5] = float(np.mean(np.log(pb)) - np.log(np.mean(pb))) if pb.size else 0.0
        level = 10.0 * np.log10(spec[a:min(n_frames, a + int(0.3 * fps) + 1)].sum(axis=1) + eps)
        out[i, 6] = float(np.argmax(level)) / fps if level.size else 0.0
        s0 = min(n_frames, int(round((n.onset + SUSTAIN_S[0]) * fps)))
        s1 = min(n_frames, int(round((n.onset + min(dur, SUSTAIN_S[1])) * fps)))
        head_db = 10.0 * math.log10(float(head.sum(axis=1).mean()) + eps)
        if s1 > s0:
            out[i, 7] = 10.0 * math.log10(float(spec[s0:s1].sum(axis=1).mean()) + eps) - head_db
        else:  # a short note: how far its level has fallen by its end, per 0.3 s
            end = spec[max(a, b - 2):b].sum(axis=1).mean()
            out[i, 7] = (10.0 * math.log10(float(end) + eps) - head_db) * 0.3 / max(dur, 0.05)
        out[i, 7] = float(np.clip(out[i, 7], -60.0, 20.0))
        env = 10.0 * np.log10(fb @ p + eps)
        out[i, 8:] = np.clip(env - env.max(), -80.0, 0.0)
        out[i, 8:] -= out[i, 8:].mean()
    return out


#: The rows :func:`note_features` measured last, by note, and the audio array (a weak
#: reference) and rate they were measured in: ``[(ref, sr, {note: row})]``.  A note's row
#: depends on the note and the audio only, so the encoder's classifier of a mix's tracks
#: reads the rows its track split measured for every note instead of measuring them again.
_KEPT_ROWS: list = []
_KEPT_LOCK = threading.Lock()


def note_features(audio: np.ndarray, sr: int, notes: list[Note] | tuple[Note, ...]) -> np.ndarray:
    """Feature matrix ``(len(notes), len(feature_names()))`` of ``notes`` in mono ``audio``
    (float32 ``(n,)`` at ``sr`` Hz); times in seconds, pitches MIDI numbers.  Long inputs are
    measured block by block (:func:`semcodec.separate.blockwise`: bounded memory).  The rows
    of the latest call are kept for the same audio array and rate: notes measured then are
    not measured again (the same numbers)."""
    from semcodec.separate import blockwise  # noqa: PLC0415

    notes = list(notes)
    if not notes:
        return np.zeros((0, len(feature_names())))
    with _KEPT_LOCK:
        kept = next((rows for ref, r, rows in _KEPT_ROWS if ref() is audio and r == sr), None)
    if kept is not None and all(n in kept for n in notes):
        return np.stack([kept[n] for n in notes])
    feats = blockwise(_note_features, audio, sr, notes)
    try:
        ref = weakref.ref(audio)
    except TypeError:  # pragma: no cover - an array type without weak references
        return feats
    with _KEPT_LOCK:
        _KEPT_ROWS[:] = [(ref, sr, dict(zip(notes, feats.copy())))]
    return feats


def _note_features(audio: np.ndarray, sr: int, notes: list[Note]) -> np.ndarray:
    from semcodec.separate import note_features as base_features  # noqa: PLC0415

    base = base_features(audio, sr, notes)
    extra = _extra_features(_stft(audio, sr), notes)
    return np.concatenate([base, extra], axis=1)


# --- the model ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Model:
    """Standardisation + one hidden layer (ReLU) + softmax over :data:`N_PROGRAMS` programs."""

    mean: np.ndarray  # (F,)
    std: np.ndarray  # (F,)
    w1: np.ndarray  # (F, H)
    b1: np.ndarray  # (H,)
    w2: np.ndarray  # (H, N_PROGRAMS)
    b2: np.ndarray  # (N_PROGRAMS,)

    def tensors(self) -> dict[str, np.ndarray]:
        """The parameters by name, float32 (what the weights file holds)."""
        return {k: np.ascontiguousarray(getattr(self, k), np.float32)
                for k in ("mean", "std", "w1", "b1", "w2", "b2")}

    def log_proba(self, feats: np.ndarray) -> np.ndarray:
        """Per-note log probabilities ``(n, N_PROGRAMS)`` of feature rows ``feats`` ``(n, F)``."""
        x = (np.asarray(feats, np.float64) - self.mean) / self.std
        h = np.maximum(x @ self.w1 + self.b1, 0.0)
        z = h @ self.w2 + self.b2
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def find_weights(directory: Path | None = None) -> Path | None:
    """The classifier's weights file in ``directory`` (default: the package's weights), as
    :func:`semcodec.synth.weights.find_weights` finds them; None when absent."""
    return _weights.find_weights(directory, kind=WEIGHTS_KIND)


def verify_weights(path: Path) -> None:
    """Raise :class:`SynthError` unless the sha256 prefix in the file name matches its content."""
    _weights.verify_weights(Path(path), kind=WEIGHTS_KIND)


def load_model(path: Path | str | None = None) -> Model:
    """Load and verify the classifier's weights (default: the package's)."""
    p = Path(path) if path is not None else find_weights()
    if p is None:
        raise SynthError(f"instrument weights not found in {WEIGHTS_DIR} (run: make train-instrument)")
    verify_weights(p)
    from safetensors.numpy import load_file  # noqa: PLC0415

    t = load_file(str(p))
    try:
        model = Model(**{k: t[k].astype(np.float64) for k in ("mean", "std", "w1", "b1", "w2", "b2")})
    except KeyError as exc:
        raise SynthError(f"{p}: instrument weights lack tensor {exc}") from exc
    if model.w2.shape[1] != N_PROGRAMS or model.mean.shape[0] != len(feature_names()):
        raise SynthError(f"{p}: instrument weights do not match this version's features")
    return model


@functools.lru_cache(maxsize=1)
def _default_model() -> Model:
    return load_model()


def weights_available() -> bool:
    """True when the package's classifier weights are present."""
    return find_weights() is not None


# --- classification -------------------------------------------------------------------------

@dataclass(frozen=True)
class Guess:
    """A track's instrument: the most likely GM ``program`` and ``family``, their
    probabilities, and the full ``program_proba`` ``(N_PROGRAMS,)`` / ``family_proba`` ``(16,)``."""

    program: int
    family: int
    program_p: float
    family_p: float
    program_proba: np.ndarray
    family_proba: np.ndarray
    n_notes: int

    def top_families(self, mass: float) -> list[int]:
        """The fewest most likely families whose probabilities add up to at least ``mass``."""
        order = np.argsort(-self.family_proba)
        out, acc = [], 0.0
        for f in order:
            out.append(int(f))
            acc += float(self.family_proba[f])
            if acc >= mass:
                break
        return out


#: A note's family probability is floored at this before its log is taken (one note that
#: rules a family out does not veto it for the whole track).
FAMILY_FLOOR = 1e-4


def _pooled(logp: np.ndarray) -> np.ndarray:
    """Program probabilities of a track from its notes' log probabilities ``(n, N_PROGRAMS)``."""
    z = logp.mean(axis=0)
    z = np.exp(z - z.max())
    return z / z.sum()


def note_family_log_proba(logp: np.ndarray) -> np.ndarray:
    """Per-note family log probabilities ``(n, N_PROGRAMS // 8)`` (floored at
    :data:`FAMILY_FLOOR`) of per-note program log probabilities ``logp`` ``(n, N_PROGRAMS)``."""
    p = np.exp(logp).reshape(logp.shape[0], -1, PROGRAMS_PER_FAMILY).sum(axis=2)
    return np.log(np.clip(p, FAMILY_FLOOR, 1.0))


#: The Bass family (GM programs 32-39).
BASS_FAMILY = 4
#: A track whose notes' median pitch lies below this MIDI number (D3) has its Bass family
#: probability multiplied by BASS_PRIOR before normalising: the classifier, trained on
#: soundfont notes, gives the sampled basses of Slakh Piano first and Bass second or third
#: (0.19 / 0.13 against Piano 0.34 / 0.37); the register tells.  Measured with the classifier
#: on the transcribed notes of the eval stems: GM family right on 6/8 Slakh stems -> 8/8,
#: and 14/19 -> 16/19 with the bench's rendered solos and the trumpet (no clip made wrong;
#: the lowest median of a non-bass clip is the singing's, 51).
BASS_MEDIAN_PITCH = 50
BASS_PRIOR = 3.0


def guess_from_log_proba(logp: np.ndarray, pitches: np.ndarray | None = None) -> Guess:
    """:class:`Guess` of a track whose notes have log probabilities ``logp`` ``(n, N_PROGRAMS)``
    (and MIDI ``pitches`` ``(n,)``, when given: the register prior on the Bass family,
    :data:`BASS_MEDIAN_PITCH`).

    The family is pooled over the notes at the family level (mean of the notes' family log
    probabilities, softmax): notes that agree on the family but not on its program (a real
    guitar between the soundfonts' clean and jazz guitars) add up.  The program is the
    likeliest of that family by the notes' pooled program probabilities."""
    pp = _pooled(logp)
    z = note_family_log_proba(logp).mean(axis=0)
    if pitches is not None and len(pitches) and float(np.median(pitches)) < BASS_MEDIAN_PITCH:
        z[BASS_FAMILY] += math.log(BASS_PRIOR)
    z = np.exp(z - z.max())
    fam = np.zeros(N_FAMILIES)
    fam[: z.shape[0]] = z / z.sum()
    f = int(np.argmax(fam))
    in_f = np.arange(f * PROGRAMS_PER_FAMILY, (f + 1) * PROGRAMS_PER_FAMILY)
    prog = int(in_f[np.argmax(pp[in_f])])
    return Guess(program=prog, family=f, program_p=float(pp[prog]), family_p=float(fam[f]),
                 program_proba=pp, family_proba=fam, n_notes=int(logp.shape[0]))


def classify_features(feats: np.ndarray, *, model: Model | None = None) -> np.ndarray:
    """Per-note program log probabilities ``(n, N_PROGRAMS)`` of :func:`note_features` rows."""
    return (model or _default_model()).log_proba(feats)


def classify_notes(audio: np.ndarray, sr: int, notes: list[Note] | tuple[Note, ...], *,
                   model: Model | None = None) -> np.ndarray:
    """Per-note program log probabilities ``(len(notes), N_PROGRAMS)``."""
    m = model or _default_model()
    return m.log_proba(note_features(audio, sr, notes))


def _measured_notes(notes: list[Note] | tuple[Note, ...]) -> list[Note]:
    """The notes of a track that :func:`classify_track` measures: all, or
    :data:`MAX_NOTES_PER_TRACK` evenly spaced ones of a long track."""
    notes = list(notes)
    if len(notes) > MAX_NOTES_PER_TRACK:
        idx = np.linspace(0, len(notes) - 1, MAX_NOTES_PER_TRACK).round().astype(int)
        notes = [notes[i] for i in idx]
    return notes


def classify_track(audio: np.ndarray, sr: int, notes: list[Note] | tuple[Note, ...], *,
                   model: Model | None = None) -> Guess | None:
    """The instrument of one track's ``notes`` in mono ``audio`` (``sr`` Hz); None without notes.
    Long tracks use :data:`MAX_NOTES_PER_TRACK` evenly spaced notes."""
    return classify_tracks(audio, sr, {0: notes}, model=model).get(0)


def classify_tracks(audio: np.ndarray, sr: int, tracks: dict[int, list[Note] | tuple[Note, ...]],
                    *, model: Model | None = None) -> dict[int, Guess]:
    """:func:`classify_track` of each of ``tracks`` (``{key: notes}``, all in the same mono
    ``audio`` at ``sr`` Hz: the tracks of a mix), ``{key: Guess}`` for those with notes.  The
    notes' features are measured in one pass over the audio (its spectrograms made once, not
    once per track: the same numbers)."""
    m = model or _default_model()
    chosen = {k: _measured_notes(ns) for k, ns in tracks.items() if ns}
    if not chosen:
        return {}
    feats = note_features(audio, sr, [n for ns in chosen.values() for n in ns])
    out, pos = {}, 0
    for k, ns in chosen.items():
        out[k] = guess_from_log_proba(m.log_proba(feats[pos:pos + len(ns)]),
                                      np.array([n.pitch for n in ns]))
        pos += len(ns)
    return out


def classify_score(audio: np.ndarray, sr: int, score: Score, *,
                   model: Model | None = None) -> dict[int, Guess]:
    """``{track index: Guess}`` for every pitched track of ``score`` with notes."""
    out: dict[int, Guess] = {}
    for i, t in enumerate(score.tracks):
        if t.is_drum or not t.notes:
            continue
        g = classify_track(audio, sr, t.notes, model=model)
        if g is not None:
            out[i] = g
    return out


#: A fitted program is replaced by the classifier's (api._fit) when the classifier's top
#: family is at least this many times as likely as the fitted program's family.
OVERRIDE_RATIO = 2.0


#: In a bass's register (the track's median pitch below this MIDI number, G3: the transcribed
#: eval bass stems have medians 45 / 48, the bass tracks split from the eval mixes 38-53, every
#: other eval stem 62 or more) the Bass family wins between the fit and the classifier when
#: either names it: a
#: bass fitted as a bass keeps its program whatever the classifier makes of it (in a mix, a
#: split-off bass line heard through the other parts' onsets: "Drawbar Organ"), and the
#: classifier's Bass, when it is its top family, replaces a fitted non-bass program however
#: close the fitted family's probability (a sampled bass fitted as "Electric Piano 1").
#: Measured (scratch script over the encodes, ``python -m bench.run --clips ...``): the
#: Track00049 mix's split bass line "Drawbar Organ" -> "Electric Bass (finger)"; the 8 eval
#: stems keep their (right) families; of the rendered ensembles only the band's tenor-range
#: track changes (Rock Organ -> Electric Bass; it has no organ).
BASS_REGISTER_PITCH = 55


def overrides(guess: Guess, fitted_program: int, median_pitch: float | None = None) -> bool:
    """True when the classifier's program should replace ``fitted_program`` (GM 0..127): its
    top family is at least OVERRIDE_RATIO times as likely as the fitted program's; in a bass's
    register (``median_pitch``, the track's median MIDI pitch, below
    :data:`BASS_REGISTER_PITCH`) the Bass family wins when either side names it."""
    fam = family_of(fitted_program)
    if fam == guess.family:
        return False
    if median_pitch is not None and median_pitch < BASS_REGISTER_PITCH:
        if fam == BASS_FAMILY:
            return False
        if guess.family == BASS_FAMILY:
            return True
    return guess.family_p >= OVERRIDE_RATIO * float(guess.family_proba[fam])
