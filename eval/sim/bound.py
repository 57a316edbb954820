"""A lower bound on the mean JCT of a trace at a load, whatever the scheduler does: the reference that policies
are compared against ("how far from the best possible"), where a clairvoyant policy only gives one schedule.

mean JCT >= max(alone, saturated), each a lower bound on its own:

- **alone**: the mean over programs of their JCT alone on an idle engine
  (`continuum_eval.sim.engine.isolated`). Assumption: sharing the engine can only delay a program. Its steps
  then carry other requests too (step time grows with the batch), its turns wait for others, a preempted request
  recomputes, and its prefix hits cannot exceed the alone ones (its own previous turn's full blocks: synthetic
  token ids are seeded per program, so programs share no prefix).
- **saturated**: the engine as one machine that must do each program's GPU work ``W_i``, released at its
  arrival ``r_i``. Every step's time is at least the sum, over the work it contains, of per-unit floors
  (`TokenPrices`), so a program cannot finish before a single machine has done ``W_i`` for it. Preemptive
  shortest-remaining-processing-time minimises the sum of completion times on one machine with release dates
  and preemption (1|r_j,pmtn|sum C_j, Schrage 1968), also against any sharing of the machine between jobs, so
  mean(C_i^SRPT - r_i) bounds the mean JCT of every schedule. Tool time, client overhead and the waits between
  turns are left out: they only add. With ``engines`` engines, one machine ``engines`` times as fast
  (a relaxation of theirs).

The per-unit floors come from the step-time model at its most efficient operating point, so a token is never
priced above what some feasible step charges for it (a step computes at most ``max_num_batched_tokens`` tokens
and samples for at most ``max_num_seqs`` requests):

- roofline: ``step = overhead + layers * (linear(M) + attention) + lm_head(S)``. Per computed token, the
  minimum over M <= max_num_batched_tokens of (overhead + layers * linear(M)) / M (the largest batch: weights
  and overhead amortised); per sampled token, the minimum over S <= max_num_seqs of lm_head(S) / S. Attention
  is additive: a prefill is priced per causal query-key pair at the attention compute rate (its KV read left
  out, the smaller term for long chunks), a decode per context token at the larger of its compute and memory
  terms (both proportional to the context, so this is exact); the kernel latency is left out. Context enters
  only through attention, priced at each token's own context: the cheapest value consistent with the model.
- fitted (linear): each coefficient is already a per-unit price; the per-step constant is spread over a full
  token budget, and each turn is charged one request per prefill chunk and per decode step.

A prefill chunk of one token is costed as a decode (`StepBatch.add`), so a prefill token is priced at the
cheaper of the two attention rates (the roofline's pair rate is already the cheaper).

Each turn computes at least the tokens it does alone: the prompt past the cached prefix, then one decode step
per further output token.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import asdict, dataclass
from typing import Sequence

from continuum_eval.sim.cost.costmodel import LinearCostModel, RooflineCostModel, StepBatch
from continuum_eval.sim.cost.profiles import Profile
from continuum_eval.sim.engine.isolated import isolated_jct
from continuum_workloads import Program


@dataclass(frozen=True)
class TokenPrices:
    """Seconds a step spends at least per unit of the work it contains; `floor` adds them up."""

    token: float  # per computed token (prefill or decode)
    pair: float  # per causal query-key pair of a prefill chunk
    decode_kv: float  # per context token a decode attends to
    sample: float  # per sampled token
    seq: float = 0.0  # per request scheduled in the step

    def floor(self, b: StepBatch) -> float:
        """A lower bound on the step time of ``b`` (tests check it against the cost model)."""
        return (self.token * b.tokens + self.pair * b.prefill_pairs + self.decode_kv * b.decode_kv
                + self.sample * b.sampled + self.seq * b.seqs)


def roofline_prices(cost: RooflineCostModel, max_tokens: int, max_seqs: int) -> TokenPrices:
    """The roofline's floors: linear layers and overhead at the cheapest batch size, attention per unit."""
    s, e, g = cost.model, cost.eff, cost.gpu
    layers = s.layers
    token = min((e.step_overhead_s + layers * (sum(cost.linear_ops(m).values()) + cost.allreduce(m))) / m
                for m in range(1, max_tokens + 1))
    sample = min(cost.lm_head(n) / n for n in range(1, min(max_seqs, max_tokens) + 1))
    heads, kv_heads = s.heads / cost.tp, max(1, s.kv_heads // cost.tp)
    flops_per_ctx = 4.0 * heads * s.d / (g.bf16_flops * e.attn_compute)
    bytes_per_ctx = 2 * kv_heads * s.d * s.dtype_bytes / (g.mem_bw * e.attn_memory)
    return TokenPrices(token=token, pair=layers * flops_per_ctx,
                       decode_kv=layers * max(flops_per_ctx, bytes_per_ctx), sample=sample)


def linear_prices(cost: LinearCostModel, max_tokens: int) -> TokenPrices:
    """The fitted model's coefficients, its per-step constant spread over a full token budget."""
    c = cost.coef
    decode_kv = c.get("decode_kv", 0.0)
    return TokenPrices(token=c.get("tokens", 0.0) + c.get("const", 0.0) / max_tokens,
                       pair=min(c.get("prefill_pairs", 0.0), decode_kv), decode_kv=decode_kv,
                       sample=c.get("sampled", 0.0), seq=c.get("seqs", 0.0))


_PRICES: dict[tuple, TokenPrices] = {}


def token_prices(profile: Profile) -> TokenPrices:
    """The per-unit floors of the profile's cost model under its engine limits (memoized)."""
    key = (profile.name, id(profile.cost), profile.max_num_batched_tokens, profile.max_num_seqs)
    if key not in _PRICES:
        cost = profile.cost
        if isinstance(cost, RooflineCostModel):
            _PRICES[key] = roofline_prices(cost, profile.max_num_batched_tokens, profile.max_num_seqs)
        elif isinstance(cost, LinearCostModel):
            _PRICES[key] = linear_prices(cost, profile.max_num_batched_tokens)
        else:
            raise TypeError(f"no token prices for a {type(cost).__name__}")
    return _PRICES[key]


def program_work(program: Program, profile: Profile, prices: TokenPrices) -> float:
    """Seconds of engine time the program needs at least: its turns' tokens, as computed alone, at ``prices``.

    The prompts and cache hits follow `continuum_eval.sim.engine.isolated` (the most a turn can hit)."""
    B, L, chunk = profile.block_size, profile.max_model_len, profile.max_num_batched_tokens
    total, prev_prompt, prev_out, prompt = 0.0, 0, 0, 0
    for k, turn in enumerate(program.turns):
        out = min(turn.output_tokens, L - 1)
        prompt = min(prompt + prev_out + turn.new_input_tokens, L - out)
        cached = 0 if k == 0 else B * min((prev_prompt + prev_out - 1) // B, (prompt - 1) // B)
        new, decodes = prompt - cached, max(out - 1, 0)
        batch = StepBatch(tokens=new + decodes, seqs=math.ceil(new / chunk) + decodes, sampled=max(out, 1),
                          prefill_pairs=(prompt * (prompt + 1) - cached * (cached + 1)) / 2,
                          decode_kv=decodes * prompt + decodes * (decodes + 1) // 2)
        total += prices.floor(batch)
        prev_prompt, prev_out = prompt, out
    return total


def srpt_completions(release: Sequence[float], work: Sequence[float]) -> list[float]:
    """Completion times of preemptive shortest-remaining-processing-time on one machine (ties: lower index).

    Event-driven, O(n log n): between two releases the job with the least remaining work runs; a release
    preempts it only if the new job has less left."""
    order = sorted(range(len(release)), key=lambda i: release[i])
    done = [0.0] * len(release)
    heap: list[tuple[float, int]] = []
    t = 0.0
    for i in order:
        r = release[i]
        while heap and t < r:
            left, j = heapq.heappop(heap)
            if t + left <= r:
                t += left
                done[j] = t
            else:
                heapq.heappush(heap, (left - (r - t), j))
                t = r
        t = max(t, r)
        heapq.heappush(heap, (float(work[i]), i))
    while heap:
        left, j = heapq.heappop(heap)
        t += left
        done[j] = t
    return done


@dataclass(frozen=True)
class JCTBound:
    """Lower bounds on the mean JCT (seconds): alone, saturated, and their max, the bound itself."""

    alone_s: float
    saturated_s: float
    mean_jct_s: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def jct_bound(programs: Sequence[Program], profile: Profile, engines: int = 1) -> JCTBound:
    """The bound for ``programs`` as simulated (fitted to the profile, with their ``arrival_s``) on ``engines``
    engines of ``profile``."""
    if not programs:
        raise ValueError("no programs")
    if any(p.arrival_s is None for p in programs):
        raise ValueError("the programs need arrival_s (see continuum_eval.sim.run.prepare)")
    prices = token_prices(profile)
    alone = sum(isolated_jct(p, profile) for p in programs) / len(programs)
    release = [float(p.arrival_s) for p in programs]
    work = [program_work(p, profile, prices) / engines for p in programs]
    done = srpt_completions(release, work)
    saturated = sum(c - r for c, r in zip(done, release)) / len(programs)
    return JCTBound(alone_s=alone, saturated_s=saturated, mean_jct_s=max(alone, saturated))
