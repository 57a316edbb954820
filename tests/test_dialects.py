"""Other stacks' hint dialects (Dynamo, llm-d's agent headers, vLLM's kv_hints) on Continuum's one program model.

Without an engine: requests go through Continuum's middleware in front of a stand-in for vLLM's handlers, which
records what reached it; vLLM's own request model then says which program and hints the engine would get
(`engine_view`), and those turns run on Continuum's scheduler over vLLM's real block pool (the offline harness).
One live test sends a dialect to the shared tiny server."""

from __future__ import annotations

import json
from argparse import Namespace
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.testclient import TestClient
from vllm.entrypoints.generate.base.serving import GenerateBaseServing
from vllm.entrypoints.openai.completion.protocol import CompletionRequest
from vllm.entrypoints.serve.middleware.authenticate import AuthenticationMiddleware

from continuum.http.dialects import AGENT_HEADERS, DYNAMO_HEADER
from continuum.http.dp_affinity import DPAffinityMiddleware
from continuum.http.middleware import ContinuumMiddleware
from continuum.policy.config import ENV_VAR, ContinuumConfig
from continuum.sched.classes import BE, LS
from continuum.sched.scheduler import ContinuumScheduler
from continuum.tenancy import split, tenant_of_key
from continuum_eval.sim.engine.vllm_offline import build_scheduler, make_request, run_step
from tests.stand_in_apps import Recorder, streaming_app

A, B = "key-A", "key-B"
# Every field that can name a program, in Continuum's precedence (first present wins).
SOURCES = [("body", "session_id"), ("header", "x-session-id"), ("xargs", "session_id"), ("header", DYNAMO_HEADER),
           ("nvext", "session_id"), *[("header", h) for h in AGENT_HEADERS]]


def stand_in(keys: list[str] = ()) -> tuple[FastAPI, list]:
    """vLLM's app in miniature (its auth with keys, Continuum's middleware outermost): records what reached it."""
    app, seen = FastAPI(), []
    app.state.args = Namespace(api_key=list(keys))

    @app.post("/v1/completions")
    @app.post("/v1/chat/completions")
    async def handler(request: Request):
        seen.append((request.headers.raw, json.loads(await request.body())))
        return JSONResponse({"ok": True})

    if keys:
        app.add_middleware(AuthenticationMiddleware, tokens=list(keys))
    app.add_middleware(ContinuumMiddleware)
    return app, seen


def engine_view(raw_headers: list, body: dict) -> tuple[str | None, dict]:
    """(program id, hints) the engine gets for what reached vLLM: vLLM's own request model and session lookup."""
    request = CompletionRequest.model_validate({**body, "model": "tiny", "prompt": "x"})
    session = GenerateBaseServing._get_session_id(request, SimpleNamespace(headers=Headers(raw=raw_headers)))
    return session, request.to_sampling_params(8, {}).extra_args or {}


