"""One simulated run: programs + policy + profile + load in, the result JSON of DESIGN.md out (mode "sim").

The result has the live replay's keys (`continuum_eval.results.metrics.summarize` builds both) and, because the
simulator knows what each program costs alone, ``slowdown`` (JCT over the program's JCT alone on an idle engine, from
`continuum_eval.sim.engine.isolated`); ``sched_step_ms`` is the wall time of the real ``schedule()`` calls on this
machine. ``sim`` holds the run's own facts: profile, steps, simulated and wall seconds, preemptions, peaks. With a
host KV tier (``cpu_kv_gib``), ``host_tier`` holds its size per engine (GiB, CPU blocks) and its PCIe traffic
summed over engines (`continuum_eval.sim.engine.transfers`). ``bound`` is a lower bound on the mean JCT of any
schedule of these programs at these arrivals (`continuum_eval.sim.bound`): ``alone_s``, ``saturated_s`` and their
max, ``mean_jct_s``.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from continuum.policy.presets import is_vllm, resolve
from continuum_eval.results.metrics import percentiles, summarize
from continuum_eval.sim.bound import jct_bound
from continuum_eval.sim.cost.profiles import Profile, get_profile
from continuum_eval.sim.engine.core import EngineCore
from continuum_eval.sim.engine.isolated import isolated_jct
from continuum_eval.sim.engine.loop import Engine, EventLoop
from continuum_eval.sim.engine.transfers import HostLink
from continuum_workloads import Program, assign_arrivals
from continuum_workloads.transforms import fit_program

DEFAULT_PROFILE = "h100-llama-3.1-8b"


def prepare(programs: Sequence[Program], profile: Profile, jps: float | None, seed: int) -> list[Program]:
    """Fit programs to the profile's context length, then give them Poisson arrivals at ``jps``."""
    progs = [fit_program(p, profile.max_model_len) for p in programs]
    if jps is not None:
        progs = assign_arrivals(progs, jps, seed)
    elif any(p.arrival_s is None for p in progs):
        raise ValueError("the trace has programs without arrival_s: give a rate (jps)")
    return progs


def simulate_result(programs: Sequence[Program], policy: str, profile: str | Profile | None = None,
                    jps: float | None = None, seed: int = 0, *, progress: bool = True,
                    policy_overrides: dict | None = None, meta: dict | None = None,
                    engine_out: list | None = None, replicas: int = 1, router: str = "session", dp: int = 1,
                    lockstep: bool = False, cpu_kv_gib: float | None = None,
                    cpu_eviction: str = "lru") -> dict[str, Any]:
    """Simulate ``programs`` under ``policy`` on ``profile`` at ``jps`` programs/s (seeded Poisson arrivals;
    None keeps the programs' own ``arrival_s``). Returns the result dict.

    ``policy``: a `continuum.policy.presets` preset (``continuum policies`` lists them) or a bench label
    (``continuum/MODE``). ``policy_overrides``: component settings (e.g. ``pin_cap``, ``terms``, ``knobs``);
    vLLM's own scheduler ignores them.
    ``engine_out``: if a list, the finished simulation is appended to it (an `Engine` when there is one engine:
    tests inspect its scheduler).
    ``replicas`` > 1: that many engines behind ``router`` (`continuum_eval.sim.engine.routing`); ``dp`` > 1: that many
    data-parallel ranks, programs kept on a rank with spill (``lockstep``: a step lasts the slowest rank's). The
    result then has a ``scaleout`` section (`continuum_eval.sim.engine.loop`).
    ``cpu_kv_gib``: each engine gets vLLM's host KV tier of that many GiB (``--kv-offloading-size``), its CPU
    blocks evicted by the ``cpu_eviction`` policy (vLLM's lru, arc; Continuum's program); None (the default): no tier.
    """
    if not programs:
        raise ValueError("no programs to simulate")
    if replicas > 1 and dp > 1:
        raise ValueError("simulate replicas or data-parallel ranks, not both")
    overrides = policy_overrides or {}
    config = None if is_vllm(policy) else resolve(policy, **overrides)  # fail early on a bad name or setting
    if cpu_kv_gib is not None and cpu_kv_gib <= 0:
        raise ValueError(f"cpu_kv_gib must be positive, not {cpu_kv_gib}")
    tier = {"cpu_kv_gib": cpu_kv_gib, "cpu_eviction": cpu_eviction}
    prof = profile if isinstance(profile, Profile) else get_profile(profile or DEFAULT_PROFILE)
    if cpu_kv_gib is not None:
        HostLink.of(prof)  # fail early: a fitted profile has no host link to copy KV over
    progs = prepare(programs, prof, jps, seed)
    engines = max(replicas, dp)
    t0 = time.perf_counter()
    if engines == 1:
        sim: EventLoop = Engine(progs, policy, prof, seed=seed, progress=progress, policy_overrides=overrides,
                                **tier)
    else:
        # Data-parallel ranks are placed the way the data-parallel middleware places them.
        sim = EventLoop(progs, policy, prof, engines=engines, router="session-load" if dp > 1 else router,
                        lockstep=dp > 1 and lockstep, seed=seed, progress=progress, policy_overrides=overrides,
                        **tier)
    sim.run()
    wall = time.perf_counter() - t0
    result = engines_result(sim.engines, sim.progs, policy, prof, progs, jps, seed, wall, overrides, config, meta)
    if engines > 1:
        result["scaleout"] = {"replicas": replicas, "dp": dp, **sim.state()}
    if engine_out is not None:
        engine_out.append(sim)
    return result


