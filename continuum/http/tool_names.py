"""Which tool an agent is about to run, read from the model's answer.

OpenAI-style agents say it in ``tool_calls`` (the function name); text agents (mini-swe-agent and friends)
put one fenced bash block in the answer (mini-swe-agent 2's text mode labels it ``mswea_bash_command``),
whose first word is the command. The name selects the duration
distribution the TTL rule uses.
"""

from __future__ import annotations

import json
import re

_FENCE = re.compile(r"```(?:bash|sh|shell|mswea_bash_command)?[ \t]*\n(.*?)```", re.DOTALL)
_MAX_NAME = 64


def tool_from_text(text: str | None) -> str | None:
    """First word of the single fenced bash block in ``text``; None if there is not exactly one."""
    if not text:
        return None
    blocks = _FENCE.findall(text)
    if len(blocks) != 1:
        return None
    for line in blocks[0].splitlines():
        words = line.strip().split()
        if words:
            return _clean(words[0])
    return None


def _clean(name: str) -> str | None:
    name = name.strip()[:_MAX_NAME]
    return name if name and name.isprintable() else None


def tool_from_choice(choice: dict) -> str | None:
    """From one choice of a chat or text completion (a full response or a streamed delta)."""
    message = choice.get("message") or choice.get("delta") or {}
    for call in message.get("tool_calls") or []:
        name = (call.get("function") or {}).get("name")
        if isinstance(name, str) and name:
            return _clean(name)
    return tool_from_text(message.get("content") or choice.get("text"))


class ResponseToolReader:
    """Accumulates a response body (JSON or server-sent events) and names the tool it calls, if any."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)

    def tool(self) -> str | None:
        raw = b"".join(self._chunks).decode("utf-8", "replace")
        if raw.lstrip().startswith("{"):
            try:
                choices = json.loads(raw).get("choices") or []
            except ValueError:
                return None
            return tool_from_choice(choices[0]) if choices else None
        return self._tool_from_stream(raw)

    @staticmethod
    def _tool_from_stream(raw: str) -> str | None:
        text, name = [], None
        for line in raw.splitlines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            try:
                event = json.loads(line[5:])
            except ValueError:
                continue
            for choice in event.get("choices") or []:
                delta = choice.get("delta") or {}
                for call in delta.get("tool_calls") or []:
                    fn = (call.get("function") or {}).get("name")
                    name = name or (fn if isinstance(fn, str) and fn else None)
                text.append(delta.get("content") or choice.get("text") or "")
        return _clean(name) if name else tool_from_text("".join(text))
