"""A/B benchmark: the same trace, the same seed, one server per policy (live) or the simulator (sim).

Live mode starts ``continuum serve MODEL --policy P`` for each policy in turn, with the same model, KV budget and vLLM
flags (``--block-size``, ``--num-gpu-blocks-override``, ``--max-model-len``, ``--server-args``; plus
``--enable-prefix-caching --enable-prompt-tokens-details`` for every server, so both cache and both report cached
tokens). Policies: any preset of `continuum.policy.presets` (``vllm`` is vLLM's own scheduler, the baseline), or
``PRESET/TTL_MODE`` (``--ttl-mode TTL_MODE``); component overrides apply to every Continuum policy. Each server starts
once and serves every JPS value in turn: starting takes minutes on a small CPU machine. Between runs the prefix cache is
emptied with vLLM's ``POST /reset_prefix_cache`` (served because the bench starts servers with
``VLLM_SERVER_DEV_MODE=1``), and every run uses its own session ids, so no run inherits another's cache or programs
(`continuum_eval.live.runs`). What does carry over is what a server learns (Continuum's tool-duration predictor) - as it
would in production; ``restart_each_run`` starts a fresh server for every run instead.

A server that dies is restarted for the next run; its programs in flight are reported failed. The output
folder gets ``results.json`` (a list of result dicts), ``report.md``, ``jct_vs_jps.png``, ``jct_cdf.png`` and
the servers' logs.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any, Sequence

from continuum_eval.live.bench_cluster import live_cluster, router_options
from continuum_eval.live.runs import OneServer, serve_runs
from continuum_eval.live.settings import BenchConfig, BenchError, policy_args, serve_command
from continuum_eval.results.report import format_ratios, format_table, write_report
from continuum_workloads import Program, shape_programs

__all__ = ["run_bench", "live", "simulated"]


def live(programs: Sequence[Program], cfg: BenchConfig) -> list[dict[str, Any]]:
    """Every policy on a server of its own, serving every rate in turn."""
    results: list[dict[str, Any]] = []
    for label in cfg.policies:
        model, args = serve_command(label, cfg)
        results += serve_runs(programs, cfg, label, partial(OneServer.start, label, model, args, cfg),
                              {"model": model, "args": args}, "server")
    return results


def simulated(programs: Sequence[Program], cfg: BenchConfig) -> list[dict[str, Any]]:
    """The same comparison in the simulator (``cfg.profile``; ``cfg.cpu_kv_gib``: vLLM's host KV tier on each
    engine)."""
    from continuum_eval.sim.run import simulate_result  # vLLM (an optional extra): loaded for sim mode only

    progs = shape_programs(programs, token_scale=cfg.token_scale, tool_scale=cfg.tool_scale,
                           max_context=cfg.max_context or None)
    results = []
    for label in cfg.policies:
        for jps in cfg.jps:
            try:
                result = simulate_result(progs, policy=label, profile=cfg.profile, jps=jps, seed=cfg.seed,
                                         policy_overrides=cfg.overrides, progress=cfg.progress,
                                         cpu_kv_gib=cfg.cpu_kv_gib, cpu_eviction=cfg.cpu_eviction)
            except (ValueError, KeyError) as exc:  # unknown policy or profile name
                raise BenchError(f"simulator: {exc}") from None
            results.append(result)
    return results


def run_bench(programs: Sequence[Program], cfg: BenchConfig) -> list[dict[str, Any]]:
    """Run the comparison and write results.json, report.md and the plots into ``cfg.out_dir``."""
    if cfg.mode not in ("live", "sim"):
        raise BenchError(f"unknown mode {cfg.mode!r}")
    if not cfg.policies or not cfg.jps:
        raise BenchError("need at least one policy and one rate")
    for p in cfg.policies:
        policy_args(p, cfg)  # fail on a bad name before anything starts
    if cfg.cpu_kv_gib is not None and cfg.mode != "sim":
        raise BenchError("--cpu-kv-gib: the simulator's host tier; live servers take "
                         "--server-args='--kv-offloading-size G'")
    if cfg.routers:
        if cfg.mode != "live":
            raise BenchError("--router: routers are for live runs (the simulator has --replicas/--router)")
        try:
            for r in cfg.routers:
                router_options(r, cfg)
        except ValueError as exc:
            raise BenchError(f"--router: {exc}") from None
    cfg.out_dir = Path(cfg.out_dir)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.mode == "sim":
        results = simulated(programs, cfg)
    else:
        results = live_cluster(programs, cfg) if cfg.routers else live(programs, cfg)
    (cfg.out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    paths = write_report(results, cfg.out_dir, title=cfg.title, notes=cfg.notes, plots=cfg.plots)
    if cfg.echo:
        print(format_table(results))
        if rt := format_ratios(results):
            print()
            print(rt)
        print()
        print(f"results: {cfg.out_dir / 'results.json'}")
        print(f"report:  {paths['report']}")
        for name in ("jct_vs_jps", "jct_cdf"):
            if name in paths:
                print(f"plot:    {paths[name]}")
    return results
