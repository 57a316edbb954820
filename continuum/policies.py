"""The policy registry: every scheduling component Continuum has, and the named presets composed from them.

A policy is one component of each kind, which the scheduler consults at vLLM's seams (never a copy of
``schedule()``):

- **retention**: how long a finished turn's KV blocks stay pinned (`kvttl.TTLPolicy`'s modes and the oracle);
- **ordering**: the waiting queue's base order (`continuum.ordering`);
- **terms**: priority terms summed into a request's level, lower served first (`continuum.priority`; the MLFQ
  fork's features);
- **classes**: latency-sensitive vs best-effort requests (`continuum.classes`; QLLM);
- **phase**: which terms are active, switched by load (`continuum.phases`);
- **admission**: when a new program may start (`continuum.admission`);
- **work**: where a program's predicted remaining work comes from (`kvttl.program_work`), which admission and
  the ``srpt`` ordering use;
- **balance**: whether data-parallel ranks in lockstep hold new admissions together (`continuum.balance`).

A preset names a composition; component settings (``--ordering``, ``--ttl-mode``, ``--knob demotion.chunk=512``,
...) override it. ``continuum serve --policy``, ``continuum sim``, ``continuum bench`` and the sweep all resolve a
name with :func:`resolve`; ``continuum policies`` prints :func:`describe`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from continuum.config import ConfigError, ContinuumConfig

KINDS = ("retention", "ordering", "term", "classes", "phase", "admission", "work", "balance")


@dataclass(frozen=True)
class Knob:
    default: float
    doc: str


@dataclass(frozen=True)
class Component:
    kind: str
    name: str
    doc: str
    knobs: Mapping[str, Knob] = field(default_factory=dict)


def _c(kind: str, name: str, doc: str, **knobs: tuple[float, str]) -> Component:
    return Component(kind, name, doc, {k: Knob(*v) for k, v in knobs.items()})


_COMPONENTS = [
    _c("retention", "off", "never pin: a finished turn's blocks are freed at once (vLLM's behaviour)"),
    _c("retention", "fixed", "pin for --fixed-ttl seconds when the tool's mean duration is under it (public "
                             "Continuum code)"),
    _c("retention", "preserve", "pin until the program returns; released only by pressure or its end"),
    _c("retention", "model", "the cost-benefit TTL rule over the tool's duration distribution (kvttl)"),
    _c("retention", "oracle", "pin for the true tool duration (the client's tool_s hint; simulator only)"),
    _c("ordering", "fcfs", "preempted first, then request arrival (vLLM's order)"),
    _c("ordering", "program-fcfs", "preempted, then returning turns of pinned programs, then program first "
                                   "arrival"),
    _c("ordering", "plas", "preempted, then the program with the least attained service (Autellix)"),
    _c("ordering", "srpt", "preempted, then pinned returning turns, then the program with the shortest predicted "
                           "remaining work minus its wait (aging, in seconds, so nothing waits forever)"),
    _c("term", "demotion", "MLFQ: a request drops one level per `chunk` tokens it has been served (kept "
                           "across preemption)", chunk=(256, "tokens of service per level")),
    _c("term", "sjf", "shortest job first: levels for remaining prefill and decode tokens, weighted by queue "
                      "depth", prefill_weight=(1.0, "weight of remaining prompt tokens"),
       decode_weight=(1.0, "weight of remaining output tokens (max_tokens - generated)"),
       scale=(1024, "weighted tokens per level"), ramp=(32, "waiting requests at which the term is at full "
                                                             "weight (it ramps up linearly from 0)")),
    _c("term", "las", "least attained service: levels for the tokens the program has been served, across its "
                      "turns and preemptions", chunk=(1024, "tokens of service per level")),
    _c("term", "aging", "a waiting request rises one level per `aging_s` waited, faster when the queue is deep",
       aging_s=(5.0, "seconds of waiting per level"),
       depth=(64, "waiting requests that double the rate")),
    _c("term", "locality", "requests whose prompt hits the prefix cache when they arrive rise by up to `boost` "
                           "levels", boost=(2.0, "levels for a prompt that is all cached")),
    _c("term", "backpressure", "a request whose client has not read `lag_tokens` of its stream sinks "
                               "`penalty` levels and is stopped from growing its lag further",
       lag_tokens=(256, "streamed tokens the client has not read"), penalty=(4.0, "levels")),
    _c("classes", "off", "one class"),
    _c("classes", "ls-be", "latency-sensitive requests (OpenAI `priority` < 0, or vllm_xargs.class = 'ls') go "
                           "first and preempt best-effort work when they cannot be admitted",
       be_max_wait_s=(30.0, "a best-effort request waiting this long is served as latency-sensitive")),
    _c("phase", "off", "the configured terms are always active"),
    _c("phase", "adaptive", "the ratio of arrival to completion rates (EMAs) picks baseline, LAS or aging+SJF "
                            "terms, with hysteresis and a minimum dwell",
       half_life_s=(3.0, "half-life of the rate EMAs"),
       baseline_max=(1.10, "ratio up to which no terms are used"), las_max=(1.35, "ratio up to which LAS is "
                                                                                  "used; above it aging+SJF"),
       hysteresis=(0.05, "margin around each threshold"), dwell_s=(5.0, "minimum seconds in a phase"),
       bypass_queue=(4, "waiting requests below which the plain order is used")),
    _c("admission", "open", "every program starts at once (vLLM's behaviour)"),
    _c("admission", "memory", "a new program waits at the door until the KV pool holds the working sets of the "
                              "admitted programs plus its own", horizon=(1, "turns of predicted context growth "
                                                                            "counted in a working set")),
    _c("work", "model", "predicted from the program's turns so far and completed programs' statistics"),
    _c("work", "oracle", "the true future, told by the client in vllm_xargs.future (simulator only)"),
    _c("balance", "off", "each data-parallel rank admits on its own (vLLM's behaviour)"),
    _c("balance", "any-full", "every data-parallel rank holds new admissions while any rank's running queue is "
                              "nearly full (vllm-ascend's balance scheduling, for ranks in lockstep)",
       headroom=(1, "a rank is full within this many requests of max_num_seqs")),
]
COMPONENTS: dict[tuple[str, str], Component] = {(c.kind, c.name): c for c in _COMPONENTS}


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
    "mlfq": Preset({"ttl_mode": "off", "ordering": "fcfs", "terms": ["demotion", "aging"]},
                   "the MLFQ fork's default: token demotion with aging, no pins"),
    "continuum-mlfq": Preset({"ttl_mode": "model", "ordering": "srpt", "admission": "memory",
                              "terms": ["demotion", "aging"]}, "Continuum composed with MLFQ demotion + aging"),
    "adaptive": Preset({"ttl_mode": "model", "ordering": "srpt", "admission": "memory", "phase": "adaptive"},
                       "Continuum composed with the fork's adaptive phase switching"),
    "ls-be": Preset({"ttl_mode": "model", "ordering": "srpt", "admission": "memory", "classes": "ls-be"},
                    "Continuum with latency-sensitive / best-effort classes (QLLM)"),
}


def names(kind: str) -> list[str]:
    return [c.name for c in _COMPONENTS if c.kind == kind]


def check_component(kind: str, name: str) -> str:
    if (kind, name) not in COMPONENTS:
        raise ConfigError(f"unknown {kind} {name!r}; choose from {', '.join(names(kind))}")
    return name


def _knob(name: str) -> Knob:
    comp, _, knob = name.partition(".")
    found = [c for c in _COMPONENTS if c.name == comp and knob in c.knobs]
    if not found:
        known = [f"{c.name}.{k}" for c in _COMPONENTS for k in c.knobs]
        raise ConfigError(f"unknown knob {name!r}; know {', '.join(known)}")
    return found[0].knobs[knob]


def knobs_of(component: str) -> dict[str, float]:
    """The knobs of a component and their defaults."""
    return {k: v.default for c in _COMPONENTS if c.name == component for k, v in c.knobs.items()}


def knob_default(name: str) -> float:
    return _knob(name).default


def check_knob(name: str, value: float) -> None:
    _knob(name)
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"knob {name} must be a finite number >= 0, not {value}")


def is_vllm(policy: str) -> bool:
    """Whether ``policy`` is vLLM's own scheduler (raises ConfigError for an unknown name)."""
    name = policy.partition("/")[0]
    if name not in PRESETS:
        raise ConfigError(f"unknown policy {policy!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name].settings is None


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


def scheduler_for(policy: str, is_async: bool = False, **overrides: Any) -> tuple[type, dict]:
    """(scheduler class, extra constructor kwargs) for a named policy."""
    from vllm.v1.core.sched.async_scheduler import AsyncScheduler
    from vllm.v1.core.sched.scheduler import Scheduler

    from continuum.scheduler import ContinuumAsyncScheduler, ContinuumScheduler

    config = resolve(policy, **overrides)
    if config is None:
        return (AsyncScheduler if is_async else Scheduler), {}
    return (ContinuumAsyncScheduler if is_async else ContinuumScheduler), {"continuum_config": config}


def describe() -> str:
    """The `continuum policies` listing: presets, then components with their knobs and defaults."""
    lines = ["Presets (continuum serve/sim/bench --policy NAME; component flags override them):"]
    for name, preset in PRESETS.items():
        s = preset.settings
        comp = "vLLM's scheduler" if s is None else ", ".join(
            f"{k}={'+'.join(v) if isinstance(v, list) else v}" for k, v in s.items() if v)
        lines.append(f"  {name:<15} {preset.doc}  [{comp}]")
    flags = {"retention": "--ttl-mode", "ordering": "--ordering", "term": "--terms a,b", "classes": "--classes",
             "phase": "--phase", "admission": "--admission", "work": "--work", "balance": "--balance"}
    for kind in KINDS:
        lines += ["", f"{kind} ({flags[kind]}):"]
        for c in (c for c in _COMPONENTS if c.kind == kind):
            lines.append(f"  {c.name:<15} {c.doc}")
            lines += [f"  {'':<15}   --knob {c.name}.{k}={v.default:g}  {v.doc}" for k, v in c.knobs.items()]
    return "\n".join(lines)
