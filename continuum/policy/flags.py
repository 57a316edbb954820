"""The component flags every entry point shares (serve, sim, bench, sweep): they override a preset's settings.

``add_policy_flags(parser)`` adds them; ``overrides_from_args(args)`` turns what was given into
`continuum.policy.presets.resolve` keywords; ``override_flags(overrides)`` turns those back into `continuum serve`
flags (the live bench starts servers with them).
"""

from __future__ import annotations

import argparse
from typing import Any

from continuum.policy.registry import KINDS, names
from continuum.serve.argtypes import fraction, non_negative_float

_CHOICE_KINDS = [k for k in KINDS if not k.many]


def knob_arg(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep or "." not in name:
        raise argparse.ArgumentTypeError(f"want COMPONENT.KNOB=VALUE, not {text!r}")
    return name.strip(), non_negative_float(value.strip())


def terms_arg(text: str) -> list[str]:
    return [] if text.strip() in ("", "none") else [t.strip() for t in text.split(",") if t.strip()]


def add_policy_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("policy components (override the preset; `continuum policies` lists them)")
    for kind in _CHOICE_KINDS:
        g.add_argument(kind.flag, dest=kind.field, choices=names(kind.name), default=None,
                       help=f"{kind.name} component")
    g.add_argument("--terms", type=terms_arg, default=None, metavar="A,B",
                   help=f"priority terms ({', '.join(names('term'))}; 'none' for none)")
    g.add_argument("--knob", dest="knobs", type=knob_arg, action="append", default=None,
                   metavar="COMPONENT.KNOB=VALUE", help="set a component's knob (repeatable)")
    g.add_argument("--fixed-ttl", dest="fixed_ttl_s", type=non_negative_float, default=None,
                   help="seconds, for --ttl-mode fixed (default 2)")
    g.add_argument("--pin-cap", dest="pin_cap", type=fraction, default=None,
                   help="max fraction of KV blocks held by pins (default 0.5)")


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dest in (*(k.field for k in KINDS), "fixed_ttl_s", "pin_cap"):
        if getattr(args, dest, None) is not None:
            out[dest] = getattr(args, dest)
    if getattr(args, "knobs", None):
        out["knobs"] = dict(args.knobs)
    return out


def override_flags(overrides: dict[str, Any]) -> list[str]:
    flags: list[str] = []
    for kind in _CHOICE_KINDS:
        if kind.field in overrides:
            flags += [kind.flag, str(overrides[kind.field])]
    if "terms" in overrides:
        flags += ["--terms", ",".join(overrides["terms"]) or "none"]
    if "fixed_ttl_s" in overrides:
        flags += ["--fixed-ttl", str(overrides["fixed_ttl_s"])]
    if "pin_cap" in overrides:
        flags += ["--pin-cap", str(overrides["pin_cap"])]
    for name, value in overrides.get("knobs", {}).items():
        flags += ["--knob", f"{name}={value:g}"]
    return flags
