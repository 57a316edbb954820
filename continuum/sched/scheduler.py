"""The Continuum scheduler: vLLM's v1 `Scheduler` with agent programs as the unit of scheduling.

vLLM loads it through ``--scheduler-cls continuum.sched.scheduler.make_scheduler``. The factory picks the
synchronous or asynchronous base, whichever vLLM's config asks for; the behaviour lives in one mixin that
overrides vLLM's seams and never copies ``schedule()``:

- ``waiting`` and ``policy``: the waiting queue is a `continuum.sched.ordering.ProgramQueue`, and the policy is
  vLLM's PRIORITY, so that vLLM preempts by the ``request.priority`` we set (`continuum.sched.view.Priority`);
- ``add_request``: the program's turn arrives (class, what `continuum.sched.turns` learns, priority for
  preemption);
- ``schedule``: expire pins, end idle programs, admit programs, order the waiting queue, make room for urgent
  work, hold admissions for balance, then vLLM's own step; afterwards release the pins of admitted turns, count
  the service each request received and tell admission the step's size (compute-aware admission times steps);
- ``kv_cache_manager.allocate_slots`` (wrapped): when an allocation fails, pins give way before vLLM preempts
  or stalls;
- ``_free_request``: forget the request's per-request state; when its program's turn is over, learn from it
  (`continuum.sched.turns`);
- the constructor, ``add_request``, a turn's finish and a program's end: with vLLM's CPU KV tier under
  `continuum.sched.offload_policy.ProgramAwarePolicy`, the policy is told each program's predicted return and
  end (`continuum.sched.offload_policy.ProgramFeed`);
- ``_free_request_blocks``: a finished turn's blocks are pinned for a TTL instead of freed (``turns`` again), or,
  with vLLM's host KV tier, parked there; ``schedule`` issues the prefetches of parked programs that are due and
  a finished prefetch's blocks are pinned until its program returns (`continuum.sched.tier`);
- ``update_from_output``, ``finish_requests``: under the lock the control thread shares; after an output, the
  rank's running count is posted for balance;
- ``reset_prefix_cache``: pins go first; ``shutdown``: the control channel and the rank board close.

Two of vLLM's private members are used, by this mixin only: ``_preempt_request`` (`preempt`, for the
`continuum.sched.preemption` component) and ``_pause_state`` (`hold_admissions`, for `continuum.sched.balance`).

What each policy does at these seams is a component (`continuum.policy.presets` lists them), which reads the
scheduler through `continuum.sched.view.SchedulerView` (answered by `continuum.sched.answers`, a base of the
mixin). The control channel's messages are answered by `continuum.control.engine_side` through the methods
under "the control channel"; what they report is built by `continuum.sched.report`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Iterator

from vllm.logger import init_logger
from vllm.v1.core.sched.async_scheduler import AsyncScheduler
from vllm.v1.core.sched.interface import PauseState
from vllm.v1.core.sched.request_queue import SchedulingPolicy
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.request import Request

from continuum.control.channel import ControlServer
from continuum.control.dp import dp_rank_and_size, rank_address
from continuum.control.engine_side import EngineControl
from continuum.control.messages import PREFETCH_NO_TIER, SessionState, Stats
from continuum.policy.config import ContinuumConfig
from continuum.policy.presets import resolve
from continuum.sched import report
from continuum.sched.admission import CapAdmission, MemoryAdmission, OpenAdmission
from continuum.sched.answers import SchedulerAnswers
from continuum.sched.balance import make_balance
from continuum.sched.classes import Classes
from continuum.sched.compat import first_admissions
from continuum.sched.compute_admission import ComputeAdmission
from continuum.sched.offload_policy import ProgramFeed, policies_built
from continuum.sched.ordering import ProgramQueue, compose_key
from continuum.sched.phases import PHASE_TERMS, PhaseSwitch
from continuum.sched.pins import KVPins
from continuum.sched.preemption import Preemption
from continuum.sched.priority import Levels
from continuum.sched.programs import Program, ProgramRegistry, hints_of, program_id_of
from continuum.sched.tier import HostTier, is_prefetch
from continuum.sched.turns import Turns
from continuum.sched.view import Priority

logger = init_logger(__name__)
ADMISSIONS: dict[str, type[OpenAdmission]] = {"open": OpenAdmission, "memory": MemoryAdmission, "cap": CapAdmission,
                                               "compute": ComputeAdmission}
NO_PROGRAM = 1 << 62  # a request without a program is its own, latest, program
# Time-dependent keys (aging, SJF's queue ramp, class promotion, attained service) are refreshed this often;
# their values move in steps of seconds, so a quarter second keeps the order right at a fraction of the cost.
RESORT_EVERY_S = 0.25


class ContinuumMixin(SchedulerAnswers):
    """Programs, pins, policy components and the control channel, shared by the sync and async schedulers."""

    def __init__(self, *args: Any, continuum_config: ContinuumConfig | None = None, **kwargs: Any) -> None:
        with policies_built() as cpu_policies:  # vLLM's CPU KV tier builds its cache policy in here
            super().__init__(*args, **kwargs)
        # Program ends and predicted returns, for a CPU KV tier that evicts by program (`offload_policy`).
        self.offload = ProgramFeed(cpu_policies)
        # vLLM builds us with a fixed signature, so `continuum serve` passes settings in the environment;
        # the simulator and tests pass them directly.
        cfg = self.config = continuum_config or ContinuumConfig.from_env()
        self.clock = time.time  # the simulator swaps in its virtual clock
        self.programs = ProgramRegistry()
        # The control thread and the engine thread both touch scheduler state; one lock serialises them.
        self.lock = threading.RLock()
        pool = self.kv_cache_manager.block_pool
        self.pinning = cfg.ttl_mode != "off" and self.cache_config.enable_prefix_caching
        self.pins = KVPins(pool, int(cfg.pin_cap * (pool.num_gpu_blocks - 1)), on_change=self._pin_changed,
                           tenant_share=cfg.tenant_pin_cap)
        self.gone: set[str] = set()  # request ids whose client went away (the HTTP layer says so)
        self.served: dict[str, int] = {}  # request id -> tokens scheduled so far, kept across preemption
        self.events_read: dict[str, int] = {}  # request id -> SSE events of its stream its client has read
        self.step_times: list[float] = []
        self.next_idle_check = 0.0
        self.next_resort = 0.0
        self.phases = PhaseSwitch(cfg, lambda: self.clock())
        self.levels = Levels(cfg, self, cfg.terms + (PHASE_TERMS if self.phases.enabled else []))
        self.levels.set_active(cfg.terms)
        self.classes = Classes(cfg, self)
        self.admission = ADMISSIONS[cfg.admission](cfg, self, self.classes)
        # vLLM's host KV tier, when the engine has one and the TTL rule decides (pin, park in host memory, drop).
        self.tier = HostTier.of(self.vllm_config, self.kv_cache_config, cfg) \
            if self.pinning and cfg.ttl_mode == "model" else None
        # What a turn's arrival and finish teach, and how long a finished turn's KV stays pinned.
        self.turns = Turns(cfg, self, self.programs, self.pins, self.admission, self.tier)
        self.retention = self.turns.retention  # the stats report its predictor
        # Preemption picks max(priority, arrival): we set priority (see `_priority`).
        self.policy = SchedulingPolicy.PRIORITY
        self.rich_priority = self.classes.enabled or bool(self.levels.all)
        self.preemption = Preemption(self, self.rich_priority, self.preempt)
        self.track_service = cfg.ordering == "plas" or bool(self.levels.all)
        # Only `waiting` is ours. vLLM also drains a queue of its own first, `kv_holding_waiting` (built from
        # the configured policy before this line: arrival order by default), for waiting requests that already
        # hold KV blocks: async KV-connector loads, streaming-input sessions between chunks, and such a request
        # skipped in a step. Continuum leaves it to vLLM: a preempted request's computed tokens are reset, so it
        # comes back to `waiting`, and without a KV connector or streaming input the queue stays empty. Our key
        # would be wrong for it besides: its first field holds a program at the admission door, and a request
        # that holds blocks must drain (vLLM admits these even while admissions are held), not wait.
        # vLLM 0.34's third queue, `async_kv_waiting` (requests that may load KV, under a cap on loads in flight),
        # is vLLM's too (`continuum.sched.compat.vllm_waiting_queues`).
        self.waiting = ProgramQueue(compose_key(self, cfg.ordering, self.admission, self.classes, self.levels))
        self._allocate_slots = self.kv_cache_manager.allocate_slots
        self.kv_cache_manager.allocate_slots = self._allocate_or_release_pins
        rank, size = dp_rank_and_size(self.vllm_config.parallel_config, cfg.dp_size)
        self.control = ControlServer(rank_address(cfg.control_addr, rank, size),
                                     EngineControl(self).handle) if cfg.control_addr else None
        # Data-parallel ranks in lockstep: hold admissions together (`continuum.sched.balance`; off by default).
        self.balance = make_balance(cfg, self, self.hold_admissions, rank, size)

    def _priority(self, request: Request, prog: Program | None, last_step: bool) -> Priority | int:
        """vLLM preempts the running request with the highest priority: the latest-arriving program's, unless
        components rank requests (then class and level first); a program's last step is protected."""
        order = prog.order if prog is not None else NO_PROGRAM
        if not self.rich_priority:
            return -1 if last_step else order
        urgency = self.urgency(request)
        return Priority(-1 if last_step else 0, urgency.cls, urgency.level, order)

    # -- what the components do, through the scheduler ---------------------------------------------------------
    def preempt(self, request: Request) -> None:
        """Preempt a running request for more urgent waiting work (`continuum.sched.preemption`): out of the
        running queue, its blocks freed, back to waiting, as vLLM preempts its own victims."""
        self.running.remove(request)
        self._preempt_request(request, time.monotonic())

    @contextlib.contextmanager
    def hold_admissions(self) -> Iterator[bool]:
        """Admit no new request in the ``schedule()`` inside (`continuum.sched.balance`); running requests, and
        waiting ones that hold KV blocks, go on. Yields False, holding nothing, when vLLM is paused already.

        vLLM's ``PAUSED_NEW`` state is exactly this hold. This is the one place that writes it: through the
        attribute, because ``set_pause_state()`` logs every call (here, every step), and back to UNPAUSED only
        if nothing else paused vLLM meanwhile."""
        if self.pause_state != PauseState.UNPAUSED:
            yield False
            return
        self._pause_state = PauseState.PAUSED_NEW
        try:
            yield True
        finally:
            if self._pause_state == PauseState.PAUSED_NEW:
                self._pause_state = PauseState.UNPAUSED

    # -- vLLM seams -----------------------------------------------------------------------------------------
    def add_request(self, request: Request) -> None:
        with self.lock:
            pid = program_id_of(request)
            hints = hints_of(request)
            self.classes.arrive(request, hints, request.priority)  # the client's OpenAI priority, before ours
            prog = self.turns.arrive(pid, request, hints) if pid is not None else None
            self.offload.arrive(request, prog, self.clock())
            self.levels.arrive(request)
            if self.phases.enabled:
                self.phases.arrivals.add(self.clock())
            request.priority = self._priority(request, prog, bool(hints.get("is_last_step")))
            super().add_request(request)

    def schedule(self, *args: Any, **kwargs: Any):
        with self.lock:
            t0 = time.perf_counter()
            self.pins.expire(self.clock())
            self._end_idle_programs()
            if self.tier is not None:
                for prefetch in self.tier.due_prefetches(self.clock()):
                    self.add_request(prefetch)
            if self.admission.step():
                self.waiting.dirty = True
            self._prepare_order()
            self.preemption.make_room()
            with self.balance.gate():
                out = super().schedule(*args, **kwargs)
            self._after_admission(out)
            self.admission.scheduled(out.total_num_scheduled_tokens, len(out.num_scheduled_tokens),
                                     len(out.scheduled_new_reqs))
            self.step_times.append(time.perf_counter() - t0)
            if len(self.step_times) > 4096:
                del self.step_times[:2048]
            return out

    def _prepare_order(self) -> None:
        """Re-sort the waiting queue when a key may have changed: at once when a program's state changed (the
        queue is dirty), every RESORT_EVERY_S while a time-dependent component is active. Then refresh the
        running requests' priorities (preemption victims) and hold back lagging streams (backpressure)."""
        now = self.clock()
        active = self.phases.update(len(self.waiting))
        if active is not None and self.levels.active_names != active:
            self.levels.set_active(active)
            self.waiting.dirty = True
        timed = self.levels.dynamic or self.classes.enabled or self.config.ordering == "plas"
        due = now >= self.next_resort
        if self.waiting.dirty or (timed and due):
            self.waiting.resort()
        if due:
            self.next_resort = now + RESORT_EVERY_S
            if self.rich_priority:  # service received moves running requests' levels (demotion, LAS)
                for request in self.running:
                    request.priority = self._priority(request, self.program_of(request),
                                                      bool(hints_of(request).get("is_last_step")))
        if (bp := self.levels.backpressure()) is not None:
            for request in self.running:
                if bp.lagging(request):  # out of the next decode step: its unread backlog stops growing
                    request.next_decode_eligible_step = max(request.next_decode_eligible_step,
                                                            self.current_step + 2)

    def _after_admission(self, out: Any) -> None:
        """Newly admitted turns have taken their prefix hits: their program's pin has done its job."""
        now = self.clock()
        for new, request in first_admissions(out, self.requests):
            pid = program_id_of(request)
            if pid is not None:
                if pid in self.pins:
                    self.pins.release(pid, "hit")
                if self.tier is not None:
                    self.tier.admitted(pid)
            self.turns.admitted(new.req_id, now)
            if (prog := self.programs.get(pid)) is not None:
                prog.cached_tokens += new.num_computed_tokens
        if self.track_service:
            for req_id, n in out.num_scheduled_tokens.items():
                self.served[req_id] = self.served.get(req_id, 0) + n
                request = self.requests.get(req_id)
                if request is not None and (prog := self.program_of(request)) is not None:
                    prog.attained_tokens += n

    def _allocate_or_release_pins(self, request: Request, *args: Any, **kwargs: Any):
        """vLLM's allocation; on failure, release pins (least valuable first) and retry before giving up."""
        while True:
            blocks = self._allocate_slots(request, *args, **kwargs)
            if blocks is not None:
                return blocks
            own = program_id_of(request)
            if not self.pins.relieve_pressure(exclude=[own] if own else []):
                return None

    def _free_request_blocks(self, request: Request) -> None:
        if self.tier is not None and is_prefetch(request.request_id):
            self._pin_prefetched(request)
        elif request.is_finished() and self.pinning:
            client_gone = request.request_id in self.gone
            self.gone.discard(request.request_id)
            self.turns.pin_finished(request, client_gone)
        super()._free_request_blocks(request)

    def _free_request(self, request: Request, delay_free_blocks: bool = False):
        prog = self.program_of(request)
        rid = request.request_id
        self.turns.forget(rid)
        self.served.pop(rid, None)
        self.events_read.pop(rid, None)
        self.classes.forget(rid)
        self.levels.forget(rid)
        if self.phases.enabled:
            self.phases.completions.add(self.clock())
        if prog is not None:
            prog.running.discard(rid)  # before the pin is taken: no request of it waits any more
        result = super()._free_request(request, delay_free_blocks)
        if prog is not None:
            self.turns.finished(prog, request)
            self.offload.update(prog, self.clock())
        return result

    def update_from_output(self, *args: Any, **kwargs: Any):
        with self.lock:
            out = super().update_from_output(*args, **kwargs)
            self.balance.publish()  # finished turns left the running queue: peers see it before our next step
            return out

    def finish_requests(self, *args: Any, **kwargs: Any):
        with self.lock:
            out = super().finish_requests(*args, **kwargs)
            self.balance.publish()  # aborted turns left the running queue: peers must not wait for a step
            return out

    def reset_prefix_cache(self, *args: Any, **kwargs: Any) -> bool:
        with self.lock:
            self.pins.clear("reset")
            return super().reset_prefix_cache(*args, **kwargs)

    def shutdown(self) -> None:
        if self.control is not None:
            self.control.close()
        self.balance.close()
        super().shutdown()

    def _pin_prefetched(self, request: Request) -> None:
        """A prefetch finished: its blocks (its program's KV, back from host memory) stay until the return."""
        found = self.tier.prefetched(request.request_id)
        prog = self.programs.get(found[0]) if found is not None else None
        if prog is None or prog.ended or prog.running:
            return
        blocks = self.finished_blocks(request)
        if blocks:
            self.pins.pin(prog.program_id, blocks, self.clock(), found[1],
                          self.retention.reload_model.seconds(request.num_tokens), prog.order)

    # -- programs -----------------------------------------------------------------------------------------
    def _pin_changed(self, program_id: str) -> None:
        """A pin came or went: only a request of that program already waiting can have a stale key."""
        prog = self.programs.get(program_id)
        if prog is not None and prog.running:
            self.waiting.dirty = True

    def _end_idle_programs(self) -> None:
        now = self.clock()
        if now < self.next_idle_check:  # a scan of the registry at most once a second
            return
        self.next_idle_check = now + 1.0
        for prog in self.programs.idle(now, self.config.idle_end_s):
            self.turns.end(prog)
            self.offload.update(prog, now)

    # -- the control channel (`continuum.control.engine_side.ControlledScheduler`) ---------------------------------
    def knows(self, program_id: str) -> bool:
        return program_id in self.programs

    def end_program(self, program_id: str) -> bool:
        """The client says the program is over: release its pin now. False for an unknown program."""
        with self.lock:
            prog = self.programs.get(program_id)
            if prog is not None:
                self.turns.end(prog)
                self.offload.update(prog, self.clock())
            return prog is not None

    def prefetch_now(self, program_id: str) -> str:
        """The client says the program's tool result is about to come back: its parked KV's prefetch is due now
        (issued at the next ``schedule()``). What happened: `continuum.sched.tier.HostTier.hint`'s answer."""
        with self.lock:
            if self.tier is None:
                return PREFETCH_NO_TIER
            return self.tier.hint(program_id, self.clock(), program_id in self.pins)

    def set_tool(self, program_id: str, tool: str) -> bool:
        """The HTTP layer read the tool from the response (tool_calls / bash block): re-decide the pin's TTL."""
        with self.lock:
            prog = self.programs.get(program_id)
            if prog is None:
                return False
            self.turns.set_tool(prog, tool)
            return True

    def client_read_events(self, program_id: str, events: int) -> None:
        """The API process says how many SSE events of the program's current turn its client has read."""
        with self.lock:
            prog = self.programs.get(program_id)
            for rid in prog.running if prog is not None else ():
                self.events_read[rid] = max(0, events)

    def client_gone(self, program_id: str) -> None:
        """The client of the program's turn in flight went away: that turn's abort is not a finish (marked
        before vLLM's abort arrives), and a pin taken if the abort came first is released."""
        with self.lock:
            prog = self.programs.get(program_id)
            if self.pinning and prog is not None:  # the marks are consumed where turns are pinned
                self.gone.update(prog.running)
            self.pins.release(program_id, "abort")

    def session_state(self, program_id: str) -> SessionState:
        with self.lock:
            return report.session_state(self, program_id)

    def stats(self) -> Stats:
        with self.lock:
            return report.stats(self)


