"""The HTTP layer without an engine: Continuum's middleware in front of a small FastAPI app that stands in for
vLLM's handlers (it records what reached it), behind vLLM's real authentication middleware, as in `serve`.

Fuzzing: hypothesis-generated requests (1,000+ per run) get 2xx or 4xx, a 400 names the field, and with keys
every session id that reaches vLLM is qualified with the caller's tenant. The validator's fuzz mixes well-formed
and malformed fields and knows which are which (`bad_fields`, written from the rules, not from the validator):
a malformed one is a 400 naming it, a well-formed request reaches vLLM."""

from __future__ import annotations

import asyncio
import json
import math
import time
from argparse import Namespace
from collections import Counter

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from vllm.entrypoints.serve.middleware.authenticate import AuthenticationMiddleware

from continuum.http import middleware
from continuum.http.middleware import ContinuumMiddleware
from continuum.http.turn_watch import REPORT_EVERY, TurnWatch
from continuum.http.validation import MAX_SESSION_ID, MAX_TOOL_NAME, BadRequest, check_completion_request
from continuum.tenancy import split, tenant_of_key

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


# -- the validator: well-formed and malformed fields, and which are which --------------------------------------
CONTROL = [chr(c) for c in range(0x20)] + ["\x7f"]
NOT_TEXT = st.one_of(st.integers(), st.booleans(), st.floats(allow_nan=False), st.lists(st.integers(), max_size=2),
                     st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def malformed_ids(chars: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Ids from ``chars`` that break the rules: empty, too long (just or far over the limit), a control character."""
    short = st.text(chars, max_size=12)
    return st.one_of(st.just(""), st.integers(MAX_SESSION_ID + 1, MAX_SESSION_ID + 40).map(lambda n: "s" * n),
                     st.text(chars, min_size=MAX_SESSION_ID + 1, max_size=MAX_SESSION_ID + 8),
                     st.builds(lambda a, c, b: a + c + b, short, st.sampled_from(CONTROL), short))


# A header value is ASCII (httpx sends nothing else); a body's id is any text.
ASCII, TEXT = st.characters(max_codepoint=127), st.characters(blacklist_categories=("Cs",))
PRINTABLE = st.characters(blacklist_categories=("Cc", "Cs"))
# Well-formed values of Continuum's fields (an id right at the length limit among them)...
GOOD_ID = st.one_of(st.text(PRINTABLE, min_size=1, max_size=40), st.just("s" * MAX_SESSION_ID))
GOOD = {"X-Session-ID": st.one_of(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), min_size=1,
                                          max_size=40), st.just("h" * MAX_SESSION_ID)),
        "session_id": GOOD_ID,
        "vllm_xargs.is_last_step": st.booleans(),
        "vllm_xargs.tool": st.one_of(st.text(max_size=20), st.just("t" * MAX_TOOL_NAME)),
        "vllm_xargs.session_id": GOOD_ID,
        "vllm_xargs.class": st.sampled_from(["ls", "be"]),
        "vllm_xargs.patience": st.one_of(st.floats(0, 1000, exclude_min=True), st.integers(1, 1000))}
# ...malformed ones...
BAD = {"X-Session-ID": malformed_ids(ASCII),
       "session_id": st.one_of(malformed_ids(TEXT), NOT_TEXT),
       "vllm_xargs": st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2)),
       "vllm_xargs.is_last_step": st.one_of(st.sampled_from(["yes", "true", 0, 1]), st.integers(), st.floats(),
                                            st.lists(st.booleans(), max_size=2)),
       "vllm_xargs.tool": st.one_of(NOT_TEXT, st.text(min_size=MAX_TOOL_NAME + 1, max_size=MAX_TOOL_NAME + 8)),
       "vllm_xargs.session_id": st.one_of(malformed_ids(TEXT), NOT_TEXT),
       "vllm_xargs.class": st.one_of(st.sampled_from(["LS", "", "batch", "ls "]), NOT_TEXT),
       "vllm_xargs.patience": st.one_of(st.floats(max_value=0), st.integers(max_value=0),
                                        st.floats(min_value=1000, exclude_min=True), st.integers(min_value=1001),
                                        st.sampled_from([math.inf, -math.inf, math.nan, "1.5", True]))}
# ...and anything in between, null (absent) included.
ANY = {f: st.one_of(st.none(), GOOD.get(f, st.nothing()), BAD[f], JSON) for f in BAD}
ANY["X-Session-ID"] = st.one_of(GOOD["X-Session-ID"], BAD["X-Session-ID"], st.text(ASCII, max_size=12))
FIELDS = set(BAD)


@st.composite
def requests(draw) -> tuple[str | None, object]:
    """(X-Session-ID or None, body): a well-formed request (each field there or not), often with one or two of its
    fields replaced (by a malformed value, mostly); now and then a body that is not an object (vLLM's to refuse)."""
    header = draw(st.none() | GOOD["X-Session-ID"])
    body = draw(st.fixed_dictionaries({"prompt": st.just("x")}, optional={"session_id": GOOD["session_id"],
                                                                           "model": JSON}))
    hints = {k.split(".")[1]: v for k, v in GOOD.items() if k.startswith("vllm_xargs.")}
    xargs = draw(st.fixed_dictionaries({}, optional={**hints, "max_tokens": JSON}))
    has_xargs = draw(st.booleans())
    n = draw(st.sampled_from([1, 0, 2]))  # fields to replace
    replaced = draw(st.sets(st.sampled_from(sorted(FIELDS)), min_size=n, max_size=n))
    for field in replaced:
        value = draw(st.one_of(BAD[field], BAD[field], ANY[field]))
        if field == "X-Session-ID":
            header = value
        elif field == "session_id":
            body["session_id"] = value
        elif field == "vllm_xargs":
            xargs = value
        else:
            if isinstance(xargs, dict):
                xargs[field.split(".")[1]] = value
            has_xargs = True
    if has_xargs:
        body["vllm_xargs"] = xargs
    if draw(st.sampled_from(["object"] * 9 + ["not an object"])) != "object":
        body = draw(st.one_of(st.lists(JSON, max_size=2), st.integers(), st.none()))
    return header, body


def good_id(value) -> bool:
    return (isinstance(value, str) and 1 <= len(value) <= MAX_SESSION_ID
            and not any(c in CONTROL for c in value))


HINT_RULES = {
    "is_last_step": lambda v: isinstance(v, bool),
    "tool": lambda v: isinstance(v, str) and len(v) <= MAX_TOOL_NAME,
    "session_id": good_id,
    "class": lambda v: isinstance(v, str) and v in ("ls", "be"),
    "patience": lambda v: type(v) in (int, float) and math.isfinite(v) and 0 < v <= 1000,
}


def bad_fields(header: str | None, body) -> set[str]:
    """The fields the rules of `continuum.http.validation` refuse (null means absent, as in OpenAI's API)."""
    bad = set() if header is None or good_id(header) else {"X-Session-ID"}
    if not isinstance(body, dict):
        return bad
    if body.get("session_id") is not None and not good_id(body["session_id"]):
        bad.add("session_id")
    xargs = body.get("vllm_xargs")
    if xargs is not None and not isinstance(xargs, dict):
        return bad | {"vllm_xargs"}
    return bad | {f"vllm_xargs.{k}" for k, ok in HINT_RULES.items()
                  if (xargs or {}).get(k) is not None and not ok(xargs[k])}


@pytest.fixture(scope="module")
def keyless():
    app, seen = stand_in_app([])
    with TestClient(app) as client:
        yield client, seen


def validator_fuzz(client, seen, validate, tally: Counter, max_examples: int, phases=tuple(Phase)) -> None:
    """Each generated request, judged by ``validate`` and posted through the middleware: a request with a bad
    field is refused naming one of its bad fields (a 400 that never reaches vLLM), any other is accepted."""

    @settings(max_examples=max_examples, deadline=None, derandomize=True, database=None, phases=phases,
              suppress_health_check=list(HealthCheck))
    @given(request=requests())
    def case(request):
        header, body = request
        bad = bad_fields(header, body)
        tally["invalid" if bad else "valid"] += 1
        try:
            validate({} if header is None else {"x-session-id": header}, body)
        except BadRequest as exc:
            assert exc.param in bad and str(exc).startswith(f"{exc.param}: "), (exc.param, str(exc), bad)
        else:
            assert not bad, f"accepted, but {bad} are malformed"
        seen.clear()
        r = client.post("/v1/completions", content=json.dumps(body).encode(),
                        headers={"content-type": "application/json",
                                 **({} if header is None else {"x-session-id": header})})
        if bad:
            assert r.status_code == 400 and not seen, (r.status_code, r.text, bad)
            error = r.json()["error"]
            assert error["param"] in bad and error["param"].lower() in error["message"].lower(), (error, bad)
            if len(bad) == 1:
                tally[f"refused {error['param']}"] += 1
            event(f"400 naming {error['param']}")
        else:
            assert r.status_code == 200 and len(seen) == 1, (r.status_code, r.text)

    case()


def test_the_validator_refuses_exactly_the_malformed_fields_and_names_one(keyless):
    client, seen = keyless
    tally: Counter = Counter()
    validator_fuzz(client, seen, check_completion_request, tally, max_examples=1000)
    # Enough of both kinds that a validator accepting everything, or refusing everything, fails above...
    assert tally["invalid"] >= 250 and tally["valid"] >= 250, tally
    # ...and every field was, alone, malformed in some requests: they were refused under its name.
    missing = {f for f in FIELDS if tally[f"refused {f}"] < 5}
    assert not missing, f"fields seldom refused alone: {missing}; {tally}"


@pytest.mark.parametrize("broken", ["validator", "middleware"])
def test_the_validator_fuzz_fails_when_everything_is_accepted(monkeypatch, broken):
    """The fuzz above can fail: with a validator (or a middleware) that accepts everything, it does."""
    def accept_all(headers, body):
        return None

    validate = accept_all if broken == "validator" else check_completion_request
    if broken == "middleware":
        monkeypatch.setattr(middleware, "check_completion_request", accept_all)
        monkeypatch.setattr(middleware, "check_session_id", lambda value, param: value)
    app, seen = stand_in_app([])
    # What catches it: the check of the validator's verdict, or of the middleware's answer (vLLM's 200).
    failure = "accepted, but" if broken == "validator" else r"^\(200, "
    with TestClient(app) as client, pytest.raises(AssertionError, match=failure):
        validator_fuzz(client, seen, validate, Counter(), max_examples=100, phases=(Phase.generate,))


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


def wait_for(condition, what: str, timeout_s: float = 10.0):
    """Poll ``condition`` until it holds (its value) or fail after ``timeout_s``, saying what never happened."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what} within {timeout_s} s"
        time.sleep(0.01)
    return value


@pytest.mark.parametrize("terms", [["backpressure"], []])
def test_streamed_events_are_reported_with_the_backpressure_term_only(recorder, terms):
    """Reports go out in the background, one at a time, and a report due while another is in flight is left to
    the next one: which counts reach the engine depends on how fast it answers. What does not: the first report
    at REPORT_EVERY events, counts that grow by REPORT_EVERY or more up to the final count, and only for the
    streamed program. (The exact sequence, with an engine that answers at once: the next test.)"""
    recorder.configure(terms)
    with TestClient(streaming_app(40, recorder.log)) as client:
        r = client.post("/v1/completions", json={"session_id": "s1", "stream": True, "prompt": "x"})
        client.post("/v1/completions", json={"session_id": "s2", "prompt": "x"})  # not streamed: nothing to count
        if terms:
            wait_for(lambda: recorder.ops("delivered"), "no delivery report reached the engine")
    assert r.status_code == 200 and r.text.count("data:") == 41
    reports = [(m["id"], m["tokens"]) for m in recorder.ops("delivered")]
    if not terms:
        assert reports == []
        return
    counts = [tokens for _, tokens in reports]
    assert {program for program, _ in reports} == {"s1"}, reports
    assert counts[0] == REPORT_EVERY and counts[-1] <= 40, reports
    assert all(b - a >= REPORT_EVERY or b == 40 for a, b in zip(counts, counts[1:])), reports


class InstantControl:
    """The engine's control handler answering at once, in the HTTP layer's own event loop (no socket)."""

    def __init__(self) -> None:
        self.log: list[dict] = []

    async def call(self, request):
        self.log.append(request.to_wire())  # what a ControlServer's handler would get


class SlowControl(InstantControl):
    """An engine that takes a while to answer: reports overlap the stream."""

    async def call(self, request):
        await asyncio.sleep(0.05)
        await super().call(request)


@pytest.mark.parametrize("control_cls", [InstantControl, SlowControl])
def test_every_report_is_in_order_and_the_final_count_always_goes_out(control_cls):
    control, events = control_cls(), 2 * REPORT_EVERY + 8

    async def stream() -> None:
        watch = TurnWatch(control, "s1", read_tool=False, count_events=True)

        async def transport(message: dict) -> None:
            await asyncio.sleep(0)  # the transport takes the bytes; a report in flight runs meanwhile

        send = watch.wrap_send(transport)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(events):
            await send({"type": "http.response.body", "body": f"data: {i}\n\n".encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        await watch.report  # the last report, sent in the background

    asyncio.run(stream())
    counts = [m["tokens"] for m in control.log]
    assert all(m["op"] == "delivered" and m["id"] == "s1" for m in control.log)
    if control_cls is InstantControl:  # nothing in flight when a report falls due: every one goes out
        assert counts == [REPORT_EVERY, 2 * REPORT_EVERY, events]
    else:  # reports in flight absorb the ones that fall due meanwhile, but the final count is never dropped
        assert counts[0] == REPORT_EVERY and counts == sorted(counts) and counts[-1] == events


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
