"""The tier rule on its own: choose_tier (pin in GPU, park in host memory, or drop)."""

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kvttl import HostLink, TierDecision, choose_tier, solve_ttl

FAST = settings(max_examples=80, deadline=None, derandomize=True)

durations = st.floats(min_value=0.0, max_value=100.0, allow_nan=False, allow_infinity=False)
sample_lists = st.lists(durations, min_size=1, max_size=40)
costs = st.floats(min_value=0.0, max_value=200.0, allow_nan=False, allow_infinity=False)
prices = st.floats(min_value=0.0, max_value=2.0, allow_nan=False, allow_infinity=False)


def cdf(samples, x):
    return sum(1 for s in samples if s <= x) / len(samples)


def gain(samples, d: TierDecision, b, load=0.0, gp=1.0, cp=0.0):
    """The rule written out literally: what decision ``d`` saves over dropping, less its price."""
    z = cdf(samples, 0.0)
    if d.tier == "drop":
        return 0.0
    if d.tier == "cpu":
        return (cdf(samples, d.ttl_s) - z) * (b - load) - cp * d.ttl_s
    t1, t2 = d.ttl_s, d.hold_s
    return (cdf(samples, t1) - z) * load - (gp - cp) * t1 + (cdf(samples, t2) - z) * (b - load) - cp * t2


def brute_force(samples, b, load, gp, cp, hybrid=False):
    """Best gain over every option, pairs (t1 <= t2) included with ``hybrid``."""
    taus = [0.0] + sorted(set(samples))
    best = 0.0
    for t2 in taus:
        for t1 in taus if hybrid else (0.0, t2):
            if t1 <= t2:
                d = TierDecision("cpu", t2, 0.0, 0.0) if t1 == 0.0 else TierDecision("gpu", t1, 0.0, 0.0, t2 - t1)
                best = max(best, gain(samples, d, b, load, gp, cp))
                best = max(best, gain(samples, TierDecision("gpu", t2, 0.0, 0.0), b, load, gp, cp))
    return best


@FAST
@given(sample_lists, costs, st.floats(0.0, 10.0), st.floats(0.0, 20.0), costs)
def test_without_a_host_tier_it_is_the_ttl_rule(samples, reload_s, delay, eta, load):
    ttl, p_hit = solve_ttl(samples, reload_s, delay, eta)
    want = TierDecision("gpu" if ttl > 0 else "drop", ttl, p_hit, p_hit * (delay * eta + reload_s))
    assert choose_tier(samples, reload_s, delay, eta) == want
    assert choose_tier(samples, reload_s, delay, eta, gpu_price=1.0, presorted=False) == want
    # A link too slow to beat a miss changes nothing.
    slow = delay * eta + reload_s + load
    assert choose_tier(samples, reload_s, delay, eta, load_s=slow, cpu_price=0.0) == want


@FAST
@given(sample_lists, costs, st.floats(0.0, 50.0), prices, prices)
def test_matches_brute_force(samples, b, load, gp, cp):
    d = choose_tier(samples, b, load_s=load, cpu_price=cp, gpu_price=gp)
    assert d.tier in ("gpu", "cpu", "drop") and d.park_s == 0.0
    assert d.ttl_s == 0.0 or d.ttl_s in samples
    assert (d.ttl_s == 0.0) == (d.tier == "drop")
    assert gain(samples, d, b, load, gp, cp) == pytest.approx(brute_force(samples, b, load, gp, cp), abs=1e-6)
    assert d.p_hit == cdf(samples, d.ttl_s)


def test_long_tool_with_a_fast_link_parks():
    samples = [5.0 + 0.5 * i for i in range(11)]  # 5 to 10 s
    d = choose_tier(samples, reload_s=0.32, queue_delay_s=0.5, eta=4.0, load_s=0.024, cpu_price=0.05)
    assert d == TierDecision("cpu", 10.0, 1.0, pytest.approx(2.32 - 0.024))
    assert choose_tier(samples, 0.32, 0.5, 4.0).tier == "drop"  # pinning 5-10 s never pays 2.32 s


