"""Waiting-queue orderings: program-first (Continuum), FCFS, and program-level least attained service.

`ProgramQueue` is a vLLM `RequestQueue` kept sorted by a key the scheduler supplies. Keys depend on state
that changes between steps (a pin expires, a program attains service), so the scheduler re-sorts once per
step; between re-sorts, inserts keep the order with a binary search.
"""

from __future__ import annotations

import bisect
import itertools
from typing import Any, Callable, Iterable, Iterator

from vllm.v1.core.sched.request_queue import RequestQueue
from vllm.v1.request import Request, RequestStatus

Key = Callable[[Request], tuple]


class ProgramQueue(RequestQueue):
    def __init__(self, key: Key) -> None:
        self._key = key
        self._seq = itertools.count()  # ties keep insertion order
        self._items: list[tuple[tuple, int, Request]] = []

    def _entry(self, request: Request) -> tuple[tuple, int, Request]:
        return (self._key(request), next(self._seq), request)

    def resort(self) -> None:
        self._items = sorted((self._key(r), seq, r) for _, seq, r in self._items)

    def add_request(self, request: Request) -> None:
        bisect.insort(self._items, self._entry(request), key=lambda e: e[:2])

    def pop_request(self) -> Request:
        return self._items.pop(0)[2]

    def peek_request(self) -> Request:
        if not self._items:
            raise IndexError("peek from an empty queue")
        return self._items[0][2]

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
        self._items = [e for e in self._items if id(e[2]) not in gone]

    def __bool__(self) -> bool:
        return bool(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Request]:
        return (e[2] for e in self._items)


def was_preempted(request: Request) -> bool:
    return request.status == RequestStatus.PREEMPTED


def ordering_key(ordering: str, sched: Any) -> Key:
    """The sort key for ``ordering``; ``sched`` supplies program state (order, pins, attained service)."""

    def program_fcfs(r: Request) -> tuple:
        # Preempted work first, then returning turns whose KV is pinned, then programs by first arrival.
        pinned = sched.is_pinned(r)
        return (0 if was_preempted(r) else 1 if pinned else 2, sched.program_order(r), r.arrival_time)

    def fcfs(r: Request) -> tuple:
        return (0 if was_preempted(r) else 1, r.arrival_time)

    def plas(r: Request) -> tuple:
        # Autellix-style: the program that has received the least service so far goes first.
        return (0 if was_preempted(r) else 1, sched.attained_service(r), r.arrival_time)

    keys = {"program-fcfs": program_fcfs, "fcfs": fcfs, "plas": plas}
    if ordering not in keys:
        raise ValueError(f"unknown ordering {ordering!r}; choose from {', '.join(keys)}")
    return keys[ordering]
