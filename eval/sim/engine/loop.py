"""The event loop: vLLM's real scheduler and KV cache manager, stepped on a virtual clock.

Per engine step, as vLLM's EngineCore does it, with the model replaced by a cost model:

1. requests whose arrival time has come are added (``scheduler.add_request``): a program's first turn at its
   arrival, a later turn when the previous turn's tool call has ended;
2. ``scheduler.schedule()`` picks the batch (real vLLM code: waiting queue, chunked prefill, prefix-cache hits,
   block allocation, preemption; Continuum's pins and ordering when the policy has them);
3. the profile's cost model turns the batch into a step time; the clock advances by it;
4. a fabricated ``ModelRunnerOutput`` (one sampled token per scheduled request whose prefill is complete, the
   token being the turn's next seeded output id) goes to ``scheduler.update_from_output()``, which appends
   tokens, caches full blocks, finishes requests and frees (or, for Continuum, pins) their blocks.

When no request is waiting or running, the clock jumps straight to the next arrival: idle time costs nothing.
Everything that reads a clock in the scheduler reads the virtual one (``scheduler.clock``; requests'
``arrival_time``). Steps are whole: a request that arrives during a step waits for the next one, as in vLLM.

Client-side latency (``client_overhead_s``, from a fitted profile; 0 for GPU profiles): each turn reaches the
engine half of it after the agent sends it, and the agent sees the end of the turn half of it after the engine
finishes; JCT and TTFT are measured on the agent's side, like the live replay.
"""

from __future__ import annotations

import heapq
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from vllm.v1.outputs import EMPTY_MODEL_RUNNER_OUTPUT, ModelRunnerOutput
from vllm.v1.request import RequestStatus

from continuum_eval.sim.engine.clock import VirtualClock
from continuum_eval.sim.cost.costmodel import StepBatch
from continuum_eval.sim.engine.entities import Pending, SimProgram
from continuum_eval.sim.cost.profiles import Profile
from continuum_workloads import Program

