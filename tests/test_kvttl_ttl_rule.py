"""The TTL rule on its own: choose_ttl / solve_ttl."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvttl import choose_ttl, solve_ttl

FAST = settings(max_examples=60, deadline=None, derandomize=True)

durations = st.floats(min_value=0.0, max_value=100.0, allow_nan=False, allow_infinity=False)
sample_lists = st.lists(durations, min_size=1, max_size=40)
costs = st.floats(min_value=0.0, max_value=1000.0, allow_nan=False, allow_infinity=False)


def brute_force(samples, reload_s, queue_delay_s=0.0, eta=1.0):
    """The rule written out literally: the smallest tau maximising P(tau)*B - tau."""
    b = queue_delay_s * eta + reload_s
    n = len(samples)
    best_tau, best_val = 0.0, sum(1 for s in samples if s <= 0.0) / n * b
    for tau in sorted(set(samples)):
        val = sum(1 for s in samples if s <= tau) / n * b - tau
        if val > best_val + 1e-9:
            best_tau, best_val = tau, val
    return best_tau


def test_examples():
    # Half the calls are back within 1 s, the rest in 10 s.
    samples = [1.0] * 5 + [10.0] * 5
    assert choose_ttl(samples, reload_s=1.0) == 0.0  # 0.5*1 - 1 < 0
    assert choose_ttl(samples, reload_s=3.0) == 1.0  # 0.5*3 - 1 = 0.5 > 3 - 10
    assert choose_ttl(samples, reload_s=30.0) == 10.0  # 30 - 10 = 20 > 15 - 1
    # Queueing delay times eta adds to the reload cost.
    assert choose_ttl(samples, reload_s=1.0, queue_delay_s=1.0, eta=2.0) == 1.0
    assert choose_ttl([], reload_s=100.0) == 0.0


def test_unsorted_input_is_sorted_first():
    samples = [10.0, 1.0, 10.0, 1.0]
    assert choose_ttl(samples, 3.0) == 1.0
    assert choose_ttl(np.array(samples), 30.0) == 10.0


def test_solve_ttl_reports_hit_probability():
    ttl, p = solve_ttl([1.0, 2.0, 3.0, 100.0], reload_s=10.0, presorted=True)
    assert ttl == 3.0 and p == 0.75


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_rejects_bad_numbers(bad):
    with pytest.raises(ValueError):
        choose_ttl([1.0], reload_s=bad)
    with pytest.raises(ValueError):
        choose_ttl([1.0], reload_s=1.0, queue_delay_s=bad)
    with pytest.raises(ValueError):
        choose_ttl([1.0], reload_s=1.0, eta=bad)
    with pytest.raises(ValueError):
        choose_ttl([1.0, bad], reload_s=1.0)


@FAST
@given(sample_lists)
def test_zero_when_nothing_to_save(samples):
    assert choose_ttl(samples, 0.0) == 0.0
    assert choose_ttl(samples, 0.0, queue_delay_s=0.0, eta=5.0) == 0.0


@FAST
@given(sample_lists, costs, costs, st.floats(0.0, 10.0), st.floats(0.0, 20.0))
def test_non_decreasing_in_reload(samples, r1, r2, delay, eta):
    lo, hi = min(r1, r2), max(r1, r2)
    assert choose_ttl(samples, lo, delay, eta) <= choose_ttl(samples, hi, delay, eta)


@FAST
@given(durations, st.integers(1, 50), st.floats(1e-3, 1000.0))
def test_equal_samples_give_exactly_that_duration(d, n, margin):
    reload_s = 2 * d + margin  # well above d
    assert choose_ttl([d] * n, reload_s) == d


@FAST
@given(sample_lists, costs, st.floats(0.0, 10.0), st.floats(0.0, 5.0), st.floats(1e-3, 100.0))
def test_zero_when_every_sample_is_too_slow(samples, reload_s, delay, eta, margin):
    floor = delay * eta + reload_s + margin  # every sample well above the cost of a miss
    shifted = [floor + s for s in samples]
    assert choose_ttl(shifted, reload_s, delay, eta) == 0.0


@FAST
@given(sample_lists, costs, st.floats(0.0, 10.0), st.floats(0.0, 20.0))
def test_matches_brute_force(samples, reload_s, delay, eta):
    got = choose_ttl(samples, reload_s, delay, eta)
    want = brute_force(samples, reload_s, delay, eta)
    b = delay * eta + reload_s
    n = len(samples)

    def value(tau):
        return sum(1 for s in samples if s <= tau) / n * b - tau

    # Same optimum value (the TTL itself may differ only between near-exact ties).
    assert value(got) == pytest.approx(value(want), abs=1e-6)
    assert got == 0.0 or got in samples
