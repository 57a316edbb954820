"""`continuum`: the one command-line entry point, and its own verbs (serve, models, policies).

Every verb, these and those of the cluster, the trace tools and the evaluation harness, is found through the
`continuum.verbs` entry points (`continuum.serve.verbs`); this module imports none of the others.
"""

from __future__ import annotations

import argparse
import os
import sys

from continuum.policy.flags import add_policy_flags, overrides_from_args
from continuum.policy.presets import PRESETS, describe, resolve
from continuum.policy.registry import KINDS, ConfigError
from continuum.serve import models, server, verbs
from continuum.serve.argtypes import fraction, nice_value, non_empty, port_number
from continuum.serve.tenancy_file import TenancyError, tenancy_arg

SERVE_USAGE = "continuum serve [MODEL] [continuum flags] [vLLM flags]"
SERVE_EPILOG = """vLLM's own flags (every `vllm serve` flag, e.g. --block-size 32 --max-model-len 2048) pass through
unchanged, before or after MODEL; `continuum serve --help-vllm` lists them."""
# A ContinuumConfig field named in a config error -> the flag that sets it.
FLAG_OF_FIELD = {"config": "--knob", "knobs": "--knob", "pin_cap": "--pin-cap", "tenant_pin_cap": "--tenant-pin-cap",
                 "fixed_ttl_s": "--fixed-ttl", **{k.field: k.flag for k in KINDS}}


def add_serve(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
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
    g.add_argument("--tenancy", type=tenancy_arg, default=None, metavar="FILE",
                   help="a TOML file of api_keys, admin_api_keys and tenant_pin_cap: one file for every replica of a "
                        "cluster (keys stay off the command line); flags add keys to it")
    g.add_argument("--help-vllm", action="store_true", help="list vLLM's flags and exit")
    add_policy_flags(p)
    return p


def add_models(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("models", help="build or list the embedded models")
    p.add_argument("action", choices=("build", "list"))
    p.add_argument("names", nargs="*", help=f"models to build (default: all of {', '.join(models.EMBEDDED)})")
    p.add_argument("--force", action="store_true", help="rebuild even if built")
    return p


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
    if args.help_vllm:
        print(server.vllm_help())
        return 0
    model, extra = server.split_model(extra)
    if server.has_flag(extra, "--kv-offloading-size") and server.on_cpu():
        return _fail("--kv-offloading-size: vLLM's CPU build cannot run its offloading connector (the copy worker "
                     "needs CUDA tensors); serve with it on a GPU, or simulate the tier: continuum sim --cpu-kv-gib")
    if args.tenancy is not None:
        try:
            args.api_keys, args.admin_keys, args.tenant_pin_cap = args.tenancy.merged(
                args.api_keys, args.admin_keys, args.tenant_pin_cap)
        except TenancyError as exc:
            return _fail(f"--tenancy: {exc}")
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


class ServeVerb:
    name, passthrough = "serve", True  # vLLM's flags pass through

    def add_to(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        return add_serve(subparsers)

    def run(self, args: argparse.Namespace, extra: list[str]) -> int:
        return run_serve(args, extra)


class ModelsVerb:
    name, passthrough = "models", False

    def add_to(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        return add_models(subparsers)

    def run(self, args: argparse.Namespace, extra: list[str]) -> int:
        return run_models(args)


class PoliciesVerb:
    name, passthrough = "policies", False

    def add_to(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        return subparsers.add_parser("policies", help="list the policy presets and components with their knobs")

    def run(self, args: argparse.Namespace, extra: list[str]) -> int:
        print(describe())
        return 0


def build_parser() -> argparse.ArgumentParser:
    return verbs.build_parser(verbs.discover(), description=__doc__.split("\n\n")[0])


def main(argv: list[str] | None = None) -> int:
    return verbs.run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
