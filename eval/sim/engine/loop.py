"""The event loop: programs' turns delivered to simulated engines (`continuum_eval.sim.engine.core`) on virtual
clocks. One loop serves every shape of run:

- one engine (`Engine`);
- replicas behind a router (``engines=N, router=R``): each engine on its own clock; a program's turns are routed
  one at a time (`continuum_eval.sim.engine.routing`), and a finished turn's next turn comes back to the router
  after its tool call, not to the engine that served it;
- data-parallel ranks in lockstep (``lockstep=True``): the ranks share one clock; each step every rank with work
  ``schedule()``s, the cost model prices every batch, the clock advances by the longest and every rank applies
  its output. This is how vLLM runs the data-parallel ranks of a mixture-of-experts model (the experts'
  all-to-all joins the ranks each forward pass; a rank with nothing to do runs a dummy batch). Balance
  scheduling (``--balance any-full``, `continuum.sched.balance`) reads the ranks' running counts from a
  `continuum.sched.rank_board.LocalBoard` frozen at each step boundary: every rank sees the counts its peers
  posted by the end of the previous step, as concurrent ranks would through the live side channel.

Engines that share a clock form a group (one engine, or all ranks in lockstep). The next thing to happen is
either a turn arriving (at its time: a program's first turn at its arrival, a later one when the previous
turn's tool call has ended) or a step of the busy group whose clock is furthest behind; whichever is earlier
runs first, so every routing decision sees each engine as it is at that moment. Steps are whole: a turn that
reaches a busy engine joins at its next step, as in vLLM. A group with nothing to do skips straight to the
next turn it gets: idle time costs nothing. When a busy group can schedule nothing, only time-based state (pin
expiry) can change: its clock moves to the next arrival (with several groups, at least a millisecond on), or by a
second; after ``stall_limit_s`` of that with nothing left to arrive, its turns are aborted and their programs
fail.

With a host KV tier (``cpu_kv_gib``) an engine also has work while its KV copies are in flight
(`continuum_eval.sim.engine.core.EngineCore.has_work`, as vLLM's engine keeps stepping for them): when it can
schedule nothing, its clock moves to the next copy's end or the next arrival, whichever is first.

JCT and TTFT are measured on the agent's side, like the live replay (``client_overhead_s``: see the core).
"""

from __future__ import annotations

import heapq
import sys
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from tqdm import tqdm

from continuum.sched.rank_board import LocalBoard
from continuum_eval.sim.cost.profiles import Profile
from continuum_eval.sim.engine.clock import VirtualClock
from continuum_eval.sim.engine.core import EngineCore, EngineStats
from continuum_eval.sim.engine.entities import Pending, SimProgram
from continuum_eval.sim.engine.routing import Dispatch
from continuum_workloads import Program


@dataclass
class ClockGroup:
    """Engines that share a clock and step together (one engine, or every rank in lockstep)."""

    engines: list[EngineCore]
    clock: VirtualClock
    index: int = 0  # its place in the loop's groups: breaks ties between clocks as a scan in order would
    stalled_since: float | None = None  # virtual time since which nothing could be scheduled
    queued_at: float | None = None  # the clock time of its live entry in the loop's busy queue; None: idle

    def busy(self) -> bool:
        return any(e.has_work() for e in self.engines)


class Loads(Sequence[int]):
    """Requests in flight per engine, counted only where the router reads them: `session` never does, so
    routing a turn costs nothing per engine, and a scale-out run's cost stays linear in its replicas."""

    def __init__(self, engines: Sequence[EngineCore]) -> None:
        self.engines = engines

    def __len__(self) -> int:
        return len(self.engines)

    def __getitem__(self, i: int) -> int:  # type: ignore[override]  # no slices
        return len(self.engines[i].pending)

    def __iter__(self) -> Iterator[int]:
        return (len(e.pending) for e in self.engines)


