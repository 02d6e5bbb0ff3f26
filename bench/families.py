"""The instrument-aware note F1 of the mixes: a note counts only in a track of the right family.

Truth per note (:func:`note_families`):

* rendered ensembles and bands (music21): each note's channel and the channel's GM program
  are in the clip's ``.meta.json``;
* the eval folder's Slakh mixes: each stem's notes (``<song>_S<k>.notes.json``) are shifted
  onto the mix's time line (the excerpts were cut at different points: the shift most
  same-pitch note pairs agree on) and the mix's truth notes labelled with the stem whose note
  they match (same pitch, onsets within :data:`LABEL_ONSET_S`); the stems' GM programs are read
  from the folder's README table (``| clip | Name (program) | ...``).  Notes no stem explains
  (stems not in the folder) carry no family and are left out;
* the stereo clips (:func:`bench.dataset.stereo_clips`: a song's eval stems summed as they
  are, no shift): each truth note is its stem's (the same onset and pitch), the stem's
  program read as above.

:func:`instrument_prf` then matches the decoded file's notes (each with its track's family)
against the labelled truth within each family.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.metrics import ONSET_TOLERANCE_S, _notes_to_arrays

#: GM programs per family (General MIDI: 16 families of 8).
PROGRAMS_PER_FAMILY = 8
#: A mix note is a stem's when their onsets lie within this (s) at the same pitch.
LABEL_ONSET_S = 0.05
#: A stem's shift onto the mix needs at least this many agreeing notes (and a quarter of its own).
MIN_ALIGNED_NOTES = 3


def family_of(program: int) -> int:
    """GM family (0..15) of GM program ``program`` (0..127)."""
    return int(program) // PROGRAMS_PER_FAMILY


def readme_programs(folder: Path) -> dict[str, int]:
    """``{clip name: GM program}`` from the folder's README table rows ``| name | ... (N) |``."""
    readme = folder / "README.md"
    if not readme.exists():
        return {}
    out = {}
    for line in readme.read_text().splitlines():
        m = re.match(r"\|\s*([\w.-]+)\s*\|[^|]*\((\d{1,3})\)[^|]*\|", line)
        if m and int(m.group(2)) < 128:
            out[m.group(1)] = int(m.group(2))
    return out


