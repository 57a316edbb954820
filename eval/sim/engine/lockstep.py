"""Data-parallel ranks in lockstep: every step, every rank runs a batch, and the step lasts as long as the
slowest rank's.

This is how vLLM runs the data-parallel ranks of a mixture-of-experts model (the experts' all-to-all joins the
ranks each forward pass; a rank with nothing to do runs a dummy batch). The ranks share one virtual clock; each
step all ranks with work ``schedule()`` (vLLM's real scheduler each), the cost model prices every batch, the
clock advances by the longest, and every rank applies its output. Programs are placed on ranks by session with
spill to the least loaded rank (`continuum.cluster.affinity`, as the live data-parallel middleware does).

Balance scheduling (``--balance any-full``, `continuum.sched.balance`) reads the ranks' running counts from a
`continuum.sched.rank_board.LocalBoard` frozen at each step boundary: every rank sees the counts its peers posted by
the end of the previous step, as concurrent ranks would through the live side channel.
"""

from __future__ import annotations

import heapq

from continuum.sched.rank_board import LocalBoard
from continuum_eval.sim.engine.cluster import MultiEngine


class LockstepSim(MultiEngine):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, shared_clock=True, **kwargs)
        self.clock = self.engines[0].clock
        self.board = LocalBoard(len(self.engines))
        for rank, e in enumerate(self.engines):
            if hasattr(e.sched, "balance"):
                e.sched.balance.attach(self.board, rank)
        self.steps = 0
        self.skew_s = 0.0  # summed over steps: slowest rank's batch time minus the mean of the busy ranks'

    def _loop(self) -> None:
        events, engines, clock = self.events, self.engines, self.clock
        stalled_since: float | None = None
        while events or any(e.pending for e in engines):
            while events and events[0][0] <= clock.now:
                prog = heapq.heappop(events)[2]
                self.route(prog)._submit(prog)
            busy = [e for e in engines if e.pending]
            if not busy:
                clock.jump_to(events[0][0])
                continue
            self.board.snapshot()
            plans = [(e, e.plan()) for e in busy]
            ran = [(e, p) for e, p in plans if p is not None]
            if not ran:
                stalled_since = clock.now if stalled_since is None else stalled_since
                if events:
                    clock.jump_to(events[0][0])
                elif clock.now - stalled_since > self.stall_limit_s:
                    for e in busy:
                        e._abort_all(f"nothing schedulable for {self.stall_limit_s:.0f} s of simulated time")
                else:
                    clock.advance(1.0)
                continue
            stalled_since = None
            dts = [p.dt for _, p in ran]
            self.steps += 1
            self.skew_s += max(dts) - sum(dts) / len(dts)
            clock.advance(max(dts))
            for e, p in ran:
                p.dt = max(dts)  # every rank's step lasted the slowest's
                e.apply(p)

    def state(self) -> dict:
        holds = [getattr(getattr(e.sched, "balance", None), "holds", 0) for e in self.engines]
        return {**super().state(), "lockstep": True, "lockstep_steps": self.steps,
                "mean_skew_ms": 1e3 * self.skew_s / max(1, self.steps), "held_steps_per_rank": holds}
