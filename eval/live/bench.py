"""A/B benchmark: the same trace, the same seed, one server per policy (live) or the simulator (sim).

Live mode starts ``continuum serve MODEL --policy P`` for each policy in turn, with the same model, KV budget
and vLLM flags (``--block-size``, ``--num-gpu-blocks-override``, ``--max-model-len``, ``--server-args``; plus
``--enable-prefix-caching --enable-prompt-tokens-details`` for every server, so both cache and both report
cached tokens). Policies: any preset of `continuum.policy.presets` (``vllm`` is vLLM's own scheduler, the baseline),
or ``PRESET/TTL_MODE`` (``--ttl-mode TTL_MODE``); component overrides apply to every Continuum policy. Each
server starts once and serves every JPS value in turn: starting takes minutes on a small CPU machine. Between runs the prefix cache is emptied with vLLM's
``POST /reset_prefix_cache`` (served because the bench starts servers with ``VLLM_SERVER_DEV_MODE=1``), and
every run uses its own session ids, so no run inherits another's cache or programs. What does carry over is
what a server learns (Continuum's tool-duration predictor) - as it would in production; ``restart_each_run``
starts a fresh server for every run instead.

A server that dies is restarted for the next run; its programs in flight are reported failed. The output
folder gets ``results.json`` (a list of result dicts), ``report.md``, ``jct_vs_jps.png``, ``jct_cdf.png`` and
the servers' logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import httpx

from continuum_eval.results.metrics import ProgramRecord, summarize
from continuum_eval.live.replay import ReplayError, ReplayOptions, fit_program, replay_sync, scale_program
from continuum_eval.results.report import format_ratios, format_table, percent, write_report
from continuum_workloads import Program

if TYPE_CHECKING:
    from continuum.serve.launch import ServerProcess

__all__ = ["BenchConfig", "BenchError", "ServerSettings", "run_bench", "server_flags", "policy_args", "start_server"]

DEV_MODE_ENV = "VLLM_SERVER_DEV_MODE"


class BenchError(RuntimeError):
    """Bad benchmark settings (unknown policy, missing simulator)."""


@dataclass(kw_only=True)
class ServerSettings:
    """How every server of a comparison starts: the same model, KV pool and flags for each policy."""

    model: str | None = None  # None: the embedded default model
    block_size: int | None = 32
    num_gpu_blocks: int | None = None
    max_model_len: int | None = None
    server_args: str | Sequence[str] = ""
    continuum_args: str | Sequence[str] = ""
    overrides: dict[str, Any] = field(default_factory=dict)  # component settings for every Continuum policy
    startup_timeout_s: float = 900.0

    def server_settings(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(ServerSettings)}


@dataclass(kw_only=True)
class BenchConfig(ServerSettings):
    policies: Sequence[str]
    jps: Sequence[float]
    out_dir: Path
    mode: str = "live"
    seed: int = 0
    max_context: int | None = None
    token_scale: float = 1.0
    tool_scale: float = 1.0
    hints: bool = True
    request_timeout_s: float = 300.0
    vocab: tuple[int, int] = (1000, 30000)
    restart_each_run: bool = False
    profile: str | None = None
    progress: bool = True
    plots: bool = True
    trace: str | None = None
    title: str = "Continuum vs vLLM"
    notes: list[str] = field(default_factory=list)
    echo: bool = True  # print the table, ratios and paths at the end
    routers: Sequence[str] = ()  # live through vllm-router: set-ups of `continuum_eval.live.bench_cluster` (hash, program)
    replicas: int = 2  # replicas behind the router
    router_config: str | None = None  # vllm-router's --program-scheduling-config-json


def _split(args: str | Sequence[str]) -> list[str]:
    return shlex.split(args) if isinstance(args, str) else list(args)


def server_flags(cfg: BenchConfig) -> list[str]:
    """vLLM flags every server of the comparison gets, identically."""
    flags: list[str] = []
    if cfg.block_size:
        flags += ["--block-size", str(cfg.block_size)]
    if cfg.num_gpu_blocks:
        flags += ["--num-gpu-blocks-override", str(cfg.num_gpu_blocks)]
    if cfg.max_model_len:
        flags += ["--max-model-len", str(cfg.max_model_len)]
    extra = _split(cfg.server_args)
    if "--no-enable-prefix-caching" not in extra:
        flags += ["--enable-prefix-caching"]
    flags += ["--enable-prompt-tokens-details"]
    return flags + extra


def policy_args(policy: str, cfg: BenchConfig) -> tuple[str, list[str]]:
    """(``--policy`` preset, its flags) for `continuum serve`: ``PRESET/TTL_MODE`` labels become
    ``--ttl-mode``; Continuum presets also get the bench's component overrides and ``continuum_args``."""
    from continuum.policy.registry import ConfigError
    from continuum.policy.presets import is_vllm, resolve
    from continuum.policy.flags import override_flags

    name, _, ttl = policy.partition("/")
    try:
        if is_vllm(policy):
            if ttl:
                raise ConfigError(f"{name} is vLLM's own scheduler: it has no TTL mode")
            return name, []
        resolve(policy, **cfg.overrides)  # a bad name or setting fails here, before any server starts
    except ConfigError as exc:
        raise BenchError(f"policy {policy!r}: {exc}") from None
    flags = (["--ttl-mode", ttl] if ttl else []) + override_flags(cfg.overrides)
    return name, flags + _split(cfg.continuum_args)


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
        result = _failed_result(programs, label, jps, str(exc), meta)
    _log(f"[bench] {label} jps={jps:g}: {result['completed']}/{result['programs']} done, "
         f"mean JCT {result['jct_s']['mean']:.2f}s, prefix hit rate {percent(result['prefix_hit_rate'])}")
    return result


