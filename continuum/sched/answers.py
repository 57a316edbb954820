"""How the scheduler answers its components' questions: the implementation of `continuum.sched.view.SchedulerView`.

A mixin of `continuum.sched.scheduler.ContinuumMixin`, apart so that the scheduler's module holds its seams. It
only reads: the state below is kept by the mixin, or by vLLM's ``Scheduler`` underneath (``running``,
``kv_cache_manager``, ``cache_config``, and the limits the view names).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from vllm.config import CacheConfig
from vllm.v1.core.kv_cache_manager import KVCacheManager
from vllm.v1.request import Request

from continuum.sched.classes import Classes
from continuum.sched.compat import max_cache_hit_length
from continuum.sched.ordering import ProgramQueue
from continuum.sched.pins import KVPins, pinnable_blocks
from continuum.sched.priority import Levels
from continuum.sched.programs import Program, ProgramRegistry, program_id_of
from continuum.sched.view import Urgency


class SchedulerAnswers:
    """The `SchedulerView` questions, answered from the scheduler's state (read only)."""

    programs: ProgramRegistry
    pins: KVPins
    classes: Classes
    levels: Levels
    waiting: ProgramQueue
    running: list[Request]
    served: dict[str, int]  # request id -> tokens scheduled so far, kept across preemption
    events_read: dict[str, int]  # request id -> SSE events of its stream its client has read
    next_resort: float  # when time-dependent keys are refreshed next
    kv_cache_manager: KVCacheManager
    cache_config: CacheConfig
    clock: Callable[[], float]

    def program_of(self, request: Request) -> Program | None:
        pid = program_id_of(request)
        return self.programs.get(pid) if pid is not None else None

    def kv_kept(self, request: Request) -> bool:
        pid = program_id_of(request)
        return pid is not None and (pid in self.pins or self.tier is not None and pid in self.tier.returning)

    def program_order(self, request: Request) -> float:
        prog = self.program_of(request)
        return prog.order if prog is not None else math.inf

    def attained_service(self, request: Request) -> int:
        prog = self.program_of(request)
        return prog.attained_tokens if prog is not None else 0

    def cached_tokens(self, request: Request) -> int:
        """Prompt tokens the prefix cache holds for ``request`` now, as far as vLLM would read them (a lookup
        without side effects)."""
        if not self.cache_config.enable_prefix_caching or not request.block_hashes:
            return 0
        return self.kv_cache_manager.coordinator.find_longest_cache_hit(request.block_hashes,
                                                                        max_cache_hit_length(request))[1]

    def finished_blocks(self, request: Request) -> list[int]:
        """The request's full, hashed blocks, before vLLM frees them: what a pin of its finished turn holds."""
        block_ids = self.kv_cache_manager.get_block_ids(request.request_id)[0]
        return pinnable_blocks(request, block_ids, self.kv_cache_manager.block_pool)

    def cached_fraction(self, request: Request) -> float:
        return self.cached_tokens(request) / max(1, request.num_tokens)

    def served_tokens(self, request_id: str) -> int:
        return self.served.get(request_id, 0)

    def read_events(self, request_id: str) -> int | None:
        return self.events_read.get(request_id)

    def urgency(self, request: Request) -> Urgency:
        """(class, level) of a request: what priority preemption compares."""
        return Urgency(self.classes.rank(request), self.levels.level(request))

    def num_waiting(self) -> int:
        return len(self.waiting)

    def waiting_head(self) -> Request | None:
        return self.waiting.peek_request() if self.waiting else None  # falsy: the head is held at the door

    def waiting_key(self, request: Request) -> tuple:
        return self.waiting.key(request)

    def resort_due(self) -> bool:
        return self.clock() >= self.next_resort

    def running_requests(self) -> Sequence[Request]:
        return self.running

    def pool_blocks(self) -> int:
        return self.kv_cache_manager.block_pool.num_gpu_blocks - 1

    def reclaimable_blocks(self) -> int:
        return self.kv_cache_manager.block_pool.get_num_free_blocks() + self.pins.pinned_blocks
