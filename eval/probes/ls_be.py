"""Benchmark (not a test): latency-sensitive vs best-effort classes (QLLM) in the simulator.

A mixed load: interactive function callers (BFCL programs, marked latency-sensitive) arrive alongside coding
agents (SWE-bench programs, best-effort), each stream Poisson at its own rate. The same arrivals run under each
policy; we report the LS turns' TTFT, the LS programs' JCT and the BE programs' throughput and JCT.

    python -m continuum_eval.probes.ls_be --ls-trace bfcl.jsonl --be-trace swe.jsonl [--ls-jps 1] [--be-jps 1] \\
        [--policies fcfs,continuum,ls-be] [--limit 200] [--profile h100-llama-3.1-8b]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from continuum.policy.presets import parse_policies
from continuum.policy.registry import ConfigError
from continuum.serve.verbs import setup_logging
from continuum_eval.sim.run import simulate_result
from continuum_workloads import Program, assign_arrivals, load_programs


def mixed(ls: list[Program], be: list[Program], ls_jps: float, be_jps: float, seed: int) -> list[Program]:
    """Both streams with their own arrivals, every program marked with its class."""
    out = []
    for progs, jps, cls in ((ls, ls_jps, "ls"), (be, be_jps, "be")):
        for p in assign_arrivals(progs, jps, seed):
            out.append(p.model_copy(update={"id": f"{cls}-{p.id}", "meta": {**(p.meta or {}), "class": cls}}))
    return sorted(out, key=lambda p: p.arrival_s)


def summary(records: list) -> dict:
    """Class-by-class figures from the simulated programs' records (`continuum_eval.results.metrics.ProgramRecord`)."""
    ls = [r for r in records if r.id.startswith("ls-") and r.jct_s is not None]
    be = [r for r in records if r.id.startswith("be-") and r.jct_s is not None]
    ttft = [t.ttft_s for r in ls for t in r.turns if t.ttft_s is not None]
    span = max((r.end_s for r in be), default=0.0) - min((r.arrival_s for r in be), default=0.0)
    return {"ls_ttft_mean": float(np.mean(ttft)) if ttft else float("nan"),
            "ls_ttft_p95": float(np.percentile(ttft, 95)) if ttft else float("nan"),
            "ls_jct_mean": float(np.mean([r.jct_s for r in ls])) if ls else float("nan"),
            "be_jct_mean": float(np.mean([r.jct_s for r in be])) if be else float("nan"),
            "be_programs_per_min": 60.0 * len(be) / max(1e-9, span)}


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ls-trace", required=True)
    ap.add_argument("--be-trace", required=True)
    ap.add_argument("--ls-jps", type=float, default=1.0)
    ap.add_argument("--be-jps", type=float, default=1.0)
    ap.add_argument("--limit", type=int, default=200, help="programs taken from each trace")
    ap.add_argument("--policies", default="fcfs,continuum-ttl,ls-be")
    ap.add_argument("--profile", default="h100-llama-3.1-8b")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        policies = parse_policies(a.policies)
    except ConfigError as exc:
        ap.error(f"--policies: {exc}")
    progs = mixed(load_programs(a.ls_trace, a.limit), load_programs(a.be_trace, a.limit), a.ls_jps, a.be_jps, a.seed)
    print(f"{len(progs)} programs: LS {a.ls_trace} at {a.ls_jps} JPS, BE {a.be_trace} at {a.be_jps} JPS, "
          f"profile {a.profile}")
    print("| policy | LS TTFT mean (s) | LS TTFT p95 (s) | LS JCT mean (s) | BE JCT mean (s) | BE programs/min |")
    print("|---|---|---|---|---|---|")
    for pol in policies:
        engines: list = []
        simulate_result(progs, pol, a.profile, None, a.seed, progress=False, engine_out=engines)
        s = summary([sp.record for sp in engines[0].progs])
        print(f"| {pol} | {s['ls_ttft_mean']:.2f} | {s['ls_ttft_p95']:.2f} | {s['ls_jct_mean']:.1f} "
              f"| {s['be_jct_mean']:.1f} | {s['be_programs_per_min']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
