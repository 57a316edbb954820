"""The program registry: agent sessions seen by the engine, tracked across their turns and tool calls; and what
a request says of its program (its id, the client's hints)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vllm.v1.request import Request

from kvttl import Prediction, Progress


def program_id_of(request: Request) -> str | None:
    """The program a request belongs to: vLLM's ``session_id`` (body field, header or xargs)."""
    return request.session_id or None


def hints_of(request: Request) -> dict[str, Any]:
    """Continuum's client hints (``is_last_step``, ``tool``, ``tool_s``, ``class``, ``osl``, ``retain_s``) from
    ``vllm_xargs`` (where `continuum.http.dialects` also puts what other stacks' hints say)."""
    params = request.sampling_params
    return dict(params.extra_args or {}) if params is not None else {}


@dataclass
class Program:
    """One agent program (session). Times are in the scheduler's clock (seconds)."""

    program_id: str
    order: int  # first-arrival rank: the program-first ordering key
    first_arrival: float
    turns: int = 0  # turns admitted so far
    finished_turns: int = 0
    last_finish: float | None = None  # when the latest turn finished (start of a tool call)
    last_tool: str | None = None  # the tool the program is running now (chosen by its latest turn)
    attained_tokens: int = 0  # tokens scheduled so far (least-attained-service ordering)
    cached_tokens: int = 0  # prompt tokens served from the prefix cache on admission
    last_context_tokens: int = 0
    context_tokens: int = 0  # its context now: the turn in flight's prompt + max output, or what the last left
    running: set[str] = field(default_factory=set)  # request ids in flight
    ended: bool = False
    ended_at: float | None = None
    admitted: bool = True  # False while it waits at the door (program admission)
    last_arrival: float = 0.0
    progress: Progress = field(default_factory=Progress)  # what the remaining-work predictor sees
    prediction: Prediction | None = None  # its remaining work, refreshed when a turn arrives or finishes
    future: dict[str, Any] | None = None  # the true future, when a clairvoyant client tells it (simulator)
    retain_s: float | None = None  # the client's pin TTL for its latest turn (``retain_s``; 0: none), if it gave one

    def summary(self) -> dict:
        return {
            "id": self.program_id,
            "order": self.order,
            "turns": self.turns,
            "finished_turns": self.finished_turns,
            "in_flight": len(self.running),
            "last_tool": self.last_tool,
            "last_context_tokens": self.last_context_tokens,
            "cached_tokens": self.cached_tokens,
            "ended": self.ended,
            "admitted": self.admitted,
            "predicted_remaining_s": round(self.prediction.seconds, 3) if self.prediction else None,
        }


class ProgramRegistry:
    """Maps program ids to `Program`; ended programs are dropped after ``keep_ended`` newer ends."""

    def __init__(self, keep_ended: int = 1000) -> None:
        self._programs: dict[str, Program] = {}
        self._next_order = 0
        self._ended: list[str] = []
        self.keep_ended = keep_ended

    def __contains__(self, program_id: str) -> bool:
        return program_id in self._programs

    def __len__(self) -> int:
        return len(self._programs)

    def get(self, program_id: str) -> Program | None:
        return self._programs.get(program_id)

    def all(self) -> list[Program]:
        return list(self._programs.values())

    def arrive(self, program_id: str, now: float) -> Program:
        """A turn of ``program_id`` arrived; a program that had ended starts afresh."""
        prog = self._programs.get(program_id)
        if prog is None or prog.ended:
            prog = Program(program_id, self._next_order, now, last_arrival=now)
            self._next_order += 1
            self._programs[program_id] = prog
        prog.turns += 1
        return prog

    def idle(self, now: float, idle_s: float) -> list[Program]:
        """Programs that never said they ended and have had nothing in flight for ``idle_s`` seconds: clients
        that went away. Their state would otherwise stay in the registry for the life of the server."""
        return [p for p in self._programs.values()
                if not p.ended and not p.running
                and now - (p.last_finish if p.last_finish is not None else p.first_arrival) > idle_s]

    def end(self, program_id: str, now: float) -> Program | None:
        prog = self._programs.get(program_id)
        if prog is None or prog.ended:
            return prog
        prog.ended, prog.ended_at = True, now
        self._ended.append(program_id)
        while len(self._ended) > self.keep_ended:
            old = self._ended.pop(0)
            if (p := self._programs.get(old)) is not None and p.ended:
                del self._programs[old]
        return prog
