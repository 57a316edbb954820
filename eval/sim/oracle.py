"""The best oracle: perfect futures, searched over how many programs are in service at once.

The `clairvoyant` preset knows every program's future (tool times, turns, growth) but admits through the memory
door, and the door alone can admit more programs than a compute-saturated engine serves well. The oracle here
is that preset with one more limit, ``memory.programs`` = N, and the best N found by a search: a coarse
geometric grid, then the midpoints beside the best of it (mean JCT against N is U-shaped: too few programs idle
the GPU, too many thrash its memory and slow every step). N = 0 is the door without the limit.

It is a policy, not a bound (`continuum_eval.sim.bound` is the bound): the sweep uses it as the yardstick every
preset and fixed cap is checked against. A policy below the best oracle means the search missed a better N, or
the clairvoyant's own rules are weaker than that policy's; the sweep names every such row.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

log = logging.getLogger(__name__)

POLICY = "clairvoyant"
LABEL = "best-oracle"  # its rows' policy in a sweep
GRID = (0, 8, 16, 32, 64, 128)  # programs in service at most; 0: no limit beyond memory

# Runs a batch of (policy, overrides) simulations at one load (perhaps at once), their results in order.
RunMany = Callable[[list[tuple[str, dict]]], list[dict[str, Any]]]


def with_limit(overrides: dict | None, limit: int) -> dict:
    """``overrides`` with ``memory.programs`` = ``limit`` added to its knobs."""
    out = dict(overrides or {})
    out["knobs"] = {**out.get("knobs", {}), "memory.programs": float(limit)}
    return out


def refinements(tried: dict[int, float]) -> list[int]:
    """Limits not yet tried halfway between the best finite limit and its neighbours among ``tried`` (and half
    again above it when it is the largest: the best may lie between it and no limit)."""
    finite = sorted(n for n in tried if n > 0)
    if not finite:
        return []
    best = min(finite, key=tried.__getitem__)
    i = finite.index(best)
    beside = [finite[j] for j in (i - 1, i + 1) if 0 <= j < len(finite)]
    mids = [(best + n) // 2 for n in beside] + ([best + best // 2] if best == finite[-1] else [])
    return [m for m in dict.fromkeys(mids) if m > 0 and m not in tried]


def search(run_many: RunMany, overrides: dict | None = None, grid: Sequence[int] = GRID,
           rounds: int = 2) -> dict[str, Any]:
    """Run the clairvoyant at every limit of ``grid``, then ``rounds`` of refinements around the best.
    Returns the best result (``oracle`` added: its limit and every limit's mean JCT)."""
    results: dict[int, dict] = {}

    def try_limits(limits: Sequence[int]) -> None:
        for n, r in zip(limits, run_many([(POLICY, with_limit(overrides, n)) for n in limits])):
            results[n] = r
            log.info(f"[oracle] limit {n or 'none'}: mean JCT {r['jct_s']['mean']:.1f} s")

    try_limits(grid)
    for _ in range(rounds):
        more = refinements({n: r["jct_s"]["mean"] for n, r in results.items()})
        if not more:
            break
        try_limits(more)
    best = min(results, key=lambda n: results[n]["jct_s"]["mean"])
    out = dict(results[best])
    out["policy"] = LABEL
    out["oracle"] = {"limit": best, "mean_jct_s": {str(n): results[n]["jct_s"]["mean"] for n in sorted(results)}}
    return out


def below_oracle(results: Sequence[dict[str, Any]], tolerance: float = 0.0) -> list[str]:
    """Rows (``policy @ jps``) whose mean JCT is below the best oracle's at their load: each means the oracle
    missed something (see the module docstring)."""
    oracle = {r["jps"]: r["jct_s"]["mean"] for r in results if r["policy"] == LABEL}
    return [f"{r['policy']} @ {r['jps']:g} JPS: {r['jct_s']['mean']:.1f} s < oracle {oracle[r['jps']]:.1f} s"
            for r in results if r["policy"] != LABEL and r["jps"] in oracle
            and r["jct_s"]["mean"] < oracle[r["jps"]] * (1 - tolerance)]
