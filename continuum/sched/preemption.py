"""Priority preemption: a waiting request that cannot start takes the place of a running one ranked below it.

vLLM preempts only when a *running* request cannot grow; a waiting request, however urgent, waits for a free
slot and free blocks. When the policy ranks requests (latency-sensitive / best-effort classes, or priority terms
such as MLFQ demotion), that makes the ranking toothless for whatever is already running. So before each step:
if the head of the waiting queue cannot be admitted (no free running slot, or fewer free blocks than its next
chunk needs, counting releasable pins), running requests whose (class, level) is strictly worse than the head's
are preempted, worst first, until it fits. A program's last step is never preempted here. Strictly worse, and
service kept across preemption (`continuum.sched.priority`), keep two requests from trading places every step.

The component reads the scheduler through `continuum.sched.view.SchedulerView`, the running requests' ranks from
their `continuum.sched.view.Priority`, and preempts through the one callback the scheduler gives it.
"""

from __future__ import annotations

import math
from typing import Callable

from vllm.v1.request import Request, RequestStatus

from continuum.sched.view import Priority, SchedulerView, Urgency


class Preemption:
    def __init__(self, view: SchedulerView, enabled: bool, preempt: Callable[[Request], None]) -> None:
        """``preempt(request)``: take a running request out of the running queue, back to waiting."""
        self.view = view
        self.enabled = enabled
        self.preempt = preempt
        self.count = 0  # requests preempted for a more urgent waiting one

    def make_room(self) -> int:
        """Preempt for the waiting head if it cannot start and outranks running work; how many were preempted."""
        if not self.enabled or not self.view.running_requests():
            return 0
        head = self.view.waiting_head()
        if head is None or head.status != RequestStatus.WAITING or self._fits(head):
            return 0
        urgency = self.view.urgency(head)
        victims = sorted((r for r in self.view.running_requests() if self._outranked(r.priority, urgency)),
                         key=lambda r: r.priority)
        done = 0
        while victims and not self._fits(head):
            self.preempt(victims.pop())  # the worst-ranked first
            done += 1
        self.count += done
        return done

    @staticmethod
    def _outranked(priority: Priority, urgency: Urgency) -> bool:
        return not priority.protected and priority.urgency > urgency

    def _fits(self, request: Request) -> bool:
        v = self.view
        if len(v.running_requests()) >= v.max_num_running_reqs:
            return False
        tokens = min(request.num_tokens - v.cached_tokens(request), v.max_num_scheduled_tokens)
        need = math.ceil(max(1, tokens) / v.block_size) + 1
        return v.reclaimable_blocks() >= need
