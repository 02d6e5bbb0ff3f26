"""Recognisability of a rendering: do its notes come back when it is transcribed again?

The encoder picks how each track is played (engine, sampler, eq, ...) by analysis by
synthesis under a spectral (log-mel / STFT) distance.  A rendering can be close under that
distance and still hide its notes from a listener or a transcriber: a timbre with a strong
sub-octave (an organ's 16' stop) makes every note heard an octave low, a pad without attack
merges repeated notes.  :func:`agreement` measures that with the transcriber the encoder
already runs (:mod:`semcodec.transcribe`): the onset-only note F1 of the rendering's
transcription against the notes it was rendered from.  :func:`keeps_notes` is the acceptance
rule the choices use: a rendering may replace a safer one only if it keeps the notes about
as recognisable.
"""

from __future__ import annotations

import logging
from typing import Iterable, Sequence

import numpy as np

from semcodec.events import Note

log = logging.getLogger(__name__)

#: Onset tolerance of a match (s): that of the benchmark's note F1 (mir_eval's default).
ONSET_TOLERANCE_S = 0.05
#: How much lower (note F1, 0..1) a rendering's agreement may be than the safer rendering's
#: before it is refused, whatever its spectral gain.
MAX_F1_LOSS = 0.05


def note_f1(ref: Sequence[tuple[float, int]], est: Sequence[tuple[float, int]],
            tol_s: float = ONSET_TOLERANCE_S) -> float:
    """Onset-only note F1 (0..1) of ``est`` against ``ref``, both ``(onset s, MIDI pitch)``
    lists: a match is the same pitch with onsets at most ``tol_s`` apart, each note matched at
    most once (greedy, closest onsets first).  1.0 when both are empty, 0.0 when one is."""
    if not ref and not est:
        return 1.0
    if not ref or not est:
        return 0.0
    pairs = sorted((abs(r[0] - e[0]), i, j) for i, r in enumerate(ref) for j, e in enumerate(est)
                   if r[1] == e[1] and abs(r[0] - e[0]) <= tol_s)
    used_r: set[int] = set()
    used_e: set[int] = set()
    for _, i, j in pairs:
        if i not in used_r and j not in used_e:
            used_r.add(i)
            used_e.add(j)
    hits = len(used_r)
    return 2.0 * hits / (len(ref) + len(est))


def agreement(audio: np.ndarray, sr: int, notes: Iterable[Note]) -> float | None:
    """Note F1 (0..1) between ``notes`` and the transcription of ``audio`` (mono float32 at
    ``sr`` Hz, the rendering of those notes); None when the transcriber is unavailable or
    there are no notes to find."""
    ref = [(float(n.onset), int(n.pitch)) for n in notes]
    if not ref:
        return None
    from semcodec.errors import SemcodecError  # noqa: PLC0415
    from semcodec.transcribe import transcribe  # noqa: PLC0415

    try:
        heard = transcribe(np.asarray(audio, np.float32), sr)
    except SemcodecError as exc:  # no onnxruntime / model: the check is skipped
        log.info("round-trip check skipped: %s", exc)
        return None
    return note_f1(ref, [(float(n.onset), int(n.pitch)) for n in heard])


def keeps_notes(candidate: float | None, safer: float | None,
                max_loss: float = MAX_F1_LOSS) -> bool:
    """The acceptance rule: True unless both agreements are known and ``candidate``'s is more
    than ``max_loss`` below ``safer``'s."""
    if candidate is None or safer is None:
        return True
    return candidate >= safer - max_loss
