"""`continuum profile`'s measurement plan and fit (the measurement itself runs vLLM's engine: not here)."""

from __future__ import annotations

import pytest

from continuum_eval.sim.cost.costmodel import LinearCostModel, StepBatch
from continuum_eval.sim.fit.profile_cpu import (
    ProfileError,
    engine_grid,
    fit,
    fit_server,
    prefill_chunks,
    server_plan,
    summed_features,
)


def test_grid_covers_prefill_decode_and_mixed_batches():
    for quick in (True, False):
        names = [s["name"] for s in engine_grid(quick)]
        assert any(n.startswith("prefill") for n in names)
        assert any(n.startswith("decode") for n in names)
        assert any(n.startswith("mixed") for n in names)
        for s in engine_grid(quick):
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


def test_server_fit_recovers_steps_and_client_overhead_and_skips_stalled_decodes():
    truth = LinearCostModel({"const": 0.002, "tokens": 2e-5, "seqs": 1.5e-3, "prefill_pairs": 5e-9})
    overhead = 0.005
    decode, ttft = server_plan(quick=False)
    obs = []
    for n in ttft:
        chunks = prefill_chunks(n, 2048)
        obs.append({"kind": f"ttft{n}", "x": summed_features(chunks) + [1.0],
                    "seconds": overhead + sum(truth.step_time(c) for c in chunks)})
    for b, n in decode:
        batch = StepBatch.decode([n + 64] * b)
        for seconds in (truth.step_time(batch), 0.0, 0.0):  # two stalled repetitions
            obs.append({"kind": f"decode{b}x{n}", "x": summed_features([batch]) + [0.0], "seconds": seconds})
    model, fitted_overhead = fit_server(obs, {"model": "test"})
    assert fitted_overhead == pytest.approx(overhead, rel=1e-3)
    assert model.meta["fit_median_rel_err"] < 1e-3
    for name in ("const", "tokens", "seqs", "prefill_pairs"):
        assert model.describe()["coef"][name] == pytest.approx(truth.describe()["coef"][name], rel=1e-2)
    with pytest.raises(ProfileError):
        fit_server(obs[:3], {})
