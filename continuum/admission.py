"""Program admission: when a new program may start.

``open``: every program starts at once, as in vLLM. A policy whose admission is not ``open`` holds a program's
requests at the door (sorted last in the waiting queue, see `continuum.ordering`) until it is admitted.
"""

from __future__ import annotations

from typing import Any

from vllm.v1.request import Request

from continuum.config import ContinuumConfig


class OpenAdmission:
    enabled = False

    def __init__(self, cfg: ContinuumConfig, sched: Any) -> None:
        self.sched = sched

    def held(self, request: Request) -> int:
        return 0

    def step(self) -> None:
        """Before each step: admit what may start now."""

    def state(self) -> dict:
        return {"mode": "open"}


def make_admission(cfg: ContinuumConfig, sched: Any) -> OpenAdmission:
    return {"open": OpenAdmission}[cfg.admission](cfg, sched)
