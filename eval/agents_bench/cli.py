"""The `--agent` side of `continuum bench`: flags, their checks, and the call into
:mod:`continuum_eval.agents_bench.bench`.

``continuum bench --agent mini-swe-agent [--tasks N] --policies vllm,continuum --out DIR`` and
``continuum bench --agent bfcl [--entries N] [--tool-delay F] --policies vllm,continuum --out DIR``; the server
flags of a trace bench (``--model``, ``--block-size``, ``--num-gpu-blocks``, ``--max-model-len``,
``--server-args``, ``--continuum-args``, ``--startup-timeout``) apply as well. Bad values raise ValueError
with a message that names the flag (the CLI turns it into exit status 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from continuum.policy.flags import overrides_from_args
from continuum.serve.argtypes import non_negative_float, positive_int

__all__ = ["add_agent_arguments", "run_agent_bench_args"]


def _base_urls(text: str) -> dict[str, str]:
    out = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        label, sep, url = part.partition("=")
        if not sep or not label or not url.startswith(("http://", "https://")):
            raise argparse.ArgumentTypeError(f"want POLICY=http://HOST:PORT[,...], not {part!r}")
        out[label] = url.rstrip("/")
    return out


def add_agent_arguments(b: argparse.ArgumentParser) -> None:
    g = b.add_argument_group("real agents (--agent)")
    g.add_argument("--agent", choices=("mini-swe-agent", "bfcl"),
                   help="run a real agent instead of replaying a trace: mini-swe-agent on the shipped repository "
                        "tasks, or BFCL multi-turn entries on BFCL's backends")
    g.add_argument("--tasks", type=positive_int, help="mini-swe-agent: how many repository tasks (default 5)")
    g.add_argument("--entries", type=positive_int, help="bfcl: how many entries (default 4)")
    g.add_argument("--max-steps", type=positive_int, default=10,
                   help="mini-swe-agent: the agent's step limit (default 10)")
    g.add_argument("--max-tokens", type=positive_int, default=256, help="tokens per model answer (default 256)")
    g.add_argument("--concurrency", type=positive_int, help="tasks run at once (default: all)")
    g.add_argument("--tool-delay", type=non_negative_float, default=0.0,
                   help="bfcl: sleep after each step's calls, drawn from the BFCL trace's per-function duration "
                        "distribution times F (default 0: BFCL's backends answer in microseconds)")
    g.add_argument("--bfcl-categories", default="base",
                   help="bfcl: comma list of base, long_context, miss_func, miss_param (default base)")
    g.add_argument("--bfcl-fc", action="store_true",
                   help="bfcl: send the functions as OpenAI tools (the server needs a tool parser) instead of "
                        "BFCL's prompt format")
    g.add_argument("--base-urls", type=_base_urls, default={},
                   help="use running servers instead of starting them: POLICY=URL[,POLICY=URL]")


def _check(args: argparse.Namespace) -> None:
    if args.agent == "bfcl" and args.tasks:
        raise ValueError("--tasks is for --agent mini-swe-agent; use --entries with bfcl")
    if args.agent == "mini-swe-agent" and args.entries:
        raise ValueError("--entries is for --agent bfcl; use --tasks with mini-swe-agent")
    if args.trace or args.jps:
        raise ValueError(f"{'--trace' if args.trace else '--jps'}: agents make their own load; drop it with --agent")
    if args.mode != "live":
        raise ValueError("--mode: real agents run live only")
    from continuum_eval.agents_bench.bfcl import BFCL_CATEGORIES

    for c in args.bfcl_categories.split(","):
        if c.strip() not in BFCL_CATEGORIES:
            raise ValueError(f"--bfcl-categories: unknown category {c.strip()!r} "
                             f"(choose from {', '.join(BFCL_CATEGORIES)})")


def run_agent_bench_args(args: argparse.Namespace) -> int:
    from continuum_eval.agents_bench.bench import AgentBenchConfig, AgentBenchError, run_agent_bench
    from continuum_eval.live.settings import BenchError

    _check(args)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    if not policies:
        raise ValueError("--policies: give at least one policy")
    missing = [p for p in args.base_urls if p not in policies]
    if missing:
        raise ValueError(f"--base-urls: {', '.join(missing)} is not in --policies")
    cfg = AgentBenchConfig(
        agent=args.agent, policies=policies, out_dir=Path(args.out), model=args.model,
        count=args.tasks or args.entries, max_steps=args.max_steps, max_tokens=args.max_tokens,
        concurrency=args.concurrency, tool_delay=args.tool_delay,
        categories=tuple(c.strip() for c in args.bfcl_categories.split(",")), fc=args.bfcl_fc, seed=args.seed,
        block_size=args.block_size, num_gpu_blocks=args.num_gpu_blocks, max_model_len=args.max_model_len,
        server_args=args.server_args, continuum_args=args.continuum_args, overrides=overrides_from_args(args),
        startup_timeout_s=args.startup_timeout, base_urls=args.base_urls, progress=args.progress, plots=args.plots)
    try:
        run_agent_bench(cfg)
    except AgentBenchError as exc:
        raise ValueError(str(exc)) from None
    except BenchError as exc:  # a policy name the registry does not know
        raise ValueError(f"--policies: {exc}") from None
    return 0
