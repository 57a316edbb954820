"""Client SDK: an agent session that a Continuum server can schedule as one program.

A *program* is one agent run: many LLM turns separated by tool calls. The server needs three things from the
client to schedule it well, and this module sends them on every request:

- the **program id** (``session_id`` in the body; ``X-Session-ID`` header for clients that cannot add body
  fields), so the server knows that turn k+1 continues turn k;
- **hints** in ``vllm_xargs``: ``tool`` (the tool the agent will run after this turn, when it knows it) and
  ``is_last_step`` (the program ends after this turn: nothing to keep);
- the **end** of the program (``POST /v1/sessions/{id}/end``), so its KV cache is released at once.

It also records how long each tool call took (``session.tool_calls``), the agent-side view of what the server
predicts. The session works against any OpenAI-compatible server: the extra body fields are ignored by servers
that do not know them, and ending a session on a server without the endpoint (plain vLLM answers 404) is a no-op.

Sync (:class:`AgentSession`) and async (:class:`AsyncAgentSession`) variants share the request building in
:class:`_SessionBase`; ``session.openai_kwargs(...)`` gives the same fields to the ``openai`` client.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterator, TypeVar

import httpx

__all__ = ["AgentSession", "AsyncAgentSession", "ToolCall", "SessionError", "new_session_id"]

T = TypeVar("T")
SESSION_HEADER = "X-Session-ID"
# vLLM's server closes a connection after 5 s idle, httpx keeps one for 5 s: a turn sent as the server closes it
# fails with a ReadError. Keep idle connections for less (a tool call is often about that long).
KEEPALIVE_EXPIRY_S = 2.0


class SessionError(RuntimeError):
    """A completion request failed (HTTP error status or transport error)."""


def new_session_id(prefix: str = "agent") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass
class ToolCall:
    """One tool call the agent ran between two turns."""

    name: str
    seconds: float
    turn: int  # index of the LLM turn it followed


@dataclass
class _SessionBase:
    base_url: str
    model: str | None = None
    session_id: str = field(default_factory=new_session_id)
    api_key: str | None = None
    send_hints: bool = True
    timeout_s: float = 600.0

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        if self.base_url.endswith("/v1"):
            self.base_url = self.base_url[: -len("/v1")]
        self.turns = 0
        self.tool_calls: list[ToolCall] = []
        self.ended = False
        self.end_status: int | None = None
        self._next_tool: str | None = None

    # -- request building ---------------------------------------------------------------------------------------
    @property
    def headers(self) -> dict[str, str]:
        h = {SESSION_HEADER: self.session_id}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h

    def hints(self, tool: str | None = None, is_last_step: bool | None = None) -> dict[str, Any]:
        """The ``vllm_xargs`` hints of one request (empty when hints are off or unknown)."""
        if not self.send_hints:
            return {}
        xargs: dict[str, Any] = {}
        tool = tool if tool is not None else self._next_tool
        if tool:
            xargs["tool"] = tool
        if is_last_step:
            xargs["is_last_step"] = True
        return xargs

    def extra_body(self, tool: str | None = None, is_last_step: bool | None = None) -> dict[str, Any]:
        """Body fields to merge into a completion request: the program id and the hints."""
        body: dict[str, Any] = {"session_id": self.session_id}
        if xargs := self.hints(tool, is_last_step):
            body["vllm_xargs"] = xargs
        return body

    def openai_kwargs(self, tool: str | None = None, is_last_step: bool | None = None) -> dict[str, Any]:
        """``extra_body`` / ``extra_headers`` for ``openai`` client calls::

            client.chat.completions.create(model=..., messages=..., **session.openai_kwargs(tool="grep"))
        """
        return {"extra_body": self.extra_body(tool, is_last_step), "extra_headers": {SESSION_HEADER: self.session_id}}

    def _request(self, params: dict[str, Any], tool: str | None, is_last_step: bool | None) -> dict[str, Any]:
        body = dict(params)
        if self.model is not None:
            body.setdefault("model", self.model)
        extra = self.extra_body(tool, is_last_step)
        if "vllm_xargs" in body and "vllm_xargs" in extra:
            extra["vllm_xargs"] = {**body["vllm_xargs"], **extra["vllm_xargs"]}
        body.update(extra)
        return body

    def _record_turn(self) -> None:
        self.turns += 1
        self._next_tool = None

    def expect_tool(self, name: str | None) -> None:
        """Declare the tool the agent will run after the next turn (sent as the ``tool`` hint)."""
        self._next_tool = name

    def _record_tool(self, name: str, seconds: float) -> None:
        self.tool_calls.append(ToolCall(name=name, seconds=seconds, turn=self.turns - 1))

    @property
    def tool_time_s(self) -> float:
        return sum(c.seconds for c in self.tool_calls)

    def _end_result(self, status: int) -> bool:
        self.ended = True
        self.end_status = status
        return status == 200


def _check(r: httpx.Response) -> dict[str, Any]:
    if r.status_code != 200:
        try:
            detail = r.json().get("error", {}).get("message") or r.text
        except ValueError:
            detail = r.text
        raise SessionError(f"HTTP {r.status_code} from {r.request.url.path}: {detail[:500]}")
    return r.json()


class AgentSession(_SessionBase):
    """A synchronous agent session over httpx. Use as a context manager: the session ends on exit.

    ::

        with AgentSession("http://127.0.0.1:8000", model="smollm2-135m") as s:
            reply = s.chat(messages, tool="grep")            # turn 1, tells the server "grep" comes next
            with s.tool("grep"):
                result = run_grep()                          # timed
            reply = s.chat(messages, is_last_step=True)      # last turn: nothing to keep
    """

    def __init__(self, base_url: str, model: str | None = None, session_id: str | None = None, *,
                 api_key: str | None = None, send_hints: bool = True, timeout_s: float = 600.0,
                 client: httpx.Client | None = None) -> None:
        super().__init__(base_url, model, session_id or new_session_id(), api_key, send_hints, timeout_s)
        self._own_client = client is None
        self.client = client or httpx.Client(timeout=timeout_s,
                                             limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S))

    def post(self, path: str, params: dict[str, Any], *, tool: str | None = None,
             is_last_step: bool | None = None) -> dict[str, Any]:
        """POST a completion-style request carrying the program id and hints; returns the JSON answer."""
        body = self._request(params, tool, is_last_step)
        try:
            r = self.client.post(self.base_url + path, json=body, headers=self.headers, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise SessionError(f"{type(exc).__name__} on {path}: {exc}") from exc
        out = _check(r)
        self._record_turn()
        return out

    def chat(self, messages: list[dict[str, Any]], *, tool: str | None = None, is_last_step: bool | None = None,
             **params: Any) -> dict[str, Any]:
        """One chat-completion turn; returns the whole JSON answer."""
        return self.post("/v1/chat/completions", {"messages": messages, **params}, tool=tool,
                         is_last_step=is_last_step)

    def complete(self, prompt: str | list[int], *, tool: str | None = None, is_last_step: bool | None = None,
                 **params: Any) -> dict[str, Any]:
        """One (text or token-id) completion turn; returns the whole JSON answer."""
        return self.post("/v1/completions", {"prompt": prompt, **params}, tool=tool, is_last_step=is_last_step)

    @contextlib.contextmanager
    def tool(self, name: str) -> Iterator[None]:
        """Time a tool call: ``with session.tool("pytest"): run_tests()``."""
        t0 = time.monotonic()
        try:
            yield
        finally:
            self._record_tool(name, time.monotonic() - t0)

    def run_tool(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.tool(name):
            return fn(*args, **kwargs)

    def end(self) -> bool:
        """End the program on the server. True if the server released it; False if it does not track sessions
        (plain vLLM) or could not be reached. Never raises."""
        if self.ended:
            return self.end_status == 200
        try:
            r = self.client.post(f"{self.base_url}/v1/sessions/{self.session_id}/end", headers=self.headers,
                                 timeout=min(self.timeout_s, 30.0))
            return self._end_result(r.status_code)
        except httpx.HTTPError:
            return self._end_result(0)

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    def __enter__(self) -> "AgentSession":
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.end()
        finally:
            self.close()


class AsyncAgentSession(_SessionBase):
    """The asyncio twin of :class:`AgentSession` (``async with``, ``await s.chat(...)``)."""

    def __init__(self, base_url: str, model: str | None = None, session_id: str | None = None, *,
                 api_key: str | None = None, send_hints: bool = True, timeout_s: float = 600.0,
                 client: httpx.AsyncClient | None = None) -> None:
        super().__init__(base_url, model, session_id or new_session_id(), api_key, send_hints, timeout_s)
        self._own_client = client is None
        self.client = client or httpx.AsyncClient(
            timeout=timeout_s, limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S))

    async def post(self, path: str, params: dict[str, Any], *, tool: str | None = None,
                   is_last_step: bool | None = None) -> dict[str, Any]:
        body = self._request(params, tool, is_last_step)
        try:
            r = await self.client.post(self.base_url + path, json=body, headers=self.headers,
                                       timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise SessionError(f"{type(exc).__name__} on {path}: {exc}") from exc
        out = _check(r)
        self._record_turn()
        return out

    async def chat(self, messages: list[dict[str, Any]], *, tool: str | None = None,
                   is_last_step: bool | None = None, **params: Any) -> dict[str, Any]:
        return await self.post("/v1/chat/completions", {"messages": messages, **params}, tool=tool,
                               is_last_step=is_last_step)

    async def complete(self, prompt: str | list[int], *, tool: str | None = None,
                       is_last_step: bool | None = None, **params: Any) -> dict[str, Any]:
        return await self.post("/v1/completions", {"prompt": prompt, **params}, tool=tool,
                               is_last_step=is_last_step)

    @contextlib.asynccontextmanager
    async def tool(self, name: str) -> AsyncIterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            self._record_tool(name, time.monotonic() - t0)

    async def end(self) -> bool:
        if self.ended:
            return self.end_status == 200
        try:
            r = await self.client.post(f"{self.base_url}/v1/sessions/{self.session_id}/end", headers=self.headers,
                                       timeout=min(self.timeout_s, 30.0))
            return self._end_result(r.status_code)
        except httpx.HTTPError:
            return self._end_result(0)

    async def aclose(self) -> None:
        if self._own_client:
            await self.client.aclose()

    async def __aenter__(self) -> "AsyncAgentSession":
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.end()
        finally:
            await self.aclose()
