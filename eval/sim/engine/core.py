"""One simulated engine: vLLM's real scheduler and KV cache manager, with the model replaced by a cost model.

What vLLM's EngineCore does per step, in two halves so that the event loop (`continuum_eval.sim.engine.loop`)
can run one engine, replicas on their own clocks, or ranks in lockstep with the same code:

1. `EngineCore.plan`: ``scheduler.schedule()`` picks the batch (real vLLM code: waiting queue, chunked prefill,
   prefix-cache hits, block allocation, preemption; Continuum's pins and ordering when the policy has them) and
   the profile's cost model prices it;
2. `EngineCore.apply`, once the loop has advanced the clock past the step: a fabricated ``ModelRunnerOutput``
   (one sampled token per scheduled request whose prefill is complete, the token being the turn's next seeded
   output id) goes to ``scheduler.update_from_output()``, which appends tokens, caches full blocks, finishes
   requests and frees (or, for Continuum, pins) their blocks. It returns the turns that finished.

With a host KV tier (``cpu_kv_gib``: vLLM's ``--kv-offloading-size``) the scheduler carries vLLM's
OffloadingConnector, and `continuum_eval.sim.engine.transfers` stands in for its worker: ``plan`` stalls the step
for stores vLLM asks to flush, ``apply`` starts the step's copies at its end and hands vLLM the copies done by
then. A step that schedules nothing still reports the copies done, and when that lets a request go on (its load
is done) the engine schedules again at once, as vLLM's busy loop does; `has_work` and `next_transfer_s` tell the
event loop that an engine with copies in flight is not idle and when it next has something to do.

Everything that reads a clock in the scheduler reads the virtual one (``scheduler.clock``; requests'
``arrival_time``). Client-side latency (``client_overhead_s``, from a fitted profile; 0 for GPU profiles): each
turn reaches the engine half of it after the agent sends it, and the agent sees the end of the turn half of it
after the engine finishes; TTFT and turn ends are recorded on the agent's side, like the live replay.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from vllm.v1.outputs import EMPTY_MODEL_RUNNER_OUTPUT
from vllm.v1.request import RequestStatus

from continuum.policy.presets import is_vllm
from continuum.sched.compat import model_runner_output
from continuum.sched.scheduler import scheduler_for
from continuum_eval.sim.cost.costmodel import StepBatch
from continuum_eval.sim.cost.profiles import Profile
from continuum_eval.sim.engine.clock import VirtualClock
from continuum_eval.sim.engine.entities import Pending, SimProgram
from continuum_eval.sim.engine.transfers import HostLink, TransferWorker
from continuum_eval.sim.engine.vllm_offline import build_scheduler

# The scheduler is built over a small local model config (never its weights); Llama-3.1's 128k context is
# longer than that config's, which vLLM only allows when asked.
os.environ.setdefault("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "1")
STAND_IN_TOKEN = 1000  # what a request no turn planned (a prefetch) samples


def build_engine_scheduler(policy: str, profile: Profile, clock: VirtualClock, *, tier: dict | None = None,
                           **overrides: Any) -> Any:
    """The scheduler `continuum serve --policy POLICY` would load, over the profile's KV pool. ``overrides``:
    component settings (`continuum.policy.presets.resolve`); a Continuum policy's TTL rule gets the profile's reload
    cost unless they say otherwise; vLLM's own scheduler takes none. ``tier``: a host KV tier's settings
    (``cpu_kv_gib``, ``cpu_eviction``, ``block_bytes``: `continuum_eval.sim.engine.vllm_offline.build_scheduler`)."""
    if is_vllm(policy):
        overrides = {}
    else:
        overrides.setdefault("reload_cost", profile.reload_cost())  # the TTL rule's R on this hardware
        if tier is not None:  # the host tier's link, as the retention rule prices a park's reload
            gpu = profile.cost.gpu
            overrides["knobs"] = {"model.h2d_gbps": gpu.host_to_device_bw / 1e9,
                                  "model.d2h_gbps": gpu.device_to_host_bw / 1e9,
                                  "model.link_latency_ms": 1e3 * gpu.host_link_latency_s,
                                  **overrides.get("knobs", {})}
    cls, ctor = scheduler_for(policy, **overrides)
    sched = build_scheduler(cls, num_blocks=profile.num_blocks, block_size=profile.block_size, model="tiny",
                            max_model_len=profile.max_model_len, max_num_seqs=profile.max_num_seqs,
                            max_num_batched_tokens=profile.max_num_batched_tokens, **(tier or {}), **ctor)
    if hasattr(sched, "clock"):
        sched.clock = clock
    return sched


@dataclass
class EngineStats:
    steps: int = 0
    idle_jumps: int = 0  # times the engine's clock skipped idle time to the next turn it got
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


class EngineCore:
    """One engine under ``policy`` on ``profile``, on ``clock`` (which only the event loop moves)."""

    def __init__(self, policy: str, profile: Profile, clock: VirtualClock, *,
                 policy_overrides: dict | None = None, cpu_kv_gib: float | None = None,
                 cpu_eviction: str = "lru") -> None:
        self.profile = profile
        self.policy = policy
        self.clock = clock
        self.cpu_kv_gib, self.cpu_eviction = cpu_kv_gib, cpu_eviction
        self.transfers: TransferWorker | None = None
        tier = None
        if cpu_kv_gib is not None:
            link = HostLink.of(profile)
            tier = {"cpu_kv_gib": cpu_kv_gib, "cpu_eviction": cpu_eviction, "block_bytes": link.block_bytes}
            self.transfers = TransferWorker(link, profile.block_size)
        self.sched = build_engine_scheduler(policy, profile, clock, tier=tier, **(policy_overrides or {}))
        self.overhead = float(profile.extra.get("client_overhead_s", 0.0))
        self.stats = EngineStats()
        self.pending: dict[str, Pending] = {}

    def submit(self, prog: SimProgram) -> None:
        """The program's next turn reaches the engine now."""
        now = self.clock.now
        pending = prog.make_turn(now)
        pending.record.sent_s = now - self.overhead / 2
        self.pending[pending.request.request_id] = pending
        self.sched.add_request(pending.request)

    def plan(self) -> PlannedStep | None:
        """``schedule()`` and the cost model's price of the batch; None (after vLLM's empty update) when
        nothing could be scheduled."""
        sched, stats, pending = self.sched, self.stats, self.pending
        perf = time.perf_counter
        t0 = perf()
        out = sched.schedule()
        t1 = perf()
        stats.sched_wall_s.append(t1 - t0)
        nst = out.num_scheduled_tokens
        while not nst and self.transfers is not None:
            if not self.idle_step(out):
                return None
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
            p = pending.get(rid)
            r = p.request if p is not None else sched.requests[rid]  # none: the scheduler's own (a prefetch)
            c = r.num_computed_tokens
            done = c >= r.num_tokens
            step.batch.add(nst[rid], c, done)
            if done and p is not None:
                step.sampled.append([p.output_ids[r.num_output_tokens]])
                step.stepped.append(p)
            else:
                step.sampled.append([STAND_IN_TOKEN] if done else [])
        step.dt = self.profile.step_time(step.batch)
        if self.transfers is not None:  # the forward pass waits for the stores vLLM flushes
            step.dt += self.transfers.begin_step(out.kv_connector_metadata, self.clock.now)
        return step

    def idle_step(self, out: Any) -> bool:
        """A step that scheduled nothing, with a host tier: its copies start now (loads after any flushed
        store), and vLLM gets the copies done by now. True if any were (the next ``schedule()`` may go on)."""
        now = self.clock.now
        meta = out.kv_connector_metadata
        stall = self.transfers.begin_step(meta, now)
        done = self.transfers.end_step(meta, now, start=now + stall)
        # A fresh output: vLLM's shared EMPTY_MODEL_RUNNER_OUTPUT must not carry the connector's output.
        self.sched.update_from_output(out, model_runner_output([], kv_connector_output=done))
        self.stats.empty_steps += 1
        return done is not None

    def has_work(self) -> bool:
        """Turns in flight, or (with a host tier) anything vLLM's engine would keep stepping for: finished
        requests whose stores are not built yet, copies in flight."""
        return bool(self.pending) or (self.transfers is not None and self.sched.has_requests())

    def next_transfer_s(self) -> float | None:
        """When the next copy in flight is done (None: none, or no host tier)."""
        return self.transfers.next_done() if self.transfers is not None else None

    def apply(self, step: PlannedStep) -> list[Pending]:
        """The step's output, once the clock has advanced past it: tokens appended; returns the turns it
        finished (no longer pending, their records complete)."""
        sched, stats, clock = self.sched, self.stats, self.clock
        t2 = time.perf_counter()
        stats.steps += 1
        stats.tokens += step.batch.tokens
        stats.busy_s += step.dt
        stats.preemptions += len(step.out.preempted_req_ids)
        ids = step.req_ids
        xfer = self.transfers.end_step(step.out.kv_connector_metadata, clock.now) if self.transfers else None
        mro = model_runner_output(ids, sampled_token_ids=step.sampled, kv_connector_output=xfer)
        sched.update_from_output(step.out, mro)
        stats.cost_wall_s += t2 - step.t_sched
        stats.update_wall_s += time.perf_counter() - t2
        if stats.steps % 64 == 0:
            stats.peak_running = max(stats.peak_running, len(sched.running))
            stats.peak_waiting = max(stats.peak_waiting, len(sched.waiting))
            stats.peak_kv_usage = max(stats.peak_kv_usage, sched.kv_cache_manager.usage)
        finished = []
        for p in step.stepped:
            if p.record.first_token_s is None:
                p.record.first_token_s = clock.now + self.overhead / 2
            if p.request.is_finished():
                rec = p.record
                rec.done_s = clock.now + self.overhead / 2
                rec.output_tokens = p.request.num_output_tokens
                rec.ok = True
                del self.pending[p.request.request_id]
                finished.append(p)
        return finished

    def abort_all(self, why: str) -> None:
        """Abort every turn in flight: their programs fail with ``why``."""
        ids = list(self.pending)
        self.sched.finish_requests(ids, RequestStatus.FINISHED_ABORTED)
        for rid in ids:
            p = self.pending.pop(rid)
            rec = p.program.record
            rec.failed, rec.error = True, f"turn {p.turn}: {why}"
            rec.end_s = self.clock.now

    # -- after the run --------------------------------------------------------------------------------------
    def pin_counters(self) -> dict[str, int] | None:
        pins = getattr(self.sched, "pins", None)
        return pins.table.counters if pins is not None else None

    def host_tier_stats(self) -> dict[str, Any] | None:
        """The host tier's size and PCIe traffic; None without one."""
        if self.transfers is None:
            return None
        # vLLM internals: the connector's scheduler half (OffloadingConnector.connector_scheduler), its CPU
        # manager, and the manager's chunk count (CPUOffloadingManager._num_chunks), as vLLM sized the CPU pool.
        manager = self.sched.connector.connector_scheduler.manager
        tier = getattr(self.sched, "tier", None)  # a Continuum scheduler's parks and prefetches
        return {"cpu_kv_gib": self.cpu_kv_gib, "blocks": manager._num_chunks, **self.transfers.stats(),
                **({"retention": dict(tier.counts)} if tier is not None else {})}

    def blocks_in_use(self) -> int:
        pool = self.sched.kv_cache_manager.block_pool
        return sum(1 for b in pool.blocks if not b.is_null and b.ref_cnt > 0)
