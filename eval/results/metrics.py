"""Metrics of one run: per-program records in, the result JSON of DESIGN.md out.

A live replay (``continuum_eval.live.replay``) fills :class:`ProgramRecord` / :class:`TurnRecord` as it goes;
:func:`summarize` turns them into the result dict::

    {"policy", "mode", "workload", "jps", "programs", "completed", "failed",
     "jct_s": {mean, p50, p90, p95, p99}, "ttft_s": {mean, p95}, "makespan_s", "throughput_tok_s",
     "prefix_hit_rate", "pins": {...}, "sched_step_ms": {mean, p99}, ...}

Definitions (all times in seconds, on the client's monotonic clock, relative to the run's start):

- **JCT** of a program: completion of its last turn minus its arrival time (tool time included). Only completed
  programs count; failed ones are counted in ``failed`` and listed in ``per_program``.
- **TTFT**: request sent to first streamed token, over every successful turn.
- **makespan**: first arrival to the last completion (completed or failed programs).
- **throughput_tok_s**: prompt + output tokens of successful turns per second of makespan (the work a
  cache-less server would do; ``output_tok_s`` has the generated tokens alone).
- **prefix_hit_rate**: prompt tokens served from the prefix cache (``usage.prompt_tokens_details.cached_tokens``)
  over the prompt tokens of the successful turns that report it; None (unknown, not 0) when none does (vLLM
  without ``--enable-prompt-tokens-details``).
- **pins** and **sched_step_ms**: from the server's ``/continuum/stats`` (zeros for servers without it).
- ``slowdown`` needs each program's JCT alone on an idle engine: the simulator knows it; live runs omit it.

Extra keys beyond DESIGN.md: ``per_program`` (id, arrival, JCT, turns, failure, per-turn prompt and cached
tokens and latency from send to last token) so that reports can draw CDFs and live and simulated runs compare
turn by turn, ``output_tok_s``, ``turns``, ``errors`` (the first few failure messages) and ``meta`` (run settings).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from continuum_agents.protocol import TurnTimes

__all__ = ["TurnRecord", "ProgramRecord", "summarize", "percentiles", "PIN_KEYS", "empty_pins"]

PIN_KEYS = ("created", "hit", "expired", "released_pressure", "released_end", "peak_blocks")
MAX_ERRORS = 10


@dataclass
class TurnRecord(TurnTimes):
    index: int
    prompt_tokens: int
    output_tokens: int = 0  # tokens actually received
    cached_tokens: int | None = 0  # None: the server did not say
    sent_s: float = 0.0
    first_token_s: float | None = None
    done_s: float | None = None
    ok: bool = False
    token_exact: bool = True  # False when the server did not return the output token ids


@dataclass
class ProgramRecord:
    id: str
    workload: str
    arrival_s: float
    num_turns: int
    turns: list[TurnRecord] = field(default_factory=list)
    end_s: float | None = None
    failed: bool = False
    error: str | None = None

    @property
    def completed(self) -> bool:
        return not self.failed and self.end_s is not None and len(self.turns) == self.num_turns \
            and all(t.ok for t in self.turns)

    @property
    def jct_s(self) -> float | None:
        return self.end_s - self.arrival_s if self.completed and self.end_s is not None else None


def percentiles(values: Sequence[float], qs: Iterable[int] = (50, 90, 95, 99)) -> dict[str, float]:
    """Mean and the given percentiles (linear interpolation); zeros for an empty list."""
    arr = np.asarray(list(values), dtype=float)
    out = {"mean": float(arr.mean()) if arr.size else 0.0}
    for q in qs:
        out[f"p{q}"] = float(np.percentile(arr, q)) if arr.size else 0.0
    return out


def empty_pins() -> dict[str, int]:
    return dict.fromkeys(PIN_KEYS, 0)


def hit_rate(cached: int, prompt: int, known: bool) -> float | None:
    if not known:
        return None
    return cached / prompt if prompt else 0.0


def summarize(records: Sequence[ProgramRecord], *, policy: str, jps: float | None, mode: str = "live",
              workload: str | None = None, pins: dict[str, Any] | None = None,
              sched_step_ms: dict[str, float] | None = None, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The result dict of DESIGN.md for one run."""
    done = [r for r in records if r.completed]
    jcts = [r.jct_s for r in done if r.jct_s is not None]
    turns = [t for r in records for t in r.turns if t.ok]
    ttfts = [t.ttft_s for t in turns if t.ttft_s is not None]
    prompt = sum(t.prompt_tokens for t in turns)
    output = sum(t.output_tokens for t in turns)
    reported = [t for t in turns if t.cached_tokens is not None]
    cached = sum(t.cached_tokens for t in reported)
    reported_prompt = sum(t.prompt_tokens for t in reported)
    ends = [r.end_s for r in records if r.end_s is not None]
    start = min((r.arrival_s for r in records), default=0.0)
    makespan = max(ends) - start if ends else 0.0
    if workload is None:
        counts = Counter(r.workload for r in records)
        workload = counts.most_common(1)[0][0] if counts else "unknown"
    pin_out = empty_pins()
    for k in PIN_KEYS:
        pin_out[k] = int((pins or {}).get(k, 0) or 0)
    errors = [f"{r.id}: {r.error}" for r in records if r.failed and r.error][:MAX_ERRORS]
    jct = percentiles(jcts)
    ttft = percentiles(ttfts, qs=(95,))
    return {
        "policy": policy,
        "mode": mode,
        "workload": workload,
        "jps": jps,
        "programs": len(records),
        "completed": len(done),
        "failed": len(records) - len(done),
        "jct_s": jct,
        "ttft_s": {"mean": ttft["mean"], "p95": ttft["p95"]},
        "makespan_s": makespan,
        "throughput_tok_s": (prompt + output) / makespan if makespan > 0 else 0.0,
        "output_tok_s": output / makespan if makespan > 0 else 0.0,
        "prefix_hit_rate": hit_rate(cached, reported_prompt, known=bool(reported) or not turns),
        "pins": pin_out,
        "sched_step_ms": {"mean": float((sched_step_ms or {}).get("mean", 0.0) or 0.0),
                          "p99": float((sched_step_ms or {}).get("p99", 0.0) or 0.0)},
        "turns": {"sent": sum(len(r.turns) for r in records), "ok": len(turns),
                  "token_exact": all(t.token_exact for t in turns),
                  "prompt_tokens": prompt, "output_tokens": output, "cached_tokens": cached},
        "errors": errors,
        "per_program": [
            {"id": r.id, "arrival_s": round(r.arrival_s, 6), "jct_s": None if r.jct_s is None else round(r.jct_s, 6),
             "turns": r.num_turns, "turns_done": sum(t.ok for t in r.turns), "failed": not r.completed,
             "prompt_tokens": [t.prompt_tokens for t in r.turns if t.ok],
             "cached_tokens": [t.cached_tokens for t in r.turns if t.ok],
             "latency_s": [round(t.latency_s or 0.0, 6) for t in r.turns if t.ok],
             **({"error": r.error} if r.error else {})}
            for r in records
        ],
        "meta": meta or {},
    }
