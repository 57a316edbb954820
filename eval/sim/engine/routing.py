"""Routers of the simulated scale-out: which engine a program's next turn goes to.

- ``round-robin``: every turn to the next engine in turn (vllm-router's ``round_robin``): a program's turns
  scatter, and each lands where its KV is not;
- ``session``: a stable hash of the program id (vllm-router's ``consistent_hash`` on ``X-Session-ID``);
- ``session-load``: the session's engine unless it is overloaded, then the least loaded one, where the program
  stays (`continuum.cluster.affinity.SessionAffinity`, the placement the live data-parallel middleware uses).

Load is what an engine has in flight (requests waiting or running), known to the router as vllm-router and the
data-parallel middleware know it: by what they sent and what came back.
"""

from __future__ import annotations

from typing import Sequence

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


def make_router(name: str, n: int):
    if name == "round-robin":
        return RoundRobin(n)
    if name == "session":
        return SessionHash(n)
    if name == "session-load":
        return SessionAffinity(n)  # spills to the least loaded engine above the load threshold
    raise ValueError(f"unknown router {name!r}; choose from {', '.join(ROUTERS)}")
