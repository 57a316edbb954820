"""vLLM's router (PyPI ``vllm-router``, a Rust load balancer) as a child process in front of replicas.

``consistent_hash`` hashes the ``X-Session-ID`` header, which the agent SDK sends on every request, including
the session endpoints (``GET /v1/sessions/{id}``, ``POST /v1/sessions/{id}/end``): the router forwards any path,
so a program's turns, its state and its end all reach the replica that holds its KV. But vllm-router 0.1.17
forwards a path it has no handler of its own for without the client's headers, ``Authorization`` included, so
with API keys the session endpoints and ``/continuum/stats`` through the router are refused (401); the cluster's
view (`continuum.cluster.view`, ``--stats-port``) serves them, asking every replica with the caller's key.

Membership is the router's own: it health-checks every replica (``GET /health``) and routes only to those it finds
healthy, so a replica that stops answering leaves the ring and one that answers again (or is added with the
router's ``POST /add_worker?url=...``) joins it; nothing of ours probes replicas. The router starts once one
replica is healthy. Flags we set, and why:

- ``--cb-failure-threshold 1``: the first failed attempt on a dead replica opens its circuit breaker, the ring
  drops it and the router's own retry goes to a live replica, so the client sees no error (vllm-router's
  default, 10, fails a turn or two first);
- ``HEALTH`` (`health_flags`): a check every 5 s (the router's default is 60 s), two missed checks mark a replica
  down, one answered check brings it back, and its circuit breaker half-opens after 10 s (default 60 s), so a
  replica that comes back rejoins within seconds. A session whose replica is down goes to the router's first
  healthy replica (vllm-router's fallback), where the program starts cold;
- ``--prometheus-port``: a free port (its default, 29000, is taken by the second router on a machine).

``--enable-program-scheduling`` turns on the router's own program-level scheduler (admission, TTL pause and
resume at the router): the peer `continuum bench --router program` compares Continuum against.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from continuum.serve.launch import ServerProcess, free_port

POLICIES = ("consistent_hash", "round_robin", "cache_aware", "power_of_two", "random", "sticky_least_loaded")


# vllm-router's health-check and circuit-breaker settings (see the module's docstring); ``--router-args`` overrides.
HEALTH = {"--health-check-interval-secs": 5, "--health-check-timeout-secs": 5, "--health-check-endpoint": "/health",
          "--health-failure-threshold": 2, "--health-success-threshold": 1, "--cb-timeout-duration-secs": 10}


def health_flags(health: dict[str, object] = HEALTH) -> list[str]:
    return [str(x) for flag, value in health.items() for x in (flag, value)]


class RouterError(RuntimeError):
    """The router is not installed, or did not start."""


def router_available() -> bool:
    try:
        import vllm_router  # noqa: F401
    except ImportError:
        return False
    return True


class RouterProcess(ServerProcess):
    """``vllm-router`` over ``worker_urls``; a context manager that waits until the router answers."""

    def __init__(self, worker_urls: Sequence[str], port: int | None = None, host: str = "127.0.0.1",
                 policy: str = "consistent_hash", program_scheduling: bool = False, extra: Sequence[str] = (),
                 log_path: str | Path | None = None, startup_timeout_s: float = 120.0) -> None:
        if not router_available():
            raise RouterError("vllm-router is not installed (pip install 'vllm-router==0.1.17')")
        super().__init__("router", port=port, log_path=log_path, startup_timeout_s=startup_timeout_s)
        self.worker_urls = list(worker_urls)
        self.base_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{self.port}"
        self.cmd = [sys.executable, "-m", "vllm_router.launch_router", "--host", host, "--port", str(self.port),
                    "--worker-urls", *self.worker_urls, "--policy", policy,
                    "--prometheus-port", str(free_port()), "--cb-failure-threshold", "1", *health_flags(),
                    "--worker-startup-timeout-secs", str(int(startup_timeout_s))]
        if program_scheduling:
            self.cmd.append("--enable-program-scheduling")
        self.cmd += list(extra)

    def start(self) -> "RouterProcess":
        try:
            super().start()
        except (RuntimeError, TimeoutError) as exc:
            raise RouterError(f"vllm-router did not start: {exc}") from None
        return self
