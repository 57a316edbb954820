"""Latency-sensitive (LS) vs best-effort (BE) requests, at iteration level (QLLM).

A request is LS when its hint says so (``vllm_xargs.class`` = ``"ls"``) or when its OpenAI ``priority`` is below
0 (vLLM's convention: lower is more urgent); otherwise BE (``"be"`` forces BE). LS requests sort before BE ones in
the waiting queue and rank above them for preemption, so an LS request that cannot be admitted preempts running
BE work, lowest first, instead of waiting behind it (`continuum.sched.preemption`); an LS program does not wait at
the admission door either. A BE request that has waited ``be_max_wait_s`` is served as LS, which bounds BE
starvation.
"""

from __future__ import annotations

from vllm.v1.request import Request, RequestStatus

from continuum.policy.config import ContinuumConfig
from continuum.sched.view import SchedulerView

LS, BE = 0, 1


class Classes:
    def __init__(self, cfg: ContinuumConfig, view: SchedulerView) -> None:
        self.view = view
        self.enabled = cfg.classes == "ls-be"
        self.max_wait_s = cfg.knob("ls-be.be_max_wait_s")
        self.of: dict[str, int] = {}  # request id -> LS / BE

    def arrive(self, request: Request, hints: dict, api_priority: int) -> None:
        if not self.enabled:
            return
        hint = hints.get("class")
        self.of[request.request_id] = LS if hint == "ls" or (hint != "be" and api_priority < 0) else BE

    def is_ls(self, request: Request) -> bool:
        return self.enabled and self.of.get(request.request_id) == LS

    def forget(self, request_id: str) -> None:
        self.of.pop(request_id, None)

    def rank(self, request: Request) -> int:
        """0 for LS (and BE that waited too long), 1 for BE; always 0 when classes are off."""
        if self.of.get(request.request_id, LS) == LS:
            return LS
        waiting = request.status != RequestStatus.RUNNING
        return LS if waiting and self.view.clock() - request.arrival_time >= self.max_wait_s else BE
