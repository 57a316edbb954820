"""The Continuum scheduler: vLLM's v1 `Scheduler` with agent programs as the unit of scheduling.

vLLM loads it through ``--scheduler-cls continuum.scheduler.make_scheduler``. The factory picks the
synchronous or asynchronous base, whichever vLLM's config asks for; the behaviour lives in one mixin that
overrides a few seams and never copies ``schedule()``:

- ``add_request``: the program's turn arrives (tool-duration sample, priority for preemption);
- ``_free_request_blocks``: a finished turn's blocks are pinned for a TTL instead of freed;
- ``schedule``: expire pins, order the waiting queue program-first, release pins of admitted turns;
- ``kv_cache_manager.allocate_slots``: when an allocation fails, pins give way before vLLM preempts or stalls.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from vllm.logger import init_logger
from vllm.v1.core.sched.async_scheduler import AsyncScheduler
from vllm.v1.core.sched.request_queue import SchedulingPolicy
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.request import Request, RequestStatus

from continuum.config import ContinuumConfig
from continuum.control import ControlServer
from continuum.kv_pins import KVPins, pinnable_blocks
from continuum.ordering import ProgramQueue, ordering_key
from continuum.programs import Program, ProgramRegistry
from kvttl import ReloadCostModel, TTLPolicy

logger = init_logger(__name__)
ORACLE_SLACK_S = 0.05  # the oracle pins a little past the true return time: the turn still has to be admitted


def program_id_of(request: Request) -> str | None:
    """The program a request belongs to: vLLM's ``session_id`` (body field, header or xargs)."""
    return request.session_id or None


def hints_of(request: Request) -> dict[str, Any]:
    """Continuum's client hints (``is_last_step``, ``tool``, ``tool_s``) from ``vllm_xargs``."""
    params = request.sampling_params
    return dict(params.extra_args or {}) if params is not None else {}


