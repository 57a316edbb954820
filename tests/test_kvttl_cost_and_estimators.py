"""Reload-cost model (R), queueing delay (T) and remaining work (eta)."""

import math

import pytest

from kvttl import QueueDelayEstimator, ReloadCostModel, RemainingWorkEstimator


def test_reload_model_shape():
    m = ReloadCostModel(a=0.1, b=1e-3, c=1e-7)
    assert m.seconds(0) == 0.0
    assert m.seconds(1000) == pytest.approx(0.1 + 1.0 + 0.1)
    assert m.seconds(1000, cached_tokens=1000) == 0.0
    assert m.seconds(1000, cached_tokens=400) == pytest.approx(0.1 + 0.6 + 1e-7 * (1000**2 - 400**2))
    assert m.seconds(2000) > m.seconds(1000)
    d = ReloadCostModel()
    assert 0 < d.seconds(8000) < 10  # CPU-ish defaults: seconds, not minutes


def test_reload_model_rejects_negative_coefficients():
    with pytest.raises(ValueError):
        ReloadCostModel(a=-1.0)


def test_fit_recovers_a_quadratic():
    true = ReloadCostModel(a=0.05, b=2e-4, c=3e-9)
    pairs = [(t, true.seconds(t)) for t in (128, 512, 2048, 8192, 32768)]
    fit = ReloadCostModel.fit(pairs)
    assert fit.a == pytest.approx(0.05, rel=1e-6)
    assert fit.b == pytest.approx(2e-4, rel=1e-6)
    assert fit.c == pytest.approx(3e-9, rel=1e-6)


def test_fit_keeps_coefficients_non_negative():
    # Concave data: an unconstrained quadratic would have c < 0.
    pairs = [(1000, 1.0), (2000, 1.8), (3000, 2.4), (4000, 2.8)]
    fit = ReloadCostModel.fit(pairs)
    assert min(fit.a, fit.b, fit.c) >= 0
    assert fit.seconds(4000) > fit.seconds(1000)


def test_fit_with_few_points():
    one = ReloadCostModel.fit([(1000, 0.5)])
    assert (one.a, one.c) == (0.0, 0.0) and one.b == pytest.approx(5e-4)
    two = ReloadCostModel.fit([(1000, 0.6), (2000, 1.1)])
    assert two.c == 0.0
    assert two.seconds(3000) == pytest.approx(1.6)
    with pytest.raises(ValueError):
        ReloadCostModel.fit([])


def test_queue_delay_is_a_sliding_window_mean():
    q = QueueDelayEstimator(window=3)
    assert q.value() == 0.0
    for x in (1.0, 2.0, 3.0):
        q.record(x)
    assert q.value() == pytest.approx(2.0)
    q.record(10.0)  # 1.0 falls out
    assert q.value() == pytest.approx(5.0)
    assert len(q) == 3
    with pytest.raises(ValueError):
        q.record(-1.0)
    assert QueueDelayEstimator(initial_s=0.5).value() == 0.5


def test_eta_defaults_to_one():
    r = RemainingWorkEstimator()
    assert r.eta(0) == 1.0
    assert r.eta(7) == 1.0


def test_eta_is_the_shrunk_mean_residual_turn_count():
    r = RemainingWorkEstimator(prior_weight=0.0)
    for n in (4, 6, 10, 10):
        r.record_program(n)
    assert r.eta(0) == pytest.approx(7.5)
    assert r.eta(5) == pytest.approx((1 + 5 + 5) / 3)  # programs longer than 5 turns
    assert r.eta(9) == pytest.approx(1.0)
    assert r.eta(10) == 1.0  # longer than any seen: only the returning turn
    shrunk = RemainingWorkEstimator(prior_weight=2.0)
    for n in (4, 6, 10, 10):
        shrunk.record_program(n)
    assert shrunk.eta(5) == pytest.approx((11 + 2 * 1.0) / (3 + 2))
    assert all(shrunk.eta(k) >= 1.0 for k in range(15))


def test_eta_window_is_bounded_and_validated():
    r = RemainingWorkEstimator(window=2, prior_weight=0.0)
    for n in (100, 3, 5):
        r.record_program(n)
    assert r.eta(0) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        r.record_program(0)
    assert not math.isnan(r.eta(-3))
