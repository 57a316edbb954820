"""A program's turns: what the scheduler learns when one arrives or finishes, and how long a finished one's KV
stays pinned (retention).

When a turn arrives, the gap since its program's last turn finished was a tool call: a duration sample for the
tool (`kvttl.TTLPolicy`'s predictor). A returning turn whose program holds no pin lost its KV; the wait from its
arrival to its admission is a miss delay, what the TTL rule weighs a pin against. Both turns and gaps feed the
remaining-work model (`kvttl.ProgramWork`), whose prediction admission and SRPT read from ``Program.prediction``;
for the clairvoyant (``work = oracle``) the client's true future replaces it.

When a turn finishes, its full, hashed blocks are pinned for the TTL the retention mode chooses: the true tool
duration under ``oracle`` (a little more: the turn must still be admitted), until the program returns when
admission already reserves its working set, else the TTL rule's answer. With vLLM's host KV tier
(`continuum.sched.tier`) the rule chooses among pinning, parking in host memory (the GPU blocks go; a prefetch
may bring them back before the return) and dropping; a program admission reserves stays pinned, since its
working set is set aside whether its blocks are held or not. A turn whose client gave up (an abort
that is not a stop string) is not coming back: its program's pin goes. A last step, or the client's word, ends
the program.

A client's own numbers win over the models': ``osl`` is its turn's expected output (the turn's share of the
working set admission counts), ``retain_s`` the TTL of its finished turn's pin (0: no pin, and the program's pin
ends), held to the pin cap and the tenant's quota like any pin. `continuum.http.dialects` maps other stacks'
hints onto them (Dynamo's ``osl``, a vLLM kv_hints retain or release).

The component reads the scheduler through `continuum.sched.view.SchedulerView` and is given the program
registry, the pins and the admission component it acts on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vllm.v1.request import Request, RequestStatus

from continuum.control.engine_side import stopped_by_string
from continuum.policy.config import ContinuumConfig
from continuum.sched.admission import OpenAdmission
from continuum.sched.pins import KVPins
from continuum.sched.programs import Program, ProgramRegistry, hints_of
from continuum.sched.tier import HostTier
from continuum.sched.view import SchedulerView
from kvttl import Prediction, ProgramWork, ReloadCostModel, TTLPolicy, oracle_prediction

ORACLE_SLACK_S = 0.05  # the oracle pins a little past the true return time: the turn still has to be admitted


@dataclass(frozen=True)
class Hold:
    """Where a finished turn's KV stays: "gpu" (pinned), "cpu" (parked in the host tier) or "drop"; for how long,
    and the seconds holding it is expected to save."""

    tier: str
    ttl_s: float
    benefit_s: float


class Turns:
    def __init__(self, cfg: ContinuumConfig, view: SchedulerView, programs: ProgramRegistry, pins: KVPins,
                 admission: OpenAdmission, tier: HostTier | None = None) -> None:
        self.config = cfg
        self.tier = tier  # vLLM's host KV tier, if the engine has one
        self.view = view
        self.programs = programs
        self.pins = pins
        self.admission = admission
        reload = ReloadCostModel(*cfg.reload_cost) if cfg.reload_cost else None
        # How long a finished turn's KV stays pinned, and the tool-duration predictor behind it.
        self.retention = TTLPolicy("model" if cfg.ttl_mode == "oracle" else cfg.ttl_mode,
                                   fixed_ttl_s=cfg.fixed_ttl_s, reload_model=reload)
        self.work_model = ProgramWork(self.retention.remaining)  # predicted remaining work (admission, srpt)
        self.miss_waits: dict[str, float] = {}  # request id -> arrival, for turns that lost their KV

    # -- a turn arrives ------------------------------------------------------------------------------------
    def arrive(self, pid: str, request: Request, hints: dict) -> Program:
        """The program's turn arrived: learn from the gap before it, refresh the prediction, go to the door."""
        now = self.view.clock()
        prog = self.programs.arrive(pid, now)
        prog.running.add(request.request_id)
        if prog.last_finish is not None:  # a returning turn: the gap was the tool call
            self.retention.observe_tool(prog.last_tool, max(0.0, now - prog.last_finish))
            if pid not in self.pins:
                self.miss_waits[request.request_id] = now
            if self.tier is not None:
                self.tier.returned(pid, pid in self.pins)
        if prog.turns > 1:
            self.work_model.observe_gap(now - prog.last_arrival)
            prog.progress.seconds = now - prog.first_arrival
        prog.last_arrival = now
        prog.context_tokens = request.num_prompt_tokens + self.expected_output(request, hints)
        prog.prediction = self.predict(prog, hints, finished=False)
        self.admission.arrive(request, prog)
        return prog

    def expected_output(self, request: Request, hints: dict) -> int:
        """Tokens the turn will likely generate: the client's ``osl`` when it gives one, else the work model's
        mean over the turns seen; never more than the turn may generate."""
        limit, osl = request.max_tokens or 0, hints.get("osl")
        if isinstance(osl, int) and osl >= 0:
            return min(osl, limit) if limit else osl
        return self.work_model.expected_output(limit)

    def admitted(self, request_id: str, now: float) -> None:
        """A turn was admitted: if it had lost its KV, its wait is a miss delay the TTL rule learns from."""
        arrived = self.miss_waits.pop(request_id, None)
        if arrived is not None:
            self.retention.observe_miss_delay(max(0.0, now - arrived))

    def forget(self, request_id: str) -> None:
        """The request is freed: a miss wait it left open is not a delay anyone measured."""
        self.miss_waits.pop(request_id, None)

    def predict(self, prog: Program, hints: dict, finished: bool) -> Prediction:
        """The program's remaining work: from the model, or from the true future the client tells (oracle)."""
        future = hints.get("future") if self.config.work == "oracle" else None
        if not isinstance(future, dict):
            return self.work_model.predict(prog.progress)
        done = 1 if finished else 0
        latency = self.work_model.turn_latency.value(0.0)
        return oracle_prediction(int(future.get("turns_left", 1)) - done, float(future.get("tool_s_left", 0.0)),
                                 int(future.get("growth_left", 0)) - done * int(future.get("output", 0)), latency)

    # -- a turn finishes -----------------------------------------------------------------------------------
    def pin_finished(self, request: Request, client_gone: bool) -> None:
        """Pin the finished turn's blocks for the TTL retention chooses (before vLLM frees them)."""
        prog = self.view.program_of(request)
        if prog is None or prog.ended:
            return
        if request.status == RequestStatus.FINISHED_ABORTED and not stopped_by_string(request, client_gone):
            self.pins.release(prog.program_id, "abort")  # the client gave up on this turn: it is not coming back
            return
        hints = hints_of(request)
        blocks = self.view.finished_blocks(request)
        prog.last_tool = hints.get("tool") if isinstance(hints.get("tool"), str) else None
        retain = hints.get("retain_s")
        prog.retain_s = float(retain) if isinstance(retain, (int, float)) and retain >= 0 else None
        if prog.retain_s == 0:
            self.pins.release(prog.program_id, "end")  # the client released the program's KV
        hold = self.decide(prog, request.num_tokens, hints)
        now = self.view.clock()
        if hold.tier == "gpu" and blocks and hold.ttl_s > 0:
            self.pins.pin(prog.program_id, blocks, now, hold.ttl_s, hold.benefit_s, prog.order)
        elif hold.tier == "cpu" and self.tier is not None:
            self.pins.release(prog.program_id, "park")
            self.tier.park(prog.program_id, request, self.retention.predictor.samples_for(prog.last_tool), now)

    def decide(self, prog: Program, context_tokens: int, hints: dict) -> Hold:
        """Where the program's finished turn's KV stays, for how long, and what holding it is expected to save."""
        last = bool(hints.get("is_last_step"))
        if prog.retain_s is not None and not last:  # the client's word (`continuum.http.dialects`) over any rule
            return Hold("gpu" if prog.retain_s > 0 else "drop", prog.retain_s,
                        self.retention.reload_model.seconds(context_tokens))
        if self.config.ttl_mode == "oracle":
            tool_s = hints.get("tool_s")
            if last or not isinstance(tool_s, (int, float)):
                return Hold("drop", 0.0, 0.0)
            return Hold("gpu", float(tool_s) + ORACLE_SLACK_S, self.retention.reload_model.seconds(context_tokens))
        if self.config.ttl_mode == "model" and self.admission.reserves(prog) and not last:
            # The rule weighs what a pin saves against the memory it holds meanwhile. Admission has already set
            # this program's working set aside, so holding it costs the others nothing: keep it until return.
            return Hold("gpu", math.inf, self.retention.reload_model.seconds(context_tokens))
        turns_done = prog.finished_turns + 1
        if self.tier is not None:
            t = self.tier
            d = self.retention.decide_tier(prog.last_tool, context_tokens, t.bytes_per_token, turns_done, last,
                                           t.link, t.cpu_price)
            return Hold(d.tier, d.ttl_s, d.benefit_s)
        decision = self.retention.decide(prog.last_tool, context_tokens, turns_done, last_step=last)
        return Hold("gpu" if decision.pin else "drop", decision.ttl_s, decision.benefit_s)

    def finished(self, prog: Program, request: Request) -> None:
        """The program's turn is over (its request freed): learn its latency and growth; a last step ends it."""
        hints = hints_of(request)
        now = self.view.clock()
        # A first turn's context is the task itself, not growth; later turns add tool output and answers.
        growth = request.num_tokens - prog.last_context_tokens if prog.finished_turns > 0 else None
        self.work_model.observe_turn(now - request.arrival_time, growth, request.num_output_tokens)
        prog.progress.turns += 1
        prog.progress.growth_tokens += max(0, growth or 0)
        prog.finished_turns += 1
        prog.last_finish = now
        prog.last_context_tokens = prog.context_tokens = request.num_tokens
        prog.prediction = self.predict(prog, hints, finished=True)
        if hints.get("is_last_step"):
            self.end(prog)

    def set_tool(self, prog: Program, tool: str) -> None:
        """The tool the program runs now became known after its turn finished: re-decide its pin's TTL."""
        prog.last_tool = tool
        pin = self.pins.table.get(prog.program_id)
        if pin is not None and self.config.ttl_mode in ("model", "fixed"):
            hold = self.decide(prog, prog.last_context_tokens, {})
            if hold.tier == "cpu":  # a slower tool than a pin pays for: the host copy stays (no prefetch here)
                self.pins.release(prog.program_id, "park")
            else:
                self.pins.pin(prog.program_id, list(pin.blocks), pin.pinned_at, hold.ttl_s, hold.benefit_s,
                              prog.order)

    # -- the program ends ----------------------------------------------------------------------------------
    def end(self, prog: Program) -> None:
        """The program is over (last step, the client's word, or idle): its pin and its admission go."""
        self.pins.release(prog.program_id, "end")
        self.admission.end(prog)
        if self.tier is not None:
            self.tier.forget(prog.program_id)
        if not prog.ended:
            self.retention.observe_program_end(prog.finished_turns)
            self.programs.end(prog.program_id, self.view.clock())
