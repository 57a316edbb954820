"""Continuum's HTTP extension of vLLM's OpenAI server: one ASGI middleware (``--middleware``) and a router.

The middleware sits in front of vLLM's app. On its first call it adds Continuum's routes (`continuum.http.routes`) to
vLLM's app, where vLLM's authentication applies to them. Then, for each request:

- it validates Continuum's fields of a program request (bad input -> 400 naming the field, before vLLM sees it);
- it maps the hint dialects of other stacks (Dynamo, llm-d's agent headers, vLLM's kv_hints) onto Continuum's
  program id and ``vllm_xargs`` hints, before tenants are applied (`continuum.http.dialects`);
- with API keys, it qualifies every session id the request carries (body ``session_id``, ``X-Session-ID``,
  ``vllm_xargs.session_id``) with the caller's tenant, so the scheduler keeps tenants apart (`continuum.tenancy`),
  and salts a program request's prefix cache with the tenant (vLLM's ``cache_salt``): a tenant's pinned KV is
  then a hit for that tenant only, and nobody learns from a fast answer what another tenant's prompts hold;
- it watches a program's answer going out (`continuum.http.turn_watch`: tool, streamed events, disconnects);
- it hands a beam search request's ``vllm_xargs.patience`` to vLLM's frontend search (`continuum.http.beam_patience`);
- before vLLM renders ``/metrics``, it refreshes the ``continuum_*`` collector (`continuum.http.metrics`).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from starlette.datastructures import Headers

from continuum.control.channel import ControlClient
from continuum.control.dp import DPControlClient, control_client
from continuum.control.messages import OkReply, StatsQuery
from continuum.http import beam_patience, dialects
from continuum.http.keys import Keys
from continuum.http.metrics import ContinuumCollector
from continuum.http.routes import error_body
from continuum.http.turn_watch import TurnWatch
from continuum.http.validation import BadRequest, check_completion_request, check_session_id
from continuum.policy.config import ContinuumConfig
from continuum.tenancy import ANONYMOUS, Caller

__all__ = ["ContinuumMiddleware", "BadRequest", "check_completion_request", "check_session_id"]

# Requests that carry a program: Continuum's fields are validated and their answers watched.
PROGRAM_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/chat/completions/batch")
GUARDED_PREFIX = ("/v1", "/v2", "/inference", "/cohere")  # where vLLM checks keys itself (its authenticate.py)
Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


@dataclass
class ContinuumState:
    """What the routes need, kept on ``app.state.continuum``."""

    keys: Keys
    control: ControlClient | DPControlClient | None
    collector: ContinuumCollector | None
    hints: Counter = field(default_factory=Counter)  # requests per hint dialect, pre-warms asked for (stats)


class ContinuumMiddleware:
    """ASGI middleware added to vLLM's app by ``continuum serve`` (``--middleware``)."""

    def __init__(self, app: Callable) -> None:
        self.app = app
        cfg = ContinuumConfig.from_env()
        addr, size = cfg.control_addr, cfg.dp_size
        self.control = control_client(addr, size) if addr else None
        self.quick = control_client(addr, size, timeout_s=1.0) if addr else None
        self.count_events = "backpressure" in cfg.terms  # nothing to count for otherwise
        self.state: ContinuumState | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.state is None and scope.get("app") is not None:
            self.attach(scope["app"])
        if scope["type"] != "http" or self.state is None:
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        if path == "/metrics" and method == "GET":
            await self._refresh_metrics()
        elif method == "POST":
            return await self._post(scope, receive, send)
        elif self.state.keys.enabled:
            scope = self._qualified_headers(scope)
        return await self.app(scope, receive, send)

    def attach(self, app: Any) -> None:
        """Add the routes to vLLM's app (once, at its start-up) and keep what they need on its state."""
        from continuum.http.metrics import vllm_collector
        from continuum.http.routes import router

        collector = vllm_collector() if self.control is not None else None
        self.state = ContinuumState(Keys.of_app(app), self.control, collector)
        app.state.continuum = self.state
        app.include_router(router)
        beam_patience.install()

    async def _post(self, scope: Scope, receive: Receive, send: Send) -> None:
        keys, program_path = self.state.keys, scope["path"] in PROGRAM_PATHS
        who = keys.caller(Headers(scope=scope))
        if who is None and scope["path"].startswith(GUARDED_PREFIX):
            return await self.app(scope, receive, send)  # vLLM answers 401 before anything else
        who = who or Caller(ANONYMOUS)
        if not (program_path or keys.enabled):
            return await self.app(scope, receive, send)
        raw, more = await read_body(receive)
        body, changed = parse_json(raw), False
        if program_path:
            try:
                for value in header_values(scope, b"x-session-id"):
                    check_session_id(value, "X-Session-ID")
                check_completion_request({}, body)
                spoken = dialects.read(Headers(scope=scope), body)
            except BadRequest as exc:
                return await send_json(send, 400, error_body(400, str(exc), exc.param))
            # Before tenants: a program a dialect names is qualified like any other.
            changed = dialects.apply(body, spoken, named=program_id_of(scope, body) is not None)
            self.state.hints.update(spoken.counts)
        if who.tenant is not None:
            scope = self._qualified_headers(scope, who)
            if isinstance(body, dict) and qualify_body(body, who, salt=program_path):
                changed = True
        if changed:
            raw = json.dumps(body).encode()
            scope = with_header(scope, b"content-length", str(len(raw)).encode())
        receive = replaying(raw, more, receive)
        program = program_id_of(scope, body) if program_path and self.control is not None else None
        if program is not None:
            watch = TurnWatch(self.control, program, read_tool=not has_tool_hint(body),
                              count_events=self.count_events and isinstance(body, dict) and body.get("stream") is True)
            send, receive = watch.wrap_send(send), watch.wrap_receive(receive)
        token = beam_patience.PATIENCE.set(beam_patience.patience_of(body))  # read by vLLM's beam search, if any
        try:
            return await self.app(scope, receive, send)
        finally:
            beam_patience.PATIENCE.reset(token)

    def _qualified_headers(self, scope: Scope, who: Caller | None = None) -> Scope:
        """Every ``X-Session-ID`` the request carries, qualified with the caller's tenant."""
        if who is None:
            who = self.state.keys.caller(Headers(scope=scope)) or Caller(ANONYMOUS)
        headers = [(k, who.qualify(v.decode("latin-1")).encode("latin-1") if k.lower() == b"x-session-id" else v)
                   for k, v in scope.get("headers", [])]
        return {**scope, "headers": headers}

    async def _refresh_metrics(self) -> None:
        if self.state.collector is None:
            return
        try:
            reply = await self.quick.call(StatsQuery())
        except TimeoutError:
            return  # the last values stand
        if isinstance(reply, OkReply) and reply.stats is not None:
            self.state.collector.update(reply.stats)


