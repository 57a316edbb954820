"""`continuum cluster`: `continuum serve` replicas behind vLLM's router, started and stopped as one.

    continuum cluster --replicas 2 tiny --port 8000 [--router-policy sticky_least_loaded] [serve flags...]
    continuum cluster --replica http://host-a:8000 --replica http://host-b:8000 --port 8000    # the router only
    continuum cluster --replicas 1 tiny --replica http://host-b:8000 --stats-port 7999        # both
    continuum cluster --replicas 2 tiny --tenancy tenancy.toml        # keys and quotas, one file for every replica

Local replicas listen on the router's port + 1 ... + N (``--replica-port``), start in parallel, and the router
(`continuum.cluster.router`) starts once they are healthy. ``--replica URL`` (repeatable) adds a replica that
already runs elsewhere; given alone, no local replica starts. Every flag the cluster does not know goes to each
local replica's `continuum serve` unchanged (``--policy``, component flags, vLLM flags). The cluster's merged
`/continuum/stats` and `/metrics` are served on ``--stats-port`` (`continuum.cluster.view`). SIGTERM or Ctrl-C stops
the router and every local replica; a replica that dies leaves the rest serving (the router sends its programs to
the others, which re-prefill them); the cluster exits when the router dies. A cluster killed outright takes its
local replicas and router with it (`continuum.serve.tether`). ``--tenancy FILE`` (`continuum.serve.tenancy_file`)
is checked before anything starts and reaches every local replica as its own ``--tenancy`` with the file's
absolute path; a remote replica must be started with a copy of the same file (or the same key flags).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import signal
import threading

from continuum.cluster.cluster import Cluster
from continuum.cluster.router import DEFAULT_POLICY, POLICIES, RouterError
from continuum.serve import models
from continuum.serve.argtypes import positive_int
from continuum.serve.launch import free_port
from continuum.serve.tenancy_file import tenancy_arg

__all__ = ["Cluster", "ClusterVerb"]  # `Cluster` is also had from here (the live bench imports it so)
log = logging.getLogger(__name__)
DEFAULT_REPLICAS = 2  # local replicas when no --replica is given


def replica_url(text: str) -> str:
    if not text.startswith(("http://", "https://")) or len(text.split("://", 1)[1].strip("/")) == 0:
        raise argparse.ArgumentTypeError(f"want a replica's base URL (http://host:port), not {text!r}")
    return text.rstrip("/")


class ClusterVerb:
    """`continuum cluster`; flags it does not know go to every local replica's `continuum serve`."""

    name, passthrough = "cluster", True

    def add_to(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        return add_cluster(subparsers)

    def run(self, args: argparse.Namespace, extra: list[str]) -> int:
        return run_cluster(args, extra)


def add_cluster(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("cluster", help="`continuum serve` replicas, local or remote, behind vLLM's router",
                       description="Unknown flags go to every local replica's `continuum serve` unchanged.")
    p.add_argument("model", nargs="?", default=models.DEFAULT_MODEL, help="as for `continuum serve`")
    p.add_argument("--replicas", type=positive_int, default=None,
                   help=f"local replicas to start (default {DEFAULT_REPLICAS}, or none with --replica)")
    p.add_argument("--replica", type=replica_url, action="append", default=[], metavar="URL",
                   help="a replica already running elsewhere (repeatable; the router health-checks it)")
    p.add_argument("--stats-port", type=positive_int, default=None,
                   help="port of the cluster's merged /continuum/stats and /metrics (default: a free one)")
    p.add_argument("--port", type=positive_int, default=8000, help="the router's port (default 8000)")
    p.add_argument("--host", default="127.0.0.1", help="the router's address (default 127.0.0.1)")
    p.add_argument("--replica-port", type=positive_int, default=None,
                   help="first replica's port; the others follow (default: the router's port + 1)")
    p.add_argument("--router-policy", choices=POLICIES, default=DEFAULT_POLICY,
                   help=f"vllm-router's policy (default {DEFAULT_POLICY}: a program stays on the replica its first "
                        "turn went to, new programs go to the replica with the fewest)")
    p.add_argument("--program-scheduling", action="store_true",
                   help="turn on vllm-router's own program-level scheduling (--enable-program-scheduling)")
    p.add_argument("--router-args", default="", help="more vllm-router flags, in one quoted string")
    p.add_argument("--log-dir", default=None, help="folder for the replicas' and the router's logs")
    p.add_argument("--tenancy", type=tenancy_arg, default=None, metavar="FILE",
                   help="API keys, admin keys and the tenant pin share for the whole cluster (a TOML file; see "
                        "`continuum serve --help`): every local replica serves with it")
    return p


def replica_args(args: argparse.Namespace, extra: list[str]) -> list[str]:
    """Each local replica's `continuum serve` flags: the unknown ones, and the cluster's tenancy file."""
    return [*extra, "--tenancy", str(args.tenancy.path)] if args.tenancy is not None else list(extra)


def local_replicas(args: argparse.Namespace) -> int:
    """``--replicas``, else none beside remote replicas (the router only), else the default."""
    return args.replicas if args.replicas is not None else (0 if args.replica else DEFAULT_REPLICAS)


def run_cluster(args: argparse.Namespace, extra: list[str]) -> int:
    local = local_replicas(args)
    try:
        cluster = Cluster(args.model, local, replica_args(args, extra), port=args.port, host=args.host,
                          replica_port=args.replica_port, router_policy=args.router_policy,
                          program_scheduling=args.program_scheduling, router_args=shlex.split(args.router_args),
                          log_dir=args.log_dir, remote=args.replica, stats_port=args.stats_port or free_port())
    except RouterError as exc:
        log.error(f"continuum cluster: {exc}")
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    remote = f" and {len(cluster.remote)} remote" if cluster.remote else ""
    print(f"continuum cluster: starting {local} replicas of {args.model}{remote} behind the router", flush=True)
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
