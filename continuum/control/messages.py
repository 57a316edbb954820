"""The control channel's messages: what the API process asks the engine core, what it answers, and the stats.

On the wire every message is a small JSON object: a request ``{"op": ..., "id": ..., ...}``, a reply
``{"ok": true, "session" | "stats": ...}`` or ``{"ok": false, "error": ..., "status": ...}``. Both sides build and
read them through these classes, so each op and field is spelled in one place. A request that names no known op
or has a missing or mistyped field does not parse (`BadMessage`); the engine answers it with a 400.

The ``delivered`` op keeps its wire names (``tokens``) from before it was clear what the count is: SSE events of
the turn's stream its client has read (`EventsRead`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, TypedDict, Union

BAD_REQUEST, NOT_FOUND, UNAVAILABLE = 400, 404, 503
# What a prefetch op did: its prefetch is due now (issued at the engine's next step); it was due, loading or loaded
# already; the program has no KV parked in host memory (pinned, dropped, its turn running, or it ended); the engine
# has no host KV tier the TTL rule uses.
PREFETCH_ISSUED, PREFETCH_ALREADY, PREFETCH_NOT_PARKED, PREFETCH_NO_TIER = "issued", "already", "not_parked", "no_tier"
PREFETCH_OUTCOMES = (PREFETCH_ISSUED, PREFETCH_ALREADY, PREFETCH_NOT_PARKED, PREFETCH_NO_TIER)


class BadMessage(ValueError):
    """A control request with an unknown op or a missing or mistyped field."""


def _field(raw: dict, name: str, kind: type) -> Any:
    value = raw.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadMessage(f"control op {raw.get('op')!r} needs {kind.__name__} field {name!r}, got {value!r}")
    return value


# -- requests --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StatsQuery:
    """The scheduler's stats (`Stats`)."""

    op: ClassVar[str] = "stats"

    def to_wire(self) -> dict[str, Any]:
        return {"op": self.op}

    @classmethod
    def from_wire(cls, raw: dict) -> StatsQuery:
        return cls()


@dataclass(frozen=True)
class SessionQuery:
    """One program's state (`SessionState`); every session op answers with it."""

    id: str  # the program (session) id, tenant-qualified by the HTTP layer
    op: ClassVar[str] = "session"

    def to_wire(self) -> dict[str, Any]:
        return {"op": self.op, "id": self.id}

    @classmethod
    def from_wire(cls, raw: dict) -> SessionQuery:
        return cls(_field(raw, "id", str))


class EndSession(SessionQuery):
    """The client says the program is over: its pin is released."""

    op: ClassVar[str] = "end"


class PrefetchSession(SessionQuery):
    """The client says the program's tool result is about to come back: its KV parked in host memory is loaded
    back now. The answer's state says what happened in ``prefetch`` (PREFETCH_OUTCOMES)."""

    op: ClassVar[str] = "prefetch"


class ClientGone(SessionQuery):
    """The client of the program's turn in flight went away: that turn's abort is not a finish."""

    op: ClassVar[str] = "disconnect"


@dataclass(frozen=True)
class ToolChosen(SessionQuery):
    """The tool the turn's answer calls, read by the HTTP layer: the pin's TTL is re-decided for it."""

    tool: str = ""
    op: ClassVar[str] = "tool"

    def to_wire(self) -> dict[str, Any]:
        return {**super().to_wire(), "tool": self.tool}

    @classmethod
    def from_wire(cls, raw: dict) -> ToolChosen:
        return cls(_field(raw, "id", str), _field(raw, "tool", str))


@dataclass(frozen=True)
class EventsRead(SessionQuery):
    """SSE events of the turn's stream its client has read so far (for the backpressure term)."""

    events: int = 0
    op: ClassVar[str] = "delivered"

    def to_wire(self) -> dict[str, Any]:
        return {**super().to_wire(), "tokens": self.events}

    @classmethod
    def from_wire(cls, raw: dict) -> EventsRead:
        return cls(_field(raw, "id", str), _field(raw, "tokens", int))


