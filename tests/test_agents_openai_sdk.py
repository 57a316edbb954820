"""The OpenAI Agents SDK adapter, offline: a scripted chat-completions server records what each run sends.

One program per run (its id on every turn, body and header), a fresh id per run unless given, the ``tool`` hint
when the request decides the tool, ``is_last_step`` when the turn cannot call one, tool calls timed, the
program ended at the end of the run. The live run against `continuum serve tiny` is in test_agents_adapters.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from agents import Agent, ModelSettings, Runner, function_tool

from continuum_agents.openai_agents import ContinuumRun

USAGE = {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23,
         "prompt_tokens_details": {"cached_tokens": 16}}


def tool_call(name: str) -> dict[str, Any]:
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": f"call-{name}", "type": "function", "function": {"name": name, "arguments": "{}"}}]}


def completion(message: dict[str, Any]) -> dict[str, Any]:
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    return {"id": "c", "object": "chat.completion", "created": 0, "model": "m", "usage": USAGE,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}]}


def sse(text: str) -> bytes:
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    events = [{**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}}]},
              {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
              {**chunk, "choices": [], "usage": USAGE}]
    return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"


class Server:
    """Answers chat turns from a script of assistant messages; records every request."""

    def __init__(self, *messages: dict[str, Any]) -> None:
        self.script = list(messages)
        self.seen: list[httpx.Request] = []

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.answer))

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if request.url.path.endswith("/end"):
            return httpx.Response(200, json={"ended": True})
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": "served", "object": "model"}]})
        message = self.script.pop(0)
        if json.loads(request.content).get("stream"):
            return httpx.Response(200, content=sse(message["content"]), headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=completion(message))

    def turns(self) -> list[tuple[dict[str, Any], httpx.Headers]]:
        return [(json.loads(r.content), r.headers) for r in self.seen if r.url.path == "/v1/chat/completions"]

    def ends(self) -> list[str]:
        return [r.url.path for r in self.seen if r.url.path.endswith("/end")]


def reader(**settings: Any) -> Agent:
    @function_tool
    def list_files() -> str:
        """List the project's files."""
        time.sleep(0.05)
        return "README.md\nsetup.py"

    return Agent(name="reader", instructions="Find the readme.", tools=[list_files],
                 model_settings=ModelSettings(max_tokens=8, **settings))


async def one_run(server: Server, agent: Agent, streamed: bool = False, **run_args: Any) -> tuple[ContinuumRun, Any]:
    async with ContinuumRun("http://srv", client=server.client(), **run_args) as run:
        if streamed:
            result = Runner.run_streamed(agent, "Which file first?", **run.runner_kwargs())
            async for _ in result.stream_events():
                pass
        else:
            result = await Runner.run(agent, "Which file first?", **run.runner_kwargs())
    return run, result


def test_a_run_is_one_program_across_its_turns_and_ends_with_it():
    server = Server(tool_call("list_files"), {"role": "assistant", "content": "README.md"})
    run, result = asyncio.run(one_run(server, reader(), model="m"))
    sid = run.session.session_id
    turns = server.turns()
    assert result.final_output == "README.md" and len(turns) == 2
    assert all(body["session_id"] == sid and headers["x-session-id"] == sid for body, headers in turns)
    assert all(body["model"] == "m" for body, _ in turns)
    # The model chose the tool itself (the server reads it from tool_calls); tools were offered both times.
    assert all("vllm_xargs" not in body for body, _ in turns)
    assert server.ends() == [f"/v1/sessions/{sid}/end"] and server.seen[-1].url.path.endswith("/end")
    s = run.session
    assert s.turns == 2 and s.ended and s.end_status == 200
    assert [(c.name, c.turn) for c in s.tool_calls] == [("list_files", 0)] and s.tool_calls[0].seconds >= 0.05
    assert s.turn_stats[0].prompt_tokens == 20 and s.turn_stats[0].cached_tokens == 16
    assert s.turn_stats[1].output_text == "README.md"


def test_each_run_gets_a_fresh_program_unless_one_is_given():
    ids = []
    for given in (None, None, "chat-42"):
        server = Server({"role": "assistant", "content": "hi"})
        run, _ = asyncio.run(one_run(server, Agent(name="a"), model="m", session_id=given))
        ids.append(server.turns()[0][0]["session_id"])
    assert ids[0] != ids[1] and ids[2] == "chat-42"


def test_a_forced_tool_is_sent_as_the_tool_hint():
    server = Server(tool_call("list_files"))
    agent = reader(tool_choice="list_files")
    agent.tool_use_behavior = "stop_on_first_tool"
    run, result = asyncio.run(one_run(server, agent, model="m"))
    (body, _), = server.turns()
    assert body["vllm_xargs"] == {"tool": "list_files"} and "README.md" in result.final_output


def test_a_turn_that_cannot_call_a_tool_is_the_last_step():
    server = Server({"role": "assistant", "content": "hi"})
    asyncio.run(one_run(server, Agent(name="a"), model="m"))
    assert server.turns()[0][0]["vllm_xargs"] == {"is_last_step": True}
    # A program continued by a later run keeps its context, and is not ended.
    server = Server({"role": "assistant", "content": "hi"})
    asyncio.run(one_run(server, Agent(name="a"), model="m", session_id="chat-1", end=False))
    assert "vllm_xargs" not in server.turns()[0][0] and server.ends() == []


def test_the_turn_limit_marks_the_last_allowed_turn():
    server = Server(tool_call("list_files"), tool_call("list_files"), {"role": "assistant", "content": "done"})
    asyncio.run(one_run(server, reader(), model="m", max_turns=3))
    assert [body.get("vllm_xargs") for body, _ in server.turns()] == [None, None, {"is_last_step": True}]


def test_the_agents_own_extras_are_kept():
    server = Server({"role": "assistant", "content": "hi"})
    agent = Agent(name="a", model_settings=ModelSettings(extra_body={"vllm_xargs": {"class": "be"}, "top_k": 5},
                                                         extra_headers={"X-Team": "search"}))
    asyncio.run(one_run(server, agent, model="m"))
    (body, headers), = server.turns()
    assert body["vllm_xargs"] == {"class": "be", "is_last_step": True} and body["top_k"] == 5
    assert headers["x-team"] == "search" and headers["x-session-id"] == body["session_id"]


def test_streamed_runs_carry_the_program_and_record_the_first_token():
    server = Server({"role": "assistant", "content": "README.md"})
    run, result = asyncio.run(one_run(server, Agent(name="a"), streamed=True))  # no model: the server's first
    (body, _), = server.turns()
    assert body["model"] == "served" and body["stream"] and body["stream_options"] == {"include_usage": True}
    assert body["session_id"] == run.session.session_id and result.final_output == "README.md"
    t = run.session.turn_stats[0]
    assert t.prompt_tokens == 20 and t.ttft_s is not None and 0 <= t.ttft_s <= t.latency_s
    assert server.ends() == [f"/v1/sessions/{run.session.session_id}/end"]


def test_the_repositorys_agents_folder_yields_the_name_to_the_sdk():
    # pytest puts the repository root on sys.path, where agents/ (continuum_agents) is found first as `agents`.
    import agents

    assert hasattr(agents, "Runner") and "site-packages" in agents.__file__
