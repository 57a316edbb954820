"""Latency-sensitive (LS) vs best-effort (BE) requests, at iteration level (QLLM).

A request is LS when its hint says so (``vllm_xargs.class`` = ``"ls"``) or when its OpenAI ``priority`` is below
0 (vLLM's convention: lower is more urgent); otherwise BE (``"be"`` forces BE). LS requests sort before BE ones in
the waiting queue, and an LS request at the head that cannot be admitted (no free running slot, or not enough
KV blocks even after releasing pins) preempts running BE requests, lowest priority first, instead of waiting
behind them. A BE request that has waited ``be_max_wait_s`` is served as LS, which bounds BE starvation.
"""

from __future__ import annotations

import math
import time
from typing import Any

from vllm.v1.request import Request, RequestStatus

from continuum.config import ContinuumConfig

LS, BE = 0, 1


class Classes:
    def __init__(self, cfg: ContinuumConfig, sched: Any) -> None:
        self.sched = sched
        self.enabled = cfg.classes == "ls-be"
        self.max_wait_s = cfg.knob("ls-be.be_max_wait_s")
        self.of: dict[str, int] = {}  # request id -> LS / BE
        self.preempted = 0  # BE requests preempted for LS arrivals

    def arrive(self, request: Request, hints: dict, api_priority: int) -> None:
        if not self.enabled:
            return
        hint = hints.get("class")
        self.of[request.request_id] = LS if hint == "ls" or (hint != "be" and api_priority < 0) else BE

    def forget(self, request_id: str) -> None:
        self.of.pop(request_id, None)

    def rank(self, request: Request) -> int:
        """0 for LS (and BE that waited too long), 1 for BE; always 0 when classes are off."""
        if self.of.get(request.request_id, LS) == LS:
            return LS
        return LS if self.sched.clock() - request.arrival_time >= self.max_wait_s else BE

    def is_ls(self, request: Request) -> bool:
        return self.of.get(request.request_id) == LS

    def make_room(self) -> int:
        """Before a step: if the waiting head is LS and cannot be admitted, preempt BE running requests for it."""
        s = self.sched
        if not self.enabled or not s.waiting or not s.running:
            return 0
        head = s.waiting.peek_request()
        if not self.is_ls(head) or head.status != RequestStatus.WAITING:
            return 0
        victims = sorted((r for r in s.running if self.of.get(r.request_id) == BE), key=lambda r: r.priority)
        done = 0
        while victims and not self._fits(head):
            victim = victims.pop()  # the lowest-priority BE request
            s.running.remove(victim)
            s._preempt_request(victim, time.monotonic())
            done += 1
        self.preempted += done
        return done

    def _fits(self, request: Request) -> bool:
        s = self.sched
        if len(s.running) >= s.max_num_running_reqs:
            return False
        tokens = min(request.num_tokens - s.cached_tokens(request), s.max_num_scheduled_tokens)
        need = math.ceil(max(1, tokens) / s.block_size) + 1
        free = s.kv_cache_manager.block_pool.get_num_free_blocks() + s.pins.pinned_blocks
        return free >= need
