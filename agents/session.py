"""Client SDK: an agent session that a Continuum server can schedule as one program.

A *program* is one agent run: many LLM turns separated by tool calls. The server needs three things from the
client to schedule it well, and this module sends them on every request:

- the **program id** (``session_id`` in the body; ``X-Session-ID`` header for clients that cannot add body
  fields), so the server knows that turn k+1 continues turn k;
- **hints** in ``vllm_xargs``: ``tool`` (the tool the agent will run after this turn, when it knows it) and
  ``is_last_step`` (the program ends after this turn: nothing to keep);
- the **end** of the program (``POST /v1/sessions/{id}/end``), so its KV cache is released at once;
- optionally, that a tool's result is about to come back (``session.prefetch()``, ``POST
  /v1/sessions/{id}/prefetch``), so KV the server moved to host memory is loaded back before the next turn.

Turns **stream** (server-sent events, folded back into the usual JSON answer by :mod:`continuum_agents.stream`), so each
turn's time to first token is known (``session.turn_stats``). A turn whose connection drops (reset, closed
mid-answer) is **sent once more**; a second drop, an HTTP error or a timeout raises :class:`SessionError`.
It also records how long each tool call took (``session.tool_calls``). The session works against any
OpenAI-compatible server: the extra body fields are ignored by servers that do not know them, and ending a
session on a server without the endpoint (plain vLLM answers 404) is a no-op.

Sync (:class:`AgentSession`) and async (:class:`AsyncAgentSession`) variants share the request building in
:class:`continuum_agents.protocol.SessionBase`; ``session.openai_kwargs(...)`` gives the same fields to the ``openai``
client and to litellm.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, AsyncIterator, Callable, Iterator, TypeVar

import httpx

from continuum_agents.protocol import (
    KEEPALIVE_EXPIRY_S,
    RETRYABLE,
    SESSION_HEADER,
    DroppedConnection,
    SessionBase,
    SessionError,
    ToolCall,
    TurnStats,
    check_status,
    new_session_id,
    prefetch_result,
)
from continuum_agents.stream import StreamAccumulator, StreamError

__all__ = ["AgentSession", "AsyncAgentSession", "ToolCall", "TurnStats", "SessionError", "new_session_id",
           "KEEPALIVE_EXPIRY_S", "SESSION_HEADER"]

T = TypeVar("T")
RETRY_PAUSE_S = 0.2
_DROPPED = RETRYABLE + (DroppedConnection,)


def _describe(path: str, exc: BaseException) -> str:
    return f"{type(exc).__name__} on {path}: {exc}"


def _is_sse(r: httpx.Response) -> bool:
    return "text/event-stream" in r.headers.get("content-type", "")


class AgentSession(SessionBase):
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
                 stream: bool = True, client: httpx.Client | None = None) -> None:
        super().__init__(base_url, model, session_id or new_session_id(), api_key, send_hints, timeout_s, stream)
        self._own_client = client is None
        self.client = client or httpx.Client(timeout=timeout_s,
                                             limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S))

    def post(self, path: str, params: dict[str, Any], *, tool: str | None = None,
             is_last_step: bool | None = None) -> dict[str, Any]:
        """POST a completion-style request carrying the program id and hints; returns the whole answer."""
        body = self._request(params, tool, is_last_step)
        stats = self._start_turn(body)
        try:
            try:
                answer, first = self._send(path, body)
            except _DROPPED:
                self.retries += 1
                stats.attempts = 2
                time.sleep(RETRY_PAUSE_S)
                answer, first = self._send(path, body)
        except (httpx.HTTPError, DroppedConnection, StreamError) as exc:
            raise SessionError(_describe(path, exc)) from exc
        self._finish_turn(stats, answer, first)
        return answer

    def _send(self, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], float | None]:
        url = self.base_url + path
        if not body.get("stream"):
            r = self.client.post(url, json=body, headers=self.headers, timeout=self.timeout_s)
            check_status(r.status_code, path, r.text)
            return r.json(), None
        acc = StreamAccumulator(chat=path.endswith("/chat/completions"))
        with self.client.stream("POST", url, json=body, headers=self.headers, timeout=self.timeout_s) as r:
            if r.status_code != 200 or not _is_sse(r):
                r.read()
                check_status(r.status_code, path, r.text)
                return r.json(), None
            for line in r.iter_lines():
                acc.feed_line(line)
                if acc.done:
                    break
        if not acc.complete:
            raise DroppedConnection("the stream ended before the answer was complete")
        return acc.result(), acc.first_token_s

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
            self.record_tool(name, time.monotonic() - t0)

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

    def prefetch(self) -> str | None:
        """Tell the server the next turn comes soon (the tool's result is on its way): KV it parked in host memory
        is loaded back now. What it did (``"issued"``, ``"already"``, ``"not_parked"``, ``"no_tier"``), or None
        where it tracks no sessions or could not be reached. Never raises."""
        if self.ended:
            return None
        try:
            return prefetch_result(self.client.post(self.prefetch_path, headers=self.headers,
                                                    timeout=min(self.timeout_s, 30.0)))
        except httpx.HTTPError:
            return None

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


class AsyncAgentSession(SessionBase):
    """The asyncio twin of :class:`AgentSession` (``async with``, ``await s.chat(...)``)."""

    def __init__(self, base_url: str, model: str | None = None, session_id: str | None = None, *,
                 api_key: str | None = None, send_hints: bool = True, timeout_s: float = 600.0,
                 stream: bool = True, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(base_url, model, session_id or new_session_id(), api_key, send_hints, timeout_s, stream)
        self._own_client = client is None
        self.client = client or httpx.AsyncClient(
            timeout=timeout_s, limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S))

    async def post(self, path: str, params: dict[str, Any], *, tool: str | None = None,
                   is_last_step: bool | None = None) -> dict[str, Any]:
        body = self._request(params, tool, is_last_step)
        stats = self._start_turn(body)
        try:
            try:
                answer, first = await self._send(path, body)
            except _DROPPED:
                self.retries += 1
                stats.attempts = 2
                await asyncio.sleep(RETRY_PAUSE_S)
                answer, first = await self._send(path, body)
        except (httpx.HTTPError, DroppedConnection, StreamError) as exc:
            raise SessionError(_describe(path, exc)) from exc
        self._finish_turn(stats, answer, first)
        return answer

    async def _send(self, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], float | None]:
        url = self.base_url + path
        if not body.get("stream"):
            r = await self.client.post(url, json=body, headers=self.headers, timeout=self.timeout_s)
            check_status(r.status_code, path, r.text)
            return r.json(), None
        acc = StreamAccumulator(chat=path.endswith("/chat/completions"))
        async with self.client.stream("POST", url, json=body, headers=self.headers, timeout=self.timeout_s) as r:
            if r.status_code != 200 or not _is_sse(r):
                await r.aread()
                check_status(r.status_code, path, r.text)
                return r.json(), None
            async for line in r.aiter_lines():
                acc.feed_line(line)
                if acc.done:
                    break
        if not acc.complete:
            raise DroppedConnection("the stream ended before the answer was complete")
        return acc.result(), acc.first_token_s

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
            self.record_tool(name, time.monotonic() - t0)

    async def end(self) -> bool:
        if self.ended:
            return self.end_status == 200
        try:
            r = await self.client.post(f"{self.base_url}/v1/sessions/{self.session_id}/end", headers=self.headers,
                                       timeout=min(self.timeout_s, 30.0))
            return self._end_result(r.status_code)
        except httpx.HTTPError:
            return self._end_result(0)

    async def prefetch(self) -> str | None:
        if self.ended:
            return None
        try:
            return prefetch_result(await self.client.post(self.prefetch_path, headers=self.headers,
                                                          timeout=min(self.timeout_s, 30.0)))
        except httpx.HTTPError:
            return None

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
