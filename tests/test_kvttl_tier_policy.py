"""The host link model and TTLPolicy.decide_tier (the tier rule with the policy's inputs)."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvttl import (
    HostLink,
    QueueDelayEstimator,
    ReloadCostModel,
    RemainingWorkEstimator,
    TierDecision,
    ToolDurationPredictor,
    TTLPolicy,
    choose_tier,
)

LINK = HostLink(h2d_bytes_per_s=50e9, d2h_bytes_per_s=25e9, latency_s=1e-3)


def test_link_times():
    assert LINK.load_seconds(5e9) == pytest.approx(1e-3 + 0.1)
    assert LINK.store_seconds(5e9) == pytest.approx(1e-3 + 0.2)
    assert LINK.load_seconds(0) == LINK.store_seconds(0) == 0.0  # nothing to move
    assert LINK.exposed_load_seconds(5e9) == LINK.load_seconds(5e9)
    assert LINK.exposed_load_seconds(5e9, prefetch=True) == 0.0
    assert LINK.to_dict() == {"h2d_bytes_per_s": 50e9, "d2h_bytes_per_s": 25e9, "latency_s": 1e-3}


@pytest.mark.parametrize("name", ["h2d_bytes_per_s", "d2h_bytes_per_s", "latency_s"])
@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_link_rejects_bad_numbers(name, bad):
    with pytest.raises(ValueError, match=name):
        HostLink(**{"h2d_bytes_per_s": 1e9, "d2h_bytes_per_s": 1e9, "latency_s": 0.0, name: bad})


def test_link_rejects_zero_bandwidth_and_bad_sizes():
    with pytest.raises(ValueError, match="h2d_bytes_per_s"):
        HostLink(0.0, 1e9)
    for bad in (-1.0, math.nan, math.inf):
        for method in (LINK.load_seconds, LINK.store_seconds, LINK.exposed_load_seconds):
            with pytest.raises(ValueError, match="num_bytes"):
                method(bad)
    with pytest.raises(ValueError, match="num_bytes"):
        LINK.exposed_load_seconds(math.nan, prefetch=True)


def make(mode="model", **kw):
    predictor = ToolDurationPredictor(min_global_samples=1, min_tool_samples=1)
    return TTLPolicy(mode, predictor=predictor, reload_model=ReloadCostModel(0.0, 1e-3, 0.0), **kw)


def as_tier(d):
    return TierDecision("gpu" if d.pin else "drop", d.ttl_s, d.p_hit, d.benefit_s)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.floats(0.0, 20.0), min_size=1, max_size=30), st.integers(0, 20_000), st.integers(1, 8))
def test_without_a_link_it_is_decide(durations, tokens, turns_done):
    queue = QueueDelayEstimator()
    queue.record(0.3)
    remaining = RemainingWorkEstimator()
    for n in (3, 6, 9):
        remaining.record_program(n)
    p = make(queue_delay=queue, remaining=remaining)
    for x in durations:
        p.observe_tool("grep", x)
    for tool in ("grep", "unseen", None):
        assert p.decide_tier(tool, tokens, 131_072, turns_done) == as_tier(p.decide(tool, tokens, turns_done))


def test_every_other_mode_and_stage_is_decide_even_with_a_link():
    cold = TTLPolicy("model", predictor=ToolDurationPredictor(min_global_samples=5))
    assert cold.decide_tier("ls", 1000, 131_072, 1, False, LINK, 0.1) == as_tier(cold.decide("ls", 1000, 1))
    for mode in ("fixed", "preserve", "off"):
        p = make(mode)
        p.observe_tool("ls", 0.5)
        for tool in ("ls", None):
            assert p.decide_tier(tool, 5000, 131_072, 1, False, LINK, 0.1) == as_tier(p.decide(tool, 5000, 1))
    p = make()
    p.observe_tool("ls", 0.5)
    assert p.decide_tier("ls", 5000, 131_072, 2, True, LINK, 0.1) == TierDecision("drop", 0.0, 0.0, 0.0)


def test_model_mode_parks_a_long_tool_and_pins_a_quick_one():
    p = make()
    for x in (6.0, 8.0, 10.0):
        p.observe_tool("pytest", x)
    for x in (0.01, 0.02):
        p.observe_tool("ls", x)
    tokens, per_token = 20_000, 131_072  # R = 20 s with this reload model
    load = LINK.load_seconds(tokens * per_token)
    assert p.decide("pytest", tokens).ttl_s == 10.0  # without a host tier: pinned 10 s
    d = p.decide_tier("pytest", tokens, per_token, 1, False, LINK, 0.1)
    assert d == choose_tier([6.0, 8.0, 10.0], 20.0, load_s=load, cpu_price=0.1)
    assert d.tier == "cpu" and d.ttl_s == 10.0 and d.benefit_s == pytest.approx(20.0 - load)
    assert p.decide_tier("ls", tokens, per_token, 1, False, LINK, 0.1).tier == "gpu"  # back before a reload
    # A prefetch hides the load (the quick tool parks too); a slow link never parks.
    assert p.decide_tier("ls", tokens, per_token, 1, False, LINK, 0.1, prefetch=True).tier == "cpu"
    crawl = HostLink(1e6, 1e6)
    assert p.decide_tier("pytest", tokens, per_token, 1, False, crawl, 0.0).tier == "gpu"


def test_decide_tier_validates_its_new_arguments():
    p = make()
    p.observe_tool("ls", 1.0)
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="bytes_per_token"):
            p.decide_tier("ls", 1000, bad, 1, False, LINK, 0.1)
        with pytest.raises(ValueError, match="cpu_price"):
            p.decide_tier("ls", 1000, 100, 1, False, LINK, bad)
        with pytest.raises(ValueError, match="gpu_price"):
            p.decide_tier("ls", 1000, 100, gpu_price=bad)
    with pytest.raises(ValueError, match="cpu_price"):
        p.decide_tier("ls", 1000, 100, 1, False, LINK)
