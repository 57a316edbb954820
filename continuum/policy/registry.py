"""The policy registry: every scheduling component Continuum has, its knobs, and how each kind is set.

A policy is one component of each kind, which the scheduler consults at vLLM's seams (never a copy of
``schedule()``):

- **retention**: how long a finished turn's KV blocks stay pinned (`kvttl.TTLPolicy`'s modes and the oracle);
- **ordering**: the waiting queue's base order (`continuum.sched.ordering`);
- **terms**: priority terms summed into a request's level, lower served first (`continuum.sched.priority`; the
  MLFQ fork's features);
- **classes**: latency-sensitive vs best-effort requests (`continuum.sched.classes`; QLLM);
- **phase**: which terms are active, switched by load (`continuum.sched.phases`);
- **admission**: when a new program may start (`continuum.sched.admission`; the compute-aware door in
  `continuum.sched.compute_admission`);
- **work**: where a program's predicted remaining work comes from (`kvttl.program_work`), which admission and
  the ``srpt`` ordering use;
- **balance**: whether data-parallel ranks in lockstep hold new admissions together (`continuum.sched.balance`).

This module is a leaf (standard library only): the config validates names against it, the presets compose
from it, and the flags of every entry point are made from `KINDS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping


class ConfigError(ValueError):
    """A setting names an unknown component or knob, or has a bad value."""


@dataclass(frozen=True)
class Kind:
    """A kind of component and how it is set: the `ContinuumConfig` field and the command-line flag."""

    name: str
    field: str
    flag: str
    many: bool = False  # several components of this kind at once (the terms)


KINDS: tuple[Kind, ...] = (
    Kind("retention", "ttl_mode", "--ttl-mode"), Kind("ordering", "ordering", "--ordering"),
    Kind("term", "terms", "--terms", many=True), Kind("classes", "classes", "--classes"),
    Kind("phase", "phase", "--phase"), Kind("admission", "admission", "--admission"),
    Kind("work", "work", "--work"), Kind("balance", "balance", "--balance"),
)
KIND_OF_FIELD: dict[str, Kind] = {k.field: k for k in KINDS}


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
    _c("retention", "model", "the cost-benefit TTL rule over the tool's duration distribution (kvttl); with "
                             "vLLM's host KV tier, pin in GPU / park in host memory / drop (continuum.sched.tier)",
       h2d_gbps=(55.3, "host tier: host-to-device GB/s of the link (measured pinned copies, PCIe Gen5 x16)"),
       d2h_gbps=(55.2, "host tier: device-to-host GB/s of the link"),
       link_latency_ms=(0.01, "host tier: fixed cost of one copy, ms"),
       prefetch=(1, "host tier: 1 brings a parked program's KV back before its predicted return, 0 never"),
       prefetch_quantile=(0.25, "host tier: the quantile of the tool's durations taken as its return")),
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
    _c("term", "backpressure", "a request whose client has `lag_tokens` SSE events of its stream unread sinks "
                               "`penalty` levels and is stopped from growing its lag further",
       lag_tokens=(256, "streamed SSE events the client has not read (about one per token)"),
       penalty=(4.0, "levels")),
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
                                                                            "counted in a working set"),
       programs=(0, "programs in service at most, beside memory (0: no such limit; the oracle search)")),
    _c("admission", "cap", "at most `programs` programs in service (admitted and not ended), through the same door "
                           "in the same order as `memory`; memory is not counted",
       programs=(64, "programs in service at most")),
    _c("admission", "compute", "`memory`'s door with a second limit: the programs in service at the largest batch "
                               "the engine runs, where its throughput stops growing, from step times measured "
                               "online (continuum.sched.step_model)",
       half_life_s=(60.0, "half-life, in clock seconds, of the step-time fit and the per-turn statistics: many "
                          "turns long, short enough to follow the context mix as programs grow")),
    _c("work", "model", "predicted from the program's turns so far and completed programs' statistics"),
    _c("work", "oracle", "the true future, told by the client in vllm_xargs.future (simulator only)"),
    _c("balance", "off", "each data-parallel rank admits on its own (vLLM's behaviour)"),
    _c("balance", "any-full", "every data-parallel rank holds new admissions while any rank's running queue is "
                              "nearly full (vllm-ascend's balance scheduling, for ranks in lockstep)",
       headroom=(1, "a rank is full within this many requests of max_num_seqs")),
]
COMPONENTS: dict[tuple[str, str], Component] = {(c.kind, c.name): c for c in _COMPONENTS}




def components_of(kind: str) -> list[Component]:
    return [c for c in _COMPONENTS if c.kind == kind]


def names(kind: str) -> list[str]:
    return [c.name for c in components_of(kind)]


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


def all_knob_defaults() -> dict[str, float]:
    """Every knob of every component, "component.knob" -> default."""
    return {f"{c.name}.{k}": v.default for c in _COMPONENTS for k, v in c.knobs.items()}


def check_knob(name: str, value: float) -> None:
    _knob(name)
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"knob {name} must be a finite number >= 0, not {value}")
