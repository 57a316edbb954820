"""Fidelity check: the same trace, policy and seed, live on the CPU engine and in the simulator's ``cpu`` profile.

    python -m continuum_eval.sim.fit.fidelity --trace swe.jsonl --limit 40 --token-scale 0.25 --jps 0.5,1,2 \\
        --policies vllm,continuum --out runs/fidelity

Fit the profile first, on the same machine and at the same load: `continuum profile`, then
`python -m continuum_eval.sim.fit.replay_fit` on other programs of the trace (``--offset 40``), so this check is out
of sample.

For each policy, `continuum serve MODEL` is started with the engine shape the profile was fitted on (block size, max
model length, max_num_seqs, max_num_batched_tokens, and ``--num-gpu-blocks-override`` when ``--num-blocks`` is given);
`continuum_eval.live.replay` replays the trace at each rate, then `simulate_result` runs the same programs (same
scaling, fitting, arrivals and token ids) on the ``cpu`` profile with the same KV pool and the server's Continuum
settings (kvttl's default reload-cost model, as `continuum serve` has it). Each rate starts with an empty prefix cache
on both sides (the server runs with ``VLLM_SERVER_DEV_MODE=1`` for that). Writes ``live.json``, ``sim.json`` and
``fidelity.md``: mean / p95 JCT, TTFT, per-turn latency and the client gap (JCT minus turn latencies minus tool time:
the client's own lag between turns) side by side, and the relative error of the mean JCT, which should be within 15%.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from continuum.policy.presets import parse_policies
from continuum.policy.registry import ConfigError
from continuum.serve.launch import ServerProcess
from continuum.serve.verbs import setup_logging
from continuum_eval.live.replay import ReplayOptions, replay_sync
from continuum_eval.live.runs import DEV_MODE_ENV, env_set, reset_prefix_cache
from continuum_eval.results.report import percent
from continuum_eval.sim.cost.profiles import get_profile
from continuum_eval.sim.run import simulate_result
from continuum_workloads import load_programs, scale_program

log = logging.getLogger(__name__)

SERVE_POLICY = {"vllm": ("vllm", []), "continuum": ("continuum", ["--ttl-mode", "model"]),
                "fixed": ("continuum", ["--ttl-mode", "fixed"]), "preserve": ("continuum", ["--ttl-mode", "preserve"])}


def engine_flags(profile: Any, num_blocks: int | None) -> list[str]:
    flags = ["--block-size", str(profile.block_size), "--max-model-len", str(profile.max_model_len),
             "--max-num-seqs", str(profile.max_num_seqs), "--max-num-batched-tokens",
             str(profile.max_num_batched_tokens), "--enable-prefix-caching", "--enable-prompt-tokens-details"]
    if num_blocks:
        flags += ["--num-gpu-blocks-override", str(num_blocks)]
    return flags


def breakdown(result: dict, tool_s: dict[str, float]) -> tuple[float, float]:
    """Mean per-turn latency (send to last token) and mean client gap per program: JCT minus its turns'
    latencies minus its tool time, i.e. time the client spent between turns beyond the tool calls."""
    turns = [x for p in result["per_program"] for x in p.get("latency_s", [])]
    gaps = [p["jct_s"] - sum(p.get("latency_s", [])) - tool_s.get(p["id"], 0.0)
            for p in result["per_program"] if p["jct_s"] is not None]
    return _mean(turns), _mean(gaps)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def table(live: list[dict], sim: list[dict], tool_s: dict[str, float]) -> str:
    """One row per policy and rate; ``tool_s``: each program's total tool time (for the client gap)."""
    lines = ["| policy | JPS | live mean JCT (s) | sim mean JCT (s) | error | live p95 | sim p95 | live TTFT | "
             "sim TTFT | live turn | sim turn | live client gap | sim client gap | live hits | sim hits |",
             "|" + "---|" * 15]
    for lv, sm in zip(live, sim):
        err = sm["jct_s"]["mean"] / lv["jct_s"]["mean"] - 1 if lv["jct_s"]["mean"] else float("nan")
        (lt, lg), (st, sg) = breakdown(lv, tool_s), breakdown(sm, tool_s)
        lines.append(
            f"| {lv['policy']} | {lv['jps']:g} | {lv['jct_s']['mean']:.2f} | {sm['jct_s']['mean']:.2f} | {err:+.1%} "
            f"| {lv['jct_s']['p95']:.2f} | {sm['jct_s']['p95']:.2f} | {lv['ttft_s']['mean']:.3f} "
            f"| {sm['ttft_s']['mean']:.3f} | {lt:.3f} | {st:.3f} | {lg:.2f} | {sg:.2f} "
            f"| {percent(lv['prefix_hit_rate'])} | {percent(sm['prefix_hit_rate'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m continuum_eval.sim.fit.fidelity")
    p.add_argument("--trace", required=True)
    p.add_argument("--limit", type=int)
    p.add_argument("--token-scale", type=float, default=1.0)
    p.add_argument("--jps", default="0.5")
    p.add_argument("--policies", default="vllm,continuum")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--model", default=None, help="default: the model the profile was fitted on")
    p.add_argument("--num-blocks", type=int, help="KV pool for both sides (default: the server's own)")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    try:
        policies = parse_policies(a.policies)
    except ConfigError as exc:
        p.error(f"--policies: {exc}")
    if unknown := [x for x in policies if x not in SERVE_POLICY]:
        p.error(f"--policies: {', '.join(unknown)}: the comparison knows {', '.join(SERVE_POLICY)}")
    setup_logging()

    prof = get_profile(a.profile)
    if a.num_blocks:
        prof.num_blocks = a.num_blocks
    model = a.model or prof.cost.meta.get("model", "tiny")
    programs = load_programs(a.trace, a.limit)
    rates = [float(x) for x in a.jps.split(",") if x.strip()]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    live: list[dict] = []
    sim: list[dict] = []
    for pol in policies:
        serve_policy, extra = SERVE_POLICY[pol]
        args = ["--policy", serve_policy, *extra, *engine_flags(prof, a.num_blocks)]
        log.info(f"[fidelity] continuum serve {model} {' '.join(args)}")
        srv = ServerProcess(model, args, log_path=out / f"serve-{pol}.log", startup_timeout_s=900)
        with env_set(DEV_MODE_ENV, "1"):  # serves /reset_prefix_cache: each rate starts cold, as in the simulator
            srv.start()
        try:
            for i, jps in enumerate(rates):
                if not reset_prefix_cache(srv.base_url):
                    raise SystemExit(f"fidelity: the server at {srv.base_url} did not reset its prefix cache")
                opts = ReplayOptions(base_url=srv.base_url, jps=jps, seed=a.seed, token_scale=a.token_scale,
                                     progress=False, policy=pol, session_prefix=f"r{i}-",
                                     meta={"trace": a.trace})
                t0 = time.time()
                r = replay_sync(programs, opts)
                log.info(f"[fidelity] live {pol} jps={jps}: mean JCT {r['jct_s']['mean']:.2f} s "
                         f"({r['completed']}/{r['programs']}, {time.time() - t0:.0f} s)")
                live.append(r)
        finally:
            srv.stop()
        scaled = [scale_program(x, a.token_scale) for x in programs]
        tool_s = {x.id: sum(t.tool_s for t in x.turns[:-1]) for x in scaled}
        for jps in rates:
            s = simulate_result(scaled, pol, prof, jps, a.seed, progress=False,
                                policy_overrides={"reload_cost": None},
                                meta={"trace": a.trace, "token_scale": a.token_scale})
            log.info(f"[fidelity] sim  {pol} jps={jps}: mean JCT {s['jct_s']['mean']:.2f} s")
            sim.append(s)
    (out / "live.json").write_text(json.dumps(live, indent=2) + "\n")
    (out / "sim.json").write_text(json.dumps(sim, indent=2) + "\n")
    text = (f"# Fidelity: live CPU engine vs simulator (`{a.profile}` profile)\n\n"
            f"Trace {a.trace} (first {len(programs)} programs, token scale {a.token_scale}), seed {a.seed}, "
            f"model {model}, KV pool {prof.num_blocks} blocks of {prof.block_size}.\n\n"
            + table(live, sim, tool_s) + "\n")
    (out / "fidelity.md").write_text(text)
    print(table(live, sim, tool_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
