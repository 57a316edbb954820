"""The Continuum scheduler: vLLM's v1 `Scheduler` with agent programs as the unit of scheduling.

vLLM loads it through ``--scheduler-cls continuum.scheduler.make_scheduler``. The factory picks the
synchronous or asynchronous base, whichever vLLM's config asks for; the behaviour lives in one mixin that
overrides a few seams (request arrival, request free, step) and never copies ``schedule()``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from vllm.v1.core.sched.async_scheduler import AsyncScheduler
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.request import Request

from continuum.config import ContinuumConfig
from continuum.control import ControlServer
from continuum.programs import ProgramRegistry


def program_id_of(request: Request) -> str | None:
    """The program a request belongs to: vLLM's ``session_id`` (body field, header or xargs)."""
    return request.session_id or None


def hints_of(request: Request) -> dict[str, Any]:
    """Continuum's client hints (``is_last_step``, ``tool``) from ``vllm_xargs``."""
    params = request.sampling_params
    return dict(params.extra_args or {}) if params is not None else {}


class ContinuumMixin:
    """Program tracking and the control channel, shared by the sync and async schedulers."""

    def __init__(self, *args: Any, continuum_config: ContinuumConfig | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # vLLM builds us with a fixed signature, so `continuum serve` passes settings in the environment;
        # the simulator and tests pass them directly.
        self.continuum = continuum_config or ContinuumConfig.from_env()
        self.clock = time.time  # the simulator swaps in its virtual clock
        self.programs = ProgramRegistry()
        # The control thread and the engine thread both touch scheduler state; one lock serialises them.
        self.lock = threading.RLock()
        self.control = None
        if self.continuum.control_addr:
            self.control = ControlServer(self.continuum.control_addr, self.handle_control)

    # -- vLLM seams -------------------------------------------------------------------------------------
    def add_request(self, request: Request) -> None:
        with self.lock:
            pid = program_id_of(request)
            if pid is not None:
                prog = self.programs.arrive(pid, self.clock())
                prog.running.add(request.request_id)
            super().add_request(request)

    def _free_request(self, request: Request, delay_free_blocks: bool = False):
        pid = program_id_of(request)
        prog = self.programs.get(pid) if pid is not None else None
        if prog is not None:
            prog.running.discard(request.request_id)
            prog.finished_turns += 1
            prog.last_finish = self.clock()
            prog.last_context_tokens = request.num_tokens
        return super()._free_request(request, delay_free_blocks)

    def schedule(self, *args: Any, **kwargs: Any):
        with self.lock:
            return super().schedule(*args, **kwargs)

    def update_from_output(self, *args: Any, **kwargs: Any):
        with self.lock:
            return super().update_from_output(*args, **kwargs)

    def finish_requests(self, *args: Any, **kwargs: Any):
        with self.lock:
            return super().finish_requests(*args, **kwargs)

    def shutdown(self) -> None:
        if self.control is not None:
            self.control.close()
        super().shutdown()

    # -- control channel ----------------------------------------------------------------------------------
    def handle_control(self, msg: dict) -> dict:
        with self.lock:
            op = msg.get("op")
            if op == "stats":
                return {"ok": True, "stats": self.stats()}
            if op == "session":
                prog = self.programs.get(str(msg.get("id")))
                if prog is None:
                    return {"ok": False, "error": "unknown session", "status": 404}
                return {"ok": True, "session": self.session_state(prog.program_id)}
            if op == "end":
                return self.end_program(str(msg.get("id")))
            return {"ok": False, "error": f"unknown op {op!r}", "status": 400}

    def end_program(self, program_id: str) -> dict:
        prog = self.programs.end(program_id, self.clock())
        if prog is None:
            return {"ok": False, "error": "unknown session", "status": 404}
        return {"ok": True, "session": self.session_state(program_id)}

    def session_state(self, program_id: str) -> dict:
        prog = self.programs.get(program_id)
        return prog.summary() if prog is not None else {}

    def stats(self) -> dict:
        return {
            "config": {"ttl_mode": self.continuum.ttl_mode, "pin_cap": self.continuum.pin_cap},
            "programs": [p.summary() for p in self.programs.all()],
            "num_programs": len(self.programs),
            "kv_cache_usage": self.kv_cache_manager.usage,
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
    return cls(*args, **kwargs)
