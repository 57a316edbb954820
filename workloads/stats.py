"""Summary statistics of a trace: the numbers the workload calibration targets.

The quantities are the ones agent-serving papers report, so a generated trace
can be checked against published statistics at a glance: turns per program,
tool-call time (with the heavy-tail share: how much of all tool time the
slowest tenth of calls carries), tokens per program counted as the sum over
turns of prompt + output, and the final context length.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Iterable

import numpy as np
from pydantic import BaseModel

from continuum_workloads.trace import Program

__all__ = ["Dist", "ToolRow", "TraceStats", "dist", "tail_share", "trace_stats", "format_stats"]


class Dist(BaseModel):
    """Summary of a sample (sd is the sample standard deviation)."""

    n: int
    mean: float
    sd: float
    p50: float
    p90: float
    p99: float
    min: float
    max: float


class ToolRow(BaseModel):
    """Per-tool share of a trace's tool calls."""

    tool: str
    calls: int
    mean_s: float
    p90_s: float
    time_share: float


class TraceStats(BaseModel):
    programs: int
    workloads: dict[str, int]
    turns: Dist
    tool_calls: int
    tool_s: Dist
    slowest10_share: float
    tokens_per_program: Dist
    final_context: Dist
    arrivals: dict[str, float] | None
    tools: list[ToolRow]


def dist(values: Iterable[float]) -> Dist:
    """Mean, sd and percentiles of a sample; all zero for an empty one."""
    a = np.asarray(list(values), dtype=float)
    if a.size == 0:
        return Dist(n=0, mean=0, sd=0, p50=0, p90=0, p99=0, min=0, max=0)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    sd = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return Dist(n=int(a.size), mean=float(a.mean()), sd=sd, p50=float(p50), p90=float(p90),
                p99=float(p99), min=float(a.min()), max=float(a.max()))


def tail_share(values: Iterable[float], frac: float = 0.1) -> float:
    """Share of the total carried by the largest ``frac`` of the values (ceil of the count)."""
    a = np.sort(np.asarray(list(values), dtype=float))[::-1]
    total = float(a.sum())
    if a.size == 0 or total <= 0:
        return 0.0
    k = max(1, math.ceil(frac * a.size))
    return float(a[:k].sum()) / total


def _tool_rows(programs: list[Program]) -> list[ToolRow]:
    by_tool: dict[str, list[float]] = defaultdict(list)
    for p in programs:
        for t in p.tool_calls():
            by_tool[t.tool].append(t.tool_s)  # type: ignore[index]
    total = sum(sum(v) for v in by_tool.values()) or 1.0
    rows = [ToolRow(tool=name, calls=len(v), mean_s=float(np.mean(v)), p90_s=float(np.percentile(v, 90)),
                    time_share=sum(v) / total) for name, v in by_tool.items()]
    return sorted(rows, key=lambda r: (-r.calls, r.tool))


def _arrivals(programs: list[Program]) -> dict[str, float] | None:
    times = [p.arrival_s for p in programs]
    if not times or any(t is None for t in times):
        return None
    a = np.sort(np.asarray(times, dtype=float))
    span = float(a[-1] - a[0])
    jps = (len(a) - 1) / span if span > 0 else float("inf")
    return {"first_s": float(a[0]), "last_s": float(a[-1]), "span_s": span, "jps": jps}


def trace_stats(programs: list[Program]) -> TraceStats:
    """Compute the summary of a list of programs."""
    tool_s = [t.tool_s for p in programs for t in p.tool_calls()]
    return TraceStats(
        programs=len(programs),
        workloads=dict(Counter(p.workload for p in programs)),
        turns=dist(len(p.turns) for p in programs),
        tool_calls=len(tool_s),
        tool_s=dist(tool_s),
        slowest10_share=tail_share(tool_s, 0.1),
        tokens_per_program=dist(p.total_tokens() for p in programs),
        final_context=dist(p.final_context() for p in programs),
        arrivals=_arrivals(programs),
        tools=_tool_rows(programs),
    )


def _row(name: str, d: Dist, unit: str = "", fmt: str = "{:.2f}") -> str:
    f = lambda x: fmt.format(x) + unit  # noqa: E731
    return (f"{name:<22} mean {f(d.mean):>9}  sd {f(d.sd):>9}  p50 {f(d.p50):>9}  "
            f"p90 {f(d.p90):>9}  p99 {f(d.p99):>9}  max {f(d.max):>9}")


def format_stats(s: TraceStats, max_tools: int = 15) -> str:
    """Human-readable report, one quantity per line, then the per-tool table."""
    wl = ", ".join(f"{k} {v}" for k, v in sorted(s.workloads.items()))
    lines = [
        f"programs               {s.programs} ({wl})",
        _row("turns per program", s.turns),
        f"tool calls             {s.tool_calls}",
        _row("tool time", s.tool_s, " s", "{:.3f}"),
        f"slowest 10% of calls   carry {100 * s.slowest10_share:.1f}% of all tool time",
        _row("tokens per program", s.tokens_per_program, "", "{:,.0f}"),
        _row("final context", s.final_context, "", "{:,.0f}"),
    ]
    if s.arrivals:
        a = s.arrivals
        lines.append(f"arrivals               {a['first_s']:.1f}-{a['last_s']:.1f} s, {a['jps']:.3f} programs/s")
    else:
        lines.append("arrivals               not assigned (arrival_s null)")
    if s.tools:
        lines.append(f"{'tool':<28} {'calls':>7} {'mean s':>9} {'p90 s':>9} {'time %':>7}")
        for r in s.tools[:max_tools]:
            lines.append(f"  {r.tool:<26} {r.calls:>7} {r.mean_s:>9.3f} {r.p90_s:>9.3f} {100 * r.time_share:>7.1f}")
        if len(s.tools) > max_tools:
            lines.append(f"  ... {len(s.tools) - max_tools} more tools")
    return "\n".join(lines)
