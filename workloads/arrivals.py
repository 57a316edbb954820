"""Program arrival processes.

Load is expressed in JPS (programs started per second). Programs arrive as a
Poisson process: independent exponential gaps with mean 1/JPS, seeded so that
two runs (say Continuum and plain vLLM) see exactly the same arrivals. The first
program arrives at t = 0 so a run never starts with an idle wait.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from continuum_workloads.trace import Program

__all__ = ["poisson_arrival_times", "assign_arrivals"]


def poisson_arrival_times(n: int, jps: float, seed: int) -> list[float]:
    """Arrival times (seconds) of ``n`` programs of a Poisson process at ``jps``, starting at 0."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not (isinstance(jps, (int, float)) and math.isfinite(jps) and jps > 0):
        raise ValueError(f"jps must be a positive finite rate (programs per second), got {jps!r}")
    if n == 0:
        return []
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / jps, size=n - 1)
    return [0.0] + np.cumsum(gaps).tolist()


def assign_arrivals(programs: Sequence[Program], jps: float, seed: int) -> list[Program]:
    """Copies of ``programs`` (same order) with ``arrival_s`` set by a seeded Poisson process."""
    times = poisson_arrival_times(len(programs), jps, seed)
    return [p.model_copy(update={"arrival_s": round(t, 6)}) for p, t in zip(programs, times)]