class ContinuumMixin:
    """Programs, pins, ordering and the control channel, shared by the sync and async schedulers."""

    def __init__(self, *args: Any, continuum_config: ContinuumConfig | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # vLLM builds us with a fixed signature, so `continuum serve` passes settings in the environment;
        # the simulator and tests pass them directly.
        cfg = self.continuum = continuum_config or ContinuumConfig.from_env()
        self.clock = time.time  # the simulator swaps in its virtual clock
        self.programs = ProgramRegistry()
        # The control thread and the engine thread both touch scheduler state; one lock serialises them.
        self.lock = threading.RLock()
        reload = ReloadCostModel(*cfg.reload_cost) if cfg.reload_cost else None
        self.ttl = TTLPolicy("model" if cfg.ttl_mode == "oracle" else cfg.ttl_mode, fixed_ttl_s=cfg.fixed_ttl_s,
                             reload_model=reload)
        pool = self.kv_cache_manager.block_pool
        self.pinning = cfg.ttl_mode != "off" and self.cache_config.enable_prefix_caching
        self.pins = KVPins(pool, int(cfg.pin_cap * (pool.num_gpu_blocks - 1)))
        self.miss_waits: dict[str, float] = {}  # request id -> arrival, for turns that lost their KV
        self.step_times: list[float] = []
        self.next_idle_check = 0.0
        # Preemption picks max(priority, arrival): we set priority to the program's arrival rank.
        self.policy = SchedulingPolicy.PRIORITY
        self.waiting = ProgramQueue(ordering_key(cfg.ordering, self))
        self._allocate_slots = self.kv_cache_manager.allocate_slots
        self.kv_cache_manager.allocate_slots = self._allocate_or_release_pins
        self.control = ControlServer(cfg.control_addr, self.handle_control) if cfg.control_addr else None

    # -- what the ordering key asks ------------------------------------------------------------------------
    def _program(self, request: Request) -> Program | None:
        pid = program_id_of(request)
        return self.programs.get(pid) if pid is not None else None

    def is_pinned(self, request: Request) -> bool:
        pid = program_id_of(request)
        return pid is not None and pid in self.pins

    def program_order(self, request: Request) -> float:
        prog = self._program(request)
        return prog.order if prog is not None else math.inf

    def attained_service(self, request: Request) -> int:
        prog = self._program(request)
        return prog.attained_tokens if prog is not None else 0

    # -- vLLM seams -----------------------------------------------------------------------------------------
    def add_request(self, request: Request) -> None:
        with self.lock:
            pid = program_id_of(request)
            if pid is not None:
                self._arrive(pid, request)
            else:
                request.priority = 1 << 62  # a request without a program is its own, latest, program
            super().add_request(request)

    def _arrive(self, pid: str, request: Request) -> None:
        now = self.clock()
        prog = self.programs.arrive(pid, now)
        prog.running.add(request.request_id)
        hints = hints_of(request)
        if prog.last_finish is not None:  # a returning turn: the gap was the tool call
            self.ttl.observe_tool(prog.last_tool, max(0.0, now - prog.last_finish))
            if pid not in self.pins:
                self.miss_waits[request.request_id] = now
        # Preemption victim: the latest-arriving program's request; a program's last step is protected.
        request.priority = -1 if hints.get("is_last_step") else prog.order

    def schedule(self, *args: Any, **kwargs: Any):
        with self.lock:
            t0 = time.perf_counter()
            self.pins.expire(self.clock())
            self._end_idle_programs()
            self.waiting.resort()
            out = super().schedule(*args, **kwargs)
            self._after_admission(out)
            self.step_times.append(time.perf_counter() - t0)
            if len(self.step_times) > 4096:
                del self.step_times[:2048]
            return out

    def _after_admission(self, out: Any) -> None:
        """Newly admitted turns have taken their prefix hits: their program's pin has done its job."""
        now = self.clock()
        for new in out.scheduled_new_reqs:
            request = self.requests.get(new.req_id)
            if request is None:
                continue
            pid = program_id_of(request)
            if pid is not None and pid in self.pins:
                self.pins.release(pid, "hit")
            arrived = self.miss_waits.pop(new.req_id, None)
            if arrived is not None:
                self.ttl.observe_miss_delay(max(0.0, now - arrived))
            if (prog := self.programs.get(pid)) is not None:
                prog.cached_tokens += new.num_computed_tokens
        for req_id, n in out.num_scheduled_tokens.items():
            request = self.requests.get(req_id)
            if request is not None and (prog := self._program(request)) is not None:
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
        if request.is_finished() and self.pinning:
            self._pin_finished_turn(request)
        super()._free_request_blocks(request)

    def _pin_finished_turn(self, request: Request) -> None:
        prog = self._program(request)
        if prog is None or prog.ended:
            return
        if request.status == RequestStatus.FINISHED_ABORTED and request.num_output_tokens == 0:
            self.pins.release(prog.program_id, "abort")  # the client gave up on this program's turn
            return
        # Stop strings reach us as aborts after output: that is a finished turn like any other.
        hints = hints_of(request)
        block_ids = self.kv_cache_manager.get_block_ids(request.request_id)[0]
        blocks = pinnable_blocks(request, block_ids, self.kv_cache_manager.block_pool)
        prog.last_tool = hints.get("tool") if isinstance(hints.get("tool"), str) else None
        ttl_s, benefit = self._decide(prog, request.num_tokens, hints)
        if blocks and ttl_s > 0:
            self.pins.pin(prog.program_id, blocks, self.clock(), ttl_s, benefit, prog.order)

    def _decide(self, prog: Program, context_tokens: int, hints: dict) -> tuple[float, float]:
        last = bool(hints.get("is_last_step"))
        if self.continuum.ttl_mode == "oracle":
            tool_s = hints.get("tool_s")
            if last or not isinstance(tool_s, (int, float)):
                return 0.0, 0.0
            return float(tool_s) + ORACLE_SLACK_S, self.ttl.reload_model.seconds(context_tokens)
        decision = self.ttl.decide(prog.last_tool, context_tokens, prog.finished_turns + 1, last_step=last)
        return decision.ttl_s, decision.benefit_s

    def _free_request(self, request: Request, delay_free_blocks: bool = False):
        prog = self._program(request)
        self.miss_waits.pop(request.request_id, None)
        result = super()._free_request(request, delay_free_blocks)
        if prog is not None:
            prog.running.discard(request.request_id)
            prog.finished_turns += 1
            prog.last_finish = self.clock()
            prog.last_context_tokens = request.num_tokens
            if hints_of(request).get("is_last_step"):
                self._end(prog)
        return result

    def update_from_output(self, *args: Any, **kwargs: Any):
        with self.lock:
            return super().update_from_output(*args, **kwargs)

    def finish_requests(self, *args: Any, **kwargs: Any):
        with self.lock:
            return super().finish_requests(*args, **kwargs)

    def reset_prefix_cache(self, *args: Any, **kwargs: Any) -> bool:
        with self.lock:
            self.pins.clear("reset")
            return super().reset_prefix_cache(*args, **kwargs)

    def shutdown(self) -> None:
        if self.control is not None:
            self.control.close()
        super().shutdown()

    # -- programs -----------------------------------------------------------------------------------------
    def _end(self, prog: Program) -> None:
        self.pins.release(prog.program_id, "end")
        if not prog.ended:
            self.ttl.observe_program_end(prog.finished_turns)
            self.programs.end(prog.program_id, self.clock())

    def _end_idle_programs(self) -> None:
        now = self.clock()
        if now < self.next_idle_check:  # a scan of the registry at most once a second
            return
        self.next_idle_check = now + 1.0
        for prog in self.programs.idle(now, self.continuum.idle_end_s):
            self._end(prog)

    def end_program(self, program_id: str) -> dict:
        with self.lock:
            prog = self.programs.get(program_id)
            if prog is None:
                return {"ok": False, "error": f"unknown session {program_id!r}", "status": 404}
            self._end(prog)
            return {"ok": True, "session": self.session_state(program_id)}

    def set_tool(self, program_id: str, tool: str) -> dict:
        """The HTTP layer read the tool from the response (tool_calls / bash block): re-decide the pin's TTL."""
        with self.lock:
            prog = self.programs.get(program_id)
            if prog is None:
                return {"ok": False, "error": f"unknown session {program_id!r}", "status": 404}
            prog.last_tool = tool
            pin = self.pins.table.get(program_id)
            if pin is not None and self.continuum.ttl_mode in ("model", "fixed"):
                ttl_s, benefit = self._decide(prog, prog.last_context_tokens, {})
                self.pins.pin(program_id, list(pin.blocks), pin.pinned_at, ttl_s, benefit, prog.order)
            return {"ok": True, "session": self.session_state(program_id)}

    # -- control channel and stats -------------------------------------------------------------------------
    def handle_control(self, msg: dict) -> dict:
        op, pid = msg.get("op"), str(msg.get("id"))
        if op == "stats":
            return {"ok": True, "stats": self.stats()}
        if op == "session":
            with self.lock:
                if pid not in self.programs:
                    return {"ok": False, "error": f"unknown session {pid!r}", "status": 404}
                return {"ok": True, "session": self.session_state(pid)}
        if op == "end":
            return self.end_program(pid)
        if op == "tool" and isinstance(msg.get("tool"), str):
            return self.set_tool(pid, msg["tool"])
        return {"ok": False, "error": f"unknown control op {op!r}", "status": 400}

    def session_state(self, program_id: str) -> dict:
        prog = self.programs.get(program_id)
        if prog is None:
            return {}
        state = prog.summary()
        pin = self.pins.table.get(program_id)
        state["pinned_blocks"] = len(pin.blocks) if pin else 0
        state["ttl_s"] = pin.ttl_s if pin else 0.0
        state["expires_in_s"] = (pin.expires_at - self.clock()) if pin else None
        return state

    def stats(self) -> dict:
        with self.lock:
            steps = sorted(self.step_times)
            pool = self.kv_cache_manager.block_pool
            return {
                "config": {"ttl_mode": self.continuum.ttl_mode, "ordering": self.continuum.ordering,
                           "pin_cap": self.continuum.pin_cap, "pin_cap_blocks": self.pins.table.cap_blocks},
                "programs": [self.session_state(p.program_id) for p in self.programs.all()],
                "num_programs": len(self.programs),
                "pins": {**self.pins.table.counters, "active": len(self.pins.table),
                         "pinned_blocks": self.pins.pinned_blocks},
                "kv": {"num_blocks": pool.num_gpu_blocks, "free_blocks": pool.get_num_free_blocks(),
                       "usage": self.kv_cache_manager.usage},
                "predictor": self.ttl.state(),
                "sched_step_ms": {"mean": 1e3 * sum(steps) / len(steps) if steps else 0.0,
                                  "p99": 1e3 * steps[int(0.99 * (len(steps) - 1))] if steps else 0.0},
            }


class ContinuumScheduler(ContinuumMixin, Scheduler):
    """Continuum over vLLM's synchronous scheduler."""


class ContinuumAsyncScheduler(ContinuumMixin, AsyncScheduler):
    """Continuum over vLLM's asynchronous scheduler (the default when vLLM enables async scheduling)."""


def make_scheduler(*args: Any, **kwargs: Any) -> Scheduler:
    """The object named by ``--scheduler-cls``: picks the base vLLM's scheduler config asks for."""
    vllm_config = kwargs.get("vllm_config", args[0] if args else None)
    is_async = bool(vllm_config is not None and vllm_config.scheduler_config.async_scheduling)
    cls = ContinuumAsyncScheduler if is_async else ContinuumScheduler
    logger.info("Continuum: %s, %s", cls.__name__, ContinuumConfig.from_env())
    return cls(*args, **kwargs)
