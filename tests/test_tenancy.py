"""Live: `continuum serve tiny` with API keys: keys guard the session endpoints and stats, sessions belong to
their tenant, a client that goes away leaves no pin, bad input never crashes the engine. One server for the
module, started with vLLM flags before the model."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from continuum.serve.launch import ServerProcess
from continuum.tenancy import tenant_of_key

pytestmark = pytest.mark.engine
A, B, ROOT = "key-A", "key-B", "key-root"
PROMPT = list(range(1000, 1200))  # six full 32-token blocks


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    log = tmp_path_factory.mktemp("tenancy") / "serve.log"
    args = ["--block-size", "32", "--enforce-eager", "tiny", "--max-model-len", "4096",
            "--api-key", A, "--api-key", B, "--admin-api-key", ROOT, "--terms", "backpressure"]
    with ServerProcess(None, args, log_path=log) as proc:
        yield proc


def auth(key: str | None) -> dict:
    return {"Authorization": f"Bearer {key}"} if key else {}


def complete(server, key: str, session: str | None = None, headers: dict | None = None, **extra) -> dict:
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 4, "ignore_eos": True, "temperature": 0.0, **extra}
    if session is not None:
        body["session_id"] = session
    r = httpx.post(server.base_url + "/v1/completions", json=body, headers={**auth(key), **(headers or {})},
                   timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def get(server, path: str, key: str | None) -> httpx.Response:
    return httpx.get(server.base_url + path, headers=auth(key), timeout=30)


def end(server, session: str, key: str | None) -> httpx.Response:
    return httpx.post(server.base_url + f"/v1/sessions/{session}/end", headers=auth(key), timeout=30)


def test_the_model_after_vllm_flags_is_served(server):
    assert [m["id"] for m in get(server, "/v1/models", A).json()["data"]] == ["tiny"]


def test_session_endpoints_and_stats_need_a_key_like_v1(server):
    complete(server, A, session="guarded")
    for key in (None, "wrong"):
        assert get(server, "/v1/sessions/guarded", key).status_code == 401
        assert end(server, "guarded", key).status_code == 401
        assert get(server, "/continuum/stats", key).status_code == 401
        assert httpx.post(server.base_url + "/v1/completions", json={"model": "tiny", "prompt": "x"},
                          headers=auth(key), timeout=30).status_code == 401
    assert get(server, "/v1/sessions/guarded", A).status_code == 200
    for bad in ("a%0Ab", "", "y" * 300):  # a control character, empty, too long: 400 naming the id
        r = get(server, f"/v1/sessions/{bad}", A)
        assert r.status_code == 400 and r.json()["error"]["param"] == "session_id", (bad, r.text)
    assert get(server, "/v1/sessions/guarded", A).json()["ended"] is False  # nothing above ended it
    # /metrics stays open, as vLLM has it, with Continuum's aggregates (HELP lines) and no session or tenant.
    metrics = get(server, "/metrics", None)
    assert metrics.status_code == 200
    assert "# HELP continuum_pinned_blocks " in metrics.text and "continuum_programs " in metrics.text
    assert "guarded" not in metrics.text and tenant_of_key(A) not in metrics.text


def test_a_session_belongs_to_the_key_that_created_it(server):
    complete(server, A, session="mine")
    assert get(server, "/v1/sessions/mine", A).json()["turns"] == 1
    assert get(server, "/v1/sessions/mine", B).status_code == 404
    assert end(server, "mine", B).status_code == 404
    # B cannot join it: not by reusing the id (body, header or xargs), nor by the id the scheduler keeps.
    complete(server, B, session="mine")
    complete(server, B, headers={"X-Session-ID": "mine"})
    complete(server, B, vllm_xargs={"session_id": "mine"})
    complete(server, B, session=f"{tenant_of_key(A)}:mine")
    assert get(server, "/v1/sessions/mine", A).json()["turns"] == 1
    assert get(server, "/v1/sessions/mine", B).json()["turns"] == 3
    # Stats show a caller their own sessions, by their own ids; the admin sees all, qualified by tenant.
    a_ids = {p["id"] for p in get(server, "/continuum/stats", A).json()["programs"]}
    b_stats = get(server, "/continuum/stats", B).json()
    assert "mine" in a_ids and f"{tenant_of_key(A)}:mine" not in a_ids
    assert {p["id"] for p in b_stats["programs"]} == {"mine", f"{tenant_of_key(A)}:mine"}
    assert "predictor" not in b_stats and b_stats["num_programs"] == 2
    admin = {p["id"]: p for p in get(server, "/continuum/stats", ROOT).json()["programs"]}
    assert admin[f"{tenant_of_key(A)}:mine"]["tenant"] == tenant_of_key(A)
    assert f"{tenant_of_key(B)}:mine" in admin
    # The admin may end any tenant's session by the qualified id.
    assert end(server, f"{tenant_of_key(A)}:mine", ROOT).json()["ended"] is True
    assert get(server, "/v1/sessions/mine", A).json()["ended"] is True
    assert get(server, "/v1/sessions/mine", B).json()["ended"] is False


def test_one_tenants_cached_prefix_is_no_hit_for_another(server):
    first = list(range(7000, 7200))  # a prompt no one sent before
    complete(server, A, session="salt-a", prompt=first)
    longer = first + list(range(5000, 5064))
    complete(server, A, session="salt-a", prompt=longer)
    assert get(server, "/v1/sessions/salt-a", A).json()["cached_tokens"] >= 192  # A's own prefix: a hit
    complete(server, B, session="salt-b", prompt=longer)
    assert get(server, "/v1/sessions/salt-b", B).json()["cached_tokens"] == 0  # the same tokens, another tenant


def stream(server, session: str, max_tokens: int, stop_after: int | None = None, **extra) -> int:
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": max_tokens, "ignore_eos": True, "stream": True,
            "session_id": session, **extra}
    events = 0
    with httpx.Client(timeout=120) as client:
        with client.stream("POST", server.base_url + "/v1/completions", json=body, headers=auth(A)) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                events += line.startswith("data:")
                if stop_after and events >= stop_after:
                    break  # hang up mid-answer
    return events


def wait_for(server, session: str, done, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        state = get(server, f"/v1/sessions/{session}", A).json()
        if done(state) or time.monotonic() > deadline:
            return state
        time.sleep(0.1)


def wait_idle(server, session: str) -> dict:
    return wait_for(server, session, lambda s: s["in_flight"] == 0)


@pytest.mark.parametrize("stop", [None, ["never-appears"]])
def test_a_turn_whose_client_disconnected_is_not_pinned(server, stop):
    session = f"leaver-{bool(stop)}"
    extra = {"stop": stop} if stop else {}
    stream(server, session, 8, **extra)  # a finished turn is pinned
    assert wait_idle(server, session)["pinned_blocks"] > 0
    created = get(server, "/continuum/stats", ROOT).json()["pins"]["created"]
    assert stream(server, session, 3500, stop_after=3, **extra) == 3  # long: it cannot finish before the abort
    wait_idle(server, session)
    # The second turn released the first's pin on admission (a hit), and its own abort pins nothing (or, if
    # the abort reached the engine before the word that its client left, that pin is released right after).
    state = wait_for(server, session, lambda s: s["pinned_blocks"] == 0, timeout_s=10)
    pins = get(server, "/continuum/stats", ROOT).json()["pins"]
    assert state["finished_turns"] == 2 and state["last_context_tokens"] < 3000, (state, pins)  # aborted
    assert state["pinned_blocks"] == 0, (state, pins)
    if not stop:
        assert get(server, "/continuum/stats", ROOT).json()["pins"]["created"] == created


def test_a_stop_string_finish_still_pins(server):
    text = complete(server, A, max_tokens=12)["choices"][0]["text"]  # greedy: the same answer again
    stop = text[len(text) // 2:][:4]
    answer = complete(server, A, session="stopper", max_tokens=12, stop=[stop])
    assert answer["choices"][0]["finish_reason"] == "stop" and answer["usage"]["completion_tokens"] > 0
    assert wait_idle(server, "stopper")["pinned_blocks"] > 0


def test_replay_against_a_server_without_cached_token_details_reports_an_unknown_hit_rate(server):
    from continuum_eval.live.replay import ReplayOptions, replay_sync
    from continuum_workloads import Program, Turn

    programs = [Program(id=f"r{i}", workload="tiny", turns=[Turn(new_input_tokens=64, output_tokens=4, tool="ls",
                                                                tool_s=0.1), Turn(new_input_tokens=8, output_tokens=4)])
                for i in range(2)]
    result = replay_sync(programs, ReplayOptions(base_url=server.base_url, jps=4.0, api_key=A, seed=1))
    assert result["completed"] == 2 and result["prefix_hit_rate"] is None


SESSION = st.one_of(st.none(), st.text(max_size=300), st.integers(), st.just(""), st.lists(st.text(), max_size=2))
XARGS = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.dictionaries(
    st.sampled_from(["is_last_step", "tool", "session_id", "other"]),
    st.one_of(st.booleans(), st.text(max_size=300), st.integers(), st.none(), st.lists(st.integers(), max_size=2)),
    max_size=3))
FIELDS = st.fixed_dictionaries({}, optional={
    "session_id": SESSION, "vllm_xargs": XARGS,
    "max_tokens": st.one_of(st.integers(-5, 6), st.just(10**9), st.text(max_size=3), st.none()),
    "priority": st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=True), st.text(max_size=3)),
    "stream": st.booleans(),
    "temperature": st.one_of(st.floats(-1, 3), st.text(max_size=2)),
})
MESSAGES = st.one_of(st.just([{"role": "user", "content": "hi"}]), st.just([]), st.text(max_size=5),
                     st.lists(st.dictionaries(st.sampled_from(["role", "content"]),
                                              st.one_of(st.text(max_size=8), st.integers())), max_size=2))


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(fields=FIELDS, chat=st.booleans(), messages=MESSAGES, header=st.one_of(st.none(), st.text(max_size=20)),
       broken=st.booleans())
def test_fuzzed_requests_are_answered_without_5xx(server, fields, chat, messages, header, broken):
    body = {"model": "tiny", **fields, **({"messages": messages} if chat else {"prompt": "Hello"})}
    if isinstance(body.get("max_tokens"), int) and body["max_tokens"] > 6:
        body["max_tokens"] = body["max_tokens"] if body["max_tokens"] > 10**6 else 6
    raw = json.dumps(body).encode()
    headers = {**auth(A), "content-type": "application/json"}
    if header is not None and header.isprintable() and header.isascii():
        headers["X-Session-ID"] = header
    path = "/v1/chat/completions" if chat else "/v1/completions"
    r = httpx.post(server.base_url + path, content=raw[:-3] if broken else raw, headers=headers, timeout=120)
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        error = r.json()["error"]
        assert error["message"]
        if error.get("param") in ("session_id", "X-Session-ID") or str(error.get("param")).startswith("vllm_xargs"):
            assert error["param"].split(".")[-1].lower() in error["message"].lower()


def test_the_engine_keeps_serving_after_the_fuzzing(server):
    assert complete(server, A, session="after-fuzz")["usage"]["completion_tokens"] == 4
    assert get(server, "/health", None).status_code == 200
