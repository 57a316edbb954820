"""A cluster's processes, started and stopped as one: local replicas, the router in front of them and of any
replicas already running elsewhere, and the cluster's stats server (`continuum.cluster.view`).

Local replicas are `continuum serve` children of this process, tethered to it (`continuum.serve.tether`): killed
with it. Remote replicas are URLs only: this process neither starts nor watches them; the router's health checks
decide whether they serve (`continuum.cluster.router`). With no local replica the cluster is the router alone.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

from continuum.cluster.router import DEFAULT_POLICY, RouterError, RouterProcess
from continuum.cluster.view import ViewServer, cluster_app
from continuum.serve.launch import ServerProcess


class Cluster:
    """Replicas + router (+ the stats server, with ``stats_port``); a context manager. ``base_url``: the router's."""

    def __init__(self, model: str, replicas: int, serve_args: Sequence[str] = (), port: int = 8000,
                 host: str = "127.0.0.1", replica_port: int | None = None, replica_ports: Sequence[int] = (),
                 router_policy: str = DEFAULT_POLICY,
                 program_scheduling: bool = False, router_args: Sequence[str] = (),
                 log_dir: str | Path | None = None, startup_timeout_s: float = 900.0,
                 remote: Sequence[str] = (), stats_port: int | None = None) -> None:
        if replicas + len(remote) < 1:
            raise ValueError("a cluster needs a replica: a local one or a remote URL")
        self.log_dir = Path(log_dir) if log_dir else None
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        first = replica_port or port + 1
        ports = list(replica_ports) or [first + i for i in range(replicas)]
        self.replicas = [ServerProcess(model, list(serve_args), port=ports[i], log_path=self._log(f"replica-{i}"),
                                       startup_timeout_s=startup_timeout_s) for i in range(replicas)]
        self.remote = [u.rstrip("/") for u in remote]
        self.router = RouterProcess(self.replica_urls(), port=port, host=host,
                                    policy=router_policy, program_scheduling=program_scheduling,
                                    extra=router_args, log_path=self._log("router"))
        self.base_url = self.router.base_url
        self.view = (ViewServer(cluster_app(self.replica_urls(), self.base_url), stats_port, host)
                     if stats_port is not None else None)

    def replica_urls(self) -> list[str]:
        return [r.base_url for r in self.replicas] + self.remote

    def _log(self, name: str) -> Path | None:
        return self.log_dir / f"{name}.log" if self.log_dir else None

    def start(self) -> "Cluster":
        errors = _on_each(ServerProcess.start, self.replicas)
        if errors:
            self.stop()
            raise RuntimeError(f"a replica did not start: {errors[0]}")
        try:
            self.router.start()  # waits until the router answers, which it does once one replica is healthy
            if self.view is not None:
                self.view.start()
        except (RouterError, RuntimeError):
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.view is not None:
            self.view.stop()
        self.router.stop()
        _on_each(ServerProcess.stop, self.replicas)

    def describe(self) -> dict:
        return {"router": self.base_url, "replicas": [{"url": r.base_url, "pid": r.proc.pid if r.proc else None}
                                                      for r in self.replicas],
                "remote": self.remote, "stats": self.view.base_url if self.view else None,
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
