"""The bitrate allocator: keeps the best parts per byte and never exceeds the budget."""

from __future__ import annotations

import numpy as np
import pytest

from semcodec.budget import RESIDUAL_OVERHEAD, Part, allocate, budget_bytes


def test_budget_bytes():
    assert budget_bytes(1.0, 30.0) == 3750
    assert budget_bytes(0.0, 30.0) == 0
    with pytest.raises(ValueError):
        budget_bytes(-1.0, 3.0)


def test_random_parts_never_exceed_the_budget():
    rng = np.random.default_rng(1)
    for trial in range(200):
        budget = int(rng.integers(0, 5000))
        parts = [Part("score", "score", int(rng.integers(0, 800)), required=True)]
        for k in range(int(rng.integers(0, 8))):
            benefit = None if rng.random() < 0.2 else float(rng.normal(0.01, 0.02))
            parts.append(Part(f"s{k}", "sample", int(rng.integers(1, 2500)), benefit))

        def code(max_bytes, rng=rng):
            return bytes(int(rng.integers(0, max_bytes + 1)))

        a = allocate(budget, parts, residual=code if trial % 2 else None)
        required = sum(p.nbytes for p in parts if p.required)
        assert a.used <= max(budget, required)
        assert a.used == sum(p.nbytes for p in a.kept) + (
            len(a.residual) + RESIDUAL_OVERHEAD if a.residual else 0)
        assert all(p.benefit is None or p.benefit > 0 for p in a.kept if not p.required)


def test_best_benefit_per_byte_first():
    parts = [Part("score", "score", 500, required=True),
             Part("big", "sample", 1800, 0.02),      # 1.1e-5 per byte
             Part("small", "sample", 600, 0.012),    # 2e-5 per byte
             Part("useless", "sample", 100, -0.01)]
    a = allocate(2400, parts)
    assert a.keeps("small") and not a.keeps("big") and not a.keeps("useless")
    a = allocate(3000, parts)
    assert a.keeps("small") and a.keeps("big")


def test_upgrade_needs_its_base():
    parts = [Part("base", "sample", 1000, 0.001),
             Part("more", "sample", 500, 0.01, requires="base")]
    assert not allocate(600, parts).keeps("more")
    a = allocate(1500, parts)
    assert a.keeps("base") and a.keeps("more")


def test_residual_gets_what_is_left_and_is_checked():
    calls = []

    def code(max_bytes):
        calls.append(max_bytes)
        return b"x" * max_bytes

    a = allocate(1000, [Part("score", "score", 300, required=True)], residual=code)
    assert calls == [1000 - 300 - RESIDUAL_OVERHEAD]
    assert a.used == 1000 and a.by_kind["residual"] == 700

    a = allocate(1000, [Part("score", "score", 300, required=True)],
                 residual=lambda m: b"x" * (m + 1))
    assert a.residual == b"" and a.used == 300


def test_parts_worse_than_the_residual_go_to_it():
    parts = [Part("score", "score", 200, required=True), Part("smp", "sample", 1000, 0.01)]

    def code(m):
        return b"r" * m

    # a residual whose benefit grows 1e-4 per byte: the sample's bytes would give it 0.1
    a = allocate(2000, parts, residual=code, residual_benefit=lambda b: 1e-4 * len(b))
    assert not a.keeps("smp") and len(a.residual) == 2000 - 200 - RESIDUAL_OVERHEAD
    # a residual that saturates early (nothing more to code): the sample is worth its bytes
    a = allocate(2000, parts, residual=code, residual_benefit=lambda b: min(0.05, 1e-3 * len(b)))
    assert a.keeps("smp") and len(a.residual) == 2000 - 200 - 1000 - RESIDUAL_OVERHEAD


def test_required_parts_over_budget_keep_nothing_else():
    parts = [Part("score", "score", 900, required=True), Part("t", "timbre", 50)]
    a = allocate(500, parts)
    assert [p.name for p in a.kept] == ["score"]


def test_unique_names():
    with pytest.raises(ValueError):
        allocate(10, [Part("a", "sample", 1, 1.0), Part("a", "sample", 1, 1.0)])
