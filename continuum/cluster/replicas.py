"""`continuum cluster`: N `continuum serve` replicas behind vLLM's router, started and stopped as one.

    continuum cluster --replicas 2 tiny --port 8000 [--router-policy consistent_hash] [serve flags...]

Replicas listen on the router's port + 1 ... + N (``--replica-port``), start in parallel, and the router
(`continuum.cluster.router`) starts once every replica is healthy. Every flag the cluster does not know goes to each
replica's `continuum serve` unchanged (``--policy``, component flags, vLLM flags). SIGTERM or Ctrl-C stops the
router and every replica; a replica that dies leaves the rest serving (the router sends its programs to the
others, which re-prefill them); the cluster exits when the router dies.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

from continuum.cluster.router import POLICIES, RouterError, RouterProcess
from continuum.serve import models
from continuum.serve.argtypes import positive_int
from continuum.serve.launch import ServerProcess

log = logging.getLogger(__name__)


class Cluster:
    """Replicas + router; a context manager. ``base_url`` is the router's."""

    def __init__(self, model: str, replicas: int, serve_args: Sequence[str] = (), port: int = 8000,
                 host: str = "127.0.0.1", replica_port: int | None = None, replica_ports: Sequence[int] = (),
                 router_policy: str = "consistent_hash",
                 program_scheduling: bool = False, router_args: Sequence[str] = (),
                 log_dir: str | Path | None = None, startup_timeout_s: float = 900.0) -> None:
        self.log_dir = Path(log_dir) if log_dir else None
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        first = replica_port or port + 1
        ports = list(replica_ports) or [first + i for i in range(replicas)]
        self.replicas = [ServerProcess(model, list(serve_args), port=ports[i], log_path=self._log(f"replica-{i}"),
                                       startup_timeout_s=startup_timeout_s) for i in range(replicas)]
        self.router = RouterProcess([r.base_url for r in self.replicas], port=port, host=host,
                                    policy=router_policy, program_scheduling=program_scheduling,
                                    extra=router_args, log_path=self._log("router"))
        self.base_url = self.router.base_url

    def _log(self, name: str) -> Path | None:
        return self.log_dir / f"{name}.log" if self.log_dir else None

    def start(self) -> "Cluster":
        errors = _on_each(ServerProcess.start, self.replicas)
        if errors:
            self.stop()
            raise RuntimeError(f"a replica did not start: {errors[0]}")
        try:
            self.router.start()
        except RouterError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.router.stop()
        _on_each(ServerProcess.stop, self.replicas)

    def describe(self) -> dict:
        return {"router": self.base_url, "replicas": [{"url": r.base_url, "pid": r.proc.pid if r.proc else None}
                                                      for r in self.replicas],
                "router_pid": self.router.proc.pid if self.router.proc else None}

    def __enter__(self) -> "Cluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _on_each(method: Callable[[ServerProcess], object], servers: Sequence[ServerProcess]) -> list[BaseException]:
    """``method`` on every server at once (replicas start and stop in parallel); the errors it raised."""
    with ThreadPoolExecutor(max_workers=max(1, len(servers))) as pool:
        futures = [pool.submit(method, s) for s in servers]
    return [f.exception() for f in futures if f.exception() is not None]


class ClusterVerb:
    """`continuum cluster`; flags it does not know go to every replica's `continuum serve`."""

    name, passthrough = "cluster", True

    def add_to(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        return add_cluster(subparsers)

    def run(self, args: argparse.Namespace, extra: list[str]) -> int:
        return run_cluster(args, extra)


def add_cluster(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("cluster", help="N `continuum serve` replicas behind vLLM's router (session affinity)",
                       description="Unknown flags go to every replica's `continuum serve` unchanged.")
    p.add_argument("model", nargs="?", default=models.DEFAULT_MODEL, help="as for `continuum serve`")
    p.add_argument("--replicas", type=positive_int, default=2, help="number of replicas (default 2)")
    p.add_argument("--port", type=positive_int, default=8000, help="the router's port (default 8000)")
    p.add_argument("--host", default="127.0.0.1", help="the router's address (default 127.0.0.1)")
    p.add_argument("--replica-port", type=positive_int, default=None,
                   help="first replica's port; the others follow (default: the router's port + 1)")
    p.add_argument("--router-policy", choices=POLICIES, default="consistent_hash",
                   help="vllm-router's policy (default consistent_hash: hashes X-Session-ID)")
    p.add_argument("--program-scheduling", action="store_true",
                   help="turn on vllm-router's own program-level scheduling (--enable-program-scheduling)")
    p.add_argument("--router-args", default="", help="more vllm-router flags, in one quoted string")
    p.add_argument("--log-dir", default=None, help="folder for the replicas' and the router's logs")
    return p


def run_cluster(args: argparse.Namespace, extra: list[str]) -> int:


    try:
        cluster = Cluster(args.model, args.replicas, extra, port=args.port, host=args.host,
                          replica_port=args.replica_port, router_policy=args.router_policy,
                          program_scheduling=args.program_scheduling, router_args=shlex.split(args.router_args),
                          log_dir=args.log_dir)
    except RouterError as exc:
        log.error(f"continuum cluster: {exc}")
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"continuum cluster: starting {args.replicas} replicas of {args.model} and the router", flush=True)
    try:
        cluster.start()
    except (RuntimeError, RouterError) as exc:
        log.error(f"continuum cluster: {exc}")
        return 1
    print(f"continuum cluster: ready {json.dumps(cluster.describe())}", flush=True)
    return _watch(cluster, stop)


def _watch(cluster: Cluster, stop: threading.Event) -> int:
    """Until SIGTERM/Ctrl-C (exit 0) or the router's death (exit 1); reports replicas that die."""
    dead: set[int] = set()
    code = 0
    while not stop.wait(1.0):
        if cluster.router.proc is not None and cluster.router.proc.poll() is not None:
            log.error("continuum cluster: the router exited; stopping")
            code = 1
            break
        for i, r in enumerate(cluster.replicas):
            if i not in dead and r.proc is not None and r.proc.poll() is not None:
                dead.add(i)
                log.warning(f"continuum cluster: replica {i} ({r.base_url}) exited with {r.proc.returncode}; "
                            f"the router sends its programs to the others")
    cluster.stop()
    print("continuum cluster: stopped", flush=True)
    return code