def qualify_body(body: dict, who: Caller, salt: bool = False) -> bool:
    """Qualify the body's session ids in place (and, with ``salt``, its prefix-cache salt); whether it changed."""
    changed = False
    own = body.get("cache_salt")
    if salt and (own is None or (isinstance(own, str) and own)):  # anything else is vLLM's 400 to give
        # The client's own salt stays within its tenant.
        body["cache_salt"], changed = who.tenant + (f"-{own}" if own else ""), True
    if isinstance(body.get("session_id"), str) and body["session_id"]:
        body["session_id"], changed = who.qualify(body["session_id"]), True
    xargs = body.get("vllm_xargs")
    if isinstance(xargs, dict) and isinstance(xargs.get("session_id"), str) and xargs["session_id"]:
        xargs["session_id"], changed = who.qualify(xargs["session_id"]), True
    return changed


def program_id_of(scope: Scope, body: Any) -> str | None:
    """The program id vLLM will read, in vLLM's order: body ``session_id``, header, ``vllm_xargs.session_id``."""
    if isinstance(body, dict) and isinstance(body.get("session_id"), str) and body["session_id"]:
        return body["session_id"]
    if header := Headers(scope=scope).get("x-session-id"):
        return header
    xargs = body.get("vllm_xargs") if isinstance(body, dict) else None
    value = xargs.get("session_id") if isinstance(xargs, dict) else None
    return value if isinstance(value, str) and value else None


def has_tool_hint(body: Any) -> bool:
    xargs = body.get("vllm_xargs") if isinstance(body, dict) else None
    return isinstance(xargs, dict) and isinstance(xargs.get("tool"), str)


def header_values(scope: Scope, name: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == name]


def with_header(scope: Scope, name: bytes, value: bytes) -> Scope:
    headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != name]
    return {**scope, "headers": [*headers, (name, value)]}


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:  # vLLM answers malformed JSON itself
        return None


async def read_body(receive: Receive) -> tuple[bytes, list[dict]]:
    """The whole request body, and any message that came after it (a disconnect) to hand on."""
    chunks = []
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            return b"".join(chunks), [msg]
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body"):
            return b"".join(chunks), []


def replaying(raw: bytes, more: list[dict], receive: Receive) -> Receive:
    """A ``receive`` that hands on the body already read (``read_body``), then what came after it."""
    pending = [{"type": "http.request", "body": raw, "more_body": False}, *more]

    async def _receive() -> dict:
        return pending.pop(0) if pending else await receive()

    return _receive


async def send_json(send: Send, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
