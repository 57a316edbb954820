"""Fit the ``cpu`` profile's per-request step cost to one live replay, so that the simulator sees what a client
of the live server sees under load.

    python -m continuum_eval.sim.fit.replay_fit --trace swe.jsonl --offset 40 --limit 40 --token-scale 0.25 --jps 1

Why: on a two-core machine the API process and the client share the CPU with the engine, and every streamed
token of every running request costs them time. `continuum profile` measures that cost on small synthetic
batches, where it comes and goes (sometimes the API process keeps up token by token, sometimes it merges tokens
into one chunk). A replay of agent programs is the load the simulator is compared with, so this module replays
some programs live (plain vLLM), then bisects the profile's ``seqs`` coefficient (seconds per request per step)
until the simulated mean JCT of the same programs, rate and seed matches. Every other coefficient stays as
measured. Use programs that the fidelity check does not (``--offset``): the check is then out of sample.

The fitted value and the replay it came from are written into the profile JSON (``coef.seqs``,
``replay_fit``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from continuum.serve.launch import ServerProcess
from continuum.serve.verbs import setup_logging
from continuum_eval.live.replay import ReplayOptions, replay_sync
from continuum_eval.sim.cost.costmodel import LinearCostModel
from continuum_eval.sim.cost.profiles import Profile, cpu_profile
from continuum_eval.sim.fit.fidelity import engine_flags
from continuum_eval.sim.fit.profile_cpu import FITTED_DIR
from continuum_eval.sim.run import simulate_result
from continuum_workloads import read_trace, scale_program

log = logging.getLogger(__name__)

SEQS_MAX = 0.01  # seconds per request per step: far above anything a CPU server shows


def with_seqs(profile: Profile, seqs: float) -> Profile:
    """``profile`` with its per-request coefficient replaced (the profile object is changed and returned)."""
    coef = dict(profile.cost.coef)
    coef["seqs"] = seqs
    profile.cost = LinearCostModel(coef, dict(profile.cost.meta))
    return profile


def bisect(target: float, simulate: Callable[[float], float], lo: float = 0.0, hi: float = SEQS_MAX,
           iters: int = 14) -> tuple[float, float]:
    """The ``seqs`` in [lo, hi] whose simulated mean JCT is closest to ``target`` (JCT grows with ``seqs``),
    and that JCT."""
    best = (lo, simulate(lo))
    if best[1] >= target:
        return best
    top = simulate(hi)
    if top <= target:
        return hi, top
    for _ in range(iters):
        mid = (lo + hi) / 2
        jct = simulate(mid)
        if abs(jct - target) < abs(best[1] - target):
            best = (mid, jct)
        lo, hi = (mid, hi) if jct < target else (lo, mid)
    return best


def fit_to_replay(live_jct: float, programs: Sequence[Any], path: Path, jps: float, seed: int) -> dict:
    """Bisect ``seqs`` for ``programs`` (already scaled) and return what was found."""
    def simulate(seqs: float) -> float:
        prof = with_seqs(cpu_profile(path), seqs)
        r = simulate_result(programs, "vllm", prof, jps, seed, progress=False, policy_overrides={"reload_cost": None})
        log.info(f"[replay-fit] seqs={seqs * 1e3:.3f} ms: simulated mean JCT {r['jct_s']['mean']:.2f} s")
        return float(r["jct_s"]["mean"])

    before = float(cpu_profile(path).cost.coef.get("seqs", 0.0))
    seqs, jct = bisect(live_jct, simulate)
    return {"seqs_measured": before, "seqs": seqs, "live_mean_jct_s": live_jct, "sim_mean_jct_s": jct}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m continuum_eval.sim.fit.replay_fit")
    p.add_argument("--trace", required=True)
    p.add_argument("--offset", type=int, default=0, help="skip the first N programs (keep them for the check)")
    p.add_argument("--limit", type=int, default=40)
    p.add_argument("--token-scale", type=float, default=1.0)
    p.add_argument("--jps", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", default=str(FITTED_DIR / "cpu.json"))
    a = p.parse_args(argv)
    setup_logging()

    path = Path(a.profile)
    data = json.loads(path.read_text())
    prof = cpu_profile(path)
    programs = read_trace(a.trace)[a.offset: a.offset + a.limit]
    if not programs:
        raise SystemExit(f"replay_fit: no programs in {a.trace} at offset {a.offset}")
    model = data.get("model", "tiny")
    args = ["--policy", "vllm", *engine_flags(prof, None)]
    log.info(f"[replay-fit] continuum serve {model} {' '.join(args)}")
    t0 = time.time()
    with ServerProcess(model, args, startup_timeout_s=900) as srv:
        opts = ReplayOptions(base_url=srv.base_url, jps=a.jps, seed=a.seed, token_scale=a.token_scale,
                             progress=True, policy="vllm")
        live = replay_sync(programs, opts)
    if live["failed"]:
        raise SystemExit(f"replay_fit: {live['failed']} programs failed live: {live['errors']}")
    scaled = [scale_program(x, a.token_scale) for x in programs]
    found = fit_to_replay(float(live["jct_s"]["mean"]), scaled, path, a.jps, a.seed)
    found.update({"trace": Path(a.trace).name, "offset": a.offset, "programs": len(programs),
                  "token_scale": a.token_scale, "jps": a.jps, "seed": a.seed, "policy": "vllm",
                  "wall_s": round(time.time() - t0, 1)})
    data["coef"]["seqs"] = found["seqs"]
    data["replay_fit"] = found
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(json.dumps(found, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
