"""The ``h200-llama-3.1-8b`` profile against the step times measured on an H200, and the host-link numbers.

Tolerance (the fit, documented in eval/sim/fit/h200.py, achieves median / max relative error of the step time:
prefill 2.3% / 5.2%, prefill over a cached prefix 0.8% / 1.5%, decode 1.5% / 18.4%, mixed 4.6% / 4.9%, all 23
rows 1.5% / 18.4%): each kind's median and max stay under the thresholds of `LIMITS`, a little above those.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from continuum_eval.sim.cost.profiles import GPU_MEMORY_UTILIZATION, H200_EFF, PROFILES, get_profile, kv_pool
from continuum_eval.sim.cost.specs import GPUS, H100, H200, LLAMA_3_1_8B, GiB
from continuum_eval.sim.fit.h200 import (
    FIT_BOUNDS,
    KINDS,
    MEASURED_PATH,
    fit_efficiency,
    load_ceilings,
    load_measured,
    start_efficiency,
)

# kind: (max median relative error, max relative error) of the step time
LIMITS = {"prefill": (0.03, 0.07), "prefill over cache": (0.015, 0.03), "decode": (0.025, 0.20),
          "mixed": (0.06, 0.06), "all": (0.025, 0.20)}


def test_measured_data_is_in_the_project():
    rows = load_measured(MEASURED_PATH)
    assert len(rows) == 23
    assert {r.kind for r in rows} == set(KINDS)
    assert all(r.step_s > 0 and r.attn_layer_s > 0 for r in rows)


def test_profile_step_times_match_every_measured_row():
    cost = get_profile("h200-llama-3.1-8b").cost
    rows = load_measured()
    err = {r.name: cost.step_time(r.batch()) / r.step_s - 1.0 for r in rows}
    for kind, (med_limit, max_limit) in LIMITS.items():
        sel = np.abs([err[r.name] for r in rows if kind in ("all", r.kind)])
        assert np.median(sel) <= med_limit, (kind, float(np.median(sel)), err)
        assert sel.max() <= max_limit, (kind, float(sel.max()), err)


def test_batches_count_what_the_measurement_ran():
    rows = {r.name: r for r in load_measured()}
    mixed = rows["mixed 2048 + 64 x 4096"].batch()
    assert (mixed.tokens, mixed.seqs, mixed.sampled) == (2048 + 64, 65, 65)
    assert mixed.decode_kv == 64 * 4096 and mixed.prefill_kv == 2048
    cached = rows["prefill 256 over 4096"].batch()
    assert cached.prefill_pairs == pytest.approx(256 * (4096 - 255 / 2))


def test_profile_constants_are_the_fit_rounded():
    rows = load_measured()
    fitted = fit_efficiency(rows, start_efficiency(load_ceilings()))
    for name in list(FIT_BOUNDS) + ["gemm_compute", "gemm_memory"]:
        assert getattr(H200_EFF, name) == pytest.approx(getattr(fitted, name), rel=0.01), name


def test_gemm_efficiencies_are_the_measured_ceilings():
    ceilings = load_ceilings()
    assert H200_EFF.gemm_compute * H200.bf16_flops == pytest.approx(ceilings["bf16_gemm_TFLOPs"] * 1e12, rel=0.01)
    assert H200_EFF.gemm_memory * H200.mem_bw == pytest.approx(ceilings["d2d_copy_TBps"] * 1e12, rel=0.01)


def test_kv_pool_is_sized_from_the_h200_memory_like_the_h100():
    p = get_profile("h200-llama-3.1-8b")
    h100 = get_profile("h100-llama-3.1-8b")
    assert "h200-llama-3.1-8b" in PROFILES and GPUS["h200"] is H200
    assert H200.mem_bytes / GiB == pytest.approx(140.4, abs=0.05)  # 141 GB of HBM3e as CUDA reports it
    reserve = h100.memory["reserve_gib"]
    blocks, memory = kv_pool(LLAMA_3_1_8B, H200, 1, 16, reserve)
    assert p.num_blocks == blocks and memory["utilization"] == GPU_MEMORY_UTILIZATION
    expect_tokens = (H200.mem_bytes * GPU_MEMORY_UTILIZATION - LLAMA_3_1_8B.weight_bytes()
                     - reserve * GiB) / LLAMA_3_1_8B.kv_bytes_per_token()
    assert p.kv_tokens == pytest.approx(expect_tokens, abs=16)
    assert (p.max_num_batched_tokens, p.max_num_seqs, p.block_size) == (h100.max_num_batched_tokens,
                                                                        h100.max_num_seqs, h100.block_size)


def test_host_link_copies_a_10k_token_context_in_about_24_ms():
    tokens = 10_000
    nbytes = tokens * LLAMA_3_1_8B.kv_bytes_per_token()
    assert nbytes == tokens * LLAMA_3_1_8B.layers * 2 * LLAMA_3_1_8B.kv_heads * LLAMA_3_1_8B.d * 2  # 1.31 GB
    load, store = H200.host_copy_s(nbytes), H200.host_copy_s(nbytes, to_device=False)
    assert load == pytest.approx(H200.host_link_latency_s + nbytes / H200.host_to_device_bw)
    assert load == pytest.approx(0.024, rel=0.03) and store == pytest.approx(0.024, rel=0.03)
    # The H200's link numbers are the measured pinned-copy rates.
    ceilings = load_ceilings()
    assert H200.host_to_device_bw == pytest.approx(ceilings["h2d_pinned_GBps"] * 1e9, rel=0.01)
    assert H200.device_to_host_bw == pytest.approx(ceilings["d2h_pinned_GBps"] * 1e9, rel=0.01)
    # One convention: every GPU's link is its pinned-copy rate. The H100 shares the H200's PCIe Gen5 x16; the
    # A100's Gen4 link (half the peak) copies at the same share of its peak, so twice as slowly.
    assert all(g.host_to_device_bw > 0 and g.device_to_host_bw > 0 for g in GPUS.values())
    assert H100.host_copy_s(nbytes) == load
    assert GPUS["a100"].host_copy_s(nbytes) == pytest.approx(2 * load, rel=1e-3)


def test_unknown_host_link_is_an_error():
    with pytest.raises(ValueError, match="host-link"):
        replace(H200, host_to_device_bw=0.0).host_copy_s(1e6)
