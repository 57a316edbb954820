"""Execution-time predictors: how long one engine step takes for the batch the scheduler chose.

The simulator asks a cost model for the wall time of each step, given what vLLM's scheduler put in it
(`StepBatch`: tokens, requests, sampled tokens and the attention work). Two kinds:

`RooflineCostModel` (GPU profiles). A step is one forward pass of the model over the batch, per GPU of a
tensor-parallel group, plus a fixed per-step overhead:

    step = overhead + layers * (linear(M) + norms(M) + attention + allreduce(M)) + lm_head(S)

with M the batch's tokens and S the tokens sampled. Each part is a roofline: the larger of its FLOPs over
the achievable compute rate and its bytes over the achievable memory bandwidth, blended smoothly near the
ridge, plus a kernel latency floor. Counts, per decoder layer on one of ``tp`` GPUs (w = 2 bytes, BF16;
h hidden, d head size, H / G query / KV heads, I intermediate, V vocabulary):

- QKV projection  GEMM M x h x (H+2G)d/tp; output projection  GEMM M x Hd/tp x h;
  gate+up  GEMM M x h x 2I/tp;  down  GEMM M x I/tp x h.
  A GEMM (M, K, N) does 2MKN FLOPs and moves w(KN + MK + MN) bytes (weights, input, output).
- norms and element-wise work (2 RMSNorms, rotary, SiLU-and-multiply, residual add): memory-bound,
  w * M * (4h + 2(H+2G)d/tp + 3I/tp + 3h) bytes, at their own efficiency.
- attention (FlashAttention over the paged KV cache). A request with q new tokens and context c
  (c counts the q) scores q(c - (q-1)/2) query-key pairs (causal); each pair costs 4d FLOPs per query head
  (QK^T and PV). Bytes: the context's K and V, 2Gd/tp * w per token, plus Q in and O out. Chunks of
  prefill are compute-bound, decode (q = 1) is memory-bound (GQA: H/G = 4 FLOPs per byte for Llama-3.1);
  the two are costed separately and added.
- tensor parallelism: two all-reduces of M x h per layer (after the output and down projections), a ring
  moving 2(tp-1)/tp of the message over NVLink, plus a latency per all-reduce.
- LM head: GEMM S x h x V/tp over the sampled positions only (vLLM computes logits only where it samples).

Efficiency factors (`Efficiency`) turn datasheet peaks into achieved rates. The GEMM and element-wise ones
are fitted to measured GPU timings of exactly these layers (the Vidur project's H100 and A100 profiles, see
`continuum_eval.sim.fit.calibration` and tests/test_sim_calibration.py, which checks the predictions against them). The
attention ones cannot be fitted from those files (they hold no attention timings); they are set from the
FlashAttention papers' reported utilisation (FlashAttention-2: 50-73% of A100 peak in the forward pass;
FlashAttention-3: up to 75% of H100 peak) discounted for short, ragged, paged batches, and from paged decode
kernels reaching well under the full HBM bandwidth. The per-step overhead (sampling, input preparation,
launches not hidden by CUDA graphs) is an assumption of ~1 ms per step for vLLM v1, whose asynchronous
scheduling hides the scheduler's own CPU time behind the GPU (the simulator reports that CPU time
separately, as measured here).

`LinearCostModel` (the fitted CPU profile): step time as a non-negative combination of the same batch
features, with coefficients least-squares fitted to step times measured on the live CPU engine
(`continuum_eval.sim.fit.profile_cpu`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np

from continuum_eval.sim.cost.specs import GPUSpec, ModelSpec


@dataclass(slots=True)
class StepBatch:
    """What one engine step computes, summed over the scheduled requests."""

    tokens: int = 0  # tokens computed this step (sum of q)
    seqs: int = 0  # requests scheduled
    sampled: int = 0  # requests that sample a token this step (prefill complete)
    prefill_pairs: float = 0.0  # sum over chunks (q > 1) of q * (c - (q - 1) / 2): causal query-key pairs
    prefill_kv: int = 0  # sum over chunks of their context c (KV tokens read)
    decode_kv: int = 0  # sum over decodes (q == 1) of their context c

    def add(self, q: int, c: int, sampled: bool) -> None:
        self.tokens += q
        self.seqs += 1
        if sampled:
            self.sampled += 1
        if q > 1:
            self.prefill_pairs += q * (c - (q - 1) / 2)
            self.prefill_kv += c
        else:
            self.decode_kv += c

    @classmethod
    def prefill(cls, tokens: int, cached: int = 0) -> "StepBatch":
        """One request prefilling ``tokens`` new tokens after ``cached`` ones, sampling its first token."""
        b = cls()
        b.add(tokens, cached + tokens, True)
        return b

    @classmethod
    def decode(cls, contexts: list[int]) -> "StepBatch":
        """A decode step of requests with these context lengths."""
        b = cls()
        for c in contexts:
            b.add(1, c, True)
        return b


@dataclass(frozen=True)
class Efficiency:
    """Achieved fraction of datasheet peaks, plus latency floors (seconds)."""

    gemm_compute: float = 0.75
    gemm_memory: float = 0.85
    gemm_sharpness: float = 4.0  # p of the smooth roofline (c^p + m^p)^(1/p); large p -> max(c, m)
    gemm_latency_s: float = 4e-6
    elementwise_memory: float = 0.4
    elementwise_latency_s: float = 3e-6
    attn_compute: float = 0.5
    attn_memory: float = 0.7
    attn_latency_s: float = 8e-6
    allreduce_latency_s: float = 8e-6
    allreduce_link: float = 0.8  # achieved fraction of NVLink bandwidth in a ring all-reduce
    step_overhead_s: float = 1.0e-3
    source: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def smooth_max(a: float, b: float, p: float) -> float:
    """(a^p + b^p)^(1/p): max(a, b) for large p, a + b for p = 1; no kink at the ridge point."""
    if a <= 0 or b <= 0:
        return max(a, b)
    hi = max(a, b)
    return hi * ((a / hi) ** p + (b / hi) ** p) ** (1.0 / p)


@dataclass
class RooflineCostModel:
    model: ModelSpec
    gpu: GPUSpec
    tp: int = 1
    eff: Efficiency = field(default_factory=Efficiency)

    kind = "roofline"

    def __post_init__(self) -> None:
        self._linear = lru_cache(maxsize=65536)(self._linear_layer)

    # -- the parts -------------------------------------------------------------------------------------------
    def gemm(self, m: int, k: int, n: int) -> float:
        w, e = self.model.dtype_bytes, self.eff
        compute = 2.0 * m * k * n / (self.gpu.bf16_flops * e.gemm_compute)
        memory = w * (k * n + m * k + m * n) / (self.gpu.mem_bw * e.gemm_memory)
        return e.gemm_latency_s + smooth_max(compute, memory, e.gemm_sharpness)

    def gemm_shapes(self) -> dict[str, tuple[int, int]]:
        """(K, N) of each linear layer of one decoder layer on one of ``tp`` GPUs."""
        s, tp = self.model, self.tp
        h, d = s.hidden, s.d
        qkv = (s.heads + 2 * s.kv_heads) * d
        return {"attn_pre_proj": (h, math.ceil(qkv / tp)), "attn_post_proj": (math.ceil(s.heads * d / tp), h),
                "mlp_up_proj": (h, math.ceil(2 * s.intermediate / tp)),
                "mlp_down_proj": (math.ceil(s.intermediate / tp), h)}

    def elementwise_bytes(self, m: int) -> dict[str, float]:
        s, tp, w = self.model, self.tp, self.model.dtype_bytes
        qk = (s.heads + s.kv_heads) * s.d / tp
        return {"input_layernorm": 2 * w * m * s.hidden, "post_attention_layernorm": 2 * w * m * s.hidden,
                "attn_rope": 2 * w * m * qk, "mlp_act": 3 * w * m * s.intermediate / tp,
                "add": 3 * w * m * s.hidden}

    def elementwise(self, nbytes: float) -> float:
        return self.eff.elementwise_latency_s + nbytes / (self.gpu.mem_bw * self.eff.elementwise_memory)

    def linear_ops(self, m: int) -> dict[str, float]:
        """Seconds of each non-attention operation of one decoder layer at ``m`` tokens (Vidur's op names)."""
        ops = {name: self.gemm(m, k, n) for name, (k, n) in self.gemm_shapes().items()}
        ops.update({name: self.elementwise(b) for name, b in self.elementwise_bytes(m).items()})
        return ops

    def _linear_layer(self, m: int) -> float:
        return sum(self.linear_ops(m).values()) + self.allreduce(m)

    def allreduce(self, m: int) -> float:
        if self.tp <= 1:
            return 0.0
        nbytes = m * self.model.hidden * self.model.dtype_bytes
        ring = 2.0 * (self.tp - 1) / self.tp * nbytes / (self.gpu.link_bw * self.eff.allreduce_link)
        return 2 * (self.eff.allreduce_latency_s + ring)  # two per layer

    def attention(self, b: StepBatch) -> float:
        s, tp, w, e = self.model, self.tp, self.model.dtype_bytes, self.eff
        heads, kv_heads = s.heads / tp, max(1, s.kv_heads // tp)
        kv_tok = 2 * kv_heads * s.d * w
        t = 0.0
        if b.prefill_kv:
            flops = 4.0 * heads * s.d * b.prefill_pairs
            nbytes = kv_tok * b.prefill_kv + 2 * heads * s.d * w * b.tokens
            t += max(flops / (self.gpu.bf16_flops * e.attn_compute), nbytes / (self.gpu.mem_bw * e.attn_memory))
        if b.decode_kv:
            flops = 4.0 * heads * s.d * b.decode_kv
            nbytes = kv_tok * b.decode_kv
            t += max(flops / (self.gpu.bf16_flops * e.attn_compute), nbytes / (self.gpu.mem_bw * e.attn_memory))
        return e.attn_latency_s + t if t else 0.0

    def lm_head(self, sampled: int) -> float:
        return self.gemm(sampled, self.model.hidden, math.ceil(self.model.vocab / self.tp)) if sampled else 0.0

    # -- the step ----------------------------------------------------------------------------------------------
    def step_time(self, b: StepBatch) -> float:
        if b.tokens <= 0:
            return 0.0
        per_layer = self._linear(b.tokens) + self.attention(b)
        return self.eff.step_overhead_s + self.model.layers * per_layer + self.lm_head(b.sampled)

    def describe(self) -> dict:
        return {"kind": self.kind, "model": self.model.to_dict(), "gpu": self.gpu.to_dict(), "tp": self.tp,
                "efficiency": self.eff.to_dict()}


FEATURES = ("const", "tokens", "seqs", "sampled", "prefill_pairs", "decode_kv")


def features(b: StepBatch) -> tuple[float, ...]:
    return (1.0, float(b.tokens), float(b.seqs), float(b.sampled), float(b.prefill_pairs), float(b.decode_kv))


@dataclass
class LinearCostModel:
    """step = sum of coef[f] * feature f (`FEATURES`), coefficients >= 0, fitted to measured steps."""

    coef: dict[str, float]
    meta: dict = field(default_factory=dict)

    kind = "fitted"

    def __post_init__(self) -> None:
        unknown = set(self.coef) - set(FEATURES)
        if unknown:
            raise ValueError(f"unknown cost features: {', '.join(sorted(unknown))}")
        self._c = tuple(float(self.coef.get(f, 0.0)) for f in FEATURES)
        if any(not math.isfinite(c) or c < 0 for c in self._c):
            raise ValueError(f"coefficients must be finite and >= 0: {self.coef}")

    def step_time(self, b: StepBatch) -> float:
        if b.tokens <= 0:
            return 0.0
        c = self._c
        return (c[0] + c[1] * b.tokens + c[2] * b.seqs + c[3] * b.sampled + c[4] * b.prefill_pairs
                + c[5] * b.decode_kv)

    @classmethod
    def fit(cls, batches: list[StepBatch], seconds: list[float], use: tuple[str, ...] = FEATURES,
            meta: dict | None = None) -> "LinearCostModel":
        """Non-negative least squares (active-set, relative error) of step times on the features in ``use``."""
        x = np.array([features(b) for b in batches], dtype=np.float64)
        y = np.asarray(seconds, dtype=np.float64)
        cols = [FEATURES.index(f) for f in use]
        weight = 1.0 / np.maximum(y, 1e-6)  # relative error: small and large steps count alike
        coef = nnls(x[:, cols] * weight[:, None], y * weight)
        full = {f: 0.0 for f in FEATURES}
        for f, c in zip(use, coef):
            full[f] = float(c)
        model = cls(full, dict(meta or {}))
        pred = np.array([model.step_time(b) for b in batches])
        model.meta.update({"fit_points": len(y), "fit_median_rel_err": float(np.median(np.abs(pred / y - 1))),
                           "fit_p90_rel_err": float(np.quantile(np.abs(pred / y - 1), 0.9))})
        return model

    def describe(self) -> dict:
        return {"kind": self.kind, "coef": dict(zip(FEATURES, self._c)), **self.meta}


def nnls(a: np.ndarray, b: np.ndarray, iters: int = 200) -> np.ndarray:
    """min ||a x - b|| subject to x >= 0 (Lawson-Hanson active set; small problems only)."""
    n = a.shape[1]
    scale = np.linalg.norm(a, axis=0)
    scale[scale == 0] = 1.0
    a = a / scale
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    for _ in range(iters):
        grad = a.T @ (b - a @ x)
        if passive.all() or np.max(np.where(passive, -np.inf, grad)) <= 1e-12:
            break
        passive[int(np.argmax(np.where(passive, -np.inf, grad)))] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if np.all(z[passive] > 0):
                x = z
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / np.maximum(x[neg] - z[neg], 1e-300))
            x = x + alpha * (z - x)
            passive &= x > 1e-15
    return x / scale


def prefill_seconds(cost, tokens: int, chunk: int, cached: int = 0) -> float:
    """Seconds to prefill ``tokens`` alone on an idle engine (``cached`` of them already in the prefix cache),
    in chunks of at most ``chunk`` tokens; the last chunk samples the first output token."""
    done, total = max(0, cached), 0.0
    while done < tokens:
        q = min(chunk, tokens - done)
        b = StepBatch()
        b.add(q, done + q, done + q >= tokens)
        total += cost.step_time(b)
        done += q
    return total
