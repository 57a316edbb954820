"""The step-time fit and the program limit of compute-aware admission (`continuum.sched.step_model`)."""

from __future__ import annotations

import math

import pytest

from continuum.sched.step_model import StepModel, knee_batch, programs_at, turn_rate

A, BETA, K, T = 0.007, 0.0004, 180.0, 0.9  # about Llama-3.1-8B on an H100 with SWE-bench-like turns


def rate(n: float) -> float:
    return n / (K * (A + BETA * n))


def test_the_turn_rate_is_requests_over_turn_latency():
    assert turn_rate(A, BETA, K, 40.0) == pytest.approx(rate(40.0))
    assert programs_at(A, BETA, K, T, 40.0) == pytest.approx(40.0 + T * rate(40.0))  # Little: plus the tool calls


def test_the_knee_is_the_maximum_of_throughput_over_time_in_service():
    def power(n: float) -> float:  # X / (N / X): turns per second over the time a program spends in service
        return rate(n) ** 2 / programs_at(A, BETA, K, T, n)

    n = knee_batch(A, BETA, K, T)
    assert power(n) >= max(power(n * 0.95), power(n * 1.05))
    assert n == pytest.approx(A / BETA * math.sqrt(1 + T / (K * A)))


def test_every_program_in_the_system_ends_sooner_while_throughput_grows():
    # M equal programs of P turns, at most N in service, each a turn at a time: one is admitted when one ends, so
    # the programs in service are staggered and end at X(N) / P. The mean completion falls as N (and X) grows,
    # to the largest N: admitting one more moves it off the door, whatever it adds to the others' time in service.
    m, p = 300, 10

    def mean_completion(n_max: int) -> float:
        remaining, door, done, now = [], m, [], 0.0
        while door and len(remaining) < n_max:  # staggered: the i-th starts i / n_max of the way through
            remaining.append(p * (1 - len(remaining) / n_max))
            door -= 1
        while remaining:
            n = len(remaining)
            batch = n / (1 + T * rate(n) / n)  # the requests in the engine when n programs are in service
            share = rate(batch) / n  # turns per second each program gets
            dt = min(remaining) / share
            now += dt
            remaining = [r - dt * share for r in remaining]
            ended = [r for r in remaining if r <= 1e-9]
            done += [now] * len(ended)
            remaining = [r for r in remaining if r > 1e-9] + [float(p)] * min(door, len(ended))
            door -= min(door, len(ended))
        return sum(done) / m

    means = [mean_completion(n) for n in (8, 16, 32, 64, 128)]
    assert means == sorted(means, reverse=True)


def fitted(requests_of, seconds_of, steps: int = 300, outside_every: int = 3) -> tuple[StepModel, float]:
    m = StepModel(half_life_s=60.0)
    now = 0.0
    for i in range(steps):
        requests = requests_of(i)
        tokens = requests + (512 if i % 7 == 0 else 0)
        dt = seconds_of(requests, tokens)
        now += dt
        m.observe_step(now, dt, tokens, requests, 1 if i % 5 == 0 else 0)
        if i % outside_every == 0:
            m.observe_outside(now, T)
    return m, now


def test_the_fit_recovers_the_step_costs_and_the_limit_is_the_largest_batch():
    m, _ = fitted(lambda i: 1 + i % 40, lambda r, t: A + 0.0003 * r + 2e-5 * t)
    assert m.fit() == pytest.approx((A, 0.0003, 2e-5), rel=1e-6)
    knee = m.knee(max_requests=256, max_tokens=1e6)
    assert knee.outside_s == pytest.approx(T) and 0 < knee.engine_fraction < 1
    assert knee.batch == 256 and knee.programs == pytest.approx(programs_at(A, knee.per_request_s,
                                                                             knee.request_steps_per_turn, T, 256))
    assert knee.programs > knee.knee_programs > knee.knee_batch > 0
    tight = m.knee(max_requests=256, max_tokens=64 * knee.tokens_per_request)  # the token budget fills first
    assert tight.batch == pytest.approx(64)


def test_a_step_with_no_fixed_cost_saturates_at_one_request():
    m, _ = fitted(lambda i: 1 + i % 40, lambda r, t: 0.0003 * r + 2e-5 * t)
    knee = m.knee(max_requests=256, max_tokens=1e6)
    assert knee.batch == 1 and knee.turns_s == pytest.approx(knee.max_turns_s)
    assert knee.programs == pytest.approx(1 + T * knee.max_turns_s)  # one in the engine, the rest in tool calls


def test_the_limit_holds_while_a_backlog_drains():
    # Programs arrived, then stopped; steps and tool calls go on for many half-lives while the door empties. The
    # limit depends on neither the queue nor the arrival rate: it stays where the batch stops growing, above the
    # knee.
    m, now = fitted(lambda i: 20 + i % 40, lambda r, t: A + BETA * r)
    first = m.knee(max_requests=256, max_tokens=8192)
    for i in range(2000):
        requests = 30 + i % 30
        dt = A + BETA * requests
        now += dt + 0.5  # sparse steps: ten minutes of clock, ten half-lives
        m.observe_step(now, dt, requests, requests, 1 if i % 5 == 0 else 0)
        m.observe_outside(now, T)
        knee = m.knee(max_requests=256, max_tokens=8192)
        assert knee.programs >= knee.knee_programs
    assert knee.programs == pytest.approx(first.programs, rel=0.05)
