"""The engine side of the control channel: what the HTTP layer may ask the scheduler, and what it answers.

`continuum.control.channel.ControlServer` carries JSON messages from the API process to the engine-core process;
`EngineControl` parses each into its request (`continuum.control.messages`) and answers it through the
scheduler's own methods (`ControlledScheduler`), under the scheduler's lock. A bad message is a 400, a session
the scheduler does not know a 404; every session op answers with the program's state (a prefetch adds what it did).

Aborts: vLLM's engine sees every abort alike (a client that disconnected, an abort call, a stop string found by
the API process). Only the stop string is a finished turn worth pinning; `stopped_by_string` tells them apart.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

from vllm.v1.request import Request

from continuum.control.messages import (
    BAD_REQUEST,
    BadMessage,
    ClientGone,
    ControlReply,
    EndSession,
    ErrorReply,
    EventsRead,
    OkReply,
    PrefetchSession,
    SessionState,
    Stats,
    StatsQuery,
    ToolChosen,
    parse_request,
)


def stopped_by_string(request: Request, client_gone: bool) -> bool:
    """Whether an aborted request was really a finished turn: it produced output, it has stop strings (the
    API process aborts a request when one appears), and its client did not go away. Any other abort is a
    client giving up on the turn."""
    params = request.sampling_params
    return request.num_output_tokens > 0 and bool(params is not None and params.stop) and not client_gone


class ControlledScheduler(Protocol):
    """What the control channel asks of the scheduler (`continuum.sched.scheduler.ContinuumMixin`)."""

    lock: AbstractContextManager[Any]  # serialises the control thread with the engine thread

    def knows(self, program_id: str) -> bool: ...

    def end_program(self, program_id: str) -> bool: ...

    def client_gone(self, program_id: str) -> None: ...

    def prefetch_now(self, program_id: str) -> str:
        """What a prefetch hint did (`continuum.control.messages.PREFETCH_OUTCOMES`)."""
        ...

    def set_tool(self, program_id: str, tool: str) -> bool: ...

    def client_read_events(self, program_id: str, events: int) -> None: ...

    def session_state(self, program_id: str) -> SessionState:
        """Empty for a program it does not know."""
        ...

    def stats(self) -> Stats: ...


class EngineControl:
    def __init__(self, sched: ControlledScheduler) -> None:
        self.sched = sched

    def handle(self, msg: dict) -> dict:
        """One decoded JSON message in, its JSON reply out (`ControlServer`'s handler)."""
        return self.answer(msg).to_wire()

    def answer(self, msg: dict) -> ControlReply:
        try:
            request = parse_request(msg)
        except BadMessage as exc:
            return ErrorReply(str(exc), BAD_REQUEST)
        s = self.sched
        if isinstance(request, StatsQuery):
            return OkReply(stats=s.stats())
        pid = request.id
        with s.lock:  # the state answered is the state the op left
            if not s.knows(pid):
                return ErrorReply.unknown_session(pid)
            if isinstance(request, EndSession):
                s.end_program(pid)
            elif isinstance(request, PrefetchSession):
                done = s.prefetch_now(pid)
                return OkReply(session={**s.session_state(pid), "prefetch": done})
            elif isinstance(request, ClientGone):
                s.client_gone(pid)
            elif isinstance(request, ToolChosen):
                s.set_tool(pid, request.tool)
            elif isinstance(request, EventsRead):
                s.client_read_events(pid, request.events)
            return OkReply(session=s.session_state(pid))
