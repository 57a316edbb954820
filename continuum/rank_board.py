"""Where data-parallel ranks leave their running counts for each other: a non-blocking side channel.

Balance scheduling (`continuum.balance`) needs every rank's running-queue length before it admits. A collective
(``all_gather``) inside ``schedule()`` would deadlock: a rank with nothing to do runs dummy batches and never
calls ``schedule()``, so its peers would wait for it forever. Instead every rank posts its count whenever it
changes (after scheduling and after each step's output) and reads the latest count each peer posted, never
waiting: a count may be a step old, which is all the rule needs.

- `LocalBoard`: ranks in one process (the simulator, tests). ``snapshot()`` freezes what readers see, so ranks
  stepping one after another read the previous step's counts, as concurrent ranks would.
- `ZmqBoard`: ranks in separate engine-core processes on one node. Each rank binds a PUB socket; each peer holds
  one conflating SUB socket per rank, so a read is the peer's latest count and never blocks.
"""

from __future__ import annotations

import json
from typing import Protocol

import zmq


class RankBoard(Protocol):
    size: int

    def publish(self, rank: int, count: int) -> None: ...

    def counts(self) -> list[int]: ...

    def close(self) -> None: ...


class LocalBoard:
    """Counts of ranks that share a process. Readers see the last ``snapshot()`` (or live counts, if never)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.live = [0] * size
        self.seen: list[int] | None = None

    def publish(self, rank: int, count: int) -> None:
        self.live[rank] = count

    def snapshot(self) -> None:
        self.seen = list(self.live)

    def counts(self) -> list[int]:
        return list(self.seen if self.seen is not None else self.live)

    def close(self) -> None:
        pass


def rank_address(base: str, rank: int) -> str:
    return f"{base}-counts-{rank}"


class ZmqBoard:
    """Counts of ranks in separate processes, over ZeroMQ PUB/SUB on ``base``-derived addresses (ipc or tcp)."""

    def __init__(self, base: str, rank: int, size: int) -> None:
        self.size = size
        self.rank = rank
        self.latest = [0] * size
        ctx = zmq.Context.instance()
        self.pub = ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.setsockopt(zmq.SNDHWM, 4)
        self.pub.bind(rank_address(base, rank))
        self.subs: dict[int, zmq.Socket] = {}
        for peer in range(size):
            if peer == rank:
                continue
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.CONFLATE, 1)  # keep only the newest message: a read is the peer's current count
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(rank_address(base, peer))
            self.subs[peer] = sub

    def publish(self, rank: int, count: int) -> None:
        # Sent every time, not only on change: a peer that connected late still learns the current count.
        self.latest[rank] = count
        try:
            self.pub.send(json.dumps(count).encode(), zmq.NOBLOCK)
        except zmq.Again:  # no room: the next post carries it
            pass

    def counts(self) -> list[int]:
        for peer, sub in self.subs.items():
            try:
                while True:
                    self.latest[peer] = int(json.loads(sub.recv(zmq.NOBLOCK)))
            except zmq.Again:
                pass
        return list(self.latest)

    def close(self) -> None:
        for sock in (self.pub, *self.subs.values()):
            sock.close(linger=0)
