"""The waiting queue: a vLLM `RequestQueue` ordered by a key the scheduler's components compose.

A request's key is ``(held, class, level, tier, order...)``, lower first:

- ``held``: 1 while its program waits at the door (admission), else 0;
- ``class``: 0 latency-sensitive, 1 best-effort (`continuum.sched.classes`; 0 for all when classes are off);
- ``level``: the sum of the active priority terms (`continuum.sched.priority`; 0 when there are none), so a demoted
  request waits behind a newcomer even when it was preempted, as in MLFQ;
- ``tier`` and ``order``: the base ordering (below): preempted work and prefetches first, then what the ordering
  prefers.

Keys depend on state that changes between steps (a pin taken, a program admitted, time passing for aging). The
scheduler marks the queue ``dirty`` when such state changes for a program that has a request waiting, and
re-sorts it every ``RESORT_EVERY_S`` (a quarter second) only while a time-dependent component is active;
otherwise a step costs a heap push/pop, as vLLM's own priority queue does. Keys read the scheduler through
`continuum.sched.view.SchedulerView`.

vLLM asks the queue one question before trying a waiting request: is it non-empty? The answer here is "is
there a request that may start now": requests of programs held at the door sort last, so when the head is held
every request is, and vLLM's waiting loop stops. ``len()`` still counts them, so the engine keeps stepping.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Callable, Iterable, Iterator

from vllm.v1.core.sched.request_queue import RequestQueue
from vllm.v1.request import Request, RequestStatus

from continuum.sched.admission import OpenAdmission
from continuum.sched.classes import Classes
from continuum.sched.priority import Levels
from continuum.sched.tier import is_prefetch
from continuum.sched.view import SchedulerView

Key = Callable[[Request], tuple]


class ProgramQueue(RequestQueue):
    def __init__(self, key: Key) -> None:
        self.key = key
        self.dirty = False
        self._seq = itertools.count()  # ties keep insertion order
        self._heap: list[tuple[tuple, int, Request]] = []

    def resort(self) -> None:
        self._heap = [(self.key(r), seq, r) for _, seq, r in self._heap]
        heapq.heapify(self._heap)
        self.dirty = False

    def add_request(self, request: Request) -> None:
        heapq.heappush(self._heap, (self.key(request), next(self._seq), request))

    def pop_request(self) -> Request:
        return heapq.heappop(self._heap)[2]

    def peek_request(self) -> Request:
        if not self._heap:
            raise IndexError("peek from an empty queue")
        return self._heap[0][2]

    # A vLLM "prepend" puts back a request it could not schedule now; its key already says where it goes.
    def prepend_request(self, request: Request) -> None:
        self.add_request(request)

    def prepend_requests(self, requests: Iterable[Request]) -> None:
        for request in requests:
            self.add_request(request)

    def remove_request(self, request: Request) -> None:
        self.remove_requests([request])

    def remove_requests(self, requests: Iterable[Request]) -> None:
        gone = {id(r) for r in requests}
        self._heap = [e for e in self._heap if id(e[2]) not in gone]
        heapq.heapify(self._heap)

    def __bool__(self) -> bool:
        return bool(self._heap) and self._heap[0][0][0] == 0  # the head is not held at the door

    def __len__(self) -> int:
        return len(self._heap)

    def __iter__(self) -> Iterator[Request]:
        return (e[2] for e in sorted(self._heap))


def goes_first(request: Request) -> bool:
    """Preempted work, and prefetches (`continuum.sched.tier`): one token of compute that brings a parked program's
    KV back before it returns, useless once it is late."""
    return request.status == RequestStatus.PREEMPTED or is_prefetch(request.request_id)


def base_key(ordering: str, view: SchedulerView) -> Key:
    """(tier, order...) of the base ordering; ``view`` supplies program state (order, pins, service)."""

    def program_fcfs(r: Request) -> tuple:
        # Preempted work first, then returning turns whose KV is pinned, then programs by first arrival.
        tier = 0 if goes_first(r) else 1 if view.kv_kept(r) else 2
        return (tier, view.program_order(r), r.arrival_time)

    def fcfs(r: Request) -> tuple:
        return (0 if goes_first(r) else 1, r.arrival_time)

    def plas(r: Request) -> tuple:
        # Autellix-style: the program that has received the least service so far goes first.
        return (0 if goes_first(r) else 1, view.attained_service(r), r.arrival_time)

    def srpt(r: Request) -> tuple:
        # Shortest predicted remaining work first, each second waited counting as a second less of work (aging):
        # work - (now - arrival). Every waiting request ages at the same rate, so ordering by work + arrival is
        # the same order at any time: the key is fixed while the request waits.
        tier = 0 if goes_first(r) else 1 if view.kv_kept(r) else 2
        prog = view.program_of(r)
        work = prog.prediction.seconds if prog is not None and prog.prediction is not None else 0.0
        return (tier, work + r.arrival_time, r.arrival_time)

    keys = {"program-fcfs": program_fcfs, "fcfs": fcfs, "plas": plas, "srpt": srpt}
    if ordering not in keys:
        raise ValueError(f"unknown ordering {ordering!r}; choose from {', '.join(keys)}")
    return keys[ordering]


def compose_key(view: SchedulerView, ordering: str, admission: OpenAdmission, classes: Classes,
                levels: Levels) -> Key:
    """The full key; the parts that are switched off cost nothing (the common case is the base key)."""
    base = base_key(ordering, view)
    held, rank = admission.held, classes.rank

    def key(r: Request) -> tuple:
        tier, *rest = base(r)
        return (held(r), rank(r), levels.level(r), tier, *rest)

    def plain(r: Request) -> tuple:
        return (0, *base(r))

    return key if (admission.enabled or classes.enabled or levels.all) else plain
