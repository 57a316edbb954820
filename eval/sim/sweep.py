"""A load sweep in the simulator: every policy at every JPS on one trace and profile, then a report.

    python -m continuum_eval.sim.sweep --trace swe.jsonl --profile h100-llama-3.1-8b --jps 0.25,0.5,0.75,1 \\
        --policies vllm,continuum,fixed,preserve,plas,oracle --out runs/sim-h100

writes ``results.json`` (a list of result dicts), ``report.md`` (the live report's table, ratios and plots from
`continuum_eval.results.report`, plus the simulator's own tables below) and the PNGs. The simulator's first table
gives mean / p95 JCT per policy and load, with the lower bound on the mean JCT at each load
(`continuum_eval.sim.bound`); the second, per policy and load: mean and p95 JCT, mean and p95 slowdown, prefix hit
rate, preemptions and wall time.
``--cpu-kv-gib G`` (``--cpu-eviction lru|arc|program``) gives every engine vLLM's host KV tier
(`continuum_eval.sim.run`). ``--oracle`` adds the best oracle at each load (`continuum_eval.sim.oracle`: the
clairvoyant searched over programs in service) and names every row below it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Sequence

from continuum.policy.flags import add_policy_flags, overrides_from_args
from continuum.policy.presets import PRESETS, parse_policies
from continuum.policy.registry import ConfigError
from continuum.serve.argtypes import non_negative_int, non_negative_ints
from continuum.serve.verbs import setup_logging
from continuum_eval.results.report import write_report
from continuum_eval.sim import oracle as best_oracle
from continuum_eval.sim.run import DEFAULT_PROFILE, host_tier_line, simulate_result
from continuum_eval.verb_args import add_host_tier_flags
from continuum_workloads import load_programs

log = logging.getLogger(__name__)

ORDER = (*PRESETS, best_oracle.LABEL)


def sim_table(results: Sequence[dict[str, Any]]) -> str:
    """Markdown: one row per JPS, mean / p95 JCT of each policy side by side."""
    pols = [p for p in ORDER if any(r["policy"] == p for r in results)]
    pols += [p for p in dict.fromkeys(r["policy"] for r in results) if p not in pols]
    rates = sorted({r["jps"] for r in results if r["jps"] is not None})
    by = {(r["policy"], r["jps"]): r for r in results}
    bounds = {r["jps"]: r["bound"]["mean_jct_s"] for r in results if r.get("bound")}
    head = "| JPS | " + " | ".join(f"{p} mean / p95 JCT (s)" for p in pols) + " |"
    head += " lower bound, mean JCT (s) |" if bounds else ""
    lines = [head, "|" + "---|" * (len(pols) + 1 + bool(bounds))]
    for j in rates:
        cells = []
        for p in pols:
            r = by.get((p, j))
            cells.append("-" if r is None else f"{r['jct_s']['mean']:.1f} / {r['jct_s']['p95']:.1f}"
                         + ("" if not r["failed"] else f" ({r['failed']} failed)")
                         + (f" (N={r['oracle']['limit'] or 'none'})" if r.get("oracle") else ""))
        if bounds:
            cells.append(f"{bounds[j]:.1f}" if j in bounds else "-")
        lines.append(f"| {j:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def detail_table(results: Sequence[dict[str, Any]]) -> str:
    head = ("| policy | JPS | mean JCT (s) | p95 JCT (s) | mean slowdown | p95 slowdown | prefix hits | "
            "preemptions | pins created / hit / pressure | mean TTFT (s) | schedule() ms (mean) | wall (s) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    key = {p: i for i, p in enumerate(ORDER)}
    for r in sorted(results, key=lambda r: (r["jps"] or 0, key.get(r["policy"], 99))):
        pins, sim = r.get("pins") or {}, r.get("sim") or {}
        lines.append(
            f"| {r['policy']} | {r['jps']:g} | {r['jct_s']['mean']:.1f} | {r['jct_s']['p95']:.1f} "
            f"| {r['slowdown']['mean']:.2f} | {r['slowdown']['p95']:.2f} | {100 * r['prefix_hit_rate']:.1f}% "
            f"| {sim.get('preemptions', 0)} | {pins.get('created', 0)} / {pins.get('hit', 0)} / "
            f"{pins.get('released_pressure', 0)} | {r['ttft_s']['mean']:.2f} | {r['sched_step_ms']['mean']:.3f} "
            f"| {sim.get('wall_s', 0):.0f} |")
    return "\n".join(lines)


def write_sim_report(results: Sequence[dict[str, Any]], out_dir: Path, title: str, notes: Sequence[str] = (),
                     plots: bool = True) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(list(results), indent=2) + "\n")
    report = write_report(results, out_dir, title=title, notes=notes, plots=plots)["report"]
    text = report.read_text()
    text += ("\n## Simulator: mean / p95 JCT per policy and load\n\n" + sim_table(results) + "\n\n"
             "## Simulator: details\n\n" + detail_table(results) + "\n")
    report.write_text(text)
    return report


def _one(job: tuple) -> dict[str, Any]:
    programs, pol, profile, jps, seed, progress, overrides, tier = job
    t0 = time.perf_counter()
    r = simulate_result(programs, pol, profile, jps, seed, progress=progress, policy_overrides=overrides, **tier)
    log.info(f"[sweep] {pol} jps={jps:g}: mean JCT {r['jct_s']['mean']:.1f} s, p95 {r['jct_s']['p95']:.1f} s, "
             f"slowdown {r['slowdown']['mean']:.2f}, hits {100 * r['prefix_hit_rate']:.1f}%{host_tier_line(r)}, "
             f"{time.perf_counter() - t0:.0f} s wall")
    return r


def sweep(programs: list, policies: Sequence[str], rates: Sequence[float], profile: str, seed: int,
          progress: bool = True, overrides: dict | None = None, jobs: int = 1, cpu_kv_gib: float | None = None,
          cpu_eviction: str = "lru", oracle: bool = False, oracle_grid: Sequence[int] = best_oracle.GRID,
          oracle_rounds: int = 2) -> list[dict[str, Any]]:
    """Every policy at every rate; ``jobs`` > 1 runs that many simulations at once (separate processes).
    ``cpu_kv_gib``: every engine with vLLM's host KV tier of that size. ``oracle``: the best oracle at every rate
    too (its rows' policy is ``best-oracle``), searched over ``oracle_grid`` and ``oracle_rounds`` refinements."""
    tier = {"cpu_kv_gib": cpu_kv_gib, "cpu_eviction": cpu_eviction}
    with Runner(jobs) as runner:
        results = runner.map([(programs, pol, profile, jps, seed, progress and jobs == 1, overrides or {}, tier)
                              for jps in rates for pol in policies])
        if oracle:
            for jps in rates:
                def at_load(batch: list[tuple[str, dict]], jps: float = jps) -> list[dict[str, Any]]:
                    return runner.map([(programs, pol, profile, jps, seed, False, ov, tier) for pol, ov in batch])
                results.append(best_oracle.search(at_load, overrides, oracle_grid, oracle_rounds))
    return results


class Runner:
    """Runs simulation jobs here (``jobs`` <= 1) or in that many worker processes."""

    def __init__(self, jobs: int) -> None:
        # Each worker logs its runs' lines as this process does (a worker that is not forked starts unconfigured).
        self.pool = ProcessPoolExecutor(jobs, initializer=setup_logging) if jobs > 1 else None

    def map(self, work: list[tuple]) -> list[dict[str, Any]]:
        return list(self.pool.map(_one, work)) if self.pool else [_one(w) for w in work]

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool:
            self.pool.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m continuum_eval.sim.sweep")
    p.add_argument("--trace", required=True)
    p.add_argument("--profile", default=DEFAULT_PROFILE)
    p.add_argument("--jps", default="0.25,0.5,0.75,1")
    p.add_argument("--policies", default=",".join(ORDER))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int)
    p.add_argument("--out", required=True)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--no-plots", dest="plots", action="store_false")
    p.add_argument("--jobs", type=int, default=1, help="simulations run at once (default 1)")
    p.add_argument("--oracle", action="store_true",
                   help="add the best oracle at each load (the clairvoyant searched over programs in service)")
    p.add_argument("--oracle-grid", type=non_negative_ints, default=list(best_oracle.GRID),
                   help="the oracle's limits on programs in service to try first (0: none beyond memory)")
    p.add_argument("--oracle-rounds", type=non_negative_int, default=2,
                   help="rounds of refinement around the best limit")
    add_host_tier_flags(p)
    add_policy_flags(p)
    a = p.parse_args(argv)
    setup_logging()
    overrides = overrides_from_args(a)
    programs = load_programs(a.trace, a.limit)
    rates = [float(x) for x in a.jps.split(",") if x.strip()]
    try:
        pols = parse_policies(a.policies, **overrides)
    except ConfigError as exc:
        p.error(f"--policies: {exc}")
    t0 = time.perf_counter()
    results = sweep(programs, pols, rates, a.profile, a.seed, a.progress, overrides, a.jobs, a.cpu_kv_gib,
                    a.cpu_eviction, a.oracle, a.oracle_grid, a.oracle_rounds)
    wall = time.perf_counter() - t0
    notes = [f"simulated: {len(programs)} programs of {a.trace}, profile {a.profile}, seed {a.seed}; "
             f"{len(results)} runs in {wall:.0f} s of wall time on this machine"
             + (f"; host KV tier {a.cpu_kv_gib:g} GiB per engine ({a.cpu_eviction})" if a.cpu_kv_gib else "")]
    notes += [f"below the best oracle (it missed something): {row}" for row in best_oracle.below_oracle(results)]
    report = write_sim_report(results, Path(a.out), f"Simulator: {a.profile}", notes, a.plots)
    print(sim_table(results))
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