class EventLoop:
    """``programs`` (with ``arrival_s`` set) served under ``policy`` on ``profile`` by ``engines`` engines behind
    ``router``, each on its own clock or, with ``lockstep``, all on one."""

    def __init__(self, programs: Sequence[Program], policy: str, profile: Profile, *, engines: int = 1,
                 router: str = "session", lockstep: bool = False, seed: int = 0, progress: bool = False,
                 policy_overrides: dict | None = None, stall_limit_s: float = 3600.0,
                 cpu_kv_gib: float | None = None, cpu_eviction: str = "lru") -> None:
        if any(p.arrival_s is None for p in programs):
            raise ValueError("every program needs arrival_s (assign arrivals first)")
        self.policy, self.profile, self.stall_limit_s, self.progress = policy, profile, stall_limit_s, progress
        self.progs = [SimProgram(i, p, seed, profile.max_model_len, profile.block_size)
                      for i, p in enumerate(programs)]
        shared = VirtualClock() if lockstep else None
        self.engines = [EngineCore(policy, profile, shared or VirtualClock(), policy_overrides=policy_overrides,
                                   cpu_kv_gib=cpu_kv_gib, cpu_eviction=cpu_eviction) for _ in range(engines)]
        self.groups = [ClockGroup(self.engines, shared)] if shared else \
            [ClockGroup([e], e.clock, i) for i, e in enumerate(self.engines)]
        # Busy groups by clock time. Scanning every group for the one furthest behind would cost O(replicas)
        # per event, and events grow with replicas too: the simulator's cost per program would grow with the
        # cluster. A group's busy state and clock change only when the loop delivers to it or steps it, so
        # each of those re-queues it; entries it left behind are skipped when they surface.
        self.busy_queue: list[tuple[float, int]] = []  # (clock time, group index)
        self.group_of = {id(e): g for g in self.groups for e in g.engines}
        # A stalled group waits for the next arrival. With one group every arrival is its own; with several, the
        # next may be another's, and waking a stalled engine at each of them would cost a schedule() call per
        # arrival of the whole cluster: it skips at least a millisecond.
        self.stall_skip_s = 1e-3 if len(self.groups) > 1 else 0.0
        self.lockstep = lockstep
        self.board = LocalBoard(engines) if lockstep else None
        if self.board is not None:
            for rank, e in enumerate(self.engines):
                if hasattr(e.sched, "balance"):
                    e.sched.balance.attach(self.board, rank)
        self.dispatch = Dispatch(router, engines)
        self.overhead = float(profile.extra.get("client_overhead_s", 0.0))
        self.events: list[tuple[float, int, SimProgram]] = []  # (time, order, program): turns on their way
        self.seq = 0
        self.group_steps = 0  # steps of a group (in lockstep: steps all ranks took together)
        self.skew_s = 0.0  # summed over group steps: slowest engine's batch time minus the mean of the busy ones'
        self.bar: Any = None

    def due(self, t: float, prog: SimProgram) -> None:
        """The program's next turn reaches the router at ``t``."""
        heapq.heappush(self.events, (t, self.seq, prog))
        self.seq += 1

    def loads(self) -> Loads:
        return Loads(self.engines)

    def requeue(self, group: ClockGroup) -> None:
        """After a delivery to ``group`` or a step of it: its entry in the busy queue says where its clock is,
        or it has none while it is idle."""
        at = group.clock.now if group.busy() else None
        if at != group.queued_at:
            group.queued_at = at
            if at is not None:
                heapq.heappush(self.busy_queue, (at, group.index))

    def furthest_behind(self) -> ClockGroup | None:
        """The busy group whose clock is furthest behind (the first in order among equals); None if all idle."""
        queue = self.busy_queue
        while queue:
            at, i = queue[0]
            group = self.groups[i]
            if group.queued_at == at:
                return group
            heapq.heappop(queue)  # left behind by a step or a delivery that moved the group on
        return None

    def run(self) -> "EventLoop":
        for prog in self.progs:
            self.due(prog.record.arrival_s + self.overhead / 2, prog)
        if self.progress:
            n = len(self.engines)
            self.bar = tqdm(total=len(self.progs), desc=f"sim {self.policy}" + (f" x{n}" if n > 1 else ""),
                            unit="prog", file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
        try:
            events = self.events
            while True:
                first = self.furthest_behind()
                if events and (first is None or events[0][0] <= first.clock.now):
                    t, _, prog = heapq.heappop(events)
                    self.deliver(t, prog)
                elif first is not None:
                    self.step(first)
                    self.requeue(first)
                else:
                    break
        finally:
            if self.bar is not None:
                self.bar.close()
        return self

    def deliver(self, t: float, prog: SimProgram) -> None:
        """A turn due at ``t`` goes to the engine the router picks; an idle engine's clock catches up with it."""
        engine = self.engines[self.dispatch.pick(prog.id, self.loads())]
        group = self.group_of[id(engine)]
        if not group.busy() and t > group.clock.now:
            group.clock.jump_to(t)
            engine.stats.idle_jumps += 1
        engine.submit(prog)
        self.requeue(group)

    def step(self, group: ClockGroup) -> None:
        """One step of every busy engine of ``group``; it lasts as long as the slowest engine's batch."""
        busy = [e for e in group.engines if e.has_work()]
        if self.board is not None:
            self.board.snapshot()
        plans = [(e, e.plan()) for e in busy]
        ran = [(e, p) for e, p in plans if p is not None]
        if not ran:
            self.stalled(group, busy)
            return
        group.stalled_since = None
        dts = [p.dt for _, p in ran]
        self.group_steps += 1
        self.skew_s += max(dts) - sum(dts) / len(dts)
        group.clock.advance(max(dts))
        for e, p in ran:
            p.dt = max(dts)  # every engine's step lasted the slowest's
            self.finished(e.clock.now, e.apply(p))

    def stalled(self, group: ClockGroup, busy: list[EngineCore]) -> None:
        clock = group.clock
        wake = min((t for e in busy if (t := e.next_transfer_s()) is not None), default=None)
        if wake is not None:  # copies in flight: something happens when the next is done, if nothing earlier
            group.stalled_since = None
            if self.events:
                wake = min(wake, max(self.events[0][0], clock.now + self.stall_skip_s))
            clock.jump_to(wake)
            return
        if group.stalled_since is None:
            group.stalled_since = clock.now
        if self.events:
            clock.jump_to(max(self.events[0][0], clock.now + self.stall_skip_s))
        elif clock.now - group.stalled_since > self.stall_limit_s:
            for e in busy:
                e.abort_all(f"nothing schedulable for {self.stall_limit_s:.0f} s of simulated time")
        else:
            clock.advance(1.0)  # only time-based state (pin expiry) can change: let it

    def finished(self, now: float, turns: list[Pending]) -> None:
        """Turns that ended at ``now``: their program is done, or its next turn is due after the tool call."""
        for pending in turns:
            prog = pending.program
            prog.finish_turn(pending)
            if prog.done:
                prog.record.end_s = pending.record.done_s
                if self.bar is not None:
                    self.bar.update(1)
            else:
                tool_s = prog.program.turns[pending.turn].tool_s
                self.due(now + tool_s + self.overhead, prog)

    def state(self) -> dict[str, Any]:
        """The scale-out section of a result: routing counts, and in lockstep the ranks' shared steps."""
        state = self.dispatch.state()
        if self.lockstep:
            holds = [getattr(getattr(e.sched, "balance", None), "holds", 0) for e in self.engines]
            state.update({"lockstep": True, "lockstep_steps": self.group_steps,
                          "mean_skew_ms": 1e3 * self.skew_s / max(1, self.group_steps),
                          "held_steps_per_rank": holds})
        return state


class Engine(EventLoop):
    """The event loop with one engine; its scheduler, clock and counters at hand."""

    def __init__(self, programs: Sequence[Program], policy: str, profile: Profile, *, seed: int = 0,
                 progress: bool = False, policy_overrides: dict | None = None, stall_limit_s: float = 3600.0,
                 cpu_kv_gib: float | None = None, cpu_eviction: str = "lru") -> None:
        super().__init__(programs, policy, profile, seed=seed, progress=progress, policy_overrides=policy_overrides,
                         stall_limit_s=stall_limit_s, cpu_kv_gib=cpu_kv_gib, cpu_eviction=cpu_eviction)
        self.core = self.engines[0]

    @property
    def sched(self) -> Any:
        return self.core.sched

    @property
    def clock(self) -> VirtualClock:
        return self.core.clock

    @property
    def stats(self) -> EngineStats:
        return self.core.stats
