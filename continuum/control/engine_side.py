"""The engine side of the control channel: what the HTTP layer may ask the scheduler, and the stats it reads.

`continuum.control.channel.ControlServer` carries JSON messages from the API process to the engine-core process; this
module answers them against a Continuum scheduler (under its lock) and builds the session and stats views.
Messages: ``{"op": "stats"}``, ``{"op": "session", "id"}``, ``{"op": "end", "id"}``, ``{"op": "tool", "id",
"tool"}`` (the tool read from a response), ``{"op": "delivered", "id", "tokens"}`` (streamed tokens the client
has read, for backpressure), ``{"op": "disconnect", "id"}`` (the client of the program's turn went away).

Aborts: vLLM's engine sees every abort alike (a client that disconnected, an abort call, a stop string found by
the API process). Only the stop string is a finished turn worth pinning; `stopped_by_string` tells them apart.
"""

from __future__ import annotations

import math
from typing import Any

OPS = ("session", "end", "tool", "delivered", "disconnect")


def _unknown(program_id: str) -> dict:
    return {"ok": False, "error": f"unknown session {program_id!r}", "status": 404}


def stopped_by_string(request: Any, client_gone: bool) -> bool:
    """Whether an aborted request was really a finished turn: it produced output, it has stop strings (the
    API process aborts a request when one appears), and its client did not go away. Any other abort is a
    client giving up on the turn."""
    params = request.sampling_params
    return request.num_output_tokens > 0 and bool(params is not None and params.stop) and not client_gone


class EngineControl:
    def __init__(self, sched: Any) -> None:
        self.sched = sched

    def handle(self, msg: dict) -> dict:
        op, pid = msg.get("op"), str(msg.get("id"))
        s = self.sched
        if op == "stats":
            return {"ok": True, "stats": self.stats()}
        with s.lock:
            if op not in OPS:
                return {"ok": False, "error": f"unknown control op {op!r}", "status": 400}
            if pid not in s.programs:
                return _unknown(pid)
            if op == "end":
                s.end_program(pid)
            elif op == "disconnect":
                self.client_gone(pid)
            elif op == "tool" and isinstance(msg.get("tool"), str):
                s.set_tool(pid, msg["tool"])
            elif op == "delivered" and isinstance(msg.get("tokens"), int):
                s.client_delivered(pid, msg["tokens"])
            return {"ok": True, "session": self.session_state(pid)}

    def client_gone(self, program_id: str) -> None:
        """The client of the program's turn in flight went away: that turn's abort is not a finish (marked
        before vLLM's abort arrives), and a pin taken if the abort came first is released."""
        s = self.sched
        if s.pinning:  # the marks are consumed where turns are pinned
            s.gone.update(s.programs.get(program_id).running)
        s.pins.release(program_id, "abort")

    def session_state(self, program_id: str) -> dict:
        s = self.sched
        prog = s.programs.get(program_id)
        if prog is None:
            return {}
        state = prog.summary()
        pin = s.pins.table.get(program_id)
        state["pinned_blocks"] = len(pin.blocks) if pin else 0
        # JSON has no infinity: a pin kept until the program returns has no TTL and no expiry, and says so.
        until_return = pin is not None and math.isinf(pin.ttl_s)
        state["ttl_s"] = None if until_return else (pin.ttl_s if pin else 0.0)
        state["expires_in_s"] = None if until_return or not pin else pin.expires_at - s.clock()
        state["pinned_until_return"] = until_return
        return state

    def stats(self) -> dict:
        s = self.sched
        with s.lock:
            steps = sorted(s.step_times)
            pool = s.kv_cache_manager.block_pool
            cfg = s.continuum
            return {
                "config": {**cfg.model_dump(exclude={"control_addr", "reload_cost"}),
                           "pin_cap_blocks": s.pins.table.cap_blocks},
                "programs": [self.session_state(p.program_id) for p in s.programs.all()],
                "num_programs": len(s.programs),
                "pins": {**s.pins.table.counters, "active": len(s.pins.table), "pinned_blocks": s.pins.pinned_blocks},
                "kv": {"num_blocks": pool.num_gpu_blocks, "free_blocks": pool.get_num_free_blocks(),
                       "usage": s.kv_cache_manager.usage},
                "predictor": s.ttl.state(),
                "admission": s.admission.state(),
                "balance": s.balance.state(),
                "phase": s.phases.state() if s.phases.enabled else None,
                "preempted_for_waiting": s.preemption.count,
                "sched_step_ms": {"mean": 1e3 * sum(steps) / len(steps) if steps else 0.0,
                                  "p99": 1e3 * steps[int(0.99 * (len(steps) - 1))] if steps else 0.0},
            }
