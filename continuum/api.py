"""Continuum's HTTP extension of vLLM's OpenAI server, as one ASGI middleware (``--middleware``).

It validates the program id and hints on completion requests (bad input -> 400 naming the field, before
vLLM sees it), and serves the session and stats endpoints by asking the scheduler over the control channel.
"""

from __future__ import annotations

import json
import re
from typing import Any, Awaitable, Callable

from continuum.config import ContinuumConfig
from continuum.dp import control_client
from continuum.tool_names import ResponseToolReader

MAX_SESSION_ID = 256
COMPLETION_PATHS = ("/v1/chat/completions", "/v1/completions")
_SESSION_PATH = re.compile(r"^/v1/sessions/(?P<id>[^/]+)(?P<end>/end)?/?$")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
HINT_TYPES = {"is_last_step": bool, "tool": str, "session_id": str}

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class BadRequest(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def check_session_id(value: Any, param: str) -> None:
    """A session id is a 1..256 character string without control characters."""
    if not isinstance(value, str):
        raise BadRequest(param, f"{param} must be a string")
    if not value:
        raise BadRequest(param, f"{param} must not be empty")
    if len(value) > MAX_SESSION_ID:
        raise BadRequest(param, f"{param} is longer than {MAX_SESSION_ID} characters")
    if _CONTROL_CHARS.search(value):
        raise BadRequest(param, f"{param} contains control characters")


def check_completion_request(headers: dict[str, str], body: Any) -> None:
    """Validate Continuum's fields of a completion request; vLLM validates the rest."""
    if "x-session-id" in headers:
        check_session_id(headers["x-session-id"], "X-Session-ID")
    if not isinstance(body, dict):
        return  # vLLM answers malformed bodies itself
    if body.get("session_id") is not None:
        check_session_id(body["session_id"], "session_id")
    xargs = body.get("vllm_xargs")
    if xargs is None:
        return
    if not isinstance(xargs, dict):
        raise BadRequest("vllm_xargs", "vllm_xargs must be an object")
    for key, typ in HINT_TYPES.items():
        if key in xargs and xargs[key] is not None and not isinstance(xargs[key], typ):
            raise BadRequest(f"vllm_xargs.{key}", f"vllm_xargs.{key} must be a {typ.__name__}")
    if isinstance(xargs.get("session_id"), str):
        check_session_id(xargs["session_id"], "vllm_xargs.session_id")
    if isinstance(xargs.get("tool"), str) and len(xargs["tool"]) > MAX_SESSION_ID:
        raise BadRequest("vllm_xargs.tool", f"vllm_xargs.tool is longer than {MAX_SESSION_ID} characters")


def error_body(status: int, message: str, param: str | None = None) -> dict:
    kind = {400: "BadRequestError", 404: "NotFoundError"}.get(status, "ServiceUnavailableError")
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


async def send_json(send: Send, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive) -> tuple[bytes, list[dict]]:
    """Read the whole request body, keeping the messages so they can be replayed to vLLM."""
    chunks, messages = [], []
    while True:
        msg = await receive()
        messages.append(msg)
        if msg["type"] != "http.request":
            break
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body"):
            break
    return b"".join(chunks), messages


def replaying(messages: list[dict], receive: Receive) -> Receive:
    pending = list(messages)

    async def _receive() -> dict:
        return pending.pop(0) if pending else await receive()

    return _receive


class ContinuumMiddleware:
    """ASGI middleware added to vLLM's app by ``continuum serve`` (``--middleware``)."""

    def __init__(self, app: Callable) -> None:
        self.app = app
        cfg = ContinuumConfig.from_env()
        self.control = control_client(cfg.control_addr, cfg.dp_size) if cfg.control_addr else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        if path == "/continuum/stats" and method == "GET":
            return await self._control(send, "stats", key="stats")
        if m := _SESSION_PATH.match(path):
            return await self._session(send, method, m.group("id"), bool(m.group("end")))
        if method == "POST" and path in COMPLETION_PATHS:
            raw, messages = await read_body(receive)
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            body = _parse_json(raw)
            try:
                check_completion_request(headers, body)
            except BadRequest as exc:
                return await send_json(send, 400, error_body(400, str(exc), exc.param))
            receive = replaying(messages, receive)
            program = _program_of(headers, body)
            if program is not None and self.control is not None and not _has_tool_hint(body):
                send = self._reading_tool(send, program)
        if path == "/metrics" and method == "GET" and self.control is not None:
            send = await self._with_continuum_metrics(send)
        return await self.app(scope, receive, send)

    def _reading_tool(self, send: Send, program: str) -> Send:
        """Pass the response through, then tell the scheduler which tool the answer calls."""
        reader = ResponseToolReader()

        async def _send(message: dict) -> None:
            await send(message)
            if message["type"] == "http.response.body":
                reader.feed(message.get("body", b""))
                if not message.get("more_body") and (tool := reader.tool()):
                    try:
                        await self.control.call("tool", id=program, tool=tool)
                    except TimeoutError:
                        pass  # the TTL decided at finish stands

        return _send

    async def _with_continuum_metrics(self, send: Send) -> Send:
        """Append continuum_* series to vLLM's Prometheus text."""
        try:
            reply = await self.control.call("stats")
        except TimeoutError:
            return send
        extra = prometheus_lines(reply.get("stats", {})).encode()

        async def _send(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [(k, v) for k, v in message.get("headers", [])
                                                  if k.lower() != b"content-length"]}
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                message = {**message, "body": message.get("body", b"") + extra}
            await send(message)

        return _send

    async def _session(self, send: Send, method: str, session_id: str, end: bool) -> None:
        from urllib.parse import unquote

        session_id = unquote(session_id)
        try:
            check_session_id(session_id, "session_id")
        except BadRequest as exc:
            return await send_json(send, 400, error_body(400, str(exc), exc.param))
        if end and method == "POST":
            return await self._control(send, "end", key="session", id=session_id)
        if not end and method == "GET":
            return await self._control(send, "session", key="session", id=session_id)
        return await send_json(send, 405, error_body(405, f"{method} is not allowed here"))

    async def _control(self, send: Send, op: str, key: str, **fields: Any) -> None:
        if self.control is None:
            return await send_json(send, 503, error_body(503, "the Continuum scheduler is not loaded"))
        try:
            reply = await self.control.call(op, **fields)
        except TimeoutError as exc:
            return await send_json(send, 503, error_body(503, str(exc)))
        if not reply.get("ok"):
            status = int(reply.get("status", 500))
            return await send_json(send, status, error_body(status, reply.get("error", "failed"), "session_id"))
        await send_json(send, 200, reply[key])


def prometheus_lines(stats: dict) -> str:
    pins, kv = stats.get("pins", {}), stats.get("kv", {})
    series = {
        "continuum_programs": ("gauge", stats.get("num_programs", 0)),
        "continuum_pins_active": ("gauge", pins.get("active", 0)),
        "continuum_pinned_blocks": ("gauge", pins.get("pinned_blocks", 0)),
        "continuum_pins_created_total": ("counter", pins.get("created", 0)),
        "continuum_pin_hits_total": ("counter", pins.get("hit", 0)),
        "continuum_pins_expired_total": ("counter", pins.get("expired", 0)),
        "continuum_pins_released_pressure_total": ("counter", pins.get("released_pressure", 0)),
        "continuum_pins_released_end_total": ("counter", pins.get("released_end", 0)),
        "continuum_kv_free_blocks": ("gauge", kv.get("free_blocks", 0)),
    }
    lines = []
    for name, (kind, value) in series.items():
        lines += [f"# TYPE {name} {kind}", f"{name} {value}"]
    return "\n".join(lines) + "\n"


def _program_of(headers: dict[str, str], body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("session_id"), str):
        return body["session_id"]
    if "x-session-id" in headers:
        return headers["x-session-id"]
    xargs = body.get("vllm_xargs") if isinstance(body, dict) else None
    return xargs.get("session_id") if isinstance(xargs, dict) and isinstance(xargs.get("session_id"), str) else None


def _has_tool_hint(body: Any) -> bool:
    xargs = body.get("vllm_xargs") if isinstance(body, dict) else None
    return isinstance(xargs, dict) and isinstance(xargs.get("tool"), str)


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None
