"""The settings of a live comparison: how every server starts (the same model, KV pool and flags for each
policy) and what a trace bench runs; ``serve_command`` turns them into a policy's `continuum serve` command.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

from continuum.policy.flags import override_flags
from continuum.policy.presets import is_vllm, parse_policies
from continuum.policy.registry import ConfigError
from continuum.serve import models

__all__ = ["BenchConfig", "BenchError", "ServerSettings", "server_flags", "policy_args", "serve_command"]


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
    # sim: vLLM's host KV tier (--kv-offloading-size) of this many GiB on every engine, and its CPU eviction policy
    cpu_kv_gib: float | None = None
    cpu_eviction: str = "lru"
    progress: bool = True
    plots: bool = True
    trace: str | None = None
    title: str = "Continuum vs vLLM"
    notes: list[str] = field(default_factory=list)
    echo: bool = True  # print the table, ratios and paths at the end
    # live through vllm-router: set-ups of `continuum_eval.live.bench_cluster` (hash, program)
    routers: Sequence[str] = ()
    replicas: int = 2  # replicas behind the router
    router_config: str | None = None  # vllm-router's --program-scheduling-config-json


def _split(args: str | Sequence[str]) -> list[str]:
    return shlex.split(args) if isinstance(args, str) else list(args)


def server_flags(cfg: ServerSettings) -> list[str]:
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


def policy_args(policy: str, cfg: ServerSettings) -> tuple[str, list[str]]:
    """(``--policy`` preset, its flags) for `continuum serve`: ``PRESET/TTL_MODE`` labels become
    ``--ttl-mode``; Continuum presets also get the bench's component overrides and ``continuum_args``. A bad name
    or setting is a BenchError, before any server starts."""
    try:
        parse_policies(policy, **cfg.overrides)
    except ConfigError as exc:
        raise BenchError(str(exc)) from None
    if is_vllm(policy):
        return policy, []
    name, _, ttl = policy.partition("/")
    flags = (["--ttl-mode", ttl] if ttl else []) + override_flags(cfg.overrides)
    return name, flags + _split(cfg.continuum_args)


def serve_command(policy: str, cfg: ServerSettings) -> tuple[str, list[str]]:
    """(model, flags) of `continuum serve` for ``policy``'s server: the comparison's shared flags and its own."""
    serve_policy, own = policy_args(policy, cfg)
    return cfg.model or models.DEFAULT_MODEL, ["--policy", serve_policy, *own, *server_flags(cfg)]
