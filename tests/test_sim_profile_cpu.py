"""`continuum profile`'s measurement plan and fit (the measurement itself runs vLLM's engine: not here)."""

from __future__ import annotations

import pytest

from eval.sim.costmodel import LinearCostModel, StepBatch
from eval.sim.profile_cpu import ProfileError, _grid, fit


def test_grid_covers_prefill_decode_and_mixed_batches():
    for quick in (True, False):
        names = [s["name"] for s in _grid(quick)]
        assert any(n.startswith("prefill") for n in names)
        assert any(n.startswith("decode") for n in names)
        assert any(n.startswith("mixed") for n in names)
        for s in _grid(quick):
            assert all(n >= 1 and out >= 1 for _, n, out in s["reqs"])


def test_fit_recovers_a_known_engine_and_refuses_too_few_points():
    truth = LinearCostModel({"const": 0.004, "tokens": 3e-5, "seqs": 2e-4, "prefill_pairs": 1e-9})
    points = []
    for n in (16, 128, 512, 1024, 2048):
        points.append((StepBatch.prefill(n), truth.step_time(StepBatch.prefill(n))))
    for b in (1, 2, 4, 8, 16, 32, 64):
        for ctx in (64, 512, 2048):
            batch = StepBatch.decode([ctx] * b)
            points.append((batch, truth.step_time(batch)))
    model = fit(points, {"model": "test"})
    assert model.meta["fit_median_rel_err"] < 1e-6
    for b, s in points:
        assert model.step_time(b) == pytest.approx(s, rel=1e-6)
    with pytest.raises(ProfileError):
        fit(points[:5], {})
