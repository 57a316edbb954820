"""The OpenAI Agents SDK on a Continuum server: an agent with one tool, its run one program.

:class:`~continuum_agents.openai_agents.ContinuumRun` hands the runner a model provider whose calls carry the
run's program id and hints, and hooks that time the tool calls; leaving the block ends the program. The turns
stream (time to first token in ``session.turn_stats``). The model calls the tool through the server's
tool-call parser (vLLM's ``--enable-auto-tool-choice --tool-call-parser ...``); ``--no-tools`` runs the agent
without it, for a server started without one.

    python -m continuum_agents.examples.openai_agents_sdk --base-url http://127.0.0.1:8000 --dir .
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from agents import Agent, ModelSettings, Runner, function_tool

from continuum_agents.openai_agents import ContinuumRun

QUESTION = "Which file of the project would you read first? Answer with one file name."


def make_agent(folder: str, tools: bool, max_tokens: int) -> Agent:
    @function_tool
    def list_files() -> str:
        """List the files in the project's folder."""
        return "\n".join(sorted(os.listdir(folder))[:20])

    return Agent(name="reader", instructions="You help a developer find their way around a project. "
                 "List its files first when you can, then answer briefly.",
                 tools=[list_files] if tools else [],
                 model_settings=ModelSettings(temperature=0, max_tokens=max_tokens))


async def run_async(base_url: str, model: str | None = None, folder: str = ".", max_tokens: int = 48,
                    tools: bool = True, max_turns: int = 4) -> dict[str, Any]:
    agent = make_agent(folder, tools, max_tokens)
    async with ContinuumRun(base_url, model=model, max_turns=max_turns) as run:
        streamed = Runner.run_streamed(agent, QUESTION, **run.runner_kwargs())
        async for _ in streamed.stream_events():
            pass
    s = run.session
    return {"session_id": s.session_id, "answer": streamed.final_output, "turns": s.turns,
            "tools": [c.name for c in s.tool_calls], "tool_time_s": s.tool_time_s,
            "ttft_s": [t.ttft_s for t in s.turn_stats], "prompt_tokens": [t.prompt_tokens for t in s.turn_stats],
            "ended_on_server": s.end_status == 200}


def run(base_url: str, model: str | None = None, folder: str = ".", max_tokens: int = 48, tools: bool = True,
        max_turns: int = 4) -> dict[str, Any]:
    return asyncio.run(run_async(base_url, model, folder, max_tokens, tools, max_turns))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m continuum_agents.examples.openai_agents_sdk",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-url", default="http://127.0.0.1:8000")
    ap.add_argument("--model", help="default: the server's first model")
    ap.add_argument("--dir", default=".", help="the folder the agent's tool lists")
    ap.add_argument("--no-tools", action="store_true", help="for a server without a tool-call parser")
    args = ap.parse_args(argv)
    for k, v in run(args.base_url, args.model, args.dir, tools=not args.no_tools).items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
