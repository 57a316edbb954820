"""The remaining-work predictor (kvttl) and the rank-quality benchmark's Kendall tau."""

from __future__ import annotations

import math

import pytest

from continuum_eval.probes.rank_quality import kendall_tau_b, pairs, train
from continuum_workloads import Program, Turn
from kvttl import ProgramWork, Progress, oracle_prediction


def test_no_completed_program_means_no_reordering():
    w = ProgramWork()
    a, b = w.predict(Progress(turns=0)), w.predict(Progress(turns=7, seconds=60.0, growth_tokens=3000))
    assert a.turns == b.turns == 1.0  # one more turn, whoever asks


def test_remaining_turns_follow_completed_programs_and_cost_per_turn_leans_on_the_program():
    w = ProgramWork(prior_weight=2.0)
    for n in (4, 4, 8, 8):
        w.remaining.record_program(n)
    for _ in range(10):
        w.observe_turn(1.0, 100, output_tokens=50)
        w.observe_gap(2.0)
    early, late = w.predict(Progress(turns=1)), w.predict(Progress(turns=6, seconds=50.0, growth_tokens=1000))
    assert early.turns > late.turns  # a program further along has less left
    # Seconds per turn: (own 50 s over 5 gaps + 2 pseudo-gaps of the population's 2 s) / 7.
    assert late.seconds == pytest.approx(late.turns * (50.0 + 2 * 2.0) / 7)
    assert early.seconds == pytest.approx(early.turns * 2.0)  # nothing of its own yet: the population's mean
    assert w.expected_output(1000) == 50 and w.expected_output(20) == 20
    assert ProgramWork().expected_output(300) == 300  # before any turn: the limit is all we know


def test_oracle_prediction_uses_the_true_future():
    p = oracle_prediction(turns_left=3, tool_s_left=12.0, growth_left=900, turn_service_s=0.5)
    assert (p.turns, p.seconds, p.growth_tokens) == (3, 13.5, 900)


def test_kendall_tau_b():
    assert kendall_tau_b([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau_b([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau_b([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert kendall_tau_b([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(2 * 3))  # one tie in x
    assert math.isnan(kendall_tau_b([1, 1], [1, 2]))


def test_rank_quality_pairs_rank_by_progress():
    progs = [Program(id=f"p{i}", workload="t", turns=[Turn(new_input_tokens=50, output_tokens=5, tool="ls",
                                                           tool_s=1.0)] * (n - 1) + [Turn(new_input_tokens=9,
                                                                                            output_tokens=3)])
             for i, n in enumerate([3, 5, 7, 9] * 5)]
    work = train(progs[:12], latency_s=1.0)
    rows = pairs(work, progs[12:], latency_s=1.0)
    assert len(rows) == sum(len(p.turns) for p in progs[12:])
    pred, true = [r[1] for r in rows], [r[2] for r in rows]
    assert kendall_tau_b(pred, true) > 0.3  # pooled over turns done, progress alone ranks them
