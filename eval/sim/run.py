"""One simulated run: programs + policy + profile + load in, the result JSON of DESIGN.md out (mode "sim").

The result has the live replay's keys (`eval.metrics.summarize` builds both) and, because the simulator knows
what each program costs alone, ``slowdown`` (JCT over the program's JCT alone on an idle engine, from
`eval.sim.isolated`); ``sched_step_ms`` is the wall time of the real ``schedule()`` calls on this machine.
``sim`` holds the run's own facts: profile, steps, simulated and wall seconds, preemptions, peaks.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from eval.metrics import percentiles, summarize
from continuum.policies import is_vllm, resolve
from eval.sim.engine import Engine
from workloads.turn_plan import fit_program
from eval.sim.isolated import isolated_jct
from eval.sim.profiles import Profile, get_profile
from workloads import Program, assign_arrivals

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
                    engine_out: list | None = None) -> dict[str, Any]:
    """Simulate ``programs`` under ``policy`` on ``profile`` at ``jps`` programs/s (seeded Poisson arrivals;
    None keeps the programs' own ``arrival_s``). Returns the result dict.

    ``policy``: a `continuum.policies` preset (``continuum policies`` lists them) or a bench label
    (``continuum/MODE``). ``policy_overrides``: component settings (e.g. ``pin_cap``, ``terms``, ``knobs``);
    vLLM's own scheduler ignores them.
    ``engine_out``: if a list, the finished `Engine` is appended to it (tests inspect the scheduler).
    """
    if not programs:
        raise ValueError("no programs to simulate")
    overrides = policy_overrides or {}
    config = None if is_vllm(policy) else resolve(policy, **overrides)  # fail early on a bad name or setting
    prof = profile if isinstance(profile, Profile) else get_profile(profile or DEFAULT_PROFILE)
    progs = prepare(programs, prof, jps, seed)
    t0 = time.perf_counter()
    engine = Engine(progs, policy, prof, seed=seed, progress=progress, policy_overrides=policy_overrides).run()
    wall = time.perf_counter() - t0
    t1 = time.perf_counter()
    alone = [isolated_jct(p, prof) for p in progs]
    alone_wall = time.perf_counter() - t1
    records = [sp.record for sp in engine.progs]
    steps_ms = np.asarray(engine.stats.sched_wall_s) * 1e3
    sched_ms = {"mean": float(steps_ms.mean()) if steps_ms.size else 0.0,
                "p99": float(np.percentile(steps_ms, 99)) if steps_ms.size else 0.0}
    st = engine.stats
    sim = {"profile": prof.name, "profile_description": prof.description, "num_blocks": prof.num_blocks,
           "block_size": prof.block_size, "max_model_len": prof.max_model_len,
           "max_num_batched_tokens": prof.max_num_batched_tokens, "max_num_seqs": prof.max_num_seqs,
           "steps": st.steps, "empty_steps": st.empty_steps, "idle_jumps": st.idle_jumps,
           "simulated_s": engine.clock.now, "busy_s": st.busy_s, "wall_s": wall, "isolated_wall_s": alone_wall,
           "schedule_wall_s": float(sum(st.sched_wall_s)), "update_wall_s": st.update_wall_s,
           "preemptions": st.preemptions, "peak_running": st.peak_running, "peak_waiting": st.peak_waiting,
           "peak_kv_usage": st.peak_kv_usage, "computed_tokens": st.tokens,
           "clipped_turns": sum(sp.clipped_turns for sp in engine.progs),
           "blocks_in_use_at_end": engine.blocks_in_use()}
    workload = progs[0].workload if len({p.workload for p in progs}) == 1 else None
    result = summarize(records, policy=policy, jps=jps, mode="sim", workload=workload,
                       pins=engine.pin_counters(), sched_step_ms=sched_ms,
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
    result["sim"] = sim
    if engine_out is not None:
        engine_out.append(engine)
    return result
