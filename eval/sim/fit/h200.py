"""Fit of the H200 roofline (profile ``h200-llama-3.1-8b``) to step times measured on an H200.

The data, ``eval/sim/fitted/h200-llama-3.1-8b-measured.json``, was measured on one H200 with a
Llama-3.1-8B-shaped model: random BF16 weights, cuBLAS GEMMs, SDPA flash attention, CUDA graphs, median of 20
replays; not vLLM's own kernels. RMSNorm, rotary and SiLU run unfused (vLLM fuses them), so the element-wise
work is an upper bound on vLLM's. Each row is one forward step: ``parts`` = ``[kind, new_tokens, context,
count]`` (a prefill of ``new_tokens`` over a ``context`` that includes them, or ``count`` decodes at that
context), ``step_s`` the whole step, ``attn_layer_s`` one layer's attention alone. ``ceilings`` holds the
measured device-copy, BF16 GEMM and host-link rates.

Why fit some knobs and fix others: whole-step times cannot tell apart the terms that scale alike.

- GEMM efficiencies are the measured ceilings over the datasheet peaks (8192^3 BF16 GEMM 783 of 989 TFLOP/s;
  device copy 4.16 of 4.8 TB/s), not fitted: fitted freely, they trade off against the element-wise term
  (both grow with the batch's tokens) and the step overhead (the weight reads are a constant per step too).
- Kernel latency floors (GEMM, element-wise, attention) stay at the H100 fit's values; every other constant
  per-step cost lands in ``step_overhead_s``, which is fitted.
- Fitted: ``attn_compute`` (prefill attention, compute-bound), ``attn_memory`` (decode attention, memory-bound),
  ``elementwise_memory``, ``gemm_sharpness`` and ``step_overhead_s``, by Levenberg-Marquardt on the logs of
  the parameters, minimising the squared relative error (model / measured - 1) of every row's step time.

Result with the profile's rounded constants (``python -m continuum_eval.sim.fit.h200`` prints it;
tests/test_sim_h200_profile.py holds the profile to it): median relative error 1.5% over the 23 rows; per kind
(median / max) prefill 2.3% / 5.2%, prefill over a cached prefix 0.8% / 1.5%, mixed 4.6% / 4.9%, decode
1.5% / 18.4%. Every decode row is within 9% but one: a single sequence decoding at 8k context is 18% too fast. The
measured kernel there runs one 4-query-row block per KV head (8 thread blocks on 132 SMs, no split of the
context) and reads the KV cache at 0.3 TB/s; a batch of 16 or more reads it at 4.2 TB/s, which is what
``attn_memory`` captures. Likewise ``attn_compute`` (0.33) sits between the measured kernel's fresh causal
prefill (up to 0.6 of the datasheet peak at 8k tokens) and its prefill over a cached prefix with a
lower-right causal mask (0.06-0.35), because the prefix rows' step times are mostly attention.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from continuum.serve.verbs import setup_logging
from continuum_eval.sim.cost.costmodel import Efficiency, RooflineCostModel, StepBatch
from continuum_eval.sim.cost.profiles import FITTED_DIR, H100_EFF, get_profile
from continuum_eval.sim.cost.specs import H200, LLAMA_3_1_8B, GPUSpec

MEASURED_PATH = FITTED_DIR / "h200-llama-3.1-8b-measured.json"

# Fitted knobs and their bounds; the fit runs on their logarithms.
FIT_BOUNDS = {
    "attn_compute": (0.02, 1.0), "attn_memory": (0.02, 1.0), "elementwise_memory": (0.02, 1.0),
    "gemm_sharpness": (1.0, 12.0), "step_overhead_s": (1e-5, 1e-2),
}
KINDS = ("prefill", "prefill over cache", "decode", "mixed")


@dataclass(frozen=True)
class MeasuredStep:
    """One measured forward step: what it computed and how long it took."""

    name: str
    parts: tuple[tuple[str, int, int, int], ...]
    step_s: float
    attn_layer_s: float

    @property
    def kind(self) -> str:
        """Scenario family: fresh prefill, prefill over a cached prefix, decode batch, or both in one step."""
        kinds = {p[0] for p in self.parts}
        if len(kinds) > 1:
            return "mixed"
        if "decode" in kinds:
            return "decode"
        return "prefill over cache" if any(c > n for _, n, c, _ in self.parts) else "prefill"

    def batch(self) -> StepBatch:
        """The same step as the simulator describes it (every request samples a token, as measured)."""
        b = StepBatch()
        for kind, new, ctx, count in self.parts:
            for _ in range(count):
                b.add(new if kind == "prefill" else 1, ctx, True)
        return b


def load_measured(path: Path = MEASURED_PATH) -> list[MeasuredStep]:
    """The measured rows that have a step time (a failed scenario has an ``error`` instead)."""
    data = json.loads(Path(path).read_text())
    return [MeasuredStep(r["name"], tuple(tuple(p) for p in r["parts"]), float(r["step_s"]),
                         float(r["attn_layer_s"])) for r in data["rows"] if "step_s" in r]


def load_ceilings(path: Path = MEASURED_PATH) -> dict[str, float]:
    """Measured device-copy (TB/s), BF16 GEMM (TFLOP/s) and host-link (GB/s) rates."""
    return {k: float(v) for k, v in json.loads(Path(path).read_text())["ceilings"].items()}


def start_efficiency(ceilings: dict[str, float], gpu: GPUSpec = H200) -> Efficiency:
    """The H100 fit's factors with the GEMM efficiencies replaced by the measured ceilings over the datasheet."""
    return replace(H100_EFF, gemm_compute=ceilings["bf16_gemm_TFLOPs"] * 1e12 / gpu.bf16_flops,
                   gemm_memory=ceilings["d2d_copy_TBps"] * 1e12 / gpu.mem_bw, source="")


