"""Tool-duration predictor: the distribution of how long each tool keeps a program away.

Every gap between a turn's finish and the program's next arrival is one duration
sample of the tool that ran in between. The predictor keeps, in bounded sliding
windows (recent behaviour matters more than old behaviour, and memory must stay
bounded on a long-running server):

- one window per tool name (``window`` samples each, at most ``max_tools`` tools,
  least recently recorded tool dropped first, since tool names come from clients);
- one global window over all tools (``global_window`` samples).

Each window is kept sorted incrementally (:class:`kvttl.window.SortedWindow`), so the
empirical CDF the TTL rule needs is available without sorting on the hot path.

Cold start, in three stages, per tool:

``default``
    fewer than ``min_global_samples`` samples in total: the answer is the single
    sample ``default_s`` (the rule then pins for ``default_s`` when a miss would cost
    more than that, else not at all);
``global``
    enough samples in total but fewer than ``min_tool_samples`` for this tool (or the
    tool is unknown / ``None``): the global CDF;
``tool``
    the tool's own window holds at least ``min_tool_samples``: the tool's own CDF.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np

from .window import SortedWindow

__all__ = ["STAGES", "ToolDurationPredictor"]

#: The cold-start stages, in the order a tool goes through them.
STAGES = ("default", "global", "tool")


class _ToolStats:
    __slots__ = ("count", "total", "window")

    def __init__(self, window: int) -> None:
        self.window = SortedWindow(window)
        self.count = 0  # all samples ever recorded for this tool
        self.total = 0.0  # their sum (for the lifetime mean the ``fixed`` mode uses)


class ToolDurationPredictor:
    """Per-tool and global duration samples with a three-stage cold start."""

    def __init__(
        self,
        window: int = 1000,
        min_global_samples: int = 10,
        min_tool_samples: int = 20,
        default_s: float = 2.0,
        *,
        global_window: int = 10000,
        max_tools: int = 1024,
    ) -> None:
        if int(window) < 1 or int(global_window) < 1:
            raise ValueError("window sizes must be >= 1")
        if int(min_global_samples) < 1 or int(min_tool_samples) < 1:
            raise ValueError("sample thresholds must be >= 1")
        if int(max_tools) < 1:
            raise ValueError("max_tools must be >= 1")
        default_s = float(default_s)
        if not math.isfinite(default_s) or default_s < 0:
            raise ValueError(f"default_s must be a finite number >= 0, got {default_s}")
        self.window = int(window)
        self.global_window = int(global_window)
        self.min_global_samples = int(min_global_samples)
        self.min_tool_samples = int(min_tool_samples)
        self.default_s = default_s
        self.max_tools = int(max_tools)
        self._global = SortedWindow(self.global_window)
        self._global_count = 0
        self._tools: OrderedDict[str, _ToolStats] = OrderedDict()
        default = np.array([default_s], dtype=np.float64)
        default.setflags(write=False)
        self._default_samples = default

    # -- recording ---------------------------------------------------------------

    def record(self, tool: str | None, seconds: float) -> None:
        """Add one observed duration of ``tool`` (``None``: unknown tool, global only).

        Raises ``ValueError`` for a negative or non-finite duration: a gap measured by
        the scheduler is never negative, so such a value is a caller bug.
        """
        x = float(seconds)
        if not math.isfinite(x) or x < 0:
            raise ValueError(f"duration must be a finite number >= 0, got {seconds!r}")
        self._global.add(x)
        self._global_count += 1
        if tool is None or tool == "":
            return
        stats = self._tools.get(tool)
        if stats is None:
            if len(self._tools) >= self.max_tools:
                self._tools.popitem(last=False)
            stats = _ToolStats(self.window)
            self._tools[tool] = stats
        else:
            self._tools.move_to_end(tool)
        stats.window.add(x)
        stats.count += 1
        stats.total += x

    # -- queries -----------------------------------------------------------------

    def stage_for(self, tool: str | None) -> str:
        """Which cold-start stage answers for ``tool``: "default", "global" or "tool"."""
        if tool:
            stats = self._tools.get(tool)
            if stats is not None and len(stats.window) >= self.min_tool_samples:
                return "tool"
        if len(self._global) >= self.min_global_samples:
            return "global"
        return "default"

    def samples_for(self, tool: str | None) -> np.ndarray:
        """Sorted, read-only duration samples the TTL rule should use for ``tool``.

        In the ``default`` stage this is the single sample ``default_s``. The array is
        a snapshot: it does not change when more samples are recorded later.
        """
        stage = self.stage_for(tool)
        if stage == "tool":
            return self._tools[tool].window.sorted()  # type: ignore[index]
        if stage == "global":
            return self._global.sorted()
        return self._default_samples

    def mean_for(self, tool: str | None) -> float:
        """Mean of the samples :meth:`samples_for` would return."""
        stage = self.stage_for(tool)
        if stage == "tool":
            return self._tools[tool].window.mean()  # type: ignore[index]
        if stage == "global":
            return self._global.mean()
        return self.default_s

    def lifetime_mean(self, tool: str | None) -> float | None:
        """Mean of every sample ever recorded for ``tool`` (None if never seen).

        This is what the public Continuum code compares with its fixed TTL: a plain
        running average of the tool's own history, with no window and no cold start.
        """
        if not tool:
            return None
        stats = self._tools.get(tool)
        if stats is None or stats.count == 0:
            return None
        return stats.total / stats.count

    def tool_sample_count(self, tool: str | None) -> int:
        """Samples currently in ``tool``'s own window (0 for unknown tools)."""
        stats = self._tools.get(tool) if tool else None
        return len(stats.window) if stats is not None else 0

    @property
    def global_sample_count(self) -> int:
        """Samples currently in the global window."""
        return len(self._global)

    def tools(self) -> list[str]:
        """Tool names with a window, least recently recorded first."""
        return list(self._tools)

    def state(self) -> dict[str, Any]:
        """JSON-able summary for a stats endpoint."""

        def summary(window: SortedWindow) -> dict[str, Any]:
            return {
                "samples": len(window),
                "mean_s": window.mean(),
                "p50_s": window.quantile(0.5),
                "p90_s": window.quantile(0.9),
                "p99_s": window.quantile(0.99),
            }

        glob = summary(self._global)
        glob["recorded"] = self._global_count
        glob["stage"] = "global" if len(self._global) >= self.min_global_samples else "default"
        tools = {}
        for name, stats in self._tools.items():
            entry = summary(stats.window)
            entry["recorded"] = stats.count
            entry["stage"] = self.stage_for(name)
            tools[name] = entry
        return {
            "window": self.window,
            "global_window": self.global_window,
            "min_global_samples": self.min_global_samples,
            "min_tool_samples": self.min_tool_samples,
            "default_s": self.default_s,
            "global": glob,
            "tools": tools,
        }
