"""What a policy component may know of the scheduler, and the priority key it ranks requests by.

Components (admission, ordering, priority terms, classes, preemption, balance, turns) are handed a `SchedulerView`,
never the scheduler's state: what they read is this list, and each method says what it means rather than
where it lives in vLLM. A component that must act (preempt a request, hold admissions) is given one narrow
callback by the scheduler instead (`continuum.sched.scheduler.ContinuumMixin.preempt`, ``hold_admissions``).

`Priority` is what the scheduler stores in ``request.priority`` when components rank requests: vLLM compares
priorities with ``max()`` to choose a preemption victim, and a named tuple compares as a tuple. Without ranking
components the priority stays a plain int (the program's order, -1 for a last step), as vLLM expects.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, Sequence

from vllm.v1.request import Request

from continuum.sched.programs import Program


class Urgency(NamedTuple):
    """How urgent a request is, lower first: what priority preemption compares."""

    cls: int  # 0 latency-sensitive (or best-effort that waited too long), 1 best-effort (`continuum.sched.classes`)
    level: float  # the sum of the active priority terms (`continuum.sched.priority`)


class Priority(NamedTuple):
    """``request.priority`` under ranking components; vLLM preempts the running request with the largest."""

    protected: int  # -1 for a program's last step (preempted last, never for a waiting request), else 0
    cls: int
    level: float
    order: int  # the program's first-arrival rank: among equals, the latest program yields

    @property
    def urgency(self) -> Urgency:
        return Urgency(self.cls, self.level)


class SchedulerView(Protocol):
    """Read-only questions a component may ask of the scheduler (`ContinuumMixin` answers them)."""

    block_size: int  # tokens per KV block
    max_num_running_reqs: int  # vLLM's running-queue limit (``max_num_seqs``)
    max_num_scheduled_tokens: int  # vLLM's token budget of one step

    def clock(self) -> float:
        """Now, in the scheduler's clock (the simulator's virtual one under simulation)."""
        ...

    def program_of(self, request: Request) -> Program | None:
        ...

    def kv_kept(self, request: Request) -> bool:
        """Whether the request's program had its KV kept for it: pinned in GPU memory, or parked in the host tier
        (a returning turn whose prefix is held)."""
        ...

    def program_order(self, request: Request) -> float:
        """The program's first-arrival rank (infinite for a request without a program)."""
        ...

    def attained_service(self, request: Request) -> int:
        """Tokens scheduled so far for the request's program, across its turns and preemptions."""
        ...

    def served_tokens(self, request_id: str) -> int:
        """Tokens scheduled so far for one request, kept across preemption (0 when untracked)."""
        ...

    def read_events(self, request_id: str) -> int | None:
        """SSE events of the request's stream its client has read (None: never reported)."""
        ...

    def cached_tokens(self, request: Request) -> int:
        """Prompt tokens the prefix cache holds for the request now."""
        ...

    def cached_fraction(self, request: Request) -> float:
        ...

    def finished_blocks(self, request: Request) -> list[int]:
        """A finished request's full blocks that carry a prefix-cache hash (what a pin may hold), before vLLM
        frees them."""
        ...

    def urgency(self, request: Request) -> Urgency:
        ...

    def num_waiting(self) -> int:
        """Requests in the waiting queue, those held at the admission door included."""
        ...

    def waiting_head(self) -> Request | None:
        """The waiting request vLLM would try first, or None when none may start now."""
        ...

    def waiting_key(self, request: Request) -> tuple:
        """The request's key in the waiting queue's order (`continuum.sched.ordering`)."""
        ...

    def resort_due(self) -> bool:
        """Whether time-dependent keys are refreshed this step (every ``RESORT_EVERY_S``)."""
        ...

    def running_requests(self) -> Sequence[Request]:
        ...

    def pool_blocks(self) -> int:
        """Usable blocks of the KV pool (vLLM keeps one null block aside)."""
        ...

    def reclaimable_blocks(self) -> int:
        """Free blocks plus pinned ones, which a failing allocation releases before it gives up."""
        ...
