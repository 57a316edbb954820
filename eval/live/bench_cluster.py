"""The live benchmark through vLLM's router: the same trace, seed and model against several replicas per set-up.

``continuum bench --mode live --router hash,program --replicas 2 --policies vllm,continuum`` runs every policy
behind every router set-up (`continuum.cluster.replicas.Cluster`: ``--replicas`` `continuum serve` replicas behind
vllm-router), one cluster per (policy, router), each serving every JPS in turn:

- ``hash``: vllm-router's ``consistent_hash`` on ``X-Session-ID`` (session affinity, nothing more);
- ``program``: the same, plus vllm-router's own program-level scheduling (``--enable-program-scheduling``:
  admission at the router, TTL pause and resume, predicted return time and output length). Its clients also
  name the program in ``vllm_xargs.agentic_context``, which is where the router's scheduler looks for it;
  ``--router-config JSON`` is passed as ``--program-scheduling-config-json``.

Results are labelled ``POLICY+ROUTER``. Between runs every replica's prefix cache is emptied (as the
single-server bench does) and every run uses its own session ids.
"""

from __future__ import annotations

import shlex
from typing import Any, Sequence

from continuum_eval.live.bench import (DEV_MODE_ENV, BenchConfig, _failed_result, _log, env_set, policy_args, replay_run,
                        reset_prefix_cache, server_flags)
from continuum_workloads import Program

ROUTER_SETUPS = ("hash", "program")


def router_options(setup: str, cfg: BenchConfig) -> dict[str, Any]:
    if setup not in ROUTER_SETUPS:
        raise ValueError(f"unknown router set-up {setup!r}; choose from {', '.join(ROUTER_SETUPS)}")
    program = setup == "program"
    extra = ["--program-scheduling-config-json", cfg.router_config] if program and cfg.router_config else []
    return {"router_policy": "consistent_hash", "program_scheduling": program, "router_args": extra}


def _start(model: str, args: list[str], setup: str, cfg: BenchConfig, label: str):
    from continuum.cluster.replicas import Cluster
    from continuum.serve.launch import free_port

    safe = label.replace("/", "-")
    cluster = Cluster(model, cfg.replicas, args, port=free_port(),
                      replica_ports=[free_port() for _ in range(cfg.replicas)],
                      log_dir=cfg.out_dir / f"cluster-{safe}", startup_timeout_s=cfg.startup_timeout_s,
                      **router_options(setup, cfg))
    _log(f"[bench] starting {cfg.replicas} x `continuum serve {model} {shlex.join(args)}` behind vllm-router "
         f"({setup})")
    with env_set(DEV_MODE_ENV, "1"):
        cluster.start()
    return cluster


def _alive(cluster) -> bool:
    procs = [cluster.router.proc] + [r.proc for r in cluster.replicas]
    return all(p is not None and p.poll() is None for p in procs)


def live_cluster(programs: Sequence[Program], cfg: BenchConfig) -> list[dict[str, Any]]:
    from continuum.serve import models

    model = cfg.model or models.DEFAULT_MODEL
    common = server_flags(cfg)
    results: list[dict[str, Any]] = []
    for policy in cfg.policies:
        serve_policy, own = policy_args(policy, cfg)
        args = ["--policy", serve_policy, *own, *common]
        for setup in cfg.routers:
            label = f"{policy}+{setup}"
            cluster = None
            for run_idx, jps in enumerate(cfg.jps):
                meta = {"trace": cfg.trace, "server": {"model": model, "args": args, "replicas": cfg.replicas,
                                                       "router": router_options(setup, cfg)}}
                if cluster is None or not _alive(cluster):
                    if cluster is not None:
                        cluster.stop()
                    try:
                        cluster = _start(model, args, setup, cfg, label)
                    except (RuntimeError, OSError) as exc:
                        _log(f"[bench] {label}: cluster did not start: {exc}")
                        results.append(_failed_result(programs, label, jps, f"cluster did not start: {exc}", meta))
                        cluster = None
                        continue
                meta["server"]["prefix_cache_reset"] = all(reset_prefix_cache(r.base_url) for r in cluster.replicas)
                results.append(replay_run(programs, cfg, cluster.base_url, label, jps, run_idx, meta,
                                          agentic_context=setup == "program"))
            if cluster is not None:
                cluster.stop()
    return results