def send(client: TestClient, headers: dict | None = None, key: str | None = None, **body) -> tuple[str, dict]:
    """One turn through the middleware; the engine's view of it."""
    headers = {**({"authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
    r = client.post("/v1/completions", json={"model": "tiny", "prompt": "x", **body}, headers=headers)
    assert r.status_code == 200, r.text
    return engine_view(*client.app_seen.pop())


@pytest.fixture
def client():
    app, seen = stand_in()
    with TestClient(app) as c:
        c.app_seen = seen
        yield c


@pytest.fixture
def keyed():
    app, seen = stand_in([A, B])
    with TestClient(app) as c:
        c.app_seen = seen
        yield c


def scheduler(**cfg) -> ContinuumScheduler:
    s = build_scheduler(ContinuumScheduler, num_blocks=81, block_size=32, continuum_config=ContinuumConfig(**cfg))
    s.clock = lambda: 0.0
    return s


def turn(s: ContinuumScheduler, rid: str, view: tuple[str, dict], prompt: list[int], max_tokens: int = 2) -> None:
    """The turn on the scheduler, run until it finished."""
    session, xargs = view
    xargs = {k: v for k, v in xargs.items() if k != "session_id"}  # vLLM has read it already: the session
    s.add_request(make_request(rid, prompt, max_tokens, session_id=session, **xargs))
    while s.has_requests():
        run_step(s)


def naming(source: tuple[str, str], value: str) -> tuple[dict, dict]:
    """(headers, body) with ``value`` in one program-naming field."""
    kind, name = source
    return {"body": ({}, {"session_id": value}), "header": ({name: value}, {}),
            "xargs": ({}, {"vllm_xargs": {"session_id": value}}),
            "nvext": ({}, {"nvext": {"session_control": {"session_id": value}}})}[kind]


def kv_hints(*actions: tuple, version: str = "1.0") -> dict:
    """A vLLM KvHintsEnvelope; each action (type, payload) or (type, payload, action version)."""
    return {"protocol_version": "0.1", "message_id": "router/m1",
            "actions": [{"action_id": f"a{i}", "action_type": a[0], "action_version": (*a, version)[2],
                         "payload": a[1]} for i, a in enumerate(actions)]}


def set_priority(value: int | None, ttl: float | None = None) -> tuple[str, dict]:
    payload = {"target": "request_cached", "location": "local_g1", "claim_id": "router/s1", "revision": 1,
               "value": value}
    return "vllm.set_priority", payload if ttl is None else {**payload, "ttl_seconds": ttl}


# -- one program, whatever names it ----------------------------------------------------------------------------
@pytest.mark.parametrize("source", SOURCES, ids=lambda s: f"{s[0]}:{s[1]}")
def test_each_dialect_names_the_same_program_tracked_and_pinned(client, source):
    s = scheduler(ttl_mode="preserve")
    history = list(range(1000, 1128))
    for i in range(2):
        headers, body = naming(source, "agent-7")
        view = send(client, headers, **body)
        assert view[0] == "agent-7"
        turn(s, f"t{i}", view, history)
        history += list(range(5000 + 100 * i, 5000 + 100 * i + 64))
        assert "agent-7" in s.pins, f"turn {i} not pinned"
    assert s.programs.get("agent-7").turns == 2 and len(s.programs) == 1


def test_the_tool_a_dialect_named_program_calls_is_told_to_the_engine(tmp_path, monkeypatch):
    rec = Recorder(tmp_path)
    monkeypatch.setenv(ENV_VAR, ContinuumConfig(control_addr=rec.address).to_env())
    try:
        with TestClient(streaming_app(0, rec.log)) as c:
            c.post("/v1/chat/completions", json={"messages": []}, headers={"x-claude-code-session-id": "cc-9"})
    finally:
        rec.server.close()
    assert [(m["id"], m["tool"]) for m in rec.ops("tool")] == [("cc-9", "run_tests")]


@pytest.mark.parametrize("first", range(len(SOURCES)), ids=[f"{k}:{n}" for k, n in SOURCES])
def test_the_first_field_in_precedence_names_the_program(client, first):
    """A request carries this field and every one after it, each naming another program: this one wins."""
    headers, body = {}, {}
    for i, source in enumerate(SOURCES[first:], first):
        h, b = naming(source, f"p{i}")
        headers.update(h)
        for key, value in b.items():
            body[key] = {**body.get(key, {}), **value} if isinstance(value, dict) else value
    assert send(client, headers, **body)[0] == f"p{first}"


# -- hints ---------------------------------------------------------------------------------------------------
def test_dynamo_agent_hints_become_class_and_expected_output(client):
    s = scheduler(classes="ls-be")
    hints = {"priority": 3, "osl": 40, "speculative_prefill": False}
    view = send(client, {DYNAMO_HEADER: "d1"}, nvext={"agent_hints": hints}, max_tokens=100)
    assert view == ("d1", {"class": "ls", "osl": 40})
    s.add_request(make_request("r1", list(range(100, 200)), 100, session_id=view[0], **view[1]))
    assert s.classes.of["r1"] == LS
    assert s.programs.get("d1").context_tokens == 100 + 40  # the client's osl, not max_tokens
    low = send(client, {DYNAMO_HEADER: "d2"}, nvext={"agent_hints": {"priority": -1, "osl": 500}}, max_tokens=100)
    s.add_request(make_request("r2", list(range(100, 200)), 100, session_id=low[0], **low[1]))
    assert s.classes.of["r2"] == BE and s.programs.get("d2").context_tokens == 100 + 100  # at most max_tokens
    close = send(client, nvext={"session_control": {"session_id": "d3", "action": "close"}})
    assert close == ("d3", {"is_last_step": True})


def test_native_fields_win_over_a_dialects(client):
    view = send(client, {"x-claude-code-session-id": "cc"}, session_id="mine",
                vllm_xargs={"class": "be", "osl": 7}, nvext={"agent_hints": {"priority": 9, "osl": 99}},
                kv_hints=kv_hints(set_priority(5, 60)))
    assert view == ("mine", {"class": "be", "osl": 7, "retain_s": 60.0})


@pytest.mark.parametrize("actions, ttl", [
    ([set_priority(10, 60)], 60.0),
    ([("kv.retain", {"scope": None, "directives": [{"start": 0, "end": 64, "priority": 50, "duration": 30},
                                                   {"covers_output": True, "priority": 20, "duration": 5}]})], 30.0),
    ([set_priority(10, 60), set_priority(None)], 0.0),  # in order: the release decides
    ([set_priority(0, 60)], 0.0),  # priority 0 (vLLM's default) protects nothing
    ([("kv.retain", {"directives": [{"priority": 0}]})], 0.0),
    ([set_priority(10, 60), ("kv.demote", {})], 0.0),
    ([set_priority(10, 60), ("kv.release", {})], 0.0),
])
def test_kv_hints_retain_is_a_pin_with_that_ttl_and_release_ends_it(client, actions, ttl):
    s = scheduler()  # the TTL rule pins a turn unless the client says otherwise
    prompt = list(range(1000, 1128))
    turn(s, "t0", send(client, {"x-session-affinity": "oc-1"}), prompt)
    assert s.pins.table.get("oc-1") is not None
    view = send(client, {"x-session-affinity": "oc-1"}, kv_hints=kv_hints(*actions))
    assert view[1] == {"retain_s": ttl}
    turn(s, "t1", view, prompt + list(range(7000, 7064)))
    pin = s.pins.table.get("oc-1")
    if ttl:
        assert pin is not None and pin.ttl_s == ttl
        s.set_tool("oc-1", "pytest")  # a tool read from the answer later does not override the client's TTL
        assert s.pins.table.get("oc-1").ttl_s == ttl
    else:
        assert pin is None and "oc-1" not in s.pins


def test_a_retain_is_held_to_the_pin_cap():
    s = scheduler(pin_cap=0.05)  # 4 of 80 blocks
    turn(s, "t0", ("big", {"retain_s": 60.0}), list(range(1000, 1320)))  # 10 full blocks
    assert 0 < len(s.pins.table.get("big").blocks) <= s.pins.table.cap_blocks == 4


def test_prefetch_is_counted_not_done_and_unknown_actions_are_skipped(tmp_path, monkeypatch):
    rec = Recorder(tmp_path)
    rec.reply = {"ok": True, "stats": {"programs": [], "pins": {"created": 0}}}
    monkeypatch.setenv(ENV_VAR, ContinuumConfig(control_addr=rec.address).to_env())
    app, seen = stand_in()
    try:
        with TestClient(app) as c:
            r = c.post("/v1/completions", json={
                "nvext": {"agent_hints": {"speculative_prefill": True}},
                "kv_hints": kv_hints(("kv.prefetch", {"anything": 1}), ("kv.fetch", {}), ("dynamo.thing", {"x": 1}),
                                     ("vllm.set_priority", {"value": "a later version's"}, "2.0"))})
            assert r.status_code == 200, r.text
            c.post("/v1/completions", json={"kv_hints": {**kv_hints(set_priority(1, 5)), "protocol_version": "9"}})
            stats = c.get("/continuum/stats").json()
    finally:
        rec.server.close()
    assert stats["hints"] == {"dynamo": 1, "kv_hints": 2, "prefetch_requested": 3}
    assert [engine_view(*got)[1] for got in seen] == [{}, {}]  # nothing to act on: no pin, no hint


@pytest.mark.parametrize("headers, body, param", [
    ({}, {"nvext": {"agent_hints": {"osl": -1}}}, "nvext.agent_hints.osl"),
    ({}, {"nvext": {"agent_hints": {"priority": "high"}}}, "nvext.agent_hints.priority"),
    ({}, {"nvext": {"agent_hints": {"speculative_prefill": "yes"}}}, "nvext.agent_hints.speculative_prefill"),
    ({}, {"nvext": []}, "nvext"),
    ({}, {"nvext": {"session_control": {"session_id": "x" * 300}}}, "nvext.session_control.session_id"),
    ({}, {"nvext": {"session_control": {"session_id": "s", "action": "reopen"}}}, "nvext.session_control.action"),
    ({DYNAMO_HEADER: "x" * 300}, {}, DYNAMO_HEADER),
    ({"x-claude-code-session-id": "a\tb"}, {}, "x-claude-code-session-id"),
    ({"session-id": "y" * 257}, {}, "session-id"),
    ({}, {"kv_hints": "retain"}, "kv_hints"),
    ({}, {"kv_hints": {"message_id": "m", "actions": []}}, "kv_hints.protocol_version"),
    ({}, {"kv_hints": kv_hints(set_priority(10))}, "kv_hints.actions.0.payload"),
    ({}, {"kv_hints": kv_hints(set_priority(10, -5))}, "kv_hints.actions.0.payload.ttl_seconds"),
    ({}, {"kv_hints": kv_hints(("kv.demote", {}), ("kv.retain", {"directives": [{"priority": 101}]}))},
     "kv_hints.actions.1.payload.directives.0.priority"),
    ({}, {"kv_hints": kv_hints(("kv.retain", {"directives": [{"priority": 5, "duration": 1e12}]}))},
     "kv_hints.actions.0.payload.directives.0.duration"),
    ({}, {"vllm_xargs": {"retain_s": -1}}, "vllm_xargs.retain_s"),
    ({}, {"vllm_xargs": {"osl": 1.5}}, "vllm_xargs.osl"),
])
def test_invalid_hints_are_400_naming_the_field(client, headers, body, param):
    r = client.post("/v1/chat/completions", json={"model": "tiny", "messages": [], **body}, headers=headers)
    assert r.status_code == 400 and not client.app_seen, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["message"].startswith(f"{param}: "), error


def test_empty_agent_headers_are_absent_as_llm_d_reads_them(client):
    assert send(client, {"x-claude-code-session-id": "", "x-session-affinity": "oc"})[0] == "oc"


# -- tenants ---------------------------------------------------------------------------------------------------
def test_a_tenants_hints_never_reach_another_tenants_programs(keyed):
    ta, tb = tenant_of_key(A), tenant_of_key(B)
    s = scheduler(ttl_mode="model", tenant_pin_cap=0.25)  # a tenant holds at most 10 of the 40-block pin budget
    prompt = list(range(1000, 1320))
    a = send(keyed, {"x-claude-code-session-id": "agent-1"}, key=A, kv_hints=kv_hints(set_priority(10, 60)))
    assert split(a[0]) == (ta, "agent-1")
    turn(s, "a0", a, prompt)
    pin = s.pins.table.get(a[0])
    assert pin is not None and pin.ttl_s == 60 and len(pin.blocks) <= 10
    # Tenant B: the same client id, then A's qualified id itself, each with a release. Both are B's own programs.
    for i, named in enumerate(["agent-1", a[0]]):
        b = send(keyed, {"x-claude-code-session-id": named}, key=B, kv_hints=kv_hints(set_priority(None)))
        assert split(b[0]) == (tb, named) and b[1] == {"retain_s": 0.0}
        turn(s, f"b{i}", b, list(range(9000, 9320)))  # salted apart on a real server: no shared prefix
    assert s.pins.table.get(a[0]) == pin and s.programs.get(a[0]).turns == 1
    assert {split(p.program_id)[0] for p in s.programs.all()} == {ta, tb}


def test_dp_affinity_keeps_a_dialect_named_program_on_its_rank():
    app, ranks = FastAPI(), []

    @app.post("/v1/completions")
    async def handler(request: Request):
        ranks.append(request.headers["x-data-parallel-rank"])
        return JSONResponse({})

    with TestClient(DPAffinityMiddleware(app, size=8)) as c:
        for i in range(6):
            c.post("/v1/completions", json={"session_id": f"agent-{i}"})
            c.post("/v1/completions", json={}, headers={"x-claude-code-session-id": f"agent-{i}"})
            c.post("/v1/completions", json={"nvext": {"session_control": {"session_id": f"agent-{i}"}}})
    assert all(len(set(ranks[i:i + 3])) == 1 for i in range(0, len(ranks), 3)), ranks
    assert len(set(ranks)) > 1  # the programs spread over ranks: the rank follows the id


# -- live ------------------------------------------------------------------------------------------------------
def test_a_claude_code_session_with_a_kv_retain_is_pinned_for_that_ttl_live(tiny_server):
    url, sid = tiny_server.base_url, "dialects-live-cc"
    body = {"model": "tiny", "prompt": list(range(2000, 2160)), "max_tokens": 4, "ignore_eos": True,
            "kv_hints": kv_hints(set_priority(10, 45))}
    for _ in range(2):
        r = httpx.post(url + "/v1/completions", json=body, headers={"x-claude-code-session-id": sid}, timeout=120)
        assert r.status_code == 200, r.text
    state = httpx.get(url + f"/v1/sessions/{sid}", timeout=30).json()
    assert state["turns"] == 2 and state["pinned_blocks"] > 0 and state["ttl_s"] == 45, state
    assert httpx.post(url + f"/v1/sessions/{sid}/end", timeout=30).status_code == 200
