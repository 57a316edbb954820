"""Roofline and fitted cost models, and the named profiles."""

from __future__ import annotations

import json

import numpy as np
import pytest

from continuum_eval.sim.cost.costmodel import LinearCostModel, RooflineCostModel, StepBatch, nnls
from continuum_eval.sim.cost.profiles import PROFILES, cpu_profile, get_profile, listing
from continuum_eval.sim.cost.specs import H100, LLAMA_3_1_8B, LLAMA_3_1_70B


def test_llama_shapes_give_the_published_sizes():
    assert LLAMA_3_1_8B.params() == pytest.approx(8.03e9, rel=0.01)
    assert LLAMA_3_1_70B.params() == pytest.approx(70.6e9, rel=0.01)
    assert LLAMA_3_1_8B.kv_bytes_per_token() == 128 * 1024  # 32 layers x 2 x 8 heads x 128 x 2 bytes
    assert LLAMA_3_1_70B.kv_bytes_per_token(tp=4) == 80 * 2 * 2 * 128 * 2


def test_decode_step_grows_with_the_batch_kv_bytes():
    p = get_profile("h100-llama-3.1-8b")
    by_ctx = [p.step_time(StepBatch.decode([c] * 16)) for c in (256, 1024, 4096, 16384)]
    by_batch = [p.step_time(StepBatch.decode([2048] * b)) for b in (1, 8, 64, 256)]
    assert by_ctx == sorted(by_ctx) and by_ctx[-1] > 1.5 * by_ctx[0]
    assert by_batch == sorted(by_batch)
    # Adding KV bytes adds time at about the attention's memory rate.
    cm = p.cost
    kv_bytes = 16 * (16384 - 256) * LLAMA_3_1_8B.kv_bytes_per_token()
    expect = kv_bytes / (H100.mem_bw * cm.eff.attn_memory)
    assert by_ctx[-1] - by_ctx[0] == pytest.approx(expect, rel=0.05)


def test_small_decode_is_memory_bound_on_the_weights():
    p = get_profile("h100-llama-3.1-8b")
    t = p.step_time(StepBatch.decode([128]))
    floor = LLAMA_3_1_8B.weight_bytes() / H100.mem_bw
    assert floor < t < 2 * floor  # 4.8 ms of weights at datasheet bandwidth; a real step is ~6-8 ms


def test_large_prefill_is_compute_bound():
    cm = get_profile("h100-llama-3.1-8b").cost
    m = 8192
    for k, n in cm.gemm_shapes().values():
        compute = 2 * m * k * n / (H100.bf16_flops * cm.eff.gemm_compute)
        memory = 2 * (k * n + m * k + m * n) / (H100.mem_bw * cm.eff.gemm_memory)
        assert compute > 2 * memory
    # Time per token flattens out: 4k and 8k token chunks cost about the same per token (attention aside).
    t4 = cm.step_time(StepBatch.prefill(4096)) / 4096
    t8 = cm.step_time(StepBatch.prefill(8192)) / 8192
    assert t8 == pytest.approx(t4, rel=0.15)
    # And it is near the FLOP count at the fitted efficiency.
    flops = 2 * LLAMA_3_1_8B.params() * 8192
    assert cm.step_time(StepBatch.prefill(8192)) > flops / H100.bf16_flops


def test_tensor_parallel_splits_work_and_adds_allreduce():
    one = RooflineCostModel(LLAMA_3_1_70B, H100, tp=1)
    four = RooflineCostModel(LLAMA_3_1_70B, H100, tp=4)
    b = StepBatch.decode([2048] * 32)
    assert four.step_time(b) < one.step_time(b) / 2.5
    assert four.allreduce(32) > 0 and one.allreduce(32) == 0


def test_kv_pool_fits_in_memory():
    for name in ("h100-llama-3.1-8b", "a100-llama-3.1-8b", "h100x4-llama-3.1-70b"):
        p = get_profile(name)
        m = p.memory
        used = p.num_blocks * p.block_size * m["kv_bytes_per_token_per_gpu"] / 2**30
        assert used <= m["kv_gib_per_gpu"] + 0.01
        budget = m["gpu_memory_gib"] * m["utilization"] + 0.02  # rounded to 0.01 GiB
        assert m["weights_gib_per_gpu"] + m["reserve_gib"] + used <= budget
        assert p.max_model_len == 131072
    assert 400_000 < get_profile("h100-llama-3.1-8b").kv_tokens < 500_000


def test_profile_listing_names():
    assert set(PROFILES) == {"h100-llama-3.1-8b", "h200-llama-3.1-8b", "a100-llama-3.1-8b", "h100x4-llama-3.1-70b",
                             "cpu"}
    rows = {r["name"]: r for r in listing()}
    assert rows["h100-llama-3.1-8b"]["examples_ms"]["decode_b1_ctx1k"] > 0
    assert rows["h200-llama-3.1-8b"]["examples_ms"]["decode_b1_ctx1k"] > 0
    with pytest.raises(ValueError):
        get_profile("tpu-v9")


def test_reload_cost_tracks_prefill_time():
    p = get_profile("h100-llama-3.1-8b")
    a, b, c = p.reload_cost()
    for n in (1024, 8192, 32768):
        assert a + b * n + c * n * n == pytest.approx(p.prefill_seconds(n), rel=0.25)


def test_nnls_and_linear_fit_recover_coefficients():
    rng = np.random.default_rng(0)
    batches, secs = [], []
    true = {"const": 0.002, "tokens": 4e-5, "seqs": 1e-4, "decode_kv": 2e-8}
    model = LinearCostModel(true)
    for _ in range(200):
        b = StepBatch()
        for _ in range(rng.integers(1, 20)):
            q = int(rng.choice([1, 1, 1, rng.integers(2, 500)]))
            b.add(q, q + int(rng.integers(0, 3000)), True)
        batches.append(b)
        secs.append(model.step_time(b))
    fit = LinearCostModel.fit(batches, secs)
    for k, v in true.items():
        assert fit.coef[k] == pytest.approx(v, rel=1e-3)
    x = nnls(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([-1.0, 2.0]))
    assert x[0] == 0 and x[1] == pytest.approx(2.0)
    with pytest.raises(ValueError):
        LinearCostModel({"const": -1.0})


def test_cpu_profile_from_json(tmp_path):
    path = tmp_path / "cpu.json"
    path.write_text(json.dumps({
        "model": "tiny", "coef": {"const": 0.003, "tokens": 2e-5},
        "engine": {"block_size": 32, "num_blocks": 500, "max_model_len": 4096, "max_num_seqs": 128,
                   "max_num_batched_tokens": 2048}, "client_overhead_s": 0.004}))
    p = cpu_profile(path)
    assert p.num_blocks == 500 and p.extra["client_overhead_s"] == 0.004
    assert p.step_time(StepBatch.prefill(100)) == pytest.approx(0.003 + 100 * 2e-5)
    assert get_profile(str(path)).name == "cpu"
