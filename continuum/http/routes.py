"""Continuum's endpoints, a FastAPI router on vLLM's app: session state, end and prefetch, and the scheduler's stats.

Served by vLLM's app, the ``/v1/sessions`` routes sit behind vLLM's own authentication like the rest of ``/v1``;
``/continuum/stats`` is outside the prefixes vLLM guards, so it asks for the same key itself. With keys, a caller
only ever names their own tenant's sessions (`continuum.tenancy`): another tenant's session is a 404, and stats
list the caller's own sessions (an admin key sees all of them, qualified by tenant).

``POST /v1/sessions/{id}/prefetch`` is a client's word that the program's tool result is about to come back: with
vLLM's host KV tier, KV the TTL rule parked in host memory is loaded back before the turn arrives
(`continuum.sched.tier`). It answers 200 with the session's state and ``"prefetch"``: ``"issued"`` (due now, sent
at the engine's next step), ``"already"`` (due, loading or loaded already), ``"not_parked"`` (nothing in host memory
to load: pinned in GPU memory, dropped, a turn running, or ended) or ``"no_tier"`` (no host tier the TTL rule
uses); an unknown or another tenant's session is a 404, a malformed id a 400, like the other session endpoints.
"""

from __future__ import annotations

from typing import Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.convertors import Convertor, register_url_convertor

from continuum.control.messages import (
    NOT_FOUND,
    UNAVAILABLE,
    ControlReply,
    ControlRequest,
    EndSession,
    ErrorReply,
    PrefetchSession,
    SessionQuery,
    StatsQuery,
)
from continuum.http.validation import BadRequest, check_session_id
from continuum.tenancy import Caller, split


class SessionIdPath(Convertor):
    """A session id in a path, decoded: anything, even "/" or a newline, so that a bad id reaches the check
    (400 naming it) rather than missing the route."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("session_id", SessionIdPath())
router = APIRouter()
# What a tenant's stats keep besides their own programs: aggregates that name no other tenant's session or tool.
TENANT_STATS = ("config", "pins", "kv", "sched_step_ms", "hints")


def error_body(status: int, message: str, param: str | None = None) -> dict:
    kind = {400: "BadRequestError", 404: "NotFoundError", 405: "MethodNotAllowed"}.get(status,
                                                                                       "ServiceUnavailableError")
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


def error(status: int, message: str, param: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param), status_code=status)


def _unauthorized() -> JSONResponse:
    return JSONResponse({"error": "Unauthorized"}, status_code=401)  # vLLM's own answer for /v1


async def _ask(request: Request, message: ControlRequest) -> ControlReply | JSONResponse:
    control = request.app.state.continuum.control
    if control is None:
        return error(UNAVAILABLE, "the Continuum scheduler is not loaded")
    try:
        return await control.call(message)
    except TimeoutError as exc:
        return error(UNAVAILABLE, str(exc))


async def _session_op(request: Request, op: Callable[[str], SessionQuery], session_id: str) -> JSONResponse:
    who = request.app.state.continuum.keys.caller(request.headers)
    if who is None:
        return _unauthorized()
    try:
        check_session_id(session_id, "session_id")
    except BadRequest as exc:
        return error(400, str(exc), exc.param)
    reply = await _ask(request, op(who.program_for(session_id)))
    if isinstance(reply, JSONResponse):
        return reply
    if isinstance(reply, ErrorReply) or reply.session is None:  # unknown here, or another tenant's: the same
        status = reply.status if isinstance(reply, ErrorReply) and reply.status is not None else NOT_FOUND
        return error(status, f"unknown session {session_id!r}", "session_id")
    return JSONResponse(shown_state(who, dict(reply.session)))


@router.get("/v1/sessions/{session_id:session_id}")
async def session_state(session_id: str, request: Request) -> JSONResponse:
    """Pinned blocks, TTL, expiry and turns of one of the caller's sessions."""
    return await _session_op(request, SessionQuery, session_id)


@router.post("/v1/sessions/{session_id:session_id}/end")
async def end_session(session_id: str, request: Request) -> JSONResponse:
    """End one of the caller's sessions now: its pin is released."""
    return await _session_op(request, EndSession, session_id)


@router.post("/v1/sessions/{session_id:session_id}/prefetch")
async def prefetch_session(session_id: str, request: Request) -> JSONResponse:
    """One of the caller's sessions will send its next turn soon (its tool result is coming back): load its KV
    parked in host memory back into GPU memory now. Its state, with ``prefetch`` saying what happened."""
    return await _session_op(request, PrefetchSession, session_id)


@router.get("/continuum/stats")
async def stats(request: Request) -> JSONResponse:
    """The scheduler's programs, pins, KV pool and predictor (a tenant sees their own programs)."""
    who = request.app.state.continuum.keys.caller(request.headers)
    if who is None:
        return _unauthorized()
    reply = await _ask(request, StatsQuery())
    if isinstance(reply, JSONResponse):
        return reply
    if isinstance(reply, ErrorReply) or reply.stats is None:  # e.g. a data-parallel rank that did not answer
        status = reply.status if isinstance(reply, ErrorReply) and reply.status is not None else UNAVAILABLE
        message = reply.error if isinstance(reply, ErrorReply) and reply.error else "the scheduler gave no stats"
        return error(status, message)
    # This API process's count of requests per hint dialect (`continuum.http.dialects`), pre-warms asked included.
    hints = dict(request.app.state.continuum.hints)
    return JSONResponse(stats_for(who, {**reply.stats, "hints": hints}))


def shown_state(who: Caller, state: dict) -> dict:
    state = dict(state)
    if "id" in state:
        tenant = split(state["id"])[0]
        state["id"] = who.shown_id(state["id"])
        if who.admin and tenant is not None:
            state["tenant"] = tenant
    return state


def stats_for(who: Caller, stats: dict) -> dict:
    """All of it without keys or for an admin; otherwise the caller's programs and the aggregates."""
    programs = [shown_state(who, p) for p in stats.get("programs", []) if who.owns(p.get("id", ""))]
    if who.tenant is not None and not who.admin:
        stats = {k: v for k, v in stats.items() if k in TENANT_STATS}
    return {**stats, "programs": programs, "num_programs": len(programs)}
