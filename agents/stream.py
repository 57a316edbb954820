"""Server-sent events of an OpenAI-style completion, folded back into the answer a non-streaming call returns.

A streamed chat completion arrives as ``data: {...}`` chunks whose ``choices[i].delta`` carry pieces of the
message (``content``, ``tool_calls`` by index with their ``arguments`` in fragments); a text completion's chunks
carry ``choices[i].text``. vLLM adds ``token_ids`` per chunk and ``prompt_token_ids`` on the first one when the
request asks for ``return_token_ids``, and a last chunk with ``usage`` when it asks for
``stream_options.include_usage``. :class:`StreamAccumulator` reads the lines and builds::

    {"id", "model", "choices": [{"index", "message": {"role", "content", "tool_calls"?} | "text",
                                 "finish_reason", "token_ids"?}],
     "usage"?, "prompt_token_ids"?}

and notes when the first token came (the TTFT of the turn). A stream that stops before any choice finished and
without ``[DONE]`` was cut: :attr:`complete` is False, which the session treats as a dropped connection.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["StreamAccumulator", "StreamError"]


class StreamError(RuntimeError):
    """The server sent an error event inside the stream."""


@dataclass
class _Choice:
    index: int
    text: list[str] = field(default_factory=list)
    role: str | None = None
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    token_ids: list[int] = field(default_factory=list)
    has_ids: bool = False
    finish_reason: str | None = None


class StreamAccumulator:
    """Feed it the SSE lines of one response; :meth:`result` is the whole answer."""

    def __init__(self, chat: bool) -> None:
        self.chat = chat
        self.first_token_s: float | None = None
        self.done = False
        self._choices: dict[int, _Choice] = {}
        self._top: dict[str, Any] = {}

    def feed_line(self, line: str) -> None:
        if not line.startswith("data:"):
            return
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            return
        if not isinstance(chunk, dict):
            return
        if "error" in chunk:
            err = chunk["error"]
            raise StreamError(str(err.get("message") if isinstance(err, dict) else err)[:500])
        for key in ("id", "model", "created", "prompt_token_ids", "usage"):
            if chunk.get(key) is not None:
                self._top[key] = chunk[key]
        for c in chunk.get("choices") or []:
            self._feed_choice(c)

    def _feed_choice(self, c: dict[str, Any]) -> None:
        ch = self._choices.setdefault(int(c.get("index", 0)), _Choice(int(c.get("index", 0))))
        got = False
        if self.chat:
            delta = c.get("delta") or {}
            ch.role = delta.get("role") or ch.role
            if delta.get("content"):
                ch.text.append(delta["content"])
                got = True
            for call in delta.get("tool_calls") or []:
                self._feed_tool_call(ch, call)
                got = True
        elif c.get("text"):
            ch.text.append(c["text"])
            got = True
        if c.get("token_ids"):
            ch.token_ids.extend(int(i) for i in c["token_ids"])
            ch.has_ids = got = True
        if got and self.first_token_s is None:
            self.first_token_s = time.monotonic()
        if c.get("finish_reason"):
            ch.finish_reason = c["finish_reason"]

    @staticmethod
    def _feed_tool_call(ch: _Choice, call: dict[str, Any]) -> None:
        slot = ch.tool_calls.setdefault(int(call.get("index", len(ch.tool_calls))),
                                        {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
        if call.get("id"):
            slot["id"] = call["id"]
        fn = call.get("function") or {}
        if fn.get("name"):
            slot["function"]["name"] += fn["name"]
        if fn.get("arguments"):
            slot["function"]["arguments"] += fn["arguments"]

    @property
    def complete(self) -> bool:
        """The server said it was done, or every choice it started has a finish reason."""
        return self.done or (bool(self._choices) and all(c.finish_reason for c in self._choices.values()))

    def result(self) -> dict[str, Any]:
        choices = []
        for i in sorted(self._choices):
            ch = self._choices[i]
            out: dict[str, Any] = {"index": i, "finish_reason": ch.finish_reason}
            if self.chat:
                msg: dict[str, Any] = {"role": ch.role or "assistant", "content": "".join(ch.text)}
                if ch.tool_calls:
                    msg["tool_calls"] = [ch.tool_calls[k] for k in sorted(ch.tool_calls)]
                out["message"] = msg
            else:
                out["text"] = "".join(ch.text)
            if ch.has_ids:
                out["token_ids"] = ch.token_ids
            choices.append(out)
        return {**self._top, "object": "chat.completion" if self.chat else "text_completion", "choices": choices}
