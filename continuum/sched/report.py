"""What the scheduler reports over the control channel: one program's state, and the stats.

The shapes are the control channel's (`continuum.control.messages.SessionState`, ``Stats``); `Reported` lists
what they are read from. The scheduler calls these under its lock: the control thread asks while the engine
thread steps.
"""

from __future__ import annotations

import math
from typing import Protocol, cast

from vllm.v1.core.kv_cache_manager import KVCacheManager

from continuum.control.messages import SessionState, Stats
from continuum.policy.config import ContinuumConfig
from continuum.sched.admission import OpenAdmission
from continuum.sched.balance import NoBalance
from continuum.sched.phases import PhaseSwitch
from continuum.sched.pins import KVPins
from continuum.sched.preemption import Preemption
from continuum.sched.programs import ProgramRegistry
from continuum.sched.tier import HostTier
from kvttl import TTLPolicy


class Reported(Protocol):
    """The scheduler's state the reports read (`continuum.sched.scheduler.ContinuumMixin`)."""

    config: ContinuumConfig
    programs: ProgramRegistry
    pins: KVPins
    retention: TTLPolicy
    admission: OpenAdmission
    balance: NoBalance
    phases: PhaseSwitch
    preemption: Preemption
    tier: HostTier | None
    step_times: list[float]  # seconds per ``schedule()``, the latest few thousand
    kv_cache_manager: KVCacheManager

    def clock(self) -> float: ...


def session_state(s: Reported, program_id: str) -> SessionState:
    """The program's summary and its pin; empty for a program the scheduler does not know."""
    prog = s.programs.get(program_id)
    if prog is None:
        return {}
    state = cast(SessionState, prog.summary())
    pin = s.pins.table.get(program_id)
    state["pinned_blocks"] = len(pin.blocks) if pin else 0
    # JSON has no infinity: a pin kept until the program returns has no TTL and no expiry, and says so.
    until_return = pin is not None and math.isinf(pin.ttl_s)
    state["ttl_s"] = None if until_return else (pin.ttl_s if pin else 0.0)
    state["expires_in_s"] = None if until_return or not pin else pin.expires_at - s.clock()
    state["pinned_until_return"] = until_return
    return state


def stats(s: Reported) -> Stats:
    """Programs, pins, the KV pool, the predictor, each component's state and the cost of a step."""
    steps = sorted(s.step_times)
    pool = s.kv_cache_manager.block_pool
    return {
        "config": {**s.config.model_dump(exclude={"control_addr", "reload_cost"}),
                   "pin_cap_blocks": s.pins.table.cap_blocks},
        "programs": [session_state(s, p.program_id) for p in s.programs.all()],
        "num_programs": len(s.programs),
        "pins": {**s.pins.table.counters, "active": len(s.pins.table), "pinned_blocks": s.pins.pinned_blocks},
        "kv": {"num_blocks": pool.num_gpu_blocks, "free_blocks": pool.get_num_free_blocks(),
               "usage": s.kv_cache_manager.usage},
        "predictor": s.retention.state(),
        "admission": s.admission.state(),
        "balance": s.balance.state(),
        "phase": s.phases.state() if s.phases.enabled else None,
        "preempted_for_waiting": s.preemption.count,
        "host_tier": s.tier.state() if s.tier is not None else None,
        "sched_step_ms": {"mean": 1e3 * sum(steps) / len(steps) if steps else 0.0,
                          "p99": 1e3 * steps[int(0.99 * (len(steps) - 1))] if steps else 0.0},
    }
