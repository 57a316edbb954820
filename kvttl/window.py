"""A bounded sliding window of floats that is always kept sorted.

The TTL rule runs on the scheduler's hot path and needs the samples of a tool
in ascending order (an empirical CDF is just the sorted sample array). Sorting a
10,000-sample window on every decision would cost far more than the decision
itself, so the window keeps a sorted numpy buffer up to date on every insertion
instead: one binary search plus one memmove to drop the oldest value, and the
same to insert the new one (O(n) moves of contiguous memory, a few microseconds
at n = 10,000). Reads hand out a read-only snapshot that is rebuilt at most once
after each insertion.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

__all__ = ["SortedWindow"]


class SortedWindow:
    """The last ``capacity`` values added, in insertion order and in sorted order."""

    __slots__ = ("_buf", "_fifo", "_n", "_since_resum", "_snapshot", "_sum", "capacity")

    def __init__(self, capacity: int) -> None:
        capacity = int(capacity)
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._buf = np.empty(capacity, dtype=np.float64)
        self._n = 0
        self._fifo: deque[float] = deque()
        self._sum = 0.0
        self._since_resum = 0
        self._snapshot: np.ndarray | None = None

    def __len__(self) -> int:
        return self._n

    def add(self, value: float) -> float | None:
        """Insert ``value``; return the value that fell out of the window, if any."""
        x = float(value)
        buf = self._buf
        n = self._n
        evicted = None
        if n == self.capacity:
            evicted = self._fifo.popleft()
            j = int(np.searchsorted(buf[:n], evicted, side="left"))
            # numpy copes with overlapping slices in assignment.
            buf[j : n - 1] = buf[j + 1 : n]
            n -= 1
            self._sum -= evicted
        i = int(np.searchsorted(buf[:n], x, side="right"))
        buf[i + 1 : n + 1] = buf[i:n]
        buf[i] = x
        self._n = n + 1
        self._fifo.append(x)
        self._sum += x
        self._since_resum += 1
        if self._since_resum >= self.capacity:
            # Bound the drift of the running sum: recompute it exactly now and then.
            self._sum = math.fsum(self._fifo)
            self._since_resum = 0
        self._snapshot = None
        return evicted

    def sorted(self) -> np.ndarray:
        """The values in ascending order, as a read-only array (stable until the next add)."""
        snap = self._snapshot
        if snap is None:
            snap = self._buf[: self._n].copy()
            snap.setflags(write=False)
            self._snapshot = snap
        return snap

    def mean(self) -> float:
        """Mean of the values in the window (0.0 when empty)."""
        return self._sum / self._n if self._n else 0.0

    def quantile(self, q: float) -> float:
        """Empirical quantile (lower value, no interpolation); 0.0 when empty."""
        if not self._n:
            return 0.0
        q = min(max(float(q), 0.0), 1.0)
        idx = min(self._n - 1, max(0, math.ceil(q * self._n) - 1))
        return float(self._buf[idx])

    def values(self) -> list[float]:
        """The values in insertion order (oldest first)."""
        return list(self._fifo)