def relative_errors(rows: list[MeasuredStep], cost: RooflineCostModel) -> np.ndarray:
    """model / measured - 1 of every row's step time."""
    return np.array([cost.step_time(r.batch()) / r.step_s - 1.0 for r in rows])


def fit_efficiency(rows: list[MeasuredStep], start: Efficiency, gpu: GPUSpec = H200,
                   bounds: dict[str, tuple[float, float]] | None = None, iters: int = 200) -> Efficiency:
    """Levenberg-Marquardt on log-parameters: least squares of the step times' relative errors."""
    bounds = bounds or FIT_BOUNDS
    names = list(bounds)
    lo = np.log([bounds[n][0] for n in names])
    hi = np.log([bounds[n][1] for n in names])
    batches = [r.batch() for r in rows]
    measured = np.array([r.step_s for r in rows])

    def make(x: np.ndarray) -> Efficiency:
        return replace(start, **{n: float(math.exp(v)) for n, v in zip(names, x)})

    def resid(x: np.ndarray) -> np.ndarray:
        cm = RooflineCostModel(LLAMA_3_1_8B, gpu, 1, make(x))
        return np.array([cm.step_time(b) for b in batches]) / measured - 1.0

    x = np.clip(np.log([getattr(start, n) for n in names]), lo, hi)
    r = resid(x)
    cost, lam, h = float(r @ r), 1e-2, 1e-6
    for _ in range(iters):
        jac = np.empty((len(r), len(x)))
        for j in range(len(x)):
            dx = np.zeros_like(x)
            dx[j] = h
            jac[:, j] = (resid(x + dx) - r) / h
        a, g = jac.T @ jac, jac.T @ r
        improved = False
        while lam < 1e10:
            step = np.linalg.solve(a + lam * np.diag(np.diag(a) + 1e-12), -g)
            x_new = np.clip(x + step, lo, hi)
            r_new = resid(x_new)
            if float(r_new @ r_new) < cost:
                improved = cost - float(r_new @ r_new) > 1e-12 * cost
                x, r, cost, lam = x_new, r_new, float(r_new @ r_new), lam / 3
                break
            lam *= 4
        if not improved:
            break
    return replace(make(x), source="h200 step-time fit (continuum_eval.sim.fit.h200)")


def summary(rows: list[MeasuredStep], cost: RooflineCostModel) -> dict[str, tuple[float, float]]:
    """(median, max) absolute relative error of the step time per scenario kind, and over all rows."""
    err = np.abs(relative_errors(rows, cost))
    out = {}
    for kind in KINDS + ("all",):
        sel = [i for i, r in enumerate(rows) if kind in ("all", r.kind)]
        if sel:
            out[kind] = (float(np.median(err[sel])), float(err[sel].max()))
    return out


def table(rows: list[MeasuredStep], cost: RooflineCostModel) -> str:
    """Markdown: each scenario's measured and modelled step (and one layer's attention), then per-kind errors."""
    lines = ["| scenario | kind | measured step ms | model step ms | rel. error | attn/layer measured us | "
             "model us |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        b = r.batch()
        step, attn = cost.step_time(b), cost.attention(b)
        lines.append(f"| {r.name} | {r.kind} | {1e3 * r.step_s:.2f} | {1e3 * step:.2f} | "
                     f"{step / r.step_s - 1:+.1%} | {1e6 * r.attn_layer_s:.1f} | {1e6 * attn:.1f} |")
    lines += ["", "| kind | rows | median rel. error | max rel. error |", "|---|---|---|---|"]
    counts = {k: sum(1 for r in rows if k in ("all", r.kind)) for k in KINDS + ("all",)}
    for kind, (med, mx) in summary(rows, cost).items():
        lines.append(f"| {kind} | {counts[kind]} | {med:.1%} | {mx:.1%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Fit, print the fitted factors, and the error table of the fit and of the profile's rounded constants."""
    setup_logging()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=MEASURED_PATH, help="measured step times (JSON)")
    args = ap.parse_args(argv)
    rows = load_measured(args.data)
    start = start_efficiency(load_ceilings(args.data))
    eff = fit_efficiency(rows, start)
    print("fixed:", {k: round(getattr(eff, k), 8) for k in ("gemm_compute", "gemm_memory", "gemm_latency_s",
                                                          "elementwise_latency_s", "attn_latency_s")})
    print("fitted:", {k: round(getattr(eff, k), 8) for k in FIT_BOUNDS})
    print("\nfit:\n" + table(rows, RooflineCostModel(LLAMA_3_1_8B, H200, 1, eff)))
    print("\nprofile h200-llama-3.1-8b (rounded constants):\n" + table(rows, get_profile("h200-llama-3.1-8b").cost))


if __name__ == "__main__":
    main()
