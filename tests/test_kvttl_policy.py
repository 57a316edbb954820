"""Retention modes: model, fixed (public Continuum behaviour), preserve, off."""

import math

import pytest

from kvttl import (
    QueueDelayEstimator,
    ReloadCostModel,
    RemainingWorkEstimator,
    ToolDurationPredictor,
    TTLPolicy,
    choose_ttl,
)


def make(mode="model", **kw):
    predictor = ToolDurationPredictor(min_global_samples=1, min_tool_samples=1)
    reload_model = ReloadCostModel(a=0.0, b=1e-3, c=0.0)  # 1 s per 1,000 tokens
    return TTLPolicy(mode, predictor=predictor, reload_model=reload_model, **kw)


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError):
        TTLPolicy("sometimes")


def test_off_never_pins():
    p = make("off")
    p.observe_tool("ls", 0.1)
    d = p.decide("ls", 10_000, 1)
    assert d.ttl_s == 0.0 and d.benefit_s == 0.0 and not d.pin
    assert p.ttl_for(None, 10_000, 1) == 0.0


def test_preserve_pins_until_released():
    p = make("preserve")
    d = p.decide("ls", 2000, 1)
    assert d.ttl_s == math.inf and d.p_hit == 1.0
    assert d.benefit_s == pytest.approx(2.0)
    assert p.decide("ls", 2000, 1, last_step=True).ttl_s == 0.0


def test_model_mode_is_the_rule_with_the_estimators():
    queue = QueueDelayEstimator()
    queue.record(0.5)
    remaining = RemainingWorkEstimator(prior_weight=0.0)
    for n in (6, 6, 6):
        remaining.record_program(n)
    p = make("model", queue_delay=queue, remaining=remaining)
    for x in (0.2, 0.3, 0.4, 30.0):
        p.observe_tool("grep", x)
    d = p.decide("grep", 1500, 2)
    assert d.eta == pytest.approx(4.0)
    assert d.miss_cost_s == pytest.approx(0.5 * 4.0 + 1.5)
    assert d.ttl_s == choose_ttl([0.2, 0.3, 0.4, 30.0], 1.5, 0.5, 4.0) == 0.4
    assert d.p_hit == 0.75
    assert d.benefit_s == pytest.approx(0.75 * 3.5)
    assert d.stage == "tool"
    assert p.expected_benefit("grep", 1500, 2) == pytest.approx(d.benefit_s)
    assert p.decide("grep", 1500, 2, last_step=True).ttl_s == 0.0


def test_model_mode_cold_start_pins_for_the_default_then_weighs_samples():
    predictor = ToolDurationPredictor(default_s=2.0, min_global_samples=3, min_tool_samples=3)
    p = TTLPolicy("model", predictor=predictor, reload_model=ReloadCostModel(0, 1e-3, 0))
    d = p.decide("ls", 1000, 1)
    assert d.stage == "default" and d.ttl_s == 2.0  # no evidence yet: the default TTL
    assert d.benefit_s == pytest.approx(0.5 * 1.0)  # uninformed hit chance x a 1 s miss
    for _ in range(3):
        p.observe_tool("ls", 3.0)
    assert p.decide("ls", 1000, 1).stage != "default"
    assert p.ttl_for("ls", 1000, 1) == 0.0  # a miss costs 1 s < 3 s held
    assert p.ttl_for("ls", 5000, 1) == 3.0  # a miss costs 5 s > 3 s held


def test_fixed_mode_reproduces_public_continuum():
    p = make("fixed")
    assert p.ttl_for(None, 5000, 1) == 0.0  # no tool call parsed: no pin
    assert p.ttl_for("ls", 5000, 1) == 2.0  # no history yet: pin 2 s
    p.observe_tool("ls", 0.5)
    p.observe_tool("ls", 1.5)
    assert p.ttl_for("ls", 5000, 1) == 2.0  # mean 1.0 <= 2
    p.observe_tool("pytest", 2.0)
    assert p.ttl_for("pytest", 5000, 1) == 2.0  # mean exactly 2: still pinned
    p.observe_tool("pytest", 5.0)
    assert p.ttl_for("pytest", 5000, 1) == 0.0  # mean 3.5 > 2: not pinned
    # The TTL does not depend on the context size or the load.
    assert p.ttl_for("ls", 1, 1) == 2.0
    assert p.decide("ls", 5000, 1, last_step=True).ttl_s == 0.0


def test_fixed_mode_uses_the_whole_history_and_a_custom_constant():
    predictor = ToolDurationPredictor(window=2, min_global_samples=1, min_tool_samples=1)
    p = TTLPolicy("fixed", fixed_ttl_s=3.0, predictor=predictor)
    for x in (10.0, 10.0, 0.1, 0.1):
        p.observe_tool("find", x)  # window holds [0.1, 0.1], all-time mean 5.05
    assert p.ttl_for("find", 100, 1) == 0.0
    p.observe_tool("cat", 2.9)
    assert p.ttl_for("cat", 100, 1) == 3.0
    d = p.decide("cat", 100, 1)
    assert d.p_hit == 1.0 and d.benefit_s == pytest.approx(d.miss_cost_s)


def test_state_summarises_everything():
    p = make("model")
    p.observe_tool("ls", 0.1)
    p.observe_miss_delay(0.2)
    p.observe_program_end(3)
    s = p.state()
    assert s["mode"] == "model"
    assert s["queue_delay"]["samples"] == 1
    assert s["remaining_work"]["programs"] == 1
    assert "ls" in s["predictor"]["tools"]