def align(mix_truth: Sequence, stem_truth: Sequence) -> list:
    """``stem_truth`` shifted onto the mix's time line (the shift most same-pitch pairs agree
    on), or empty when no shift is agreed by enough notes."""
    votes: Counter = Counter()
    for on, _, p in stem_truth:
        for on2, _, p2 in mix_truth:
            if int(p) == int(p2):
                votes[round(on2 - on, 2)] += 1
    if not votes:
        return []
    shift, n = votes.most_common(1)[0]
    if n < max(MIN_ALIGNED_NOTES, len(stem_truth) // 4):
        return []
    return [(on + shift, off + shift, p) for on, off, p in stem_truth]


def _eval_mix_families(clip: dict, truth: Sequence) -> list[int | None] | None:
    audio = Path(clip["audio"])
    prefix = audio.stem[: -len("_mix")]
    programs = readme_programs(audio.parent)
    stems = {}
    for p in sorted(audio.parent.glob(f"{prefix}_S*.notes.json")):
        name = p.name[: -len(".notes.json")]
        if name in programs:
            stems[name] = align(truth, json.loads(p.read_text()))
    if not stems:
        return None
    out: list[int | None] = []
    for on, _, pitch in truth:
        best = None
        for name, notes in stems.items():
            for s_on, _, s_pitch in notes:
                d = abs(s_on - on)
                if int(s_pitch) == int(pitch) and d <= LABEL_ONSET_S and (best is None
                                                                          or d < best[0]):
                    best = (d, name)
        out.append(family_of(programs[best[1]]) if best else None)
    return out


def _stereo_families(clip: dict, truth: Sequence) -> list[int | None] | None:
    from bench.dataset import eval_dir  # noqa: PLC0415 - as note_families imports it

    folder = eval_dir()
    song = clip["name"][len("stereo_"):]
    programs = readme_programs(folder)
    stem_of: dict[tuple[int, int], int] = {}
    for p in sorted(folder.glob(f"{song}_S*.notes.json")):
        name = p.name[: -len(".notes.json")]
        if name in programs:
            for on, _, pitch in json.loads(p.read_text()):
                stem_of[(round(float(on) * 1000), int(pitch))] = family_of(programs[name])
    if not stem_of:
        return None
    return [stem_of.get((round(float(on) * 1000), int(pitch))) for on, _, pitch in truth]


def note_families(clip: dict, truth: Sequence | None) -> list[int | None] | None:
    """The GM family of each truth note of ``clip`` (None where unknown), or None for a clip
    that is not a mix of several instruments or whose truth has no families."""
    if not truth:
        return None
    if clip.get("source") == "eval":
        return _eval_mix_families(clip, truth) if clip["name"].endswith("_mix") else None
    if clip.get("source") == "stereo":
        return _stereo_families(clip, truth)
    from bench.dataset import DATASET_DIR

    meta_path = DATASET_DIR / f"{clip['name']}.meta.json"
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    channels, programs = meta.get("channels"), meta.get("programs")
    if not channels or not programs or len(channels) != len(truth) or len(set(channels)) < 2:
        return None
    return [family_of(programs[str(c)]) if str(c) in programs else None for c in channels]


def _matched(ref: Sequence, est: Sequence) -> list[tuple[int, int]]:
    import mir_eval

    ri, rp = _notes_to_arrays(ref)
    ei, ep = _notes_to_arrays(est)
    if len(rp) == 0 or len(ep) == 0:
        return []
    return list(mir_eval.transcription.match_notes(ri, rp, ei, ep,
                                                   onset_tolerance=ONSET_TOLERANCE_S,
                                                   offset_ratio=None))


def instrument_prf(ref: Sequence, ref_families: Sequence[int | None], est: Sequence,
                   est_families: Sequence[int]) -> tuple[float, float, float] | None:
    """Onset-only note precision, recall and F1 (as :func:`bench.metrics.note_prf`) where an
    estimated note matches a truth note only when its track's family (``est_families``) is
    the truth note's (``ref_families``).  Truth notes of unknown family are left out, and so
    are the estimated notes that match one of them (any family) and no labelled note.  None
    when no truth note has a family."""
    labelled = [i for i, f in enumerate(ref_families) if f is not None]
    if not labelled:
        return None
    unknown = [ref[i] for i, f in enumerate(ref_families) if f is None]
    drop = {j for _, j in _matched(unknown, est)} - {j for _, j in _matched(
        [ref[i] for i in labelled], est)}
    keep = [j for j in range(len(est)) if j not in drop]
    tp = 0
    for fam in {ref_families[i] for i in labelled}:
        r = [ref[i] for i in labelled if ref_families[i] == fam]
        e = [est[j] for j in keep if est_families[j] == fam]
        tp += len(_matched(r, e))
    p = tp / len(keep) if keep else 0.0
    r_ = tp / len(labelled)
    f = 0.0 if p + r_ == 0 else 2 * p * r_ / (p + r_)
    return float(p), float(r_), float(f)


def midi_notes_with_families(pm) -> tuple[list, list[int]]:
    """``([(onset, offset, pitch)], [family])`` of the pitched notes of a ``PrettyMIDI``."""
    notes, fams = [], []
    for inst in pm.instruments:
        if inst.is_drum:
            continue
        for n in inst.notes:
            notes.append((n.start, n.end, n.pitch))
            fams.append(family_of(inst.program))
    order = np.argsort([n[0] for n in notes], kind="stable")
    return [notes[i] for i in order], [fams[i] for i in order]
