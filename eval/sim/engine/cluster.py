"""Scale-out in the simulator: N engines (replicas, or data-parallel ranks) behind a router.

Each engine is the usual simulated engine (`continuum_eval.sim.engine.loop`: vLLM's real scheduler and KV cache, the profile's
cost model) with its own virtual clock; a program's turns are routed one at a time (`continuum_eval.sim.engine.routing`), and a
finished turn's next turn comes back to the router after its tool call, not to the engine that served it.

Co-simulation of independent engines: the next thing to happen is either a turn arriving at the router (at its
time) or a step of the busy engine whose clock is furthest behind; whichever is earlier runs first, so every
routing decision sees each engine as it is at that moment, and a turn that reaches a busy engine joins at its
next step, as it would live. Ranks that step in lockstep are `continuum_eval.sim.engine.lockstep`.
"""

from __future__ import annotations

import heapq
import sys
from collections import Counter
from typing import Any, Sequence

from continuum_eval.sim.engine.clock import VirtualClock
from continuum_eval.sim.engine.loop import Engine
from continuum_eval.sim.engine.entities import SimProgram
from continuum_eval.sim.cost.profiles import Profile
from continuum_eval.sim.engine.routing import make_router
from continuum_workloads import Program


class RoutedEngine(Engine):
    """An engine whose programs' next turns go back to the router."""

    def __init__(self, *args: Any, on_due: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_due = on_due

    def _due(self, t: float, prog: SimProgram) -> None:
        self.on_due(t, prog)


class MultiEngine:
    """Programs, engines and the router's event queue, shared by independent replicas and lockstep ranks."""

    def __init__(self, programs: Sequence[Program], policy: str, profile: Profile, engines: int, router: str, *,
                 seed: int = 0, progress: bool = False, policy_overrides: dict | None = None,
                 stall_limit_s: float = 3600.0, shared_clock: bool = False) -> None:
        if any(p.arrival_s is None for p in programs):
            raise ValueError("every program needs arrival_s (assign arrivals first)")
        self.policy, self.profile, self.stall_limit_s = policy, profile, stall_limit_s
        self.progs = [SimProgram(i, p, seed, profile.max_model_len, profile.block_size) for i, p in enumerate(programs)]
        clock = VirtualClock() if shared_clock else None
        self.engines = [RoutedEngine([], policy, profile, seed=seed, policy_overrides=dict(policy_overrides or {}),
                                     stall_limit_s=stall_limit_s, clock=clock, on_due=self._due)
                        for _ in range(engines)]
        self.router = make_router(router, engines)
        self.router_name = router
        self.events: list[tuple[float, int, SimProgram]] = []
        self.seq = 0
        self.last_engine: dict[str, int] = {}
        self.moves = 0  # turns routed to another engine than the program's previous turn
        self.turns_to = Counter()
        self.progress = progress
        self.overhead = self.engines[0].overhead

    def _due(self, t: float, prog: SimProgram) -> None:
        heapq.heappush(self.events, (t, self.seq, prog))
        self.seq += 1

    def loads(self) -> list[int]:
        return [len(e.pending) for e in self.engines]

    def route(self, prog: SimProgram) -> Engine:
        i = self.router.pick(prog.id, self.loads())
        if self.last_engine.get(prog.id, i) != i:
            self.moves += 1
        self.last_engine[prog.id] = i
        self.turns_to[i] += 1
        return self.engines[i]

    def run(self) -> "MultiEngine":
        for prog in self.progs:
            self._due(prog.record.arrival_s + self.overhead / 2, prog)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=len(self.progs), desc=f"sim {self.policy} x{len(self.engines)}", unit="prog",
                       file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
        for e in self.engines:
            e._bar = bar
        try:
            self._loop()
        finally:
            if bar is not None:
                bar.close()
        return self

    def _loop(self) -> None:
        raise NotImplementedError

    def state(self) -> dict:
        return {"engines": len(self.engines), "router": self.router_name, "moves": self.moves,
                "turns_per_engine": [self.turns_to[i] for i in range(len(self.engines))],
                "spills": getattr(self.router, "spills", 0)}


class ReplicaSim(MultiEngine):
    """Independent engines: each on its own clock, stepped in order of time."""

    def _loop(self) -> None:
        events, engines = self.events, self.engines
        stalled: dict[int, float] = {}
        while events or any(e.pending for e in engines):
            busy = [e for e in engines if e.pending]
            first = min(busy, key=lambda e: e.clock.now) if busy else None
            if events and (first is None or events[0][0] <= first.clock.now):
                t, _, prog = heapq.heappop(events)
                engine = self.route(prog)
                if not engine.pending:
                    engine.clock.jump_to(t)  # an idle engine catches up with the arrival
                engine._submit(prog)
                continue
            step = first.plan()
            if step is None:
                self._stalled(first, stalled)
                continue
            stalled.pop(id(first), None)
            first.clock.advance(step.dt)
            first.apply(step)

    def _stalled(self, engine: Engine, stalled: dict[int, float]) -> None:
        since = stalled.setdefault(id(engine), engine.clock.now)
        if self.events:
            engine.clock.jump_to(max(self.events[0][0], engine.clock.now + 1e-3))
        elif engine.clock.now - since > self.stall_limit_s:
            engine._abort_all(f"nothing schedulable for {self.stall_limit_s:.0f} s of simulated time")
        else:
            engine.clock.advance(1.0)  # only time-based state (pin expiry) can change: let it
