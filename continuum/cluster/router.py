"""vLLM's router (PyPI ``vllm-router``, a Rust load balancer) as a child process in front of replicas.

Placement: ``sticky_least_loaded`` (the default) sends a program's first turn to the replica with the fewest
programs and every later turn to the same replica, which holds its KV; it reads the ``X-Session-ID`` header (or
the body's ``session_id``), which the agent SDK sends on every request, including the session endpoints
(``GET /v1/sessions/{id}``, ``POST /v1/sessions/{id}/end``). So a replica that joins takes new programs and no
running one moves; a program whose replica is down is placed again (on the least loaded) and stays there.
``consistent_hash`` (a hash ring of the session id) needs no state but moves about 1/N of the running programs to
a replica that joins, where they start cold. The sticky table forgets a program the router is told has ended
(``POST /finish_session?session_id=``, which the cluster's view sends when a program ends through it) or that has
sent nothing for ``SESSION_EXPIRY_S`` (vllm-router's default is 2 h; a shorter one keeps a newly joined replica
from taking every new program until its count of long-gone ones catches up). vllm-router 0.1.17 forwards a path
it has no handler of its own for without the client's headers, ``Authorization`` included, so with API keys the
session endpoints and ``/continuum/stats`` through the router are refused (401); the cluster's view
(`continuum.cluster.view`, ``--stats-port``) serves them, asking every replica with the caller's key.

Membership is the router's own: it health-checks every replica (``GET /health``) and routes only to those it finds
healthy, so a replica that stops answering leaves and one that answers again (or is added with the
router's ``POST /add_worker?url=...``) joins it; nothing of ours probes replicas. The router starts once one
replica is healthy. Flags we set, and why:

- ``--cb-failure-threshold 1``: the first failed attempt on a dead replica opens its circuit breaker, the router
  skips it and the router's own retry goes to a live replica, so the client sees no error (vllm-router's
  default, 10, fails a turn or two first);
- ``HEALTH`` (`health_flags`): a check every 5 s (the router's default is 60 s), two missed checks mark a replica
  down, one answered check brings it back, and its circuit breaker half-opens after 10 s (default 60 s), so a
  replica that comes back rejoins within seconds. A session whose replica is down goes to another healthy
  replica, where the program starts cold;
- ``--prometheus-port``: a free port (its default, 29000, is taken by the second router on a machine).

``--enable-program-scheduling`` turns on the router's own program-level scheduler (admission, TTL pause and
resume at the router): the peer `continuum bench --router program` compares Continuum against.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

from continuum.serve.launch import ServerProcess, free_port

POLICIES = ("sticky_least_loaded", "consistent_hash", "round_robin", "cache_aware", "power_of_two", "random")
DEFAULT_POLICY = "sticky_least_loaded"
SESSION_EXPIRY_S = 1800  # a program silent this long is forgotten by the sticky table (its next turn is placed anew)
SESSION_EXPIRY_ENV = "VLLM_ROUTER_SLL_SESSION_EXPIRATION_IN_S"  # vllm-router's own setting; one set by the user wins


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
                 policy: str = DEFAULT_POLICY, program_scheduling: bool = False, extra: Sequence[str] = (),
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
        self.env = {SESSION_EXPIRY_ENV: str(SESSION_EXPIRY_S), **os.environ}
        self.cmd += list(extra)

    def start(self) -> "RouterProcess":
        try:
            super().start()
        except (RuntimeError, TimeoutError) as exc:
            raise RouterError(f"vllm-router did not start: {exc}") from None
        return self
