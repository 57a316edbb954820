"""Where data-parallel ranks leave their running counts for each other: a non-blocking side channel.

Balance scheduling (`continuum.sched.balance`) needs every rank's running-queue length before it admits. A collective
(``all_gather``) inside ``schedule()`` would deadlock: a rank with nothing to do runs dummy batches and never
calls ``schedule()``, so its peers would wait for it forever. Instead every rank posts its count whenever it
changes (after scheduling and after each step's output) and reads the latest count each peer posted, never
waiting: a count may be a step old, which is all the rule needs.

- `LocalBoard`: ranks in one process (the simulator, tests). ``snapshot()`` freezes what readers see, so ranks
  stepping one after another read the previous step's counts, as concurrent ranks would.
- `SharedBoard`: ranks in separate engine-core processes on one node: a memory-mapped file with a slot per rank.
  (A first version sent counts over ZeroMQ PUB/SUB; in one test run an idle rank did not see its busy peer's
  count for 30 s, cause not found. Slots in shared memory have no connection or delivery state to go wrong.)
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import struct
import tempfile
from typing import Protocol


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


def counts_path(base: str) -> str:
    """The file the ranks behind control address ``base`` share (next to an ipc socket, else in the temp dir)."""
    if base.startswith("ipc://"):
        return base[len("ipc://"):] + "-counts"
    digest = hashlib.blake2b(base.encode(), digest_size=8).hexdigest()
    return os.path.join(tempfile.gettempdir(), f"continuum-counts-{digest}")


class SharedBoard:
    """Counts of ranks in separate processes on one node: one small file every rank maps into memory, a slot of
    8 bytes per rank. A rank writes only its own slot; a read is every slot as it is now. There is no connection
    to make and no message to drop, so a rank that starts late or sits idle still reads its peers' current counts
    (an aligned 8-byte store is one machine store: a count is never read half written)."""

    SLOT = struct.Struct("<q")

    def __init__(self, path: str, rank: int, size: int) -> None:
        self.path, self.rank, self.size = path, rank, size
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < self.SLOT.size * size:  # the first rank sizes it; zeros are "nothing yet"
                os.ftruncate(fd, self.SLOT.size * size)
            self.map = mmap.mmap(fd, self.SLOT.size * size)
        finally:
            os.close(fd)

    def publish(self, rank: int, count: int) -> None:
        self.SLOT.pack_into(self.map, self.SLOT.size * rank, count)

    def counts(self) -> list[int]:
        return [self.SLOT.unpack_from(self.map, self.SLOT.size * r)[0] for r in range(self.size)]

    def close(self) -> None:
        if not self.map.closed:
            self.map.close()
        with contextlib.suppress(FileNotFoundError):  # ranks stop together: peers keep their mapping
            os.unlink(self.path)
