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

import logging
import shlex
from functools import partial
from typing import Any, Sequence

from continuum.cluster.replicas import Cluster
from continuum.serve.launch import free_port
from continuum_eval.live.runs import DEV_MODE_ENV, env_set, reset_prefix_cache, serve_runs
from continuum_eval.live.settings import BenchConfig, serve_command
from continuum_workloads import Program

__all__ = ["ROUTER_SETUPS", "ClusterDeployment", "router_options", "live_cluster"]

ROUTER_SETUPS = ("hash", "program")

log = logging.getLogger(__name__)


def router_options(setup: str, cfg: BenchConfig) -> dict[str, Any]:
    """`Cluster`'s router settings for a set-up; ValueError for an unknown one."""
    if setup not in ROUTER_SETUPS:
        raise ValueError(f"unknown router set-up {setup!r}; choose from {', '.join(ROUTER_SETUPS)}")
    program = setup == "program"
    extra = ["--program-scheduling-config-json", cfg.router_config] if program and cfg.router_config else []
    return {"router_policy": "consistent_hash", "program_scheduling": program, "router_args": extra}


class ClusterDeployment:
    """Replicas behind vllm-router as the deployment of a live run."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.base_url = cluster.base_url

    def alive(self) -> bool:
        procs = [self.cluster.router.proc] + [r.proc for r in self.cluster.replicas]
        return all(p is not None and p.poll() is None for p in procs)

    def reset_prefix_cache(self) -> bool:
        return all(reset_prefix_cache(r.base_url) for r in self.cluster.replicas)

    def started(self) -> dict[str, Any]:
        return {}

    def stop(self) -> None:
        self.cluster.stop()


def start_cluster(model: str, args: list[str], setup: str, cfg: BenchConfig, label: str) -> ClusterDeployment:
    """``cfg.replicas`` x `continuum serve MODEL ARGS` behind vllm-router set up as ``setup``, logged to
    ``OUT/cluster-LABEL/``, with vLLM's development endpoints on."""
    safe = label.replace("/", "-")
    cluster = Cluster(model, cfg.replicas, args, port=free_port(),
                      replica_ports=[free_port() for _ in range(cfg.replicas)],
                      log_dir=cfg.out_dir / f"cluster-{safe}", startup_timeout_s=cfg.startup_timeout_s,
                      **router_options(setup, cfg))
    log.info(f"[bench] starting {cfg.replicas} x `continuum serve {model} {shlex.join(args)}` behind vllm-router "
             f"({setup})")
    with env_set(DEV_MODE_ENV, "1"):
        cluster.start()
    return ClusterDeployment(cluster)


def live_cluster(programs: Sequence[Program], cfg: BenchConfig) -> list[dict[str, Any]]:
    """Every policy behind every router set-up of ``cfg.routers``; results labelled ``POLICY+ROUTER``."""
    results: list[dict[str, Any]] = []
    for policy in cfg.policies:
        model, args = serve_command(policy, cfg)
        for setup in cfg.routers:
            label = f"{policy}+{setup}"
            server_meta = {"model": model, "args": args, "replicas": cfg.replicas,
                           "router": router_options(setup, cfg)}
            start = partial(start_cluster, model, args, setup, cfg, label)
            results += serve_runs(programs, cfg, label, start, server_meta, "cluster",
                                  agentic_context=setup == "program")
    return results
