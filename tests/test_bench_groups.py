"""The benchmark's grouping of the development clips and its per-clip table."""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ lives at the repository root, next to tests/
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from bench import dataset, report  # noqa: E402


def test_singing_is_a_group_of_its_own():
    assert dataset._eval_group("vocadito_1_singing") == dataset.SINGING_GROUP == "singing"
    assert dataset._eval_group("slakh_Track00001_S03") == "solo"
    assert dataset._eval_group("slakh_Track00001_mix") == "ensemble"
    assert dataset._eval_group("real_solo_trumpet") == "real"
    assert "singing" in report.GROUPS


def _clip(name: str, group: str, rt: float) -> dict:
    ok = dict(status="ok", kbps=0.99, mel=0.25, chroma=0.98, rt_f1=rt)
    return dict(name=name, group=group, rows={
        "original (basic-pitch ceiling)": dict(status="ok", rt_f1=0.6),
        "semcodec auto": ok, "semcodec auto, no residual": dict(ok, kbps=0.4)})


def test_per_clip_table_has_one_line_per_clip():
    table = report.per_clip_table([_clip("a_S03", "solo", 0.5), _clip("v_singing", "singing", 0.3)])
    lines = table.splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| a_S03 | solo | 0.600 | 0.990 | 0.250 | 0.980 | 0.500 | 0.400")
    assert "| v_singing | singing |" in lines[3]
