"""The per-request cost fitted to a live replay: the bisection and the profile it rewrites (the live replay
itself needs a server: `python -m continuum_eval.sim.fit.replay_fit`)."""

from __future__ import annotations

import pytest

from continuum_eval.sim.cost.costmodel import StepBatch
from continuum_eval.sim.cost.profiles import get_profile
from continuum_eval.sim.fit.replay_fit import SEQS_MAX, bisect, with_seqs


def test_bisect_finds_the_cost_that_matches_the_live_jct():
    calls = []

    def simulate(seqs: float) -> float:  # a monotone stand-in for the simulator
        calls.append(seqs)
        return 10.0 + 4000.0 * seqs

    seqs, jct = bisect(14.0, simulate)
    assert seqs == pytest.approx(1e-3, rel=1e-3)
    assert jct == pytest.approx(14.0, rel=1e-3)
    assert len(calls) <= 16


def test_bisect_stops_at_the_ends_when_no_cost_matches():
    assert bisect(5.0, lambda s: 10.0 + s) == (0.0, 10.0)
    seqs, jct = bisect(1e6, lambda s: 10.0 + s)
    assert seqs == SEQS_MAX and jct == 10.0 + SEQS_MAX


def test_with_seqs_changes_only_the_per_request_term():
    prof = get_profile("cpu")
    batch = StepBatch.decode([512] * 8)
    before = prof.cost.step_time(batch)
    old = prof.cost.coef.get("seqs", 0.0)
    with_seqs(prof, old + 0.001)
    assert prof.cost.step_time(batch) == pytest.approx(before + 8 * 0.001)
    assert prof.cost.step_time(StepBatch.prefill(100)) > 0
