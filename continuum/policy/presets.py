"""The named presets: compositions of registry components (`continuum.policy.registry`).

A preset names a composition; component settings (``--ordering``, ``--ttl-mode``, ``--knob demotion.chunk=512``,
...) override it. ``continuum serve --policy``, ``continuum sim``, ``continuum bench`` and the sweep all resolve a
name with :func:`resolve`; ``continuum policies`` prints :func:`describe`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from continuum.policy.config import ContinuumConfig
from continuum.policy.registry import KINDS, ConfigError, components_of


@dataclass(frozen=True)
class Preset:
    settings: Mapping[str, Any] | None  # ContinuumConfig fields; None = vLLM's own scheduler, untouched
    doc: str


PRESETS: dict[str, Preset] = {
    "vllm": Preset(None, "vLLM's own scheduler, untouched: the baseline"),
    "continuum": Preset({"ttl_mode": "model", "ordering": "srpt", "admission": "memory"},
                        "Continuum: TTL rule + memory-aware program admission + shortest remaining program first"),
    "continuum-ttl": Preset({"ttl_mode": "model", "ordering": "program-fcfs"},
                            "Continuum without admission: TTL rule + program-first order"),
    "clairvoyant": Preset({"ttl_mode": "oracle", "ordering": "srpt", "admission": "memory", "work": "oracle"},
                          "knows every program's future: the bound (simulator)"),
    "fixed": Preset({"ttl_mode": "fixed", "ordering": "program-fcfs"}, "the public Continuum code's fixed TTL"),
    "preserve": Preset({"ttl_mode": "preserve", "ordering": "program-fcfs"}, "InferCept-style keep until return"),
    "plas": Preset({"ttl_mode": "off", "ordering": "plas"}, "Autellix-style program least attained service"),
    "oracle": Preset({"ttl_mode": "oracle", "ordering": "program-fcfs"}, "knows true tool times (simulator)"),
    "fcfs": Preset({"ttl_mode": "off", "ordering": "fcfs"}, "vLLM's order through Continuum's scheduler"),
    "vllm-admit": Preset({"ttl_mode": "off", "ordering": "fcfs", "admission": "memory"},
                         "vLLM's order, no pins, with memory-aware program admission"),
    "vllm-cap": Preset({"ttl_mode": "off", "ordering": "fcfs", "admission": "cap"},
                       "vLLM's order, no pins, at most cap.programs programs in service (for sweeps)"),
    "continuum-compute": Preset({"ttl_mode": "model", "ordering": "srpt", "admission": "compute"},
                                "Continuum with the compute-aware door (memory plus a throughput limit)"),
    "mlfq": Preset({"ttl_mode": "off", "ordering": "fcfs", "terms": ["demotion", "aging"]},
                   "the MLFQ fork's default: token demotion with aging, no pins"),
    "continuum-mlfq": Preset({"ttl_mode": "model", "ordering": "srpt", "admission": "memory",
                              "terms": ["demotion", "aging"]}, "Continuum composed with MLFQ demotion + aging"),
    "adaptive": Preset({"ttl_mode": "model", "ordering": "srpt", "admission": "memory", "phase": "adaptive"},
                       "Continuum composed with the fork's adaptive phase switching"),
    "ls-be": Preset({"ttl_mode": "model", "ordering": "srpt", "admission": "memory", "classes": "ls-be"},
                    "Continuum with latency-sensitive / best-effort classes (QLLM)"),
}


def is_vllm(policy: str) -> bool:
    """Whether ``policy`` is vLLM's own scheduler (raises ConfigError for an unknown name)."""
    name = policy.partition("/")[0]
    if name not in PRESETS:
        raise ConfigError(f"unknown policy {policy!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name].settings is None


def parse_policies(text: str, **overrides: Any) -> list[str]:
    """The policies of a comma list (``vllm,continuum/preserve``), each checked before anything runs: a known
    preset, a TTL mode only on a Continuum one, and ``overrides`` (component settings, which apply to every
    Continuum policy and never to vLLM's own scheduler) valid for each. Raises ConfigError naming the policy."""
    policies = [p.strip() for p in text.split(",") if p.strip()]
    if not policies:
        raise ConfigError("give at least one policy")
    for policy in policies:
        if is_vllm(policy):
            if "/" in policy:
                raise ConfigError(f"policy {policy!r}: vLLM's own scheduler has no TTL mode")
            continue
        try:
            resolve(policy, **overrides)
        except ConfigError as exc:
            raise ConfigError(f"policy {policy!r}: {exc}") from None
    return policies


def resolve(policy: str, **overrides: Any) -> ContinuumConfig | None:
    """The settings of a named policy (None: vLLM's own scheduler); ``overrides`` (ContinuumConfig fields) win.

    ``PRESET/TTL_MODE`` (e.g. ``continuum/preserve``) is the preset with that retention, as bench labels say it.
    """
    is_vllm(policy)
    name, _, ttl = policy.partition("/")
    settings = PRESETS[name].settings
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if ttl:
        overrides = {"ttl_mode": ttl, **overrides}
    if settings is None:
        if overrides:
            raise ConfigError(f"policy {policy!r} is vLLM's own scheduler: it takes no Continuum settings "
                              f"({', '.join(overrides)})")
        return None
    knobs = {**settings.get("knobs", {}), **overrides.pop("knobs", {})}
    return ContinuumConfig(**{**settings, **overrides, "knobs": knobs})


def describe() -> str:
    """The `continuum policies` listing: presets, then components with their knobs and defaults."""
    lines = ["Presets (continuum serve/sim/bench --policy NAME; component flags override them):"]
    for name, preset in PRESETS.items():
        s = preset.settings
        comp = "vLLM's scheduler" if s is None else ", ".join(
            f"{k}={'+'.join(v) if isinstance(v, list) else v}" for k, v in s.items() if v)
        lines.append(f"  {name:<15} {preset.doc}  [{comp}]")
    for kind in KINDS:
        lines += ["", f"{kind.name} ({kind.flag}{' a,b' if kind.many else ''}):"]
        for c in components_of(kind.name):
            lines.append(f"  {c.name:<15} {c.doc}")
            lines += [f"  {'':<15}   --knob {c.name}.{k}={v.default:g}  {v.doc}" for k, v in c.knobs.items()]
    return "\n".join(lines)
