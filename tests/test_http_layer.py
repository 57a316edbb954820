"""The HTTP layer without an engine: Continuum's middleware in front of a small FastAPI app that stands in for
vLLM's handlers (it records what reached it), behind vLLM's real authentication middleware, as in `serve`.

Fuzzing: hypothesis-generated requests (1,000+ per run) get 2xx or 4xx, a 400 names the field, and with keys
every session id that reaches vLLM is qualified with the caller's tenant."""

from __future__ import annotations

import asyncio
import json
from argparse import Namespace

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from vllm.entrypoints.serve.middleware.authenticate import AuthenticationMiddleware

from continuum.http.middleware import ContinuumMiddleware
from continuum.tenancy import split, tenant_of_key
from continuum.http.validation import BadRequest, check_completion_request

A, B = "key-A", "key-B"
FIELD_PARAMS = ("session_id", "X-Session-ID", "vllm_xargs")


def stand_in_app(keys: list[str]) -> tuple[FastAPI, list]:
    """vLLM's app in miniature: handlers that record what they got; vLLM's auth; Continuum's middleware outermost."""
    app, seen = FastAPI(), []
    app.state.args = Namespace(api_key=keys)

    @app.post("/v1/completions")
    @app.post("/v1/chat/completions")
    @app.post("/invocations")
    async def handler(request: Request):
        seen.append((request.url.path, request.headers.getlist("x-session-id"), await request.body()))
        return JSONResponse({"ok": True})

    if keys:
        app.add_middleware(AuthenticationMiddleware, tokens=keys)
    app.add_middleware(ContinuumMiddleware)
    return app, seen


@pytest.fixture(scope="module")
def keyed():
    app, seen = stand_in_app([A, B])
    with TestClient(app) as client:
        yield client, seen


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                 max_size=3), max_leaves=6)
SESSION = st.one_of(st.text(max_size=270), st.just(""), JSON)
XARGS = st.one_of(JSON, st.dictionaries(st.sampled_from(["is_last_step", "tool", "session_id", "x"]),
                                        st.one_of(JSON, st.text(max_size=270)), max_size=3))
BODY = st.fixed_dictionaries({"model": st.just("tiny")}, optional={"session_id": SESSION, "vllm_xargs": XARGS,
                                                                   "prompt": JSON, "messages": JSON})
HEADER = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=270)


def qualified_ids(body: bytes, headers: list[str]) -> list[str]:
    try:
        data = json.loads(body)
    except ValueError:
        return list(headers)
    ids = list(headers)
    if isinstance(data, dict):
        if isinstance(data.get("session_id"), str) and data["session_id"]:
            ids.append(data["session_id"])
        xargs = data.get("vllm_xargs")
        if isinstance(xargs, dict) and isinstance(xargs.get("session_id"), str) and xargs["session_id"]:
            ids.append(xargs["session_id"])
    return ids


