"""Compute-aware program admission: a new program starts while it adds throughput, not only while it fits.

The ``memory`` door admits programs until their working sets fill the KV pool. This door adds a second limit, the
number of programs in service past which one more adds no throughput: the N whose batch is the largest the engine
runs (``max_num_seqs`` requests, or as many as fill a step's token budget), from the step-time curve measured
online (`continuum.sched.step_model`). That N is where the mean completion of every program in the system, those at
the door and those in service, is least: the programs end at the engine's turn rate whatever their order, so the
door keeps the engine's throughput as high as it goes. It depends on neither the queue at the door nor the arrival
rate, so while a backlog drains the limit holds, never below the throughput knee (reported in the stats). X is
measured from the time between consecutive ``schedule()`` calls on the scheduler's clock (virtual under
simulation, the wall clock live) against the tokens and requests of each step, the request-steps a turn takes, and
the time programs spend in tool calls between turns.

The door is `continuum.sched.admission.MemoryAdmission`'s: opened strictly in the waiting queue's order (shortest
predicted remaining work with aging under ``srpt``), the head admitted whatever its size when nothing else is,
latency-sensitive programs skipping it. A program goes in when both limits have room: the programs in service are
under the compute limit, and the KV pool holds the working sets of the admitted programs plus its own. Until the
samples tell the step's fixed and per-request costs apart (a few steps of varied batches) only memory limits.
"""

from __future__ import annotations

import math

from vllm.v1.request import Request

from continuum.policy.config import ContinuumConfig
from continuum.sched.admission import MemoryAdmission
from continuum.sched.classes import Classes
from continuum.sched.programs import Program
from continuum.sched.step_model import Knee, StepModel
from continuum.sched.view import SchedulerView


class ComputeAdmission(MemoryAdmission):
    def __init__(self, cfg: ContinuumConfig, view: SchedulerView, classes: Classes) -> None:
        super().__init__(cfg, view, classes)
        self.model = StepModel(cfg.knob("compute.half_life_s"))
        self.knee: Knee | None = None
        self.last: tuple[float, int, int, int] | None = None  # (clock, tokens, requests, new) of the last step
        self.engine_was_idle = True  # nothing ran when this step began: the gap since the last one was idle time

    def arrive(self, request: Request, prog: Program) -> None:
        if prog.turns > 1 and prog.last_finish is not None:
            now = self.view.clock()
            self.model.observe_outside(now, now - prog.last_finish)
        super().arrive(request, prog)

    def step(self) -> bool:
        self.engine_was_idle = not self.view.running_requests()
        return super().step()

    def scheduled(self, tokens: int, seqs: int, new_seqs: int) -> None:
        """The previous step lasted from its ``schedule()`` to this one's, unless the engine idled between."""
        now = self.view.clock()
        last = self.last
        if last is not None and last[1] > 0 and not self.engine_was_idle and now > last[0]:
            self.model.observe_step(now, now - last[0], last[1], last[2], last[3])
            self.refresh()
        self.last = (now, tokens, seqs, new_seqs)

    def refresh(self) -> None:
        """Recompute the limit from the fit; when it rose past the programs in service, the door looks again."""
        before = self.limit()
        self.knee = self.model.knee(self.view.max_num_running_reqs, self.view.max_num_scheduled_tokens)
        if self.limit() > before and self.limit() >= len(self.active) + 1:
            self.pending = True

    def limit(self) -> float:
        """Programs in service at most (infinite until the fit is known); at least one."""
        return math.inf if self.knee is None else max(1.0, self.knee.programs)

    def room(self) -> tuple[float, ...]:
        return (self.limit() - len(self.active), self.free())

    def need(self, prog: Program) -> tuple[float, ...]:
        return (1, self.working_set(prog))

    def state(self) -> dict:
        k = self.knee
        fit = {} if k is None else {
            "step_fixed_ms": 1e3 * k.fixed_s, "step_per_request_ms": 1e3 * k.per_request_s,
            "tokens_per_request": k.tokens_per_request, "saturating_batch": finite(k.batch),
            "knee_programs": finite(k.knee_programs), "knee_batch": finite(k.knee_batch),
            "request_steps_per_turn": k.request_steps_per_turn, "outside_s_per_turn": k.outside_s,
            "engine_fraction": k.engine_fraction, "turns_s": finite(k.turns_s), "max_turns_s": finite(k.max_turns_s)}
        return {**super().state(), "mode": "compute", "limit_programs": finite(self.limit()),
                "step_samples": self.model.samples, **fit}


def finite(x: float) -> float | None:
    """JSON has no infinity: None stands for no limit."""
    return None if math.isinf(x) else round(x, 3)