def host_tier_line(result: dict) -> str:
    """The host tier's PCIe traffic, for a one-line summary ('' without a tier)."""
    t = result.get("host_tier")
    if not t:
        return ""
    return (f", host tier {t['cpu_kv_gib']:g} GiB: {t['stored_bytes'] / 1e9:.1f} GB stored, "
            f"{t['loaded_bytes'] / 1e9:.1f} GB loaded, {t['cpu_hit_tokens']:,} CPU-hit tokens"
            + ("" if not (r := t.get("retention")) else f"; {r['parked']} parked, {r['prefetches']} prefetches "
               f"({r['in_time']} in time, {r['late']} late, {r['wasted']} wasted)"))


def _sum_counters(dicts: Sequence[dict | None]) -> dict | None:
    found = [d for d in dicts if d is not None]
    if not found:
        return None
    return {k: sum(int(d.get(k, 0) or 0) for d in found) for k in found[0]}


def engines_result(engines: Sequence[EngineCore], sim_programs: Sequence, policy: str, prof: Profile,
                   progs: Sequence[Program], jps: float | None, seed: int, wall: float, overrides: dict,
                   config: Any, meta: dict | None) -> dict[str, Any]:
    """The result dict of a run on one engine or several (replicas, data-parallel ranks): records of every
    program, the engines' counters summed (peaks: the highest), ``sim.engines`` their number."""
    t1 = time.perf_counter()
    alone = [isolated_jct(p, prof) for p in progs]
    alone_wall = time.perf_counter() - t1
    records = [sp.record for sp in sim_programs]
    steps_ms = np.asarray([x for e in engines for x in e.stats.sched_wall_s]) * 1e3
    sched_ms = {"mean": float(steps_ms.mean()) if steps_ms.size else 0.0,
                "p99": float(np.percentile(steps_ms, 99)) if steps_ms.size else 0.0}
    st = [e.stats for e in engines]
    sim = {"profile": prof.name, "profile_description": prof.description, "num_blocks": prof.num_blocks,
           "block_size": prof.block_size, "max_model_len": prof.max_model_len,
           "max_num_batched_tokens": prof.max_num_batched_tokens, "max_num_seqs": prof.max_num_seqs,
           "engines": len(engines), "steps": sum(x.steps for x in st), "empty_steps": sum(x.empty_steps for x in st),
           "idle_jumps": sum(x.idle_jumps for x in st), "simulated_s": max(e.clock.now for e in engines),
           "busy_s": sum(x.busy_s for x in st), "wall_s": wall, "isolated_wall_s": alone_wall,
           "schedule_wall_s": float(sum(sum(x.sched_wall_s) for x in st)),
           "update_wall_s": sum(x.update_wall_s for x in st), "preemptions": sum(x.preemptions for x in st),
           "peak_running": max(x.peak_running for x in st), "peak_waiting": max(x.peak_waiting for x in st),
           "peak_kv_usage": max(x.peak_kv_usage for x in st), "computed_tokens": sum(x.tokens for x in st),
           "clipped_turns": sum(sp.clipped_turns for sp in sim_programs),
           "blocks_in_use_at_end": sum(e.blocks_in_use() for e in engines)}
    workload = progs[0].workload if len({p.workload for p in progs}) == 1 else None
    result = summarize(records, policy=policy, jps=jps, mode="sim", workload=workload,
                       pins=_sum_counters([e.pin_counters() for e in engines]), sched_step_ms=sched_ms,
                       meta={"seed": seed, "policy_config": config.model_dump(exclude={"control_addr"})
                             if config is not None else None, "policy_overrides": overrides, **(meta or {})})
    slow = []
    for row, rec, a in zip(result["per_program"], records, alone):
        row["alone_s"] = round(a, 6)
        if rec.jct_s is not None and a > 0:
            row["slowdown"] = round(rec.jct_s / a, 6)
            slow.append(rec.jct_s / a)
    s = percentiles(slow, qs=(50, 95, 99))
    result["slowdown"] = {"mean": s["mean"], "p50": s["p50"], "p95": s["p95"], "p99": s["p99"]}
    result["alone_jct_s"] = percentiles(alone, qs=(50, 95))
    result["bound"] = jct_bound(progs, prof, engines=len(engines)).to_dict()
    tpot = [(t.done_s - t.first_token_s) / (t.output_tokens - 1) for r in records for t in r.turns
            if t.ok and t.output_tokens > 1 and t.first_token_s is not None and t.done_s is not None]
    result["tpot_s"] = percentiles(tpot, qs=(95,))  # time per output token
    result["sim"] = sim
    tiers = [t for e in engines if (t := e.host_tier_stats()) is not None]
    if tiers:
        result["host_tier"] = {"cpu_kv_gib": tiers[0]["cpu_kv_gib"], "blocks": tiers[0]["blocks"],
                               "eviction": engines[0].cpu_eviction,
                               **{k: sum(t[k] for t in tiers) for k in tiers[0]
                                  if k not in ("cpu_kv_gib", "blocks", "retention")}}
        if any("retention" in t for t in tiers):  # parks and prefetches (continuum.sched.tier)
            result["host_tier"]["retention"] = _sum_counters([t.get("retention") for t in tiers])
    return result
