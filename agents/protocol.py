"""What an agent session sends and keeps, independent of the transport (sync or asyncio httpx).

Every request carries the program id (``session_id`` body field and ``X-Session-ID`` header) and the hints in
``vllm_xargs`` (``tool``, ``is_last_step``). Streaming requests also ask for ``stream_options.include_usage``
(prompt and cached tokens) and ``return_token_ids`` (the output ids; servers that do not know the field ignore
it). Each turn leaves a :class:`TurnStats` (send time, first token, done, tokens, cached tokens, output ids) and
each timed tool call a :class:`ToolCall`.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["SessionBase", "SessionError", "ToolCall", "TurnStats", "new_session_id", "SESSION_HEADER",
           "KEEPALIVE_EXPIRY_S", "RETRYABLE", "prompt_digest", "check_status", "DroppedConnection", "prefetch_result"]

SESSION_HEADER = "X-Session-ID"
# vLLM's server closes a connection after 5 s idle, httpx keeps one for 5 s: a turn sent as the server closes it
# fails with a ReadError. Keep idle connections for less (a tool call is often about that long).
KEEPALIVE_EXPIRY_S = 2.0
# A dropped connection (reset, closed mid-answer, refused while a proxy restarts): worth one more try. Timeouts
# are not retried: the server is slow, not gone, and a retry would double the wait.
RETRYABLE = (httpx.NetworkError, httpx.RemoteProtocolError)


class SessionError(RuntimeError):
    """A completion request failed (HTTP error status or transport error)."""


class DroppedConnection(Exception):
    """The answer stopped before it was complete (the stream was cut)."""


def new_session_id(prefix: str = "agent") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass
class ToolCall:
    """One tool call the agent ran between two turns."""

    name: str
    seconds: float
    turn: int  # index of the LLM turn it followed


class TurnTimes:
    """Time to first token and latency of a turn from its ``sent_s``, ``first_token_s`` and ``done_s``."""

    sent_s: float
    first_token_s: float | None
    done_s: float | None

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token_s is None else self.first_token_s - self.sent_s

    @property
    def latency_s(self) -> float | None:
        return None if self.done_s is None else self.done_s - self.sent_s


@dataclass
class TurnStats(TurnTimes):
    """One LLM turn as the client saw it (times on the monotonic clock)."""

    index: int
    sent_s: float
    first_token_s: float | None = None
    done_s: float | None = None
    prompt_tokens: int = 0
    cached_tokens: int | None = None  # None: the server did not report it (vLLM needs --enable-prompt-tokens-details)
    output_tokens: int = 0
    output_ids: list[int] | None = None
    output_text: str = ""
    finish_reason: str | None = None
    attempts: int = 1
    prompt_digest: str | None = None  # what was asked (messages or prompt), to compare turns across runs


@dataclass
class SessionBase:
    base_url: str
    model: str | None = None
    session_id: str = field(default_factory=new_session_id)
    api_key: str | None = None
    send_hints: bool = True
    timeout_s: float = 600.0
    stream: bool = True

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        if self.base_url.endswith("/v1"):
            self.base_url = self.base_url[: -len("/v1")]
        self.turns = 0
        self.tool_calls: list[ToolCall] = []
        self.turn_stats: list[TurnStats] = []
        self.retries = 0
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
        """``extra_body`` / ``extra_headers`` for ``openai`` (and litellm) calls::

            client.chat.completions.create(model=..., messages=..., **session.openai_kwargs(tool="grep"))
        """
        return {"extra_body": self.extra_body(tool, is_last_step), "extra_headers": {SESSION_HEADER: self.session_id}}

    def litellm_kwargs(self, tool: str | None = None, is_last_step: bool | None = None) -> dict[str, Any]:
        """Keyword arguments for ``litellm.completion``: this server as a ``hosted_vllm`` provider, plus the
        program id and hints::

            litellm.completion(messages=..., **session.litellm_kwargs(is_last_step=True))
        """
        return {"model": f"hosted_vllm/{self.model}", "api_base": self.base_url + "/v1",
                "api_key": self.api_key or "none", **self.openai_kwargs(tool, is_last_step)}

    def _request(self, params: dict[str, Any], tool: str | None, is_last_step: bool | None) -> dict[str, Any]:
        body = dict(params)
        if self.model is not None:
            body.setdefault("model", self.model)
        extra = self.extra_body(tool, is_last_step)
        if "vllm_xargs" in body and "vllm_xargs" in extra:
            extra["vllm_xargs"] = {**body["vllm_xargs"], **extra["vllm_xargs"]}
        body.update(extra)
        if body.setdefault("stream", self.stream):
            body.setdefault("stream_options", {"include_usage": True})
        body.setdefault("return_token_ids", True)
        return body

    # -- bookkeeping --------------------------------------------------------------------------------------------
    def _start_turn(self, body: dict[str, Any]) -> TurnStats:
        asked = body.get("messages", body.get("prompt"))
        return TurnStats(index=self.turns, sent_s=time.monotonic(), prompt_digest=prompt_digest(asked))

    def _finish_turn(self, stats: TurnStats, answer: dict[str, Any], first_token_s: float | None) -> None:
        stats.done_s = time.monotonic()
        stats.first_token_s = first_token_s or stats.done_s
        usage = answer.get("usage") or {}
        stats.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        stats.cached_tokens = int(cached) if cached is not None else None
        choice = (answer.get("choices") or [{}])[0]
        ids = choice.get("token_ids")
        stats.output_ids = [int(i) for i in ids] if ids is not None else None
        stats.output_text = choice.get("text") if "text" in choice else (choice.get("message") or {}).get("content") \
            or ""
        stats.finish_reason = choice.get("finish_reason")
        stats.output_tokens = int(usage.get("completion_tokens") or (len(ids) if ids else 0))
        self.record_turn(stats)

    def record_turn(self, stats: TurnStats) -> None:
        """Count a finished turn (adapters that send through another client report theirs here)."""
        self.turn_stats.append(stats)
        self.turns += 1
        self._next_tool = None

    def expect_tool(self, name: str | None) -> None:
        """Declare the tool the agent will run after the next turn (sent as the ``tool`` hint)."""
        self._next_tool = name

    def record_tool(self, name: str, seconds: float) -> None:
        """Count a finished tool call (adapters that learn its start and end from another framework's callbacks)."""
        self.tool_calls.append(ToolCall(name=name, seconds=seconds, turn=self.turns - 1))

    @property
    def tool_time_s(self) -> float:
        return sum(c.seconds for c in self.tool_calls)

    def _end_result(self, status: int) -> bool:
        self.ended = True
        self.end_status = status
        return status == 200

    @property
    def prefetch_path(self) -> str:
        return f"{self.base_url}/v1/sessions/{self.session_id}/prefetch"


def prefetch_result(r: httpx.Response) -> str | None:
    """What the server did with a prefetch request (``"issued"``, ``"already"``, ``"not_parked"``, ``"no_tier"``),
    or None: it does not track sessions (plain vLLM), does not know this one, or answered something else."""
    if r.status_code != 200:
        return None
    try:
        done = r.json().get("prefetch")
    except (ValueError, AttributeError):
        return None
    return done if isinstance(done, str) else None


def prompt_digest(asked: Any) -> str:
    """A short, stable digest of a request's messages or prompt (equal digests: the same question)."""
    text = json.dumps(asked, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_status(status: int, path: str, text: str) -> None:
    """Raise :class:`SessionError` with the server's message for a non-200 answer."""
    if status == 200:
        return
    try:
        err = json.loads(text).get("error", {})
        detail = (err.get("message") if isinstance(err, dict) else str(err)) or text
    except (ValueError, AttributeError):
        detail = text
    raise SessionError(f"HTTP {status} from {path}: {detail[:500]}")
