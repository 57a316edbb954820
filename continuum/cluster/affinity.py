"""Session affinity with spill: which of N engines (data-parallel ranks, replicas) serves a program's next turn.

A program's KV lives on the engine that served its last turn, so every turn goes back there: its *home*, a
stable hash of the session id for a program seen for the first time. Only when the home is overloaded does the
turn spill to the least loaded engine, and the program then stays there (its KV is there now). Overloaded is
the vllm-router's own balance test, in the same units the caller measures load in (requests waiting or
running): the home's load exceeds the least loaded engine's by more than ``slack`` *and* by more than a factor
``ratio``. Both conditions keep affinity under ordinary imbalance and spill only under a real pile-up.

No vLLM import: the live data-parallel middleware (`continuum.control.dp`) and the simulator's ``session-load`` router
(`continuum_eval.sim.engine.routing`) use this one class.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Sequence

DEFAULT_SLACK = 8.0  # requests
DEFAULT_RATIO = 1.5
MAX_SESSIONS = 100_000  # remembered placements (least recently used dropped first)


def stable_hash(key: str) -> int:
    """A hash that is the same in every process and run (Python's own ``hash`` of a str is salted)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def home_of(session_id: str, n: int) -> int:
    return stable_hash(session_id) % n


class SessionAffinity:
    """Places sessions on ``n`` engines: home by hash, spill to the least loaded when the home is overloaded."""

    def __init__(self, n: int, slack: float = DEFAULT_SLACK, ratio: float = DEFAULT_RATIO,
                 spill: bool = True, max_sessions: int = MAX_SESSIONS) -> None:
        if n < 1:
            raise ValueError("need at least one engine")
        self.n = n
        self.slack = slack
        self.ratio = ratio
        self.spill = spill
        self.max_sessions = max_sessions
        self.placed: OrderedDict[str, int] = OrderedDict()
        self.spills = 0

    def overloaded(self, engine: int, loads: Sequence[float]) -> bool:
        low = min(loads)
        load = loads[engine]
        return load - low > self.slack and load > low * self.ratio

    def pick(self, session_id: str | None, loads: Sequence[float]) -> int:
        """The engine for a turn of ``session_id`` given each engine's current load (len ``n``). A turn
        without a session is its own program: it goes to the least loaded engine."""
        if len(loads) != self.n:
            raise ValueError(f"want {self.n} loads, got {len(loads)}")
        if session_id is None:
            return min(range(self.n), key=lambda i: loads[i])
        engine = self.placed.pop(session_id, None)
        if engine is None:
            engine = home_of(session_id, self.n)
        if self.spill and self.overloaded(engine, loads):
            engine = min(range(self.n), key=lambda i: loads[i])
            self.spills += 1
        self.placed[session_id] = engine
        if len(self.placed) > self.max_sessions:
            self.placed.popitem(last=False)
        return engine

    def where(self, session_id: str) -> int | None:
        """Where the session's last turn went (None: never placed or forgotten)."""
        return self.placed.get(session_id)

    def forget(self, session_id: str) -> None:
        """The program ended: its placement is no longer needed."""
        self.placed.pop(session_id, None)
