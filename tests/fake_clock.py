"""A settable clock for schedulers built offline (``scheduler.clock``): tests move time by hand."""

from __future__ import annotations


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now