def test_quick_tool_with_a_large_reload_pins():
    samples = [0.005, 0.007, 0.01]  # back well within the 24 ms a reload would take
    d = choose_tier(samples, reload_s=0.32, queue_delay_s=0.5, eta=4.0, load_s=0.024, cpu_price=0.1)
    assert d.tier == "gpu" and d.ttl_s == 0.01 and d.p_hit == 1.0
    assert d.benefit_s == pytest.approx(2.32)


@FAST
@given(sample_lists, costs, st.floats(0.0, 10.0), st.floats(0.0, 20.0), prices)
def test_a_slow_link_never_parks(samples, reload_s, delay, eta, cp):
    load = delay * eta + reload_s  # L >= T * eta + R
    for slow in (load, load * 2 + 1):
        for hybrid in (False, True):
            d = choose_tier(samples, reload_s, delay, eta, load_s=slow, cpu_price=cp, hybrid=hybrid)
            assert d.tier != "cpu" and d.park_s == 0.0


def test_no_samples_drops():
    assert choose_tier([], 100.0, 1.0, 5.0, load_s=0.0, cpu_price=0.0) == TierDecision("drop", 0.0, 0.0, 0.0)
    assert choose_tier([], 100.0, hybrid=True, load_s=0.0, cpu_price=0.0).tier == "drop"


def test_zero_duration_samples_hit_even_when_dropping():
    assert choose_tier([0.0, 0.0, 0.0, 50.0], 10.0) == TierDecision("drop", 0.0, 0.75, 7.5)
    assert choose_tier([0.0] * 4, 10.0, load_s=1.0, cpu_price=0.0) == TierDecision("drop", 0.0, 1.0, 10.0)
    # Zero returns are a hit of every option, so they do not count for or against parking.
    d = choose_tier([0.0, 0.0, 0.0, 1.0], 10.0, load_s=1.0, cpu_price=0.1)
    assert d == TierDecision("cpu", 1.0, 1.0, pytest.approx(0.75 * 10 + 0.25 * 9))


def test_ties_favour_the_cheaper_hold():
    assert choose_tier([1.0], 1.0).tier == "drop"  # pin gains 1 - 1 = 0
    assert choose_tier([2.0], 2.0, load_s=1.0, cpu_price=0.5).tier == "drop"  # park gains 1 - 1 = 0
    assert choose_tier([1.0], 5.0, load_s=0.0, cpu_price=1.0).tier == "cpu"  # same as the pin
    assert choose_tier([1.0], 5.0, load_s=0.0, cpu_price=1.0, hybrid=True).tier == "cpu"


ARGS = dict(reload_s=1.0, queue_delay_s=0.5, eta=2.0, load_s=0.1, cpu_price=0.2, gpu_price=1.0)


@pytest.mark.parametrize("name", sorted(ARGS))
@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, -math.inf])
def test_bad_numbers_raise_naming_the_argument(name, bad):
    with pytest.raises(ValueError, match=name):
        choose_tier([1.0, 2.0], **{**ARGS, name: bad})


def test_bad_samples_and_a_missing_price_raise():
    for bad in (math.nan, math.inf, -1.0):
        with pytest.raises(ValueError, match="samples"):
            choose_tier([1.0, bad], **ARGS)
    with pytest.raises(ValueError, match="cpu_price"):
        choose_tier([1.0], 1.0, load_s=0.1)


