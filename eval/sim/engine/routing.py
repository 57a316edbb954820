"""Routers of the simulated scale-out: which engine a program's next turn goes to.

- ``round-robin``: every turn to the next engine in turn (vllm-router's ``round_robin``): a program's turns
  scatter, and each lands where its KV is not;
- ``session``: a stable hash of the program id (vllm-router's ``consistent_hash`` on ``X-Session-ID``);
- ``session-load``: the session's engine unless it is overloaded, then the least loaded one, where the program
  stays (`continuum.cluster.affinity.SessionAffinity`, the placement the live data-parallel middleware uses).

Load is what an engine has in flight (requests waiting or running), known to the router as vllm-router and the
data-parallel middleware know it: by what they sent and what came back. `Dispatch` is the router the event loop
asks, with the counts a scale-out result reports.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

from continuum.cluster.affinity import SessionAffinity, home_of

ROUTERS = ("round-robin", "session", "session-load")


class RoundRobin:
    def __init__(self, n: int) -> None:
        self.n = n
        self.next = 0

    def pick(self, session_id: str, loads: Sequence[float]) -> int:
        engine = self.next
        self.next = (self.next + 1) % self.n
        return engine


class SessionHash:
    def __init__(self, n: int) -> None:
        self.n = n

    def pick(self, session_id: str, loads: Sequence[float]) -> int:
        return home_of(session_id, self.n)


def make_router(name: str, n: int) -> Any:
    if name == "round-robin":
        return RoundRobin(n)
    if name == "session":
        return SessionHash(n)
    if name == "session-load":
        return SessionAffinity(n)  # spills to the least loaded engine above the load threshold
    raise ValueError(f"unknown router {name!r}; choose from {', '.join(ROUTERS)}")


class Dispatch:
    """The router of a run, counting what it did: turns per engine, turns moved to another engine than their
    program's previous turn, spills (``session-load``)."""

    def __init__(self, router: str, n: int) -> None:
        self.name = router
        self.n = n
        self.router = make_router(router, n)
        self.last_engine: dict[str, int] = {}
        self.moves = 0
        self.turns_to: Counter = Counter()

    def pick(self, session_id: str, loads: Sequence[float]) -> int:
        i = self.router.pick(session_id, loads)
        if self.last_engine.get(session_id, i) != i:
            self.moves += 1
        self.last_engine[session_id] = i
        self.turns_to[i] += 1
        return i

    @property
    def spills(self) -> int:
        return getattr(self.router, "spills", 0)

    def state(self) -> dict[str, Any]:
        return {"engines": self.n, "router": self.name, "moves": self.moves,
                "turns_per_engine": [self.turns_to[i] for i in range(self.n)], "spills": self.spills}
