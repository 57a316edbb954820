"""Named policies: which scheduler class and Continuum settings each comparison baseline uses."""

from __future__ import annotations

from typing import Any

from continuum.config import ContinuumConfig

# name -> Continuum settings; None means vLLM's own scheduler, untouched.
POLICIES: dict[str, dict | None] = {
    "vllm": None,
    "continuum": {"ttl_mode": "model", "ordering": "program-fcfs"},
    "fixed": {"ttl_mode": "fixed", "ordering": "program-fcfs"},  # the public Continuum behaviour
    "preserve": {"ttl_mode": "preserve", "ordering": "program-fcfs"},  # InferCept-style keep-until-return
    "plas": {"ttl_mode": "off", "ordering": "plas"},  # Autellix-style least attained service, no pins
    "oracle": {"ttl_mode": "oracle", "ordering": "program-fcfs"},  # knows true tool times and last steps
}


def scheduler_for(policy: str, is_async: bool = False, **overrides: Any) -> tuple[type, dict]:
    """(scheduler class, extra constructor kwargs) for a named policy."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
    from vllm.v1.core.sched.async_scheduler import AsyncScheduler
    from vllm.v1.core.sched.scheduler import Scheduler

    from continuum.scheduler import ContinuumAsyncScheduler, ContinuumScheduler

    settings = POLICIES[policy]
    if settings is None:
        return (AsyncScheduler if is_async else Scheduler), {}
    cls = ContinuumAsyncScheduler if is_async else ContinuumScheduler
    return cls, {"continuum_config": ContinuumConfig(**{**settings, **overrides})}
