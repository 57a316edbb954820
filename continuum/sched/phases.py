"""Adaptive phase switching (the MLFQ fork's): which priority terms are active, chosen by load.

Two exponentially weighted rates, of request arrivals and of request completions (half-life ``half_life_s``).
Their ratio says whether work piles up, and picks the phase:

    ratio <= baseline_max: baseline (no terms);  <= las_max: las;  above: aging-sjf (aging + SJF)

A threshold must be crossed by ``hysteresis`` to change phase, and a phase is kept at least ``dwell_s``. Whatever
the phase, while fewer than ``bypass_queue`` requests wait the plain order is used: with a short queue ordering
cannot help, only cost.
"""

from __future__ import annotations

import math
from typing import Callable

from continuum.policy.config import ContinuumConfig

PHASES: list[tuple[str, list[str]]] = [("baseline", []), ("las", ["las"]), ("aging-sjf", ["aging", "sjf"])]
PHASE_TERMS = sorted({t for _, terms in PHASES for t in terms})


class DecayingRate:
    """Events per second, exponentially weighted: each event adds 1/tau, the sum decays with time constant tau."""

    def __init__(self, half_life_s: float) -> None:
        self.tau = max(1e-6, half_life_s / math.log(2))
        self.value = 0.0
        self.at = 0.0

    def at_time(self, now: float) -> float:
        return self.value * math.exp(-max(0.0, now - self.at) / self.tau)

    def add(self, now: float) -> None:
        self.value = self.at_time(now) + 1.0 / self.tau
        self.at = now


class PhaseSwitch:
    def __init__(self, cfg: ContinuumConfig, clock: Callable[[], float]) -> None:
        k = lambda name: cfg.knob(f"adaptive.{name}")  # noqa: E731
        self.enabled = cfg.phase == "adaptive"
        self.clock = clock
        self.arrivals, self.completions = DecayingRate(k("half_life_s")), DecayingRate(k("half_life_s"))
        self.limits = [k("baseline_max"), k("las_max")]  # upper ratio of phase 0 and phase 1
        self.margin, self.dwell_s, self.bypass = k("hysteresis"), k("dwell_s"), k("bypass_queue")
        self.index = 0
        self.since = -math.inf
        self.switches = 0

    @property
    def name(self) -> str:
        return PHASES[self.index][0]

    def ratio(self, now: float) -> float:
        done = self.completions.at_time(now)
        came = self.arrivals.at_time(now)
        return came / done if done > 0 else (math.inf if came > 0 else 1.0)

    def target(self, ratio: float) -> int:
        """The phase ``ratio`` asks for, moving away from the current one only past the hysteresis margin."""
        i = self.index
        while i < len(self.limits) and ratio > self.limits[i] + self.margin:
            i += 1
        while i > 0 and ratio < self.limits[i - 1] - self.margin:
            i -= 1
        return i

    def update(self, queue_len: int) -> list[str] | None:
        """The terms to use this step (None: phase switching is off, keep the configured terms)."""
        if not self.enabled:
            return None
        now = self.clock()
        if now - self.since >= self.dwell_s:
            new = self.target(self.ratio(now))
            if new != self.index:
                self.index, self.since, self.switches = new, now, self.switches + 1
        return [] if queue_len < self.bypass else PHASES[self.index][1]

    def state(self) -> dict:
        now = self.clock()
        return {"phase": self.name, "switches": self.switches, "arrival_rate": self.arrivals.at_time(now),
                "completion_rate": self.completions.at_time(now)}
