"""`continuum`: the one command-line entry point (serve, models, trace, ...)."""

from __future__ import annotations

import argparse
import sys

from continuum import models
from continuum.argtypes import nice_value
from continuum.config import ConfigError
from continuum.policies import PRESETS, describe, resolve
from continuum.policy_flags import add_policy_flags, overrides_from_args


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a model with vLLM's OpenAI API (+ Continuum)",
                       description="Unknown flags are passed to vLLM unchanged.")
    p.add_argument("model", nargs="?", default=models.DEFAULT_MODEL,
                   help=f"a path, a model id, or an embedded name ({', '.join(models.EMBEDDED)})")
    p.add_argument("--policy", choices=list(PRESETS), default="continuum",
                   help="a preset (`continuum policies`); vllm = vLLM's own scheduler, untouched (the baseline)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--engine-nice", type=nice_value, default=None,
                   help="nice value for vLLM's engine-core process, 0 = leave alone (default: 19 on CPU, where its "
                        "spin-wait shares a core with the API server; 0 on GPU)")
    add_policy_flags(p)


def add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="build or list the embedded models")
    p.add_argument("action", choices=("build", "list"))
    p.add_argument("names", nargs="*", help=f"models to build (default: all of {', '.join(models.EMBEDDED)})")
    p.add_argument("--force", action="store_true", help="rebuild even if built")


def run_models(args: argparse.Namespace) -> int:
    if args.action == "list":
        for row in models.listing():
            state = f"{row['bytes'] / 1e6:.1f} MB" if row["built"] else "not built"
            print(f"{row['name']:<14} {state:<12} {row['path']}")
        return 0
    for name in args.names or models.EMBEDDED:
        if name not in models.EMBEDDED:
            print(f"continuum models build: unknown model {name!r}", file=sys.stderr)
            return 2
        print(f"{name}: {models.build(name, force=args.force)}")
    return 0


def run_serve(args: argparse.Namespace, extra: list[str]) -> int:
    from continuum import server

    try:
        config = resolve(args.policy, **overrides_from_args(args))
    except ConfigError as exc:
        print(f"continuum serve: {exc}", file=sys.stderr)
        return 2
    server.serve(args.model, config, args.port, extra, engine_nice=args.engine_nice)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="continuum", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve(sub)
    from continuum.cluster import add_cluster

    add_cluster(sub)
    add_models(sub)
    sub.add_parser("policies", help="list the policy presets and components with their knobs")
    from workloads.cli import add_trace_parser

    add_trace_parser(sub)
    for module, adder in (("eval.cli", "add_eval_parsers"), ("eval.sim.cli", "add_sim_parsers")):
        try:  # the evaluation verbs (replay, bench, sim, profile) live in eval/
            getattr(__import__(module, fromlist=[adder]), adder)(sub)
        except (ImportError, AttributeError):
            pass
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("serve", "cluster"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "serve":
        return run_serve(args, extra)
    if args.command == "cluster":
        from continuum.cluster import run_cluster

        return run_cluster(args, extra)
    if args.command == "models":
        return run_models(args)
    if args.command == "policies":
        print(describe())
        return 0
    if args.command == "trace":
        from workloads.cli import run_trace

        return run_trace(args, default_tokenizer=str(models.model_path(models.DEFAULT_MODEL) / "tokenizer.json"))
    if args.command in ("replay", "bench"):
        from eval.cli import run_eval

        return run_eval(args)
    if args.command in ("sim", "profile"):
        from eval.sim.cli import run_sim

        return run_sim(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
