"""What Continuum's HTTP middleware tells the engine while an answer goes out: streamed events (the backpressure
term's delivery reports), the tool an answer calls, a client that leaves mid-stream, and a stats request the
scheduler cannot answer. The engine side is a recorder behind a real control channel (`tests.stand_in_apps`)."""

from __future__ import annotations

import asyncio
import time

import pytest
from starlette.testclient import TestClient

from continuum.http.turn_watch import REPORT_EVERY, TurnWatch
from tests.stand_in_apps import Recorder, streaming_app


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


def test_stats_the_scheduler_cannot_give_are_a_json_error_not_a_crash(recorder):
    recorder.configure([])
    recorder.reply = {"ok": False, "status": 503, "error": "ranks [1] did not answer"}
    with TestClient(streaming_app(0, [])) as client:
        r = client.get("/continuum/stats")
    assert r.status_code == 503 and r.json()["error"]["message"] == "ranks [1] did not answer"
