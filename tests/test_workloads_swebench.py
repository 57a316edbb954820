"""Synthetic SWE-bench workload: calibration bounds and determinism."""

from __future__ import annotations

import pytest

from continuum_workloads.stats import trace_stats
from continuum_workloads.swebench import TOOLS, generate_swebench, swebench_program


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_swebench_500_programs_within_published_bounds(seed):
    s = trace_stats(generate_swebench(500, seed))
    assert s.programs == 500
    assert 10.4 <= s.turns.mean <= 11.4, s.turns
    assert 1.5 <= s.turns.sd <= 3.0, s.turns
    assert 0.8 <= s.tool_s.mean <= 1.1, s.tool_s
    assert s.tool_s.sd >= 2.5, s.tool_s
    assert s.slowest10_share >= 0.45, s.slowest10_share
    assert 63_000 <= s.tokens_per_program.mean <= 77_000, s.tokens_per_program


def test_swebench_deterministic_and_prefix_stable():
    a = generate_swebench(30, seed=3)
    assert a == generate_swebench(30, seed=3)
    assert a[:10] == generate_swebench(10, seed=3)
    assert a != generate_swebench(30, seed=4)
    assert swebench_program(7, 3) == a[7]


def test_swebench_programs_are_well_formed():
    progs = generate_swebench(200, seed=0)
    assert len({p.id for p in progs}) == 200
    used = set()
    for p in progs:
        assert p.workload == "swebench" and p.arrival_s is None
        assert p.turns[-1].tool is None and p.turns[-1].tool_s == 0
        assert all(t.tool in TOOLS and 0 < t.tool_s <= 120 for t in p.turns[:-1])
        used |= {t.tool for t in p.turns[:-1]}
    assert {"ls", "cat", "grep", "find", "sed", "python", "pytest", "git"} <= used


def test_swebench_rejects_negative_count():
    with pytest.raises(ValueError):
        generate_swebench(-1, 0)