class ContinuumScheduler(ContinuumMixin, Scheduler):
    """Continuum over vLLM's synchronous scheduler."""


class ContinuumAsyncScheduler(ContinuumMixin, AsyncScheduler):
    """Continuum over vLLM's asynchronous scheduler (the default when vLLM enables async scheduling)."""


def scheduler_class(config: ContinuumConfig | None, is_async: bool = False) -> type[Scheduler]:
    """The one place a scheduler class is chosen: vLLM's own for no config, else Continuum's, sync or async."""
    if config is None:
        return AsyncScheduler if is_async else Scheduler
    return ContinuumAsyncScheduler if is_async else ContinuumScheduler


def scheduler_for(policy: str, is_async: bool = False, **overrides: Any) -> tuple[type[Scheduler], dict]:
    """(scheduler class, extra constructor kwargs) for a named policy (the simulator, tests, benchmarks)."""
    config = resolve(policy, **overrides)
    return scheduler_class(config, is_async), ({} if config is None else {"continuum_config": config})


def make_scheduler(*args: Any, **kwargs: Any) -> Scheduler:
    """The object named by ``--scheduler-cls``: picks the base vLLM's scheduler config asks for."""
    vllm_config = kwargs.get("vllm_config", args[0] if args else None)
    is_async = bool(vllm_config is not None and vllm_config.scheduler_config.async_scheduling)
    config = kwargs.pop("continuum_config", None) or ContinuumConfig.from_env()
    cls = scheduler_class(config, is_async)
    logger.info("Continuum: %s, %s", cls.__name__, config)
    return cls(*args, continuum_config=config, **kwargs)