# The scheduler is built over a small local model config (never its weights); Llama-3.1's 128k context is
# longer than that config's, which vLLM only allows when asked.
os.environ.setdefault("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "1")

def build_engine_scheduler(policy: str, profile: Profile, clock: VirtualClock, **overrides: Any):
    """The scheduler `continuum serve --policy POLICY` would load, over the profile's KV pool. ``overrides``:
    component settings (`continuum.policy.presets.resolve`); a Continuum policy's TTL rule gets the profile's reload
    cost unless they say otherwise; vLLM's own scheduler takes none."""
    from continuum_eval.sim.offline import build_scheduler
    from continuum.policy.presets import is_vllm
    from continuum.sched.scheduler import scheduler_for

    if is_vllm(policy):
        overrides = {}
    else:
        overrides.setdefault("reload_cost", profile.reload_cost())  # the TTL rule's R on this hardware
    cls, ctor = scheduler_for(policy, **overrides)
    sched = build_scheduler(cls, num_blocks=profile.num_blocks, block_size=profile.block_size, model="tiny",
                            max_model_len=profile.max_model_len, max_num_seqs=profile.max_num_seqs,
                            max_num_batched_tokens=profile.max_num_batched_tokens, **ctor)
    if hasattr(sched, "clock"):
        sched.clock = clock
    return sched


class SimStall(RuntimeError):
    """Requests remain but nothing can ever be scheduled (e.g. a prompt larger than the whole KV pool)."""


@dataclass
class EngineStats:
    steps: int = 0
    idle_jumps: int = 0
    empty_steps: int = 0
    preemptions: int = 0
    tokens: int = 0
    sched_wall_s: list[float] = field(default_factory=list)
    update_wall_s: float = 0.0
    cost_wall_s: float = 0.0
    busy_s: float = 0.0  # virtual seconds spent in steps
    peak_running: int = 0
    peak_waiting: int = 0
    peak_kv_usage: float = 0.0


@dataclass
class PlannedStep:
    """A scheduled batch and its price, not yet applied."""

    out: Any
    req_ids: list[str]
    t_sched: float  # wall clock after schedule(): the cost model's wall time is counted from here
    batch: StepBatch = field(default_factory=StepBatch)
    sampled: list[list[int]] = field(default_factory=list)
    stepped: list[Pending] = field(default_factory=list)
    dt: float = 0.0


class Engine:
    """One simulated engine serving ``programs`` (with ``arrival_s`` set) under ``policy`` on ``profile``."""

    def __init__(self, programs: Sequence[Program], policy: str, profile: Profile, *, seed: int = 0,
                 progress: bool = False, stall_limit_s: float = 3600.0, policy_overrides: dict | None = None,
                 record_steps: bool = False, clock: VirtualClock | None = None) -> None:
        if any(p.arrival_s is None for p in programs):
            raise ValueError("every program needs arrival_s (assign arrivals first)")
        self.profile = profile
        self.policy = policy
        self.clock = clock or VirtualClock()  # ranks in lockstep share one
        self.sched = build_engine_scheduler(policy, profile, self.clock, **(policy_overrides or {}))
        self.progs = [SimProgram(i, p, seed, profile.max_model_len, profile.block_size)
                      for i, p in enumerate(programs)]
        self.overhead = float(profile.extra.get("client_overhead_s", 0.0))
        self.progress = progress
        self.stall_limit_s = stall_limit_s
        self.stats = EngineStats()
        self.steps: list[tuple[float, float, StepBatch]] | None = [] if record_steps else None
        self.pending: dict[str, Pending] = {}
        self._events: list[tuple[float, int, SimProgram]] = []
        self._seq = 0
        self.completed = 0
        self.failed = 0
        self._bar = None

    # -- events -----------------------------------------------------------------------------------------------
    def _due(self, t: float, prog: SimProgram) -> None:
        heapq.heappush(self._events, (t, self._seq, prog))
        self._seq += 1

    def _submit(self, prog: SimProgram) -> None:
        now = self.clock.now
        pending = prog.make_turn(now)
        pending.record.sent_s = now - self.overhead / 2
        self.pending[pending.request.request_id] = pending
        self.sched.add_request(pending.request)

    def _turn_done(self, pending: Pending) -> None:
        now = self.clock.now
        prog = pending.program
        rec = pending.record
        rec.done_s = now + self.overhead / 2
        rec.output_tokens = pending.request.num_output_tokens
        rec.ok = True
        del self.pending[pending.request.request_id]
        prog.finish_turn(pending)
        if prog.done:
            prog.record.end_s = rec.done_s
            self.completed += 1
            if self._bar is not None:
                self._bar.update(1)
        else:
            tool_s = prog.program.turns[pending.turn].tool_s
            self._due(now + tool_s + self.overhead, prog)

    # -- the loop ---------------------------------------------------------------------------------------------
    def run(self) -> "Engine":
        for prog in self.progs:
            self._due(prog.record.arrival_s + self.overhead / 2, prog)
        if self.progress:
            from tqdm import tqdm

            self._bar = tqdm(total=len(self.progs), desc=f"sim {self.policy}", unit="prog", file=sys.stderr,
                             dynamic_ncols=True, mininterval=0.5)
        try:
            self._loop()
        finally:
            if self._bar is not None:
                self._bar.close()
        return self

    def _loop(self) -> None:
        clock, events = self.clock, self._events
        stalled_since: float | None = None
        while events or self.pending:
            while events and events[0][0] <= clock.now:
                self._submit(heapq.heappop(events)[2])
            if not self.pending:
                clock.jump_to(events[0][0])
                self.stats.idle_jumps += 1
                continue
            step = self.plan()
            if step is None:
                stalled_since = clock.now if stalled_since is None else stalled_since
                if events:
                    clock.jump_to(events[0][0])
                elif clock.now - stalled_since > self.stall_limit_s:
                    self._abort_all(f"nothing schedulable for {self.stall_limit_s:.0f} s of simulated time")
                else:
                    clock.advance(1.0)  # only time-based state (pin expiry) can change: let it
                continue
            stalled_since = None
            clock.advance(step.dt)
            self.apply(step)

    # -- one step, in two halves (ranks in lockstep plan all, then advance the shared clock by the slowest) --
    def plan(self) -> "PlannedStep | None":
        """``schedule()`` and the cost model's price of the batch; None (after vLLM's empty update) when
        nothing could be scheduled."""
        sched, stats, pending = self.sched, self.stats, self.pending
        perf = time.perf_counter
        t0 = perf()
        out = sched.schedule()
        t1 = perf()
        stats.sched_wall_s.append(t1 - t0)
        nst = out.num_scheduled_tokens
        if not nst:
            sched.update_from_output(out, EMPTY_MODEL_RUNNER_OUTPUT)
            stats.empty_steps += 1
            return None
        for new in out.scheduled_new_reqs:
            p = pending.get(new.req_id)
            if p is not None and not p.admitted:
                p.admitted = True
                p.record.cached_tokens = new.num_computed_tokens
        step = PlannedStep(out=out, req_ids=list(nst), t_sched=t1)
        for rid in step.req_ids:
            p = pending[rid]
            r = p.request
            c = r.num_computed_tokens
            done = c >= r.num_tokens
            step.batch.add(nst[rid], c, done)
            if done:
                step.sampled.append([p.output_ids[r.num_output_tokens]])
                step.stepped.append(p)
            else:
                step.sampled.append([])
        step.dt = self.profile.step_time(step.batch)
        return step

    def apply(self, step: "PlannedStep") -> None:
        """The step's output, once the clock has advanced past it: tokens appended, turns finished."""
        sched, stats, clock = self.sched, self.stats, self.clock
        t2 = time.perf_counter()
        if self.steps is not None:
            self.steps.append((clock.now, step.dt, step.batch))
        stats.steps += 1
        stats.tokens += step.batch.tokens
        stats.busy_s += step.dt
        stats.preemptions += len(step.out.preempted_req_ids)
        ids = step.req_ids
        mro = ModelRunnerOutput(req_ids=ids, req_id_to_index={r: i for i, r in enumerate(ids)},
                                sampled_token_ids=step.sampled)
        sched.update_from_output(step.out, mro)
        stats.cost_wall_s += t2 - step.t_sched
        stats.update_wall_s += time.perf_counter() - t2
        if stats.steps % 64 == 0:
            stats.peak_running = max(stats.peak_running, len(sched.running))
            stats.peak_waiting = max(stats.peak_waiting, len(sched.waiting))
            stats.peak_kv_usage = max(stats.peak_kv_usage, sched.kv_cache_manager.usage)
        for p in step.stepped:
            if p.record.first_token_s is None:
                p.record.first_token_s = clock.now + self.overhead / 2
            if p.request.is_finished():
                self._turn_done(p)

    def _abort_all(self, why: str) -> None:
        ids = list(self.pending)
        self.sched.finish_requests(ids, RequestStatus.FINISHED_ABORTED)
        for rid in ids:
            p = self.pending.pop(rid)
            rec = p.program.record
            rec.failed, rec.error = True, f"turn {p.turn}: {why}"
            rec.end_s = self.clock.now
            self.failed += 1
        # Programs still waiting for a later turn cannot finish either.
        for _, _, prog in self._events:
            prog.record.failed, prog.record.error = True, why
            self.failed += 1
        self._events.clear()

    # -- after the run --------------------------------------------------------------------------------------
    def pin_counters(self) -> dict[str, int] | None:
        pins = getattr(self.sched, "pins", None)
        return pins.table.counters if pins is not None else None

    def blocks_in_use(self) -> int:
        pool = self.sched.kv_cache_manager.block_pool
        return sum(1 for b in pool.blocks if not b.is_null and b.ref_cnt > 0)
