"""Polyphonic transcription with Spotify's basic-pitch model, run on onnxruntime.

The ONNX model shipped inside the ``basic-pitch`` wheel is located on disk and run directly;
the ``basic_pitch`` package itself is never imported (its ``__init__`` probes for TensorFlow).
Post-processing (onset peak picking, note tracking, the "melodia trick", pitch-bend
extraction) is re-implemented here after the algorithm of ``basic_pitch.note_creation``.

Long inputs are processed in windows of ``window_s`` seconds plus ``TRANSCRIBE_CONTEXT_S``
seconds of context on each side, so memory does not grow with the duration beyond the input
array itself.  A window keeps the notes whose onset lies in its core; notes held across a
window edge are stitched back into one note.

Velocity.  The model normalises every 2-s input window to its own dynamic range, so its
activations say little about absolute loudness.  A note's velocity is therefore the
geometric mean of basic-pitch's amplitude (mean frame activation, ``127 * amp`` in
basic-pitch) and a level factor ``10 ** (dB / 40)``, where dB is the note's level (spectrum
at its first harmonics near the onset) relative to the loudest notes of the input.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from semcodec import constants
from semcodec.errors import InputError, SemcodecError, UsageError
from semcodec.events import BendPoint, Note
from semcodec.runtime import usable_cpus

logger = logging.getLogger(__name__)

__all__ = ["TranscribeOptions", "transcribe"]

_SR = constants.BP_SAMPLE_RATE
_HOP = constants.BP_HOP
_FPS = constants.BP_FRAMES_PER_S
_WIN = constants.BP_AUDIO_N_SAMPLES
#: Model output frames per 2-s input window (1 + AUDIO_N_SAMPLES // HOP).
_WIN_FRAMES = 1 + _WIN // _HOP  # 172
#: Frames dropped at the start of every model window (half the 30-frame overlap); the model
#: windows advance by a whole number of frames so that all outputs lie on one frame grid.
_EDGE = constants.BP_N_OVERLAP_FRAMES // 2  # 15
_KEEP = _WIN_FRAMES - constants.BP_N_OVERLAP_FRAMES - 1  # 141 frames kept per window
_MODEL_STEP_S = _KEEP * _HOP / _SR  # model windows advance by this many seconds (~1.637)
_N_PITCHES = constants.BP_MIDI_MAX - constants.BP_MIDI_MIN + 1  # 88
_BINS = constants.BP_CONTOUR_BINS_PER_SEMITONE
_N_CONTOUR = _N_PITCHES * _BINS
#: Model windows run per onnxruntime call.
_BATCH = 8
#: Frames a note's energy may stay below the frame threshold before the note ends (as basic-pitch).
_ENERGY_TOL = 11
#: Below this peak amplitude the input counts as silence.
_SILENCE_PEAK = 1e-5
#: Frame-time correction of the model output (s): frame f is centred on sample f * 256;
#: detected onsets of synthetic 10-ms attacks land within -3..0 ms of the truth, so none.
_TIME_OFFSET_S = 0.0
#: Same-pitch note pieces this close (frames) across a window edge are joined.
_JOIN_FRAMES = 2

# pitch-bend compaction
_BEND_SEARCH_SEMITONES = 2.0  # contour searched +-this around the nominal pitch
_BEND_MIN_ACTIVATION = 0.3  # contour peaks weaker than this are not trusted
_BEND_SMOOTH_FRAMES = 5  # median filter, then moving average, ~58 ms
_BEND_STEP = 1.0 / 8.0  # quantum of the stored bend (semitones)
_BEND_HYST = 0.25  # a new point only when the contour moves this far from the held value
_BEND_MIN_GAP_FRAMES = 4  # and at least this many frames after the previous point
_BEND_MIN = 0.25  # the whole contour is dropped when |bend| and its range stay below this

# velocity from level
_LEVEL_REF_PERCENTILE = 95.0
_LEVEL_DB_PER_DECADE = 40.0
_LEVEL_ONSET_FRAMES = 8


@dataclass(frozen=True)
class TranscribeOptions:
    """Knobs of :func:`transcribe`.

    ``onset_threshold``/``frame_threshold`` are activation thresholds (0..1) of the onset and
    note outputs; notes shorter than ``min_note_s`` seconds are dropped;
    ``min_pitch``..``max_pitch`` (MIDI) bound the pitches reported; ``melodia_trick`` also
    tracks notes without a detected onset; ``keep_bends`` extracts pitch-bend contours; long
    input is processed in windows of ``window_s`` seconds.

    Defaults were tuned on the development clips (scripts/tune_transcribe.py): basic-pitch's
    own defaults (onset 0.5, frame 0.3, 12 frames, melodia on) give a mean onset-F1 of 0.60
    there, these 0.70; most of the gain comes from dropping the melodia trick (notes without
    an onset) and the higher onset threshold.
    """

    onset_threshold: float = 0.6
    frame_threshold: float = 0.3
    min_note_s: float = 0.09
    min_pitch: int = constants.BP_MIDI_MIN
    max_pitch: int = constants.BP_MIDI_MAX
    melodia_trick: bool = False
    keep_bends: bool = True
    window_s: float = constants.TRANSCRIBE_WINDOW_S

    def __post_init__(self) -> None:
        if not (0.0 < self.onset_threshold < 1.0 and 0.0 < self.frame_threshold < 1.0):
            raise UsageError("transcription thresholds must lie strictly between 0 and 1")
        if not self.min_note_s >= 0.0:
            raise UsageError("min_note_s must be >= 0")
        if not (constants.BP_MIDI_MIN <= self.min_pitch <= self.max_pitch <= constants.BP_MIDI_MAX):
            raise UsageError(
                f"pitch range must lie within {constants.BP_MIDI_MIN}..{constants.BP_MIDI_MAX}"
            )
        if not self.window_s >= 1.0:
            raise UsageError("window_s must be at least 1 second")

    @property
    def min_note_frames(self) -> int:
        """``min_note_s`` in model frames: notes of fewer frames are dropped."""
        return max(1, math.ceil(self.min_note_s * _FPS - 1e-6))


# --- model -----------------------------------------------------------------------------------

_session_lock = threading.Lock()
_session = None


def model_path() -> Path:
    """Path of basic-pitch's ``nmp.onnx`` inside the installed wheel (without importing it)."""
    spec = importlib.util.find_spec("basic_pitch")
    if spec is None or not spec.submodule_search_locations:
        raise SemcodecError("basic-pitch is not installed (pip install --no-deps basic-pitch)")
    for location in spec.submodule_search_locations:
        path = Path(location) / "saved_models" / "icassp_2022" / "nmp.onnx"
        if path.is_file():
            return path
    raise SemcodecError("basic-pitch's ONNX model (saved_models/icassp_2022/nmp.onnx) is missing")