def _failed_result(programs: Sequence[Program], policy: str, jps: float, error: str,
                   meta: dict[str, Any]) -> dict[str, Any]:
    records = [ProgramRecord(id=p.id, workload=p.workload, arrival_s=0.0, num_turns=len(p.turns), failed=True,
                             error=error) for p in programs]
    return summarize(records, policy=policy, jps=jps, meta=meta)


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


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def start_server(label: str, model: str, args: list[str], cfg: BenchConfig) -> ServerProcess:
    """``continuum serve MODEL ARGS``, logged to ``OUT/serve-LABEL.log``, with vLLM's development endpoints on
    (the bench empties the prefix cache between runs)."""
    from continuum.serve.launch import ServerProcess

    server = ServerProcess(model, args, log_path=cfg.out_dir / f"serve-{label.replace('/', '-')}.log",
                           startup_timeout_s=cfg.startup_timeout_s)
    _log(f"[bench] starting `continuum serve {model} {' '.join(args)}`")
    with env_set(DEV_MODE_ENV, "1"):
        server.start()
    _log(f"[bench] {label}: server up in {server.started_s:.0f}s at {server.base_url}")
    return server


def _live(programs: Sequence[Program], cfg: BenchConfig) -> list[dict[str, Any]]:
    from continuum.serve import models
    from continuum.serve.launch import ServerProcess

    model = cfg.model or models.DEFAULT_MODEL
    common = server_flags(cfg)
    plan = [(p, *policy_args(p, cfg)) for p in cfg.policies]
    results: list[dict[str, Any]] = []
    for label, serve_policy, own in plan:
        args = ["--policy", serve_policy, *own, *common]
        server: ServerProcess | None = None
        for run_idx, jps in enumerate(cfg.jps):
            meta = {"trace": cfg.trace, "server": {"model": model, "args": args}}
            if server is None or server.proc is None or server.proc.poll() is not None or \
                    (cfg.restart_each_run and run_idx > 0):
                if server is not None:
                    server.stop()
                try:
                    server = start_server(label, model, args, cfg)
                except (RuntimeError, TimeoutError, OSError) as exc:
                    _log(f"[bench] {label}: server did not start: {exc}")
                    results.append(_failed_result(programs, label, jps, f"server did not start: {exc}", meta))
                    server = None
                    continue
                meta["server"]["start_s"] = server.started_s
            meta["server"]["prefix_cache_reset"] = reset_prefix_cache(server.base_url)
            results.append(replay_run(programs, cfg, server.base_url, label, jps, run_idx, meta))
        if server is not None:
            server.stop()
    return results


def _sim(programs: Sequence[Program], cfg: BenchConfig) -> list[dict[str, Any]]:
    from continuum_eval.sim.run import simulate_result
    progs = [scale_program(p, cfg.token_scale, cfg.tool_scale) for p in programs]
    if cfg.max_context:
        progs = [fit_program(p, cfg.max_context) for p in progs]
    results = []
    for label in cfg.policies:
        for jps in cfg.jps:
            try:
                result = simulate_result(progs, policy=label, profile=cfg.profile, jps=jps, seed=cfg.seed,
                                         policy_overrides=cfg.overrides, progress=cfg.progress)
            except (ValueError, KeyError) as exc:  # unknown policy or profile name
                raise BenchError(f"simulator: {exc}") from None
            results.append(result)
    return results


def run_bench(programs: Sequence[Program], cfg: BenchConfig) -> list[dict[str, Any]]:
    """Run the comparison and write results.json, report.md and the plots into ``cfg.out_dir``."""
    if cfg.mode not in ("live", "sim"):
        raise BenchError(f"unknown mode {cfg.mode!r}")
    if not cfg.policies or not cfg.jps:
        raise BenchError("need at least one policy and one rate")
    for p in cfg.policies:
        policy_args(p, cfg)  # fail on a bad name before anything starts
    if cfg.routers:
        from continuum_eval.live.bench_cluster import router_options

        if cfg.mode != "live":
            raise BenchError("--router: routers are for live runs (the simulator has --replicas/--router)")
        try:
            for r in cfg.routers:
                router_options(r, cfg)
        except ValueError as exc:
            raise BenchError(f"--router: {exc}") from None
    cfg.out_dir = Path(cfg.out_dir)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.routers and cfg.mode == "live":
        from continuum_eval.live.bench_cluster import live_cluster

        results = live_cluster(programs, cfg)
    else:
        results = _live(programs, cfg) if cfg.mode == "live" else _sim(programs, cfg)
    (cfg.out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    paths = write_report(results, cfg.out_dir, title=cfg.title, notes=cfg.notes, plots=cfg.plots)
    if cfg.echo:
        print(format_table(results))
        if rt := format_ratios(results):
            print()
            print(rt)
        print()
        print(f"results: {cfg.out_dir / 'results.json'}")
        print(f"report:  {paths['report']}")
        for name in ("jct_vs_jps", "jct_cdf"):
            if name in paths:
                print(f"plot:    {paths[name]}")
    return results
