"""Live runs of a comparison: one deployment per policy set-up (a server, or replicas behind a router), serving
every rate of the trace in turn.

Starting takes minutes on a small CPU machine, so a deployment starts once and serves every JPS value; between
runs its prefix cache is emptied with vLLM's ``POST /reset_prefix_cache`` (served because servers start with
``VLLM_SERVER_DEV_MODE=1``), and every run uses its own session ids, so no run inherits another's cache or
programs. A deployment that died is started again for the next run (``restart_each_run``: for every run); one
that does not start, and the programs of a run that cannot start, are reported as failed results, so a
comparison always has a result per (policy, rate).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any, Callable, Iterator, Protocol, Sequence

import httpx

from continuum.serve.launch import ServerProcess
from continuum_eval.live.replay import ReplayError, ReplayOptions, replay_sync
from continuum_eval.live.settings import BenchConfig
from continuum_eval.results.metrics import ProgramRecord, summarize
from continuum_eval.results.report import percent
from continuum_workloads import Program

__all__ = ["DEV_MODE_ENV", "Deployment", "OneServer", "env_set", "failed_result", "replay_run",
           "reset_prefix_cache", "serve_runs", "start_server"]

DEV_MODE_ENV = "VLLM_SERVER_DEV_MODE"

log = logging.getLogger(__name__)


@contextlib.contextmanager
def env_set(key: str, value: str) -> Iterator[None]:
    """``os.environ[key] = value`` for the block (a server started inside inherits it), then restored."""
    old = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def reset_prefix_cache(base_url: str, attempts: int = 20) -> bool:
    """Empty the server's prefix cache; False if the server does not offer it or it kept refusing."""
    for _ in range(attempts):
        try:
            r = httpx.post(base_url + "/reset_prefix_cache", timeout=30)
        except httpx.HTTPError:
            return False
        if r.status_code != 200:
            return False
        try:
            if r.json().get("success", True):
                return True
        except ValueError:
            return True
        time.sleep(0.5)  # blocks still held (requests finishing): try again
    return False


def failed_result(programs: Sequence[Program], policy: str, jps: float, error: str,
                  meta: dict[str, Any]) -> dict[str, Any]:
    """The result of a run that could not happen: every program failed with ``error``."""
    records = [ProgramRecord(id=p.id, workload=p.workload, arrival_s=0.0, num_turns=len(p.turns), failed=True,
                             error=error) for p in programs]
    return summarize(records, policy=policy, jps=jps, meta=meta)


def replay_run(programs: Sequence[Program], cfg: BenchConfig, base_url: str, label: str, jps: float, run_idx: int,
               meta: dict[str, Any], **options: Any) -> dict[str, Any]:
    """One replay of the trace at ``jps`` against a running server (or router), logged; a failure is a result."""
    opts = ReplayOptions(base_url=base_url, jps=jps, seed=cfg.seed, max_context=cfg.max_context,
                         token_scale=cfg.token_scale, tool_scale=cfg.tool_scale, hints=cfg.hints,
                         request_timeout_s=cfg.request_timeout_s, vocab_lo=cfg.vocab[0], vocab_hi=cfg.vocab[1],
                         progress=cfg.progress, policy=label, session_prefix=f"r{run_idx}-", meta=meta, **options)
    try:
        result = replay_sync(programs, opts)
    except ReplayError as exc:
        result = failed_result(programs, label, jps, str(exc), meta)
    log.info(f"[bench] {label} jps={jps:g}: {result['completed']}/{result['programs']} done, "
             f"mean JCT {result['jct_s']['mean']:.2f}s, prefix hit rate {percent(result['prefix_hit_rate'])}")
    return result


def start_server(label: str, model: str, args: list[str], cfg: BenchConfig) -> ServerProcess:
    """``continuum serve MODEL ARGS``, logged to ``OUT/serve-LABEL.log``, with vLLM's development endpoints on
    (the bench empties the prefix cache between runs)."""
    server = ServerProcess(model, args, log_path=cfg.out_dir / f"serve-{label.replace('/', '-')}.log",
                           startup_timeout_s=cfg.startup_timeout_s)
    log.info(f"[bench] starting `continuum serve {model} {' '.join(args)}`")
    with env_set(DEV_MODE_ENV, "1"):
        server.start()
    log.info(f"[bench] {label}: server up in {server.started_s:.0f}s at {server.base_url}")
    return server


class Deployment(Protocol):
    """What serves the runs of one policy set-up: one server, or replicas behind a router."""

    base_url: str

    def alive(self) -> bool: ...

    def reset_prefix_cache(self) -> bool: ...

    def started(self) -> dict[str, Any]:
        """Facts of the start for the result's ``meta.server``."""
        ...

    def stop(self) -> None: ...


class OneServer:
    """One `continuum serve` process as a deployment."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.base_url = server.base_url

    @classmethod
    def start(cls, label: str, model: str, args: list[str], cfg: BenchConfig) -> "OneServer":
        return cls(start_server(label, model, args, cfg))

    def alive(self) -> bool:
        return self.server.proc is not None and self.server.proc.poll() is None

    def reset_prefix_cache(self) -> bool:
        return reset_prefix_cache(self.base_url)

    def started(self) -> dict[str, Any]:
        return {"start_s": self.server.started_s}

    def stop(self) -> None:
        self.server.stop()


def serve_runs(programs: Sequence[Program], cfg: BenchConfig, label: str, start: Callable[[], Deployment],
               server_meta: dict[str, Any], what: str, **options: Any) -> list[dict[str, Any]]:
    """Every rate of ``cfg.jps`` replayed against one deployment (``start`` makes it, ``what`` names it), started
    again when it died; ``options`` go to the replay. One result per rate, failed ones included."""
    results: list[dict[str, Any]] = []
    deployment: Deployment | None = None
    for run_idx, jps in enumerate(cfg.jps):
        meta = {"trace": cfg.trace, "server": dict(server_meta)}
        if deployment is None or not deployment.alive() or (cfg.restart_each_run and run_idx > 0):
            if deployment is not None:
                deployment.stop()
            try:
                deployment = start()
            except (RuntimeError, OSError) as exc:  # OSError includes TimeoutError
                log.warning(f"[bench] {label}: {what} did not start: {exc}")
                results.append(failed_result(programs, label, jps, f"{what} did not start: {exc}", meta))
                deployment = None
                continue
            meta["server"].update(deployment.started())
        meta["server"]["prefix_cache_reset"] = deployment.reset_prefix_cache()
        results.append(replay_run(programs, cfg, deployment.base_url, label, jps, run_idx, meta, **options))
    if deployment is not None:
        deployment.stop()
    return results
