"""The agent SDK: program id and hints on every request, tool timing, ending the program.

Request shapes are checked offline against a recording transport; the scheduler's view (programs listed with
their turn counts, ended sessions) against the run's shared `continuum serve tiny`.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from continuum_agents import AgentSession, AsyncAgentSession, SessionError
from continuum_agents.shell_agent import extract_command, run_command

COMPLETION = {"choices": [{"text": "ok", "message": {"role": "assistant", "content": "ok"}}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 1}}


def recording_client(seen: list[httpx.Request], sessions_status: int = 404) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.startswith("/v1/sessions/"):
            return httpx.Response(sessions_status, json={"error": {"message": "Not Found"}})
        return httpx.Response(200, json=COMPLETION)

    return httpx.Client(transport=httpx.MockTransport(handler))


def test_every_request_carries_the_program_id_and_hints():
    seen: list[httpx.Request] = []
    with AgentSession("http://srv/v1", model="m", session_id="prog-7", client=recording_client(seen)) as s:
        s.chat([{"role": "user", "content": "hi"}], tool="grep", max_tokens=4)
        with s.tool("grep"):
            time.sleep(0.05)
        s.expect_tool("pytest")
        s.complete([1, 2, 3], max_tokens=2)
        s.complete("bye", is_last_step=True, vllm_xargs={"custom": 1})
    bodies = [json.loads(r.content) for r in seen[:3]]
    assert [r.url.path for r in seen] == ["/v1/chat/completions", "/v1/completions", "/v1/completions",
                                          "/v1/sessions/prog-7/end"]
    assert all(r.headers["X-Session-ID"] == "prog-7" for r in seen)
    assert all(b["session_id"] == "prog-7" and b["model"] == "m" for b in bodies)
    assert bodies[0]["vllm_xargs"] == {"tool": "grep"}
    assert bodies[1]["vllm_xargs"] == {"tool": "pytest"} and bodies[1]["prompt"] == [1, 2, 3]
    assert bodies[2]["vllm_xargs"] == {"custom": 1, "is_last_step": True}
    assert s.turns == 3 and len(s.tool_calls) == 1
    assert s.tool_calls[0].name == "grep" and s.tool_calls[0].turn == 0 and s.tool_calls[0].seconds >= 0.05
    # A server without the session endpoint (plain vLLM: 404) is fine: end() says False, nothing raises.
    assert s.ended and s.end_status == 404 and s.end() is False


def prefetching_client(seen: list[httpx.Request], status: int, answer: dict, asynchronous: bool = False):
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=answer)

    transport = httpx.MockTransport(handler)
    return httpx.AsyncClient(transport=transport) if asynchronous else httpx.Client(transport=transport)


@pytest.mark.parametrize("status, answer, expected", [
    (200, {"id": "p", "prefetch": "issued"}, "issued"),
    (200, {"id": "p", "prefetch": "not_parked"}, "not_parked"),
    (404, {"error": {"message": "unknown session 'p'"}}, None),  # unknown here, or plain vLLM
    (200, {"id": "p"}, None),  # a server that answers something else
])
def test_prefetch_asks_the_server_and_never_raises(status, answer, expected):
    seen: list[httpx.Request] = []
    s = AgentSession("http://srv/v1", session_id="p", api_key="k", client=prefetching_client(seen, status, answer))
    assert s.prefetch() == expected
    assert [(r.method, r.url.path) for r in seen] == [("POST", "/v1/sessions/p/prefetch")]
    assert seen[0].headers["authorization"] == "Bearer k" and seen[0].headers["X-Session-ID"] == "p"

    async def run() -> tuple:
        client = prefetching_client(seen, status, answer, asynchronous=True)
        async with AsyncAgentSession("http://srv", session_id="p", client=client) as a:
            got = await a.prefetch()
        return got, await a.prefetch()  # ended: nothing is asked

    assert asyncio.run(run()) == (expected, None)
    assert [r.url.path for r in seen[1:]] == ["/v1/sessions/p/prefetch", "/v1/sessions/p/end"]
    assert AgentSession("http://127.0.0.1:9", timeout_s=2).prefetch() is None  # unreachable: None, no raise


def test_hints_can_be_turned_off_and_errors_raise():
    seen: list[httpx.Request] = []
    s = AgentSession("http://srv", session_id="p", send_hints=False, client=recording_client(seen))
    s.complete("x", tool="grep", is_last_step=True)
    assert "vllm_xargs" not in json.loads(seen[0].content)

    def failing(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "session_id must be a string"}})

    bad = AgentSession("http://srv", client=httpx.Client(transport=httpx.MockTransport(failing)))
    with pytest.raises(SessionError, match="HTTP 400.*session_id"):
        bad.complete("x")
    unreachable = AgentSession("http://127.0.0.1:9", timeout_s=2)
    with pytest.raises(SessionError):
        unreachable.complete("x")
    assert unreachable.end() is False  # never raises


def test_openai_kwargs_shape():
    s = AgentSession("http://srv", session_id="p1")
    kw = s.openai_kwargs(tool="ls", is_last_step=True)
    assert kw == {"extra_body": {"session_id": "p1", "vllm_xargs": {"tool": "ls", "is_last_step": True}},
                  "extra_headers": {"X-Session-ID": "p1"}}


def test_reference_agent_helpers(tmp_path):
    (tmp_path / "a.py").write_text("print(1)\n")
    assert extract_command("Let me look.\n```bash\nls -la\n```") == "ls -la"
    assert extract_command("The answer is 3. DONE") is None
    assert "a.py" in run_command("ls", tmp_path)
    assert run_command("rm -rf /", tmp_path).startswith("error: only these commands")
    assert run_command("cat 'unterminated", tmp_path).startswith("error: cannot parse")


# -- against a live server (the run's shared `continuum serve tiny`, tests/conftest.py) ----------------------------
@pytest.fixture
def server(tiny_server):
    return tiny_server


def programs(server) -> dict[str, dict]:
    r = httpx.get(server.base_url + "/continuum/stats", timeout=30)
    assert r.status_code == 200, r.text
    return {p["id"]: p for p in r.json()["programs"]}


@pytest.mark.engine
def test_sdk_session_reaches_the_scheduler(server):
    with AgentSession(server.base_url, model="tiny", session_id="sdk-sync") as s:
        s.complete("The first turn", max_tokens=3, tool="grep")
        with s.tool("grep"):
            time.sleep(0.1)
        s.chat([{"role": "user", "content": "second"}], max_tokens=3, tool="cat")
        s.complete("The last turn", max_tokens=3, is_last_step=True)
        seen = programs(server)["sdk-sync"]
        assert seen["turns"] == 3
    assert s.end_status == 200 and s.tool_time_s >= 0.1
    r = httpx.get(server.base_url + "/v1/sessions/sdk-sync", timeout=30)
    assert r.status_code in (200, 404)  # ended programs may be forgotten
    assert AgentSession(server.base_url, session_id="never-used").end() is False  # unknown: 404, tolerated


@pytest.mark.engine
def test_async_sdk_and_openai_client(server):
    async def agent() -> AsyncAgentSession:
        async with AsyncAgentSession(server.base_url, model="tiny", session_id="sdk-async") as s:
            for k in range(2):
                await s.complete(f"turn {k}", max_tokens=2, tool="ls", is_last_step=k == 1)
                async with s.tool("ls"):
                    await asyncio.sleep(0.01)
            assert programs(server)["sdk-async"]["turns"] == 2
        return s

    s = asyncio.run(agent())
    assert s.end_status == 200 and len(s.tool_calls) == 2

    from openai import OpenAI

    sess = AgentSession(server.base_url, session_id="sdk-openai")
    client = OpenAI(base_url=server.base_url + "/v1", api_key="none")
    for k in range(2):
        r = client.completions.create(model="tiny", prompt=f"hello {k}", max_tokens=2, **sess.openai_kwargs(tool="ls"))
        assert r.choices[0].text is not None
    assert programs(server)["sdk-openai"]["turns"] == 2
    assert sess.end() is True


@pytest.mark.engine
def test_reference_agent_runs_a_session(server, tmp_path):
    from continuum_agents.shell_agent import run_agent

    (tmp_path / "notes.txt").write_text("hello\n")
    run = run_agent(server.base_url, "How many files are here?", workdir=tmp_path, max_turns=2, max_tokens=16)
    assert 1 <= run.turns <= 2 and run.ended_on_server is True
