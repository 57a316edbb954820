"""The virtual clock: seconds of simulated time, read by the scheduler, kvttl and the engine loop."""

from __future__ import annotations


class VirtualClock:
    """A callable returning the simulated time; only the engine loop moves it, and only forward."""

    __slots__ = ("now",)

    def __init__(self, start: float = 0.0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"time cannot go back ({seconds} s)")
        self.now += seconds
        return self.now

    def jump_to(self, t: float) -> float:
        """Skip idle time to ``t`` (no-op if ``t`` is in the past)."""
        if t > self.now:
            self.now = float(t)
        return self.now
