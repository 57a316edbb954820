"""What the eval verbs (`continuum replay`, `bench`, `sim`) read from their flags, checked once for all: the
trace's programs, the policies and the simulator's host KV tier. Bad input is a `VerbError` naming the flag (exit
status 2)."""

from __future__ import annotations

import argparse
from typing import Any

from continuum.policy.flags import overrides_from_args
from continuum.policy.presets import parse_policies
from continuum.policy.registry import ConfigError
from continuum.serve.argtypes import positive_float
from continuum.serve.verbs import VerbError
from continuum_workloads import Program, TraceError, load_programs

__all__ = ["trace_programs", "policies_and_overrides", "add_host_tier_flags"]


def trace_programs(args: argparse.Namespace) -> list[Program]:
    """The first ``--limit`` programs of ``--trace``."""
    if not args.trace:
        raise VerbError("--trace is required")
    try:
        return load_programs(args.trace, args.limit)
    except TraceError as exc:
        raise VerbError(str(exc)) from None


def policies_and_overrides(text: str, flag: str, args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    """The policies of ``text``, the comma list given to ``flag``, and the component overrides of the policy
    flags in ``args``, each policy checked with them."""
    overrides = overrides_from_args(args)
    try:
        return parse_policies(text, **overrides), overrides
    except ConfigError as exc:
        raise VerbError(f"{flag}: {exc}") from None


def add_host_tier_flags(p: argparse.ArgumentParser) -> None:
    """``--cpu-kv-gib`` / ``--cpu-eviction``: vLLM's native host KV tier on every simulated engine."""
    g = p.add_argument_group("host KV tier of the simulator (vLLM's --kv-offloading-size)")
    g.add_argument("--cpu-kv-gib", type=positive_float, default=None,
                   help="sim: give each engine vLLM's CPU KV tier of G GiB (the OffloadingConnector; default: none)")
    g.add_argument("--cpu-eviction", choices=("lru", "arc", "program"), default="lru",
                   help="sim: the CPU tier's eviction policy: vLLM's lru or arc, or program (Continuum's: ended "
                        "programs' KV first, then that of programs predicted to return last; default lru)")