ControlRequest = Union[StatsQuery, SessionQuery]  # SessionQuery's subclasses included
REQUESTS: dict[str, type[StatsQuery] | type[SessionQuery]] = {
    c.op: c for c in (StatsQuery, SessionQuery, EndSession, PrefetchSession, ClientGone, ToolChosen, EventsRead)}


def parse_request(raw: Any) -> ControlRequest:
    """The request a decoded JSON message carries; `BadMessage` if it is none."""
    op = raw.get("op") if isinstance(raw, dict) else None
    if not isinstance(op, str) or op not in REQUESTS:
        raise BadMessage(f"unknown control op {op!r}")
    return REQUESTS[op].from_wire(raw)


# -- payloads --------------------------------------------------------------------------------------------------
class SessionState(TypedDict, total=False):
    """A program as the engine sees it (`continuum.sched.programs.Program.summary` and its pin)."""

    id: str
    order: int
    turns: int
    finished_turns: int
    in_flight: int
    last_tool: str | None
    last_context_tokens: int
    cached_tokens: int
    ended: bool
    admitted: bool
    predicted_remaining_s: float | None
    pinned_blocks: int
    ttl_s: float | None  # None: pinned until the program returns (JSON has no infinity)
    expires_in_s: float | None
    pinned_until_return: bool
    rank: int  # with data parallelism: the rank the program lives on
    prefetch: str  # the prefetch op's answer only: what it did (PREFETCH_OUTCOMES)


class KVState(TypedDict):
    num_blocks: int
    free_blocks: int
    usage: float


class StepTimes(TypedDict):
    mean: float  # milliseconds per ``schedule()``
    p99: float


class Stats(TypedDict, total=False):
    """``/continuum/stats``: one rank's, or every rank's merged (`continuum.control.dp.merge_stats`)."""

    config: dict[str, Any]
    programs: list[SessionState]
    num_programs: int
    pins: dict[str, float]
    kv: KVState
    predictor: dict[str, Any]
    admission: dict[str, Any]
    balance: dict[str, Any]
    phase: dict[str, Any] | None
    preempted_for_waiting: int
    host_tier: dict[str, Any] | None  # parks and prefetches, with vLLM's host KV tier (continuum.sched.tier)
    sched_step_ms: StepTimes
    data_parallel_size: int  # merged only
    ranks: list[dict[str, Any]]  # merged only: each rank's stats without its programs


# -- replies ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OkReply:
    session: SessionState | None = None
    stats: Stats | None = None
    ok: ClassVar[bool] = True

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": True}
        if self.session is not None:
            out["session"] = self.session
        if self.stats is not None:
            out["stats"] = self.stats
        return out


@dataclass(frozen=True)
class ErrorReply:
    error: str
    status: int | None = None  # the HTTP status to answer with; None: the engine failed while answering
    ok: ClassVar[bool] = False

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": False, "error": self.error}
        if self.status is not None:
            out["status"] = self.status
        return out

    @classmethod
    def unknown_session(cls, program_id: str) -> ErrorReply:
        return cls(f"unknown session {program_id!r}", NOT_FOUND)


ControlReply = Union[OkReply, ErrorReply]


def parse_reply(raw: Any) -> ControlReply:
    """The reply a decoded JSON message carries; anything but ``{"ok": true, ...}`` is an error."""
    if not isinstance(raw, dict):
        return ErrorReply(f"malformed control reply {raw!r}")
    if raw.get("ok") is True:
        session, stats = raw.get("session"), raw.get("stats")
        return OkReply(session if isinstance(session, dict) else None, stats if isinstance(stats, dict) else None)
    status = raw.get("status")
    return ErrorReply(str(raw.get("error", "")), status if isinstance(status, int) else None)