def _n_threads() -> int:
    """onnxruntime's intra-op threads (batch workers replace this with their share)."""
    return usable_cpus()


def _get_session():
    """The process-wide onnxruntime session (created on first use)."""
    global _session
    with _session_lock:
        if _session is None:
            try:
                import onnxruntime as ort  # noqa: PLC0415
            except ImportError as exc:  # pragma: no cover - dependency missing
                raise SemcodecError("onnxruntime is not installed") from exc
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = _n_threads()
            opts.inter_op_num_threads = 1
            # idle pool threads sleep instead of spinning: the encoder imports torch and fits
            # on the other core meanwhile (30-s stem: 0.80 -> 0.66 s of CPU, wall no slower)
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.log_severity_level = 3
            _session = ort.InferenceSession(
                str(model_path()), sess_options=opts, providers=["CPUExecutionProvider"]
            )
            logger.debug("loaded basic-pitch ONNX model with %d threads", opts.intra_op_num_threads)
        return _session


def _shrink_arena():
    """Run options that give onnxruntime's CPU memory arena back after the run: the arena
    otherwise keeps its peak (~130 MB) for the rest of the process.  Used on the last batch of
    a long input's transcription only: regrowing it costs ~0.03 s of CPU per call, and running
    without the arena ~15 % more CPU (30-s stem)."""
    import onnxruntime as ort  # noqa: PLC0415

    ro = ort.RunOptions()
    ro.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return ro


