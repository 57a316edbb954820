"""Priority preemption: a waiting request that cannot start takes the place of a running one ranked below it.

vLLM preempts only when a *running* request cannot grow; a waiting request, however urgent, waits for a free
slot and free blocks. When the policy ranks requests (latency-sensitive / best-effort classes, or priority terms
such as MLFQ demotion), that makes the ranking toothless for whatever is already running. So before each step:
if the head of the waiting queue cannot be admitted (no free running slot, or fewer free blocks than its next
chunk needs, counting releasable pins), running requests whose (class, level) is strictly worse than the head's
are preempted, worst first, until it fits. A program's last step is never preempted here. Strictly worse, and
service kept across preemption (`continuum.sched.priority`), keep two requests from trading places every step.
"""

from __future__ import annotations

import math
import time
from typing import Any

from vllm.v1.request import Request, RequestStatus


class Preemption:
    def __init__(self, sched: Any, enabled: bool) -> None:
        self.sched = sched
        self.enabled = enabled
        self.count = 0  # requests preempted for a more urgent waiting one

    def make_room(self) -> int:
        s = self.sched
        if not self.enabled or not s.waiting or not s.running:
            return 0
        head = s.waiting.peek_request()
        if head.status != RequestStatus.WAITING or self._fits(head):
            return 0
        urgency = s.urgency(head)
        # priority = (protected, class, level, order): the running request's urgency is priority[1:3].
        victims = sorted((r for r in s.running if r.priority[0] == 0 and r.priority[1:3] > urgency),
                         key=lambda r: r.priority)
        done = 0
        while victims and not self._fits(head):
            victim = victims.pop()  # the worst-ranked first
            s.running.remove(victim)
            s._preempt_request(victim, time.monotonic())
            done += 1
        self.count += done
        return done

    def _fits(self, request: Request) -> bool:
        s = self.sched
        if len(s.running) >= s.max_num_running_reqs:
            return False
        tokens = min(request.num_tokens - s.cached_tokens(request), s.max_num_scheduled_tokens)
        need = math.ceil(max(1, tokens) / s.block_size) + 1
        return s.kv_cache_manager.block_pool.get_num_free_blocks() + s.pins.pinned_blocks >= need
