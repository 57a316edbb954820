"""Named simulator profiles: a cost model plus the engine shape vLLM would run with on that hardware.

| name | hardware, model | cost model |
|---|---|---|
| ``h100-llama-3.1-8b`` | 1 x H100 SXM 80 GB, Llama-3.1-8B BF16 | roofline |
| ``h200-llama-3.1-8b`` | 1 x H200 SXM 141 GB, Llama-3.1-8B BF16 | roofline, fitted to measured H200 steps |
| ``a100-llama-3.1-8b`` | 1 x A100 SXM 80 GB, Llama-3.1-8B BF16 | roofline |
| ``h100x4-llama-3.1-70b`` | 4 x H100 SXM 80 GB (tensor parallel 4), Llama-3.1-70B BF16 | roofline |
| ``cpu`` | this machine's CPU engine on an embedded model | fitted (``continuum profile``) |

Engine shape, as vLLM 0.32 sets it for ``vllm serve`` when no flag overrides it: KV block size 16 on GPU;
``max_num_batched_tokens`` 8192 and ``max_num_seqs`` 1024 on H100-class GPUs, 2048 and 256 on A100;
``gpu_memory_utilization`` 0.92; ``max_model_len`` the model's 131,072 tokens.

KV pool, per GPU: total memory x 0.92 - the GPU's share of the weights - a reserve for activations at
``max_num_batched_tokens``, the sampler's logits at ``max_num_seqs``, CUDA graphs and NCCL/cuBLAS workspaces
(2.5 GiB, 3 GiB for 70B); divided by the bytes of one block (block size x layers x 2 (K, V) x KV heads on
this GPU x head size x 2 bytes). H100 with Llama-3.1-8B: 72.9 - 15.0 - 2.5 = 55.4 GiB, 128 KiB per token,
about 454k tokens (28.4k blocks of 16). H200 (the H100's engine shape): 129.2 - 15.0 - 2.5 = 111.7 GiB, about
915k tokens (57.2k blocks of 16).

Efficiency factors: GEMM and element-wise ones fitted to the Vidur H100/A100 measurements
(``python -m continuum_eval.sim.fit.calibration``; for H100 the fit used Llama-2-7B and -70B shapes, which are those of
Llama-3.1 except the 7B's MHA and smaller MLP; for A100 the Llama-3-8B and -70B shapes, which are exactly
Llama-3.1's); attention, all-reduce and per-step overhead are documented assumptions
(`continuum_eval.sim.cost.costmodel`).
H200: attention, element-wise, GEMM sharpness and per-step overhead fitted to whole-step times measured on an
H200 (``python -m continuum_eval.sim.fit.h200``, which says how and how well), GEMM efficiencies the measured
GEMM and copy ceilings over the datasheet.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from continuum_eval.sim.cost.costmodel import Efficiency, LinearCostModel, RooflineCostModel, StepBatch, prefill_seconds
from continuum_eval.sim.cost.specs import A100, H100, H200, LLAMA_3_1_8B, LLAMA_3_1_70B, GiB, GPUSpec, ModelSpec

FITTED_DIR = Path(__file__).resolve().parents[1] / "fitted"
GPU_MEMORY_UTILIZATION = 0.92  # vLLM's default

# Fitted to the Vidur measurements by continuum_eval.sim.fit.calibration (rounded); see the module docstring.
H100_EFF = Efficiency(gemm_compute=0.763, gemm_memory=0.878, gemm_sharpness=1.33, gemm_latency_s=4.0e-6,
                      elementwise_memory=0.608, elementwise_latency_s=2.9e-6,
                      attn_compute=0.5, attn_memory=0.7, allreduce_latency_s=8e-6, allreduce_link=0.8,
                      step_overhead_s=1.0e-3, source="vidur h100 fit (GEMM, element-wise); assumptions (rest)")
A100_EFF = Efficiency(gemm_compute=0.734, gemm_memory=0.796, gemm_sharpness=1.43, gemm_latency_s=5.0e-6,
                      elementwise_memory=0.507, elementwise_latency_s=3.57e-6,
                      attn_compute=0.5, attn_memory=0.7, allreduce_latency_s=10e-6, allreduce_link=0.8,
                      step_overhead_s=1.0e-3, source="vidur a100 fit (GEMM, element-wise); assumptions (rest)")
# Fitted to step times measured on an H200 by `python -m continuum_eval.sim.fit.h200` (rounded): attention,
# element-wise, GEMM sharpness and step overhead fitted; GEMM compute / memory the measured 783 TFLOP/s GEMM and
# 4.16 TB/s copy over the datasheet's 989 TFLOP/s and 4.8 TB/s; kernel latencies the H100 fit's. The measured
# model runs RMSNorm, rotary and SiLU unfused, so element-wise work and overhead are upper bounds on vLLM's.
H200_EFF = Efficiency(gemm_compute=0.792, gemm_memory=0.868, gemm_sharpness=5.54, gemm_latency_s=4.0e-6,
                      elementwise_memory=0.145, elementwise_latency_s=2.9e-6,
                      attn_compute=0.333, attn_memory=0.951, attn_latency_s=8e-6, allreduce_latency_s=8e-6,
                      allreduce_link=0.8, step_overhead_s=2.89e-3,
                      source="h200 step-time fit (attention, element-wise, overhead); measured ceilings (GEMM)")


@dataclass
class Profile:
    name: str
    description: str
    cost: Any  # RooflineCostModel | LinearCostModel: step_time(StepBatch) -> seconds
    num_blocks: int
    block_size: int
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    memory: dict = field(default_factory=dict)  # how the KV pool was sized
    extra: dict = field(default_factory=dict)

    def step_time(self, batch: StepBatch) -> float:
        return self.cost.step_time(batch)

    @property
    def kv_tokens(self) -> int:
        return self.num_blocks * self.block_size

    def prefill_seconds(self, tokens: int, cached: int = 0) -> float:
        """Prefill of ``tokens`` (``cached`` of them hit) alone on an idle engine, chunked as vLLM does."""
        return prefill_seconds(self.cost, tokens, self.max_num_batched_tokens, cached)

    def reload_cost(self) -> list[float]:
        """[a, b, c] of kvttl's quadratic reload-cost model, fitted to this profile's prefill times."""
        from kvttl import ReloadCostModel

        top = min(self.max_model_len, 65536)
        pts = [(t, self.prefill_seconds(t)) for t in (64, 256, 1024, 2048, 4096, 8192, 16384, 32768, top)
               if t <= top]
        m = ReloadCostModel.fit(pts)
        return [m.a, m.b, m.c]

    def describe(self) -> dict:
        return {"name": self.name, "description": self.description, "num_blocks": self.num_blocks,
                "block_size": self.block_size, "kv_tokens": self.kv_tokens, "max_model_len": self.max_model_len,
                "max_num_seqs": self.max_num_seqs, "max_num_batched_tokens": self.max_num_batched_tokens,
                "memory": self.memory, "cost": self.cost.describe(), **self.extra}


def kv_pool(model: ModelSpec, gpu: GPUSpec, tp: int, block_size: int, reserve_gib: float,
            utilization: float = GPU_MEMORY_UTILIZATION) -> tuple[int, dict]:
    budget = gpu.mem_bytes * utilization
    weights = model.weight_bytes() / tp
    kv = budget - weights - reserve_gib * GiB
    per_block = block_size * model.kv_bytes_per_token(tp)
    blocks = int(kv // per_block)
    if blocks <= 0:
        raise ValueError(f"{model.name} does not fit on {tp} x {gpu.name}")
    return blocks, {"gpu_memory_gib": round(gpu.mem_bytes / GiB, 2), "utilization": utilization,
                    "weights_gib_per_gpu": round(weights / GiB, 2), "reserve_gib": reserve_gib,
                    "kv_gib_per_gpu": round(kv / GiB, 2), "kv_bytes_per_token_per_gpu": model.kv_bytes_per_token(tp)}


def gpu_profile(name: str, model: ModelSpec, gpu: GPUSpec, tp: int, eff: Efficiency, batched_tokens: int,
                max_seqs: int, reserve_gib: float, block_size: int = 16) -> Profile:
    blocks, memory = kv_pool(model, gpu, tp, block_size, reserve_gib)
    desc = f"{tp} x {gpu.name}" if tp > 1 else gpu.name
    return Profile(name, f"{desc}, {model.name} BF16{f', tensor parallel {tp}' if tp > 1 else ''}",
                   RooflineCostModel(model, gpu, tp, eff), num_blocks=blocks, block_size=block_size,
                   max_model_len=model.max_position, max_num_seqs=max_seqs, max_num_batched_tokens=batched_tokens,
                   memory=memory)


def cpu_profile(path: Path | None = None) -> Profile:
    """The profile fitted by ``continuum profile`` (JSON: coefficients and the engine shape it measured)."""
    path = Path(path) if path else FITTED_DIR / "cpu.json"
    if not path.exists():
        raise FileNotFoundError(f"no fitted CPU profile at {path}: run `continuum profile` first")
    data = json.loads(path.read_text())
    engine = data["engine"]
    meta = {k: v for k, v in data.items() if k not in ("coef", "engine")}
    return Profile("cpu", f"CPU engine, {data.get('model', '?')} (fitted {data.get('created', '?')})",
                   LinearCostModel(data["coef"], meta), num_blocks=int(engine["num_blocks"]),
                   block_size=int(engine["block_size"]), max_model_len=int(engine["max_model_len"]),
                   max_num_seqs=int(engine["max_num_seqs"]),
                   max_num_batched_tokens=int(engine["max_num_batched_tokens"]),
                   memory={"source": str(path)},
                   extra={"client_overhead_s": float(data.get("client_overhead_s", 0.0))})


_BUILDERS = {
    "h100-llama-3.1-8b": lambda: gpu_profile("h100-llama-3.1-8b", LLAMA_3_1_8B, H100, 1, H100_EFF, 8192, 1024, 2.5),
    "h200-llama-3.1-8b": lambda: gpu_profile("h200-llama-3.1-8b", LLAMA_3_1_8B, H200, 1, H200_EFF, 8192, 1024, 2.5),
    "a100-llama-3.1-8b": lambda: gpu_profile("a100-llama-3.1-8b", LLAMA_3_1_8B, A100, 1, A100_EFF, 2048, 256, 2.5),
    "h100x4-llama-3.1-70b": lambda: gpu_profile("h100x4-llama-3.1-70b", LLAMA_3_1_70B, H100, 4, H100_EFF, 8192,
                                                1024, 3.0),
    "cpu": cpu_profile,
}
PROFILES = tuple(_BUILDERS)


def get_profile(name: str) -> Profile:
    """A profile by name, or a fitted profile from a JSON path."""
    if name in _BUILDERS:
        return _BUILDERS[name]()
    if name.endswith(".json"):
        return cpu_profile(Path(name))
    raise ValueError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)} or a fitted JSON file")


def listing() -> list[dict]:
    """One row per profile with its main parameters and a few predicted step times."""
    rows = []
    for name in PROFILES:
        try:
            p = get_profile(name)
        except FileNotFoundError as e:
            rows.append({"name": name, "error": str(e)})
            continue
        row = p.describe()
        row["examples_ms"] = {
            "decode_b1_ctx1k": 1e3 * p.step_time(StepBatch.decode([1024])),
            "decode_b64_ctx8k": 1e3 * p.step_time(StepBatch.decode([8192] * 64)),
            "prefill_2k": 1e3 * p.prefill_seconds(2048),
            "prefill_8k": 1e3 * p.prefill_seconds(8192),
        }
        rows.append(row)
    return rows


def format_listing(rows: list[dict]) -> str:
    out = []
    for r in rows:
        if "error" in r:
            out.append(f"{r['name']}: unavailable ({r['error']})")
            continue
        ex = r["examples_ms"]
        out.append(f"{r['name']}: {r['description']}")
        out.append(f"  KV pool {r['num_blocks']} blocks x {r['block_size']} = {r['kv_tokens']:,} tokens; "
                   f"max_model_len {r['max_model_len']:,}; max_num_seqs {r['max_num_seqs']}; "
                   f"max_num_batched_tokens {r['max_num_batched_tokens']}")
        cost = r["cost"]
        if cost["kind"] == "roofline":
            e, g = cost["efficiency"], cost["gpu"]
            out.append(f"  roofline: {g['bf16_flops'] / 1e12:.0f} TFLOP/s, {g['mem_bw'] / 1e12:.2f} TB/s, "
                       f"tp {cost['tp']}; "
                       f"GEMM eff {e['gemm_compute']:.2f} compute / {e['gemm_memory']:.2f} memory; "
                       f"attention {e['attn_compute']:.2f} / {e['attn_memory']:.2f}; "
                       f"overhead {1e3 * e['step_overhead_s']:.1f} ms/step")
            m = r["memory"]
            out.append(f"  memory/GPU: {m['gpu_memory_gib']} GiB x {m['utilization']} - weights "
                       f"{m['weights_gib_per_gpu']} GiB - reserve {m['reserve_gib']} GiB = "
                       f"KV {m['kv_gib_per_gpu']} GiB")
        else:
            coef = ", ".join(f"{k} {v:.3g}" for k, v in cost["coef"].items())
            out.append(f"  fitted: {coef} (median fit error {cost.get('fit_median_rel_err', math.nan):.1%})")
        out.append("  step ms: " + ", ".join(f"{k} {v:.2f}" for k, v in ex.items()))
    return "\n".join(out)
