"""`continuum`: the one command-line entry point (serve, models, trace, ...)."""

from __future__ import annotations

import argparse
import os
import sys

from continuum.serve import models
from continuum.serve.argtypes import fraction, nice_value, non_empty, port_number
from continuum.policy.registry import ConfigError
from continuum.policy.presets import PRESETS, describe, resolve
from continuum.policy.flags import add_policy_flags, overrides_from_args


SERVE_USAGE = "continuum serve [MODEL] [continuum flags] [vLLM flags]"
SERVE_EPILOG = """vLLM's own flags (every `vllm serve` flag, e.g. --block-size 32 --max-model-len 2048) pass through
unchanged, before or after MODEL; `continuum serve --help-vllm` lists them."""
# A ContinuumConfig field named in a config error -> the flag that sets it.
FLAG_OF_FIELD = {"config": "--knob", "knobs": "--knob", "terms": "--terms", "pin_cap": "--pin-cap",
                 "tenant_pin_cap": "--tenant-pin-cap", "fixed_ttl_s": "--fixed-ttl", "ttl_mode": "--ttl-mode",
                 "ordering": "--ordering", "classes": "--classes", "phase": "--phase", "admission": "--admission"}


def add_serve(sub: argparse._SubParsersAction) -> None:
    # No positional MODEL here: vLLM's flags are unknown to this parser, so it could not tell `--block-size 32`
    # from a model; `server.split_model` finds the model among the leftovers with vLLM's parser.
    p = sub.add_parser("serve", help="serve a model with vLLM's OpenAI API (+ Continuum)", usage=SERVE_USAGE,
                       description=f"MODEL: a path, a model id, or an embedded name ({', '.join(models.EMBEDDED)}; "
                                   f"default {models.DEFAULT_MODEL}).",
                       epilog=SERVE_EPILOG, allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", choices=list(PRESETS), default="continuum",
                   help="a preset (`continuum policies`); vllm = vLLM's own scheduler, untouched (the baseline)")
    p.add_argument("--port", type=port_number, default=8000)
    p.add_argument("--engine-nice", type=nice_value, default=None,
                   help="nice value for vLLM's engine-core process, 0 = leave alone (default: 19 on CPU, where its "
                        "spin-wait shares a core with the API server; 0 on GPU)")
    g = p.add_argument_group("keys and tenants")
    g.add_argument("--api-key", "--api_key", dest="api_keys", type=non_empty, action="extend", nargs="+",
                   default=[], metavar="KEY",
                   help="a key clients must send (repeatable; vLLM's flag): it guards /v1, the session endpoints and "
                        "/continuum/stats, and each key is a tenant with its own sessions")
    g.add_argument("--admin-api-key", dest="admin_keys", type=non_empty, action="append", default=[], metavar="KEY",
                   help="a key that also sees and ends every tenant's sessions (repeatable)")
    g.add_argument("--tenant-pin-cap", type=fraction, default=None, metavar="FRACTION",
                   help="the most one tenant's pins may hold, as a fraction of the pin budget (default 1; needs keys)")
    g.add_argument("--help-vllm", action="store_true", help="list vLLM's flags and exit")
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
    from continuum.serve import server

    if args.help_vllm:
        print(server.vllm_help())
        return 0
    model, extra = server.split_model(extra)
    keyed = args.api_keys or args.admin_keys or os.environ.get("VLLM_API_KEY")
    if args.tenant_pin_cap is not None and not keyed:
        return _fail("--tenant-pin-cap: tenants are API keys; give --api-key (or VLLM_API_KEY) too")
    overrides = overrides_from_args(args)
    if args.tenant_pin_cap is not None:
        overrides["tenant_pin_cap"] = args.tenant_pin_cap
    try:
        config = resolve(args.policy, **overrides)
    except ConfigError as exc:
        return _fail(flag_message(str(exc)))
    server.serve(model or models.DEFAULT_MODEL, config, args.port, extra, engine_nice=args.engine_nice,
                 api_keys=args.api_keys, admin_keys=args.admin_keys)
    return 0


def flag_message(message: str) -> str:
    """A config error names a setting; say which flag sets it."""
    field, sep, rest = message.partition(": ")
    return f"{FLAG_OF_FIELD[field]}: {rest}" if sep and field in FLAG_OF_FIELD else message


def _fail(message: str) -> int:
    print(f"continuum serve: error: {message}", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="continuum", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve(sub)
    from continuum.cluster.replicas import add_cluster

    add_cluster(sub)
    add_models(sub)
    sub.add_parser("policies", help="list the policy presets and components with their knobs")
    from continuum_workloads.cli import add_trace_parser

    add_trace_parser(sub)
    for module, adder in (("continuum_eval.cli", "add_eval_parsers"), ("continuum_eval.sim.cli", "add_sim_parsers")):
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
        from continuum.cluster.replicas import run_cluster

        return run_cluster(args, extra)
    if args.command == "models":
        return run_models(args)
    if args.command == "policies":
        print(describe())
        return 0
    if args.command == "trace":
        from continuum_workloads.cli import run_trace

        return run_trace(args, default_tokenizer=str(models.model_path(models.DEFAULT_MODEL) / "tokenizer.json"))
    if args.command in ("replay", "bench"):
        from continuum_eval.cli import run_eval

        return run_eval(args)
    if args.command in ("sim", "profile"):
        from continuum_eval.sim.cli import run_sim

        return run_sim(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