@FAST
@given(sample_lists, costs, costs, st.floats(0.0, 10.0), st.floats(0.0, 5.0), st.floats(0.0, 50.0), prices, prices)
def test_a_larger_reload_never_shortens_the_hold(samples, r1, r2, delay, eta, load, gp, cp):
    lo, hi = min(r1, r2), max(r1, r2)
    for kw in ({}, dict(load_s=load, cpu_price=cp, gpu_price=gp)):
        a, b = choose_tier(samples, lo, delay, eta, **kw), choose_tier(samples, hi, delay, eta, **kw)
        assert a.ttl_s <= b.ttl_s
        assert a.tier == "drop" or b.tier != "drop"


@FAST
@given(sample_lists, costs, st.floats(0.0, 50.0), prices, prices, prices)
def test_a_cheaper_host_never_turns_a_park_into_a_drop(samples, b, load, gp, c1, c2):
    lo, hi = min(c1, c2), max(c1, c2)
    dear = choose_tier(samples, b, load_s=load, cpu_price=hi, gpu_price=gp)
    cheap = choose_tier(samples, b, load_s=load, cpu_price=lo, gpu_price=gp)
    if dear.tier == "cpu":
        assert cheap.tier == "cpu" and cheap.ttl_s >= dear.ttl_s
    if dear.tier != "drop":
        assert cheap.tier != "drop"


def test_pin_then_park_beats_both_on_a_bimodal_tool():
    samples = [0.1] * 5 + [10.0] * 5  # half back at once, half after a long tool
    kw = dict(load_s=0.5, cpu_price=0.01)  # a slow link: a reload costs half a miss
    three_way = choose_tier(samples, 1.0, **kw)
    mixed = choose_tier(samples, 1.0, hybrid=True, **kw)
    assert mixed == TierDecision("gpu", 0.1, 1.0, pytest.approx(0.5 * 1.0 + 0.5 * 0.5), park_s=9.9)
    assert gain(samples, mixed, 1.0, 0.5, 1.0, 0.01) == pytest.approx(0.5 * 0.5 - 0.99 * 0.1 + 0.5 - 0.1)
    assert gain(samples, mixed, 1.0, 0.5, 1.0, 0.01) > gain(samples, three_way, 1.0, 0.5, 1.0, 0.01) + 0.1
    # A prefetch hides the load: nothing is left for the pin phase to save.
    assert choose_tier(samples, 1.0, load_s=0.0, cpu_price=0.01, hybrid=True).tier == "cpu"


@FAST
@given(st.lists(durations, min_size=1, max_size=12), costs, st.floats(0.0, 50.0), prices, prices)
def test_hybrid_matches_brute_force_over_pairs(samples, b, load, gp, cp):
    d = choose_tier(samples, b, load_s=load, cpu_price=cp, gpu_price=gp, hybrid=True)
    assume(b > load)
    best = brute_force(samples, b, load, gp, cp, hybrid=True)
    assert gain(samples, d, b, load, gp, cp) == pytest.approx(best, abs=1e-6)
    three_way = choose_tier(samples, b, load_s=load, cpu_price=cp, gpu_price=gp)
    assert gain(samples, d, b, load, gp, cp) >= gain(samples, three_way, b, load, gp, cp) - 1e-6
    assert d.p_hit == cdf(samples, d.hold_s)


def test_ten_thousand_tokens_of_llama_8b_reload_in_about_24_ms():
    per_token = 32 * 8 * 128 * 2 * 2  # layers x KV heads x head dim x (K, V) x bf16 bytes
    assert per_token == 131_072
    link = HostLink(h2d_bytes_per_s=55.3e9, d2h_bytes_per_s=55.3e9)
    load = link.load_seconds(10_000 * per_token)
    assert load == pytest.approx(1.31072e9 / 55.3e9) and 0.023 < load < 0.025
    # Against about 320 ms of re-prefill, parking a 5-10 s tool's KV wins.
    d = choose_tier([5.0, 7.5, 10.0], 0.32, load_s=link.exposed_load_seconds(10_000 * per_token), cpu_price=0.02)
    assert d.tier == "cpu" and d.benefit_s == pytest.approx(0.32 - load)