def model_activations(audio22: np.ndarray, progress: Callable[[float], None] | None = None,
                      shrink: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run basic-pitch on mono audio at 22050 Hz.

    Returns ``(note, onset, contour)`` activations of shapes (n_frames, 88), (n_frames, 88) and
    (n_frames, 264), float32, on a uniform grid: frame ``f`` is centred on sample ``f * 256``.
    ``progress(fraction)`` is called after each batch of model windows.  ``shrink``: give
    onnxruntime's memory arena back after the last batch (:func:`_shrink_arena`).
    """
    audio22 = np.asarray(audio22, dtype=np.float32)
    n_frames = max(1, -(-len(audio22) // _HOP))
    n_windows = -(-n_frames // _KEEP)
    step = _KEEP * _HOP
    # frame _EDGE of model window 0 must sit on sample 0
    padded = np.zeros((n_windows - 1) * step + _WIN, dtype=np.float32)
    start = _EDGE * _HOP
    n_copy = min(len(audio22), len(padded) - start)
    padded[start : start + n_copy] = audio22[:n_copy]
    session = _get_session()
    in_name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    # basic-pitch's naming: :1 note (frames), :2 onset, :0 contour
    order = [
        names.index("StatefulPartitionedCall:1"),
        names.index("StatefulPartitionedCall:2"),
        names.index("StatefulPartitionedCall:0"),
    ]
    note = np.empty((n_windows * _KEEP, _N_PITCHES), dtype=np.float32)
    onset = np.empty_like(note)
    contour = np.empty((n_windows * _KEEP, _N_CONTOUR), dtype=np.float32)
    for b0 in range(0, n_windows, _BATCH):
        b1 = min(n_windows, b0 + _BATCH)
        batch = np.stack([padded[k * step : k * step + _WIN] for k in range(b0, b1)])[..., None]
        outs = session.run(None, {in_name: batch},
                           _shrink_arena() if shrink and b1 == n_windows else None)
        for dst, idx in zip((note, onset, contour), order):
            out = outs[idx][:, _EDGE : _EDGE + _KEEP, :]
            dst[b0 * _KEEP : b1 * _KEEP] = out.reshape(-1, out.shape[-1])
        if progress:
            progress(b1 / n_windows)
    return note[:n_frames], onset[:n_frames], contour[:n_frames]


# --- note tracking ---------------------------------------------------------------------------


def _inferred_onsets(onset: np.ndarray, frames: np.ndarray, n_diff: int = 2) -> np.ndarray:
    """Onset activation raised where frame activation jumps (as basic-pitch's infer_onsets)."""
    diff = None
    for n in range(1, n_diff + 1):
        shifted = np.zeros_like(frames)
        shifted[n:] = frames[:-n]
        d = frames - shifted
        diff = d if diff is None else np.minimum(diff, d)
    assert diff is not None  # n_diff >= 1
    diff = np.maximum(diff, 0.0)
    diff[:n_diff] = 0.0
    peak = float(diff.max()) if diff.size else 0.0
    if peak > 0.0:
        diff *= float(onset.max()) / peak
    return np.maximum(onset, diff)


def _walk(energy: np.ndarray, t: int, f: int, stop: int, step: int, thresh: float,
          clear: bool) -> int:
    """Follow pitch ``f`` from frame ``t`` in direction ``step`` until the activation has
    stayed below ``thresh`` for _ENERGY_TOL frames; return the last frame above threshold
    (+1 when walking forwards).  With ``clear`` the visited cells and their pitch neighbours
    are zeroed on the way (melodia trick)."""
    n_p = energy.shape[1]
    i = t + step
    k = 0
    while (i < stop if step > 0 else i > stop) and k < _ENERGY_TOL:
        if energy[i, f] < thresh:
            k += 1
        else:
            k = 0
        if clear:
            energy[i, max(0, f - 1) : min(n_p, f + 2)] = 0.0
        i += step
    return i - k if step > 0 else i + k


def decode_notes(
    frames: np.ndarray,
    onset: np.ndarray,
    onset_threshold: float,
    frame_threshold: float,
    min_note_frames: int,
    melodia_trick: bool = True,
    min_pitch: int = constants.BP_MIDI_MIN,
    max_pitch: int = constants.BP_MIDI_MAX,
) -> list[tuple[int, int, int, float]]:
    """Note events ``(start_frame, end_frame, midi_pitch, amplitude)`` from activations.

    The algorithm of basic-pitch's ``output_to_notes_polyphonic`` (but for plateau peaks, see
    below): onset peaks above
    ``onset_threshold`` start notes (latest first) that last while the frame activation stays
    above ``frame_threshold``; with ``melodia_trick`` the strongest remaining frame activations
    are then followed both ways into notes as well.  Notes shorter than ``min_note_frames``
    frames are dropped (basic-pitch's ``min_note_len=11`` is ``min_note_frames=12``);
    ``amplitude`` is the mean frame activation over the note.
    """
    n_frames = frames.shape[0]
    if n_frames < 3:
        return []
    lo = min_pitch - constants.BP_MIDI_MIN
    hi = max_pitch - constants.BP_MIDI_MIN + 1
    frames = np.array(frames, dtype=np.float32)
    onset = np.array(onset, dtype=np.float32)
    frames[:, :lo] = 0.0
    frames[:, hi:] = 0.0
    onset[:, :lo] = 0.0
    onset[:, hi:] = 0.0
    onset = _inferred_onsets(onset, frames)

    # local maxima in time, above threshold.  basic-pitch requires strict maxima, which misses
    # an onset whenever the rescaled frame-difference onset ties with the model's onset peak
    # on the frame before it (a two-frame plateau, typical of an isolated loud attack); here
    # the last frame of such a plateau counts.
    peak = np.zeros(onset.shape, dtype=bool)
    peak[1:-1] = (onset[1:-1] >= onset[:-2]) & (onset[1:-1] > onset[2:])
    # the input starts with silence (frame -1 = 0): a note attacking at t = 0 peaks at frame 0
    peak[0] = onset[0] > onset[1]
    peak &= onset >= onset_threshold
    t_idx, f_idx = np.nonzero(peak)
    order = np.lexsort((f_idx, t_idx))[::-1]  # latest first

    energy = frames.copy()
    n_p = frames.shape[1]
    events: list[tuple[int, int, int, float]] = []
    for t, f in zip(t_idx[order], f_idx[order]):
        t = int(t)
        f = int(f)
        if t >= n_frames - 1:
            continue
        end = _walk(energy, t, f, n_frames - 1, 1, frame_threshold, clear=False)
        if end - t < min_note_frames:
            continue
        energy[t:end, max(0, f - 1) : min(n_p, f + 2)] = 0.0
        events.append((t, end, f + constants.BP_MIDI_MIN, float(frames[t:end, f].mean())))

    if melodia_trick:
        cand_t, cand_f = np.nonzero(energy > frame_threshold)
        values = energy[cand_t, cand_f]
        for j in np.argsort(-values, kind="stable"):
            t = int(cand_t[j])
            f = int(cand_f[j])
            if energy[t, f] <= frame_threshold:
                continue  # already consumed by an earlier note
            energy[t, f] = 0.0
            end = _walk(energy, t, f, n_frames - 1, 1, frame_threshold, clear=True) - 1
            start = _walk(energy, t, f, 0, -1, frame_threshold, clear=True) + 1
            if end - start < min_note_frames:
                continue
            amplitude = float(frames[start:end, f].mean())
            events.append((start, end, f + constants.BP_MIDI_MIN, amplitude))
    return events


# --- pitch bends -----------------------------------------------------------------------------


def _contour_bin(pitch: int) -> int:
    """Index of MIDI ``pitch`` on the contour axis.

    3 bins per semitone from A0; a steady tone peaks on the middle bin of its semitone
    (measured), one above the index basic-pitch's ``get_pitch_bends`` assumes.
    """
    return (pitch - constants.BP_MIDI_MIN) * _BINS + _BINS // 2


def raw_bends(contour: np.ndarray, start: int, end: int, pitch: int) -> np.ndarray:
    """Per-frame pitch deviation (semitones) of a note from its nominal ``pitch``.

    The contour peak is tracked frame by frame by hill-climbing from the previous frame's
    position (the nominal bin at the start), within +-2 semitones, so that it follows a
    vibrato or slide but never jumps across a valley to another note's peak (basic-pitch's
    Gaussian-weighted argmax does, in chords).  The peak is refined to sub-bin precision
    (parabola); frames where it is weak hold the previous value.
    """
    n = max(0, end - start)
    out = np.zeros(n, dtype=np.float32)
    if n == 0:
        return out
    centre = _contour_bin(pitch)
    half = int(round(_BEND_SEARCH_SEMITONES * _BINS))
    b0 = max(0, centre - half)
    b1 = min(contour.shape[1], centre + half + 1)
    sub = np.asarray(contour[start:end, b0:b1], dtype=np.float64)
    width = sub.shape[1]
    k = centre - b0
    value = 0.0
    for i in range(n):
        row = sub[i]
        j = k
        while True:
            if j + 1 < width and row[j + 1] > row[j]:
                j += 1
            elif j > 0 and row[j - 1] > row[j]:
                j -= 1
            else:
                break
        if row[j] >= _BEND_MIN_ACTIVATION:
            k = j
            frac = 0.0
            if 0 < j < width - 1:
                den = row[j - 1] - 2.0 * row[j] + row[j + 1]
                if den < 0.0:
                    frac = min(0.5, max(-0.5, 0.5 * (row[j - 1] - row[j + 1]) / den))
            value = (j + b0 - centre + frac) / _BINS
        out[i] = value
    return out


def compact_bends(raw: np.ndarray) -> tuple[BendPoint, ...]:
    """A compact piecewise-constant bend contour from per-frame deviations (semitones).

    Smoothed (median then mean over ~58 ms), quantised to 1/8 semitone with hysteresis and a
    minimum spacing between points; empty when the contour never leaves +-0.25 semitone or
    hardly moves (a constant offset below half a semitone is tuning, not a bend).
    """
    n = len(raw)
    if n == 0:
        return ()
    from scipy.ndimage import median_filter, uniform_filter1d  # noqa: PLC0415

    w = min(_BEND_SMOOTH_FRAMES, n if n % 2 else n - 1) if n > 1 else 1
    s = median_filter(raw.astype(np.float64), size=w, mode="nearest")
    s = uniform_filter1d(s, size=w, mode="nearest")
    smax = float(np.max(np.abs(s)))
    srange = float(np.max(s) - np.min(s))
    if smax < _BEND_MIN or (srange < _BEND_MIN and smax < 0.5):
        return ()
    limit = constants.BEND_MAX_SEMITONES

    def q(x: float) -> float:
        return float(np.clip(round(x / _BEND_STEP) * _BEND_STEP, -limit, limit))

    points: list[BendPoint] = []
    held = q(s[0])
    last_i = 0
    if held != 0.0:
        points.append(BendPoint(0.0, held))
    for i in range(1, n):
        if abs(s[i] - held) >= _BEND_HYST and i - last_i >= _BEND_MIN_GAP_FRAMES:
            value = q(s[i])
            if value != held:
                held = value
                last_i = i
                points.append(BendPoint(round(i / _FPS, 6), value))
    if points and all(p.semitones == 0.0 for p in points):
        return ()
    if points and points[0].time > 0.0:
        points.insert(0, BendPoint(0.0, 0.0))
    return tuple(points)


# --- level (for velocity) --------------------------------------------------------------------


class _Spectrum:
    """Short-time spectra of a window at 22050 Hz on the model's frame grid (for note levels)."""

    N_FFT = 4096

    def __init__(self, audio22: np.ndarray) -> None:
        half = self.N_FFT // 2
        self.audio = np.concatenate(
            [np.zeros(half, np.float32), audio22, np.zeros(half, np.float32)]
        )
        self.n_frames = -(-len(audio22) // _HOP)
        self.window = np.hanning(self.N_FFT).astype(np.float32)

    def level_db(self, start: int, pitch: int) -> float:
        """Peak power over the note's first frames at its first 3 harmonics (dB)."""
        t1 = min(self.n_frames, start + _LEVEL_ONSET_FRAMES)
        if start >= t1:
            return -120.0
        frames = np.stack(
            [self.audio[t * _HOP : t * _HOP + self.N_FFT] for t in range(start, t1)]
        )
        mag = np.abs(np.fft.rfft(frames * self.window, axis=1))
        f0 = 440.0 * 2.0 ** ((pitch - 69) / 12.0)
        power = np.zeros(t1 - start)
        for h in (1, 2, 3):
            freq = f0 * h
            if freq >= _SR / 2:
                break
            b = freq * self.N_FFT / _SR
            lo = max(0, int(math.floor(b - 1)))
            hi = min(mag.shape[1], int(math.ceil(b + 1)) + 1)
            power += (mag[:, lo:hi] ** 2).max(axis=1) / h
        return float(10.0 * np.log10(power.max() + 1e-12))


# --- windowed transcription ------------------------------------------------------------------


class _Piece:
    """A note under construction (times in seconds, absolute)."""

    __slots__ = ("onset", "offset", "pitch", "amp", "level", "bend_v", "window")

    def __init__(self, onset, offset, pitch, amp, level, bend_v, window):
        self.onset = onset
        self.offset = offset
        self.pitch = pitch
        self.amp = amp
        self.level = level
        self.bend_v = bend_v
        self.window = window


def _resample(segment: np.ndarray, sr: int) -> np.ndarray:
    """``segment`` resampled to 22050 Hz (soxr "HQ", as librosa's ``soxr_hq``)."""
    if sr == _SR:
        return np.ascontiguousarray(segment, dtype=np.float32)
    try:
        import soxr  # noqa: PLC0415
    except ImportError:  # pragma: no cover - soxr comes with librosa
        from math import gcd  # noqa: PLC0415

        import scipy.signal  # noqa: PLC0415

        g = gcd(int(sr), _SR)
        out = scipy.signal.resample_poly(segment, _SR // g, int(sr) // g)
        return np.asarray(out, dtype=np.float32)
    return np.asarray(soxr.resample(segment, sr, _SR, quality="HQ"), dtype=np.float32)


def _check_audio(audio: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise InputError(f"transcribe expects mono audio of shape (n_samples,), got {audio.shape}")
    ok = isinstance(sr, (int, np.integer, float, np.floating)) and math.isfinite(sr)
    if not ok or sr != int(sr) or sr <= 0:
        raise InputError(f"invalid sample rate {sr!r}")
    if audio.dtype != np.float32:
        audio = audio.astype(np.float32)
    return audio, int(sr)


def transcribe(
    audio: np.ndarray,
    sr: int,
    options: TranscribeOptions = TranscribeOptions(),
    progress: Callable[[float], None] | None = None,
) -> tuple[Note, ...]:
    """Transcribe mono ``audio`` (float32, shape (n_samples,)) at ``sr`` Hz into notes.

    Returns the notes sorted by onset (s).  Silent or empty input gives ``()``.
    ``progress(fraction)`` is called after each window, and within a window after each
    batch of basic-pitch's 2-s model windows.
    """
    audio, sr = _check_audio(audio, sr)
    n = len(audio)
    if n == 0:
        if progress:
            progress(1.0)
        return ()
    duration = n / sr
    n_windows = max(1, math.ceil(duration / float(options.window_s) - 1e-9))
    pieces: list[_Piece] = []
    last_by_pitch: dict[int, _Piece] = {}
    for w in range(n_windows):
        within = None if progress is None else (
            lambda f, w=w: progress((w + 0.9 * f) / n_windows))
        _transcribe_window(audio, sr, w, n_windows, options, pieces, last_by_pitch, within)
        if progress:
            progress((w + 1) / n_windows)
    return _pieces_to_notes(pieces, duration, options)


def _transcribe_window(audio: np.ndarray, sr: int, w: int, n_windows: int,
                       options: TranscribeOptions, pieces: list[_Piece],
                       last_by_pitch: dict[int, _Piece],
                       progress: Callable[[float], None] | None = None) -> None:
    """Run the model on window ``w`` (with its context) and add its notes to ``pieces``;
    ``progress(fraction)`` as the model runs through it."""
    n = len(audio)
    duration = n / sr
    window_s = float(options.window_s)
    context_s = float(constants.TRANSCRIBE_CONTEXT_S)
    core0 = w * window_s
    core1 = min(duration, (w + 1) * window_s)
    if w == n_windows - 1:
        core1 = math.inf
    # the left context starts on the grid of basic-pitch's 2-s model windows (as laid out
    # for the whole input), so every window sees the model inputs a single pass would
    start_s = max(0.0, math.floor((core0 - context_s) / _MODEL_STEP_S) * _MODEL_STEP_S)
    s0 = int(round(start_s * sr))
    s1 = min(n, int(round((min(duration, (w + 1) * window_s) + context_s) * sr)))
    segment = audio[s0:s1]
    if not np.all(np.isfinite(segment)):
        raise InputError("audio contains NaN or infinite samples")
    if segment.size == 0 or float(np.max(np.abs(segment))) < _SILENCE_PEAK:
        return
    t0 = s0 / sr + _TIME_OFFSET_S
    audio22 = _resample(segment, sr)
    # a long input's last window gives onnxruntime's arena back to the later encode stages
    shrink = n_windows > 1 and w == n_windows - 1
    note_act, onset_act, contour = model_activations(audio22, progress, shrink=shrink)
    events = decode_notes(
        note_act, onset_act, options.onset_threshold, options.frame_threshold,
        options.min_note_frames, options.melodia_trick, options.min_pitch, options.max_pitch,
    )
    del note_act, onset_act
    spectrum = _Spectrum(audio22)
    del audio22
    events.sort(key=lambda e: (e[0], e[2]))
    _merge_events(events, contour, spectrum, t0, (core0, core1), w, options, pieces,
                  last_by_pitch)


def _merge_events(events: list, contour: np.ndarray, spectrum: _Spectrum, t0: float,
                  core: tuple[float, float], w: int, options: TranscribeOptions,
                  pieces: list[_Piece], last_by_pitch: dict[int, _Piece]) -> None:
    """Add window ``w``'s note events (frames from ``t0`` s) to ``pieces``: notes that start
    in the window's core are new, those that continue an earlier window's note extend it."""
    frame_s = 1.0 / _FPS
    join_s = _JOIN_FRAMES * frame_s
    core0, core1 = core
    for start, end, pitch, amp in events:
        onset_t = t0 + start * frame_s
        offset_t = t0 + end * frame_s
        if onset_t >= core1:
            continue
        fragment = onset_t < core0
        if fragment and offset_t <= core0:
            continue
        prev = last_by_pitch.get(pitch)
        duplicate = prev is not None and prev.window < w and prev.offset > onset_t + join_s
        if fragment or duplicate:
            # continuation of a note already kept by an earlier window
            if prev is None or prev.offset < onset_t - join_s or prev.window >= w:
                continue
            if offset_t > prev.offset:
                if options.keep_bends:
                    first = int(math.ceil((prev.offset - t0) / frame_s - 1e-6))
                    first = max(first, start)
                    if first < end:
                        prev.bend_v.append(raw_bends(contour, first, end, pitch))
                prev.offset = offset_t
            continue
        piece = _Piece(
            onset_t, offset_t, pitch, amp, spectrum.level_db(start, pitch),
            [raw_bends(contour, start, end, pitch)] if options.keep_bends else [],
            w,
        )
        pieces.append(piece)
        last_by_pitch[pitch] = piece


def _pieces_to_notes(pieces: list[_Piece], duration: float,
                     options: TranscribeOptions) -> tuple[Note, ...]:
    """The finished notes, sorted by (onset, pitch): velocities from the model's amplitude and
    the spectral level relative to the recording's, bends compacted."""
    if not pieces:
        return ()
    frame_s = 1.0 / _FPS
    levels = np.array([p.level for p in pieces])
    ref = float(np.percentile(levels, _LEVEL_REF_PERCENTILE))
    notes = []
    for p in pieces:
        level_factor = min(1.0, 10.0 ** ((p.level - ref) / _LEVEL_DB_PER_DECADE))
        velocity = int(round(float(constants.VELOCITY_MAX)
                             * math.sqrt(max(0.0, p.amp) * level_factor)))
        velocity = max(constants.VELOCITY_MIN, min(constants.VELOCITY_MAX, velocity))
        bends: tuple[BendPoint, ...] = ()
        if options.keep_bends and p.bend_v:
            raw = np.concatenate(p.bend_v)
            bends = compact_bends(raw)
        onset_t = max(0.0, p.onset)
        offset_t = min(max(p.offset, onset_t + frame_s), duration + frame_s)
        notes.append(Note(round(onset_t, 6), round(offset_t, 6), int(p.pitch), velocity, bends))
    notes.sort(key=lambda nt: (nt.onset, nt.pitch))
    return tuple(notes)
