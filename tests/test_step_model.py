"""The step-time fit and the program limit of compute-aware admission (`continuum.sched.step_model`)."""

from __future__ import annotations

import math

import pytest

from continuum.sched.step_model import StepModel, elasticity, knee_batch, programs_at, stable_batch

A, BETA, K, T = 0.007, 0.0004, 180.0, 0.9  # about Llama-3.1-8B on an H100 with SWE-bench-like turns


def rate(n: float) -> float:
    return n / (K * (A + BETA * n))


@pytest.mark.parametrize("n", [1.0, 20.0, 200.0])
def test_the_elasticity_is_the_relative_throughput_one_more_program_adds(n):
    (x0, n0), (x1, n1) = ((rate(m), programs_at(A, BETA, K, T, m)) for m in (n * (1 - 1e-6), n * (1 + 1e-6)))
    assert elasticity(A, BETA, K, T, n) == pytest.approx(math.log(x1 / x0) / math.log(n1 / n0), rel=1e-4)


@pytest.mark.parametrize("queue", [1.0, 40.0, 400.0])
def test_the_knee_minimises_the_time_the_programs_at_the_door_take(queue):
    def door_time(n: float) -> float:
        return (queue / 2 + programs_at(A, BETA, K, T, n)) / rate(n)

    n = knee_batch(A, BETA, K, T, queue)
    assert door_time(n) <= min(door_time(n * 0.9), door_time(n * 1.1))
    assert knee_batch(A, BETA, K, T, 2 * queue) > n  # a longer queue buys throughput with more programs


def test_a_queue_twice_the_programs_in_service_is_kleinroks_power():
    # At Q = 2N the threshold is 1/2: the maximum of throughput over time in service, (a/beta) sqrt(1 + T/(K a)).
    n = A / BETA * math.sqrt(1 + T / (K * A))
    assert knee_batch(A, BETA, K, T, 2 * programs_at(A, BETA, K, T, n)) == pytest.approx(n, rel=1e-6)


def test_the_limit_keeps_up_with_arrivals():
    assert rate(stable_batch(A, BETA, K, 10.0)) == pytest.approx(10.0)
    assert stable_batch(A, BETA, K, 1.01 / (K * BETA)) == math.inf  # a saturated engine cannot keep up: no limit


def test_the_fit_recovers_the_step_costs_and_the_limit():
    m = StepModel(half_life_s=60.0)
    now = 0.0
    for i in range(300):
        requests = 1 + i % 40
        tokens = requests + (512 if i % 7 == 0 else 0)
        dt = A + 0.0003 * requests + 2e-5 * tokens
        now += dt
        m.observe_step(now, dt, tokens, requests, 1 if i % 5 == 0 else 0)
        if i % 3 == 0:
            m.observe_outside(now, T)
    assert m.fit() == pytest.approx((A, 0.0003, 2e-5), rel=1e-6)
    knee = m.knee(queue=50)
    assert knee.outside_s == pytest.approx(T) and 0 < knee.engine_fraction < 1
    assert knee.programs > knee.batch > 0 and knee.demand_turns_s == 0  # no program ended: demand unknown
    m.observe_end(now, 10)
    for i in range(200):  # programs arriving every half second for 100 s, each 10 turns: 20 turns/s
        m.observe_arrival(now + 0.5 * i)
    assert m.demand() == pytest.approx(20.0, rel=0.05)
