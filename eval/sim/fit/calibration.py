"""Calibration of the roofline against measured GPU timings of transformer linear layers.

The Vidur project measured, on real H100 and A100 GPUs, every non-attention operation of one Llama decoder layer (QKV
and output projections, gate+up and down projections, norms, rotary, activation, residual add) by batch tokens and
tensor-parallel degree. The files live in ``<repo>/../shared/reference/vidur-mlp-profiles`` (see its README). This
module reads them, predicts the same operations with `RooflineCostModel`, and fits the GEMM and element-wise efficiency
factors of a GPU (``python -m continuum_eval.sim.fit.calibration`` prints the fit and the error table; the constants in
`continuum_eval.sim.cost.profiles` come from it).

The fit weighs every power-of-two range of token counts equally (the files sample large batches densely, but
decode-sized batches matter as much to a simulation) and minimises squared log error over all operations.

Tolerance (checked by tests/test_sim_calibration.py, per file and TP degree, over every measured token
count): the per-layer time of the four GEMMs, and of the whole linear part of the layer, is within 45% of the
measured median at every point, within 20% at the 90th percentile of points and within 10% at the median
point. Fitted result: median errors 1.5-7%, 90th percentiles 6-18%. The worst points sit at 128-1,024
tokens on H100 with 70B shapes, where cuBLAS changes tile shapes and the measured time jumps in steps that a
smooth roofline cannot follow.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from continuum.serve.verbs import setup_logging
from continuum_eval.sim.cost.costmodel import Efficiency, RooflineCostModel
from continuum_eval.sim.cost.specs import GPUS, GPUSpec, ModelSpec

REPO = Path(__file__).resolve().parents[3]
VIDUR_DIR = REPO.parent / "shared" / "reference" / "vidur-mlp-profiles"
GEMM_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
ELEMENTWISE_OPS = ("input_layernorm", "post_attention_layernorm", "attn_rope", "mlp_act", "add")


@dataclass
class Measured:
    """One (shape, TP, tokens) point: median milliseconds of each operation (averaged over repeated rows)."""

    file: str
    gpu: str
    model: ModelSpec
    tp: int
    tokens: int
    ms: dict[str, float]

    def gemm_ms(self) -> float:
        return sum(self.ms[o] for o in GEMM_OPS)

    def total_ms(self) -> float:
        return sum(self.ms[o] for o in GEMM_OPS + ELEMENTWISE_OPS)


def vidur_files(folder: Path = VIDUR_DIR) -> list[Path]:
    return sorted(Path(folder).glob("*.mlp.csv"))


def load_vidur(path: Path) -> list[Measured]:
    """Points of one CSV (file names start with the GPU: ``h100_...``, ``a100_...``)."""
    path = Path(path)
    gpu = path.name.split("_", 1)[0]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            key = (int(row["n_head"]), int(row["n_kv_head"]), int(row["n_embd"]), int(row["n_expanded_embd"]),
                   int(row["vocab_size"]), int(row["num_tensor_parallel_workers"]), int(row["num_tokens"]))
            groups[key].append(row)
    out = []
    for (heads, kv, hidden, inter, vocab, tp, tokens), rows in sorted(groups.items()):
        spec = ModelSpec(path.stem, layers=1, hidden=hidden, heads=heads, kv_heads=kv, intermediate=inter,
                         vocab=vocab, max_position=0)
        ms = {o: float(np.mean([float(r[f"time_stats.{o}.median"]) for r in rows]))
              for o in GEMM_OPS + ELEMENTWISE_OPS}
        out.append(Measured(path.name, gpu, spec, tp, tokens, ms))
    return out


def predict_ms(points: list[Measured], gpu: GPUSpec, eff: Efficiency) -> list[dict[str, float]]:
    models: dict[tuple, RooflineCostModel] = {}
    out = []
    for p in points:
        cm = models.setdefault((p.model, p.tp), RooflineCostModel(p.model, gpu, p.tp, eff))
        out.append({k: 1e3 * v for k, v in cm.linear_ops(p.tokens).items()})
    return out


def errors(points: list[Measured], gpu: GPUSpec, eff: Efficiency, what: str = "gemm") -> np.ndarray:
    """Relative error (predicted / measured - 1) of each point's per-layer GEMM (or total) time."""
    ops = GEMM_OPS if what == "gemm" else GEMM_OPS + ELEMENTWISE_OPS
    pred = predict_ms(points, gpu, eff)
    return np.array([sum(q[o] for o in ops) / sum(p.ms[o] for o in ops) - 1 for p, q in zip(points, pred)])