@settings(max_examples=1000, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(body=st.one_of(BODY, JSON), raw=st.one_of(st.none(), st.binary(max_size=40)),
       header=st.one_of(st.none(), HEADER), key=st.sampled_from([A, B, "wrong", None]),
       path=st.sampled_from(["/v1/completions", "/v1/chat/completions", "/invocations"]))
def test_fuzzed_requests_through_the_middleware(keyed, body, raw, header, key, path):
    client, seen = keyed
    seen.clear()
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    if header is not None:
        headers["x-session-id"] = header
    r = client.post(path, content=raw if raw is not None else json.dumps(body).encode(), headers=headers)
    assert r.status_code in (200, 400, 401), r.text
    event(f"HTTP {r.status_code}")
    if r.status_code == 401:
        assert key not in (A, B) and path.startswith("/v1") and not seen
    elif r.status_code == 400:
        error = r.json()["error"]
        assert error["param"].split(".")[0] in FIELD_PARAMS and not seen
        assert error["param"].split(".")[-1].lower() in error["message"].lower()
    else:
        ((_, got_headers, got_body),) = seen
        tenant = tenant_of_key(key if key in (A, B) else "")  # no valid key: the anonymous tenant
        if path != "/invocations" and isinstance(body, dict) and raw is None:
            assert json.loads(got_body).get("cache_salt") == tenant  # the prefix cache is the tenant's own
        ids = qualified_ids(got_body, got_headers)
        event(f"session ids reaching vLLM: {min(len(ids), 2)}")
        for qualified in ids:
            assert split(qualified)[0] == tenant, qualified


@settings(max_examples=1000, deadline=None, derandomize=True)
@given(body=st.one_of(BODY, JSON), header=st.one_of(st.none(), st.text(max_size=300)))
def test_the_validator_accepts_or_names_the_field(body, header):
    try:
        check_completion_request({} if header is None else {"x-session-id": header}, body)
    except BadRequest as exc:
        assert exc.param.split(".")[0] in FIELD_PARAMS and exc.param in str(exc)


def test_without_keys_ids_pass_unchanged_and_bad_ones_are_400():
    app, seen = stand_in_app([])
    with TestClient(app) as client:
        ok = client.post("/v1/completions", json={"session_id": "s1"}, headers={"x-session-id": "h1"})
        bad = client.post("/v1/completions", json={"vllm_xargs": {"is_last_step": "yes"}})
    assert ok.status_code == 200 and json.loads(seen[0][2])["session_id"] == "s1" and seen[0][1] == ["h1"]
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "vllm_xargs.is_last_step"


# -- what the middleware tells the engine while an answer goes out --------------------------------------------
class Recorder:
    """Stands in for the engine's control handler (a real ControlServer over ZeroMQ): records each message."""

    def __init__(self, tmp_path) -> None:
        from continuum.control.channel import ControlServer

        self.log: list[dict] = []
        self.reply: dict = {"ok": True}
        self.address = f"ipc://{tmp_path}/control.ipc"
        self.server = ControlServer(self.address, self.handle)

    def handle(self, msg: dict) -> dict:
        self.log.append(msg)
        return self.reply

    def ops(self, op: str) -> list[dict]:
        return [m for m in self.log if m.get("op") == op]


def streaming_app(events: int, log: list) -> FastAPI:
    app = FastAPI()
    app.state.args = Namespace(api_key=None)

    @app.post("/v1/completions")
    async def handler(request: Request):
        async def stream():
            try:
                for i in range(events):
                    yield f'data: {{"choices": [{{"text": "t{i}"}}]}}\n\n'
                    await asyncio.sleep(0.01)
                yield "data: [DONE]\n\n"
            finally:
                log.append({"op": "<stream closed>"})

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        call = {"type": "function", "function": {"name": "run_tests", "arguments": "{}"}}
        return JSONResponse({"choices": [{"message": {"role": "assistant", "tool_calls": [call]}}]})

    app.add_middleware(ContinuumMiddleware)
    return app


@pytest.fixture
def recorder(tmp_path, monkeypatch):
    rec = Recorder(tmp_path)

    def configure(terms: list[str]) -> None:
        from continuum.policy.config import ENV_VAR, ContinuumConfig

        monkeypatch.setenv(ENV_VAR, ContinuumConfig(terms=terms, control_addr=rec.address).to_env())

    rec.configure = configure
    yield rec
    rec.server.close()


@pytest.mark.parametrize("terms", [["backpressure"], []])
def test_streamed_events_are_reported_with_the_backpressure_term_only(recorder, terms):
    recorder.configure(terms)
    with TestClient(streaming_app(40, recorder.log)) as client:
        r = client.post("/v1/completions", json={"session_id": "s1", "stream": True, "prompt": "x"})
        client.post("/v1/completions", json={"session_id": "s2", "prompt": "x"})  # not streamed: nothing to count
    assert r.status_code == 200 and r.text.count("data:") == 41
    reports = [(m["id"], m["tokens"]) for m in recorder.ops("delivered")]
    assert reports == ([("s1", 16), ("s1", 32), ("s1", 40)] if terms else [])


def test_the_tool_an_answer_calls_is_told_to_the_engine(recorder):
    recorder.configure([])
    with TestClient(streaming_app(0, recorder.log)) as client:
        client.post("/v1/chat/completions", json={"session_id": "s1", "messages": []})
        client.post("/v1/chat/completions", json={"session_id": "s2", "vllm_xargs": {"tool": "ls"}})  # hinted
    assert [(m["id"], m["tool"]) for m in recorder.ops("tool")] == [("s1", "run_tests")]


def test_a_client_that_leaves_mid_stream_is_reported_before_the_stream_is_cancelled(recorder):
    recorder.configure([])
    app = streaming_app(400, recorder.log)
    sent: list[dict] = []
    body = [{"type": "http.request", "body": b'{"session_id": "s1", "stream": true}', "more_body": False}]
    left = asyncio.Event()

    async def receive() -> dict:
        if body:
            return body.pop()
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)
        if sum(m["type"] == "http.response.body" for m in sent) == 3:
            left.set()  # the client hangs up after three events

    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": "POST", "path": "/v1/completions", "raw_path": b"/v1/completions", "query_string": b"",
             "root_path": "", "headers": [(b"content-type", b"application/json")], "scheme": "http",
             "server": ("test", 80), "client": ("test", 1)}

    async def run() -> None:
        async with app.router.lifespan_context(app):
            await app(scope, receive, send)

    asyncio.run(run())
    ops = [m["op"] for m in recorder.log]
    assert ops.index("disconnect") < ops.index("<stream closed>")
    assert recorder.ops("disconnect") == [{"op": "disconnect", "id": "s1"}]


def test_vllm_api_key_from_the_environment_makes_tenants_too(monkeypatch):
    from starlette.datastructures import Headers

    from continuum.http.keys import Keys

    monkeypatch.setenv("VLLM_API_KEY", "env-key")
    app = FastAPI()
    app.state.args = Namespace(api_key=None)  # no --api-key: vLLM falls back to VLLM_API_KEY, and so do we
    keys = Keys.of_app(app)
    assert keys.enabled
    assert keys.caller(Headers({"authorization": "Bearer env-key"})).tenant == tenant_of_key("env-key")
    assert keys.caller(Headers({"authorization": "Bearer other"})) is None
    app.state.args = Namespace(api_key=["cli-key"])  # --api-key wins over the environment, as in vLLM
    assert Keys.of_app(app).caller(Headers({"authorization": "Bearer env-key"})) is None


def test_stats_the_scheduler_cannot_give_are_a_json_error_not_a_crash(recorder):
    recorder.configure([])
    recorder.reply = {"ok": False, "status": 503, "error": "ranks [1] did not answer"}
    with TestClient(streaming_app(0, [])) as client:
        r = client.get("/continuum/stats")
    assert r.status_code == 503 and r.json()["error"]["message"] == "ranks [1] did not answer"
