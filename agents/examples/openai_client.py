"""The ``openai`` client on a Continuum session: two turns with a timed tool call in between.

The session gives the client its program id and hints (``session.openai_kwargs``: ``extra_body`` with
``session_id`` and ``vllm_xargs``, ``extra_headers`` with ``X-Session-ID``); the answers stream, and the
session ends the program when the agent is done.

    python -m continuum_agents.examples.openai_client --base-url http://127.0.0.1:8000 --dir .
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from openai import OpenAI

from continuum_agents import AgentSession


def _stream_text(stream: Any) -> tuple[str, float]:
    """The streamed answer's text and its time to first token."""
    t0, first, parts = time.monotonic(), None, []
    for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                first = first or time.monotonic()
                parts.append(choice.delta.content)
    return "".join(parts), (first or time.monotonic()) - t0


def run(base_url: str, model: str | None = None, folder: str = ".", max_tokens: int = 48) -> dict[str, Any]:
    with AgentSession(base_url, model=model) as s:
        client = OpenAI(base_url=s.base_url + "/v1", api_key="none")
        model = model or client.models.list().data[0].id
        messages = [{"role": "user", "content": "Which file would you read first? Answer with one name."}]
        # Turn 1: the agent will list the folder next, so it says so (the server sizes the KV pin by it).
        text1, ttft1 = _stream_text(client.chat.completions.create(
            model=model, messages=messages, max_tokens=max_tokens, temperature=0, stream=True,
            **s.openai_kwargs(tool="ls")))
        with s.tool("ls"):
            listing = "\n".join(sorted(os.listdir(folder))[:20])
        messages += [{"role": "assistant", "content": text1}, {"role": "user", "content": f"Files:\n{listing}"}]
        # Turn 2 is the last: nothing to keep after it.
        text2, ttft2 = _stream_text(client.chat.completions.create(
            model=model, messages=messages, max_tokens=max_tokens, temperature=0, stream=True,
            **s.openai_kwargs(is_last_step=True)))
    return {"session_id": s.session_id, "answers": [text1, text2], "ttft_s": [ttft1, ttft2],
            "tool_time_s": s.tool_time_s, "ended_on_server": s.end_status == 200}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m continuum_agents.examples.openai_client",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-url", default="http://127.0.0.1:8000")
    ap.add_argument("--model", help="default: the server's first model")
    ap.add_argument("--dir", default=".", help="the folder the agent lists")
    args = ap.parse_args(argv)
    out = run(args.base_url, args.model, args.dir)
    for k, v in out.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