def _bucket_weights(points: list[Measured]) -> list[float]:
    """Each power-of-two range of token counts weighs the same (the files sample large batches densely;
    decode-sized batches matter as much to a simulation)."""
    buckets: dict[tuple, int] = defaultdict(int)
    keys = [(p.file, p.tp, int(math.log2(p.tokens))) for p in points]
    for k in keys:
        buckets[k] += 1
    return [1.0 / buckets[k] for k in keys]


def _loss(points: list[Measured], gpu: GPUSpec, eff: Efficiency, weights: list[float]) -> float:
    pred = predict_ms(points, gpu, eff)
    loss = 0.0
    for p, q, wp in zip(points, pred, weights):
        for o in GEMM_OPS + ELEMENTWISE_OPS:
            if p.ms[o] > 0:
                wgt = 1.0 if o in GEMM_OPS else 0.25
                loss += wp * wgt * math.log(q[o] / p.ms[o]) ** 2
    return loss / sum(weights)


FIT_FIELDS = {
    "gemm_compute": (0.3, 1.0), "gemm_memory": (0.3, 1.0), "gemm_sharpness": (1.0, 12.0),
    "gemm_latency_s": (0.0, 2e-5), "elementwise_memory": (0.05, 1.0), "elementwise_latency_s": (0.0, 2e-5),
}


def fit_efficiency(points: list[Measured], gpu: GPUSpec, start: Efficiency | None = None,
                   rounds: int = 6) -> Efficiency:
    """Coordinate descent on log-error over the GEMM and element-wise factors (bounded by `FIT_FIELDS`)."""
    eff = start or Efficiency()
    weights = _bucket_weights(points)
    best = _loss(points, gpu, eff, weights)
    for r in range(rounds):
        for name, (lo, hi) in FIT_FIELDS.items():
            cur = getattr(eff, name)
            span = (hi - lo) / (4 ** (r + 1))
            for cand in np.linspace(max(lo, cur - 4 * span), min(hi, cur + 4 * span), 17):
                trial = replace(eff, **{name: float(cand)})
                loss = _loss(points, gpu, trial, weights)
                if loss < best:
                    best, eff = loss, trial
    return eff


def report(eff_by_gpu: dict[str, Efficiency], folder: Path = VIDUR_DIR) -> str:
    lines = ["| file | TP | points | GEMM median err | GEMM max err | layer median err | layer max err |",
             "|---|---|---|---|---|---|---|"]
    for path in vidur_files(folder):
        pts = load_vidur(path)
        gpu = pts[0].gpu
        for tp in sorted({p.tp for p in pts}):
            sub = [p for p in pts if p.tp == tp]
            g = np.abs(errors(sub, GPUS[gpu], eff_by_gpu[gpu], "gemm"))
            t = np.abs(errors(sub, GPUS[gpu], eff_by_gpu[gpu], "total"))
            lines.append(f"| {path.name} | {tp} | {len(sub)} | {np.median(g):.1%} | {g.max():.1%} | "
                         f"{np.median(t):.1%} | {t.max():.1%} |")
    return "\n".join(lines)


def main() -> None:
    setup_logging()
    fitted = {}
    for gpu in ("h100", "a100"):
        pts = [p for f in vidur_files() if f.name.startswith(gpu) for p in load_vidur(f)]
        fitted[gpu] = fit_efficiency(pts, GPUS[gpu])
        print(gpu, {k: round(getattr(fitted[gpu], k), 8) for k in FIT_FIELDS})
    print(report(fitted))


if __name__ == "__main__":
    main()
