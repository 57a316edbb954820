"""The HTTP layer's handling of requests, without an engine: Continuum's middleware in front of a small FastAPI app
that stands in for vLLM's handlers (`tests.stand_in_apps`: it records what reached it), behind vLLM's real
authentication middleware, as in `serve`; and the session endpoints over a real scheduler.

Fuzzing: hypothesis-generated requests (1,000+ per run) get 2xx or 4xx, a 400 names the field, and with keys
every session id that reaches vLLM is qualified with the caller's tenant. The validator's fuzz mixes well-formed
and malformed fields and knows which are which (`bad_fields`, written from the rules, not from the validator):
a malformed one is a 400 naming it, a well-formed request reaches vLLM."""

from __future__ import annotations

import json
import math
from argparse import Namespace
from collections import Counter

import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from continuum.http import middleware
from continuum.http.validation import MAX_SESSION_ID, MAX_TOOL_NAME, BadRequest, check_completion_request
from continuum.tenancy import split, tenant_of_key
from tests.stand_in_apps import stand_in_app

A, B = "key-A", "key-B"
FIELD_PARAMS = ("session_id", "X-Session-ID", "vllm_xargs")


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


# -- the session endpoints ---------------------------------------------------------------------------------------
def test_the_prefetch_endpoint_reaches_the_callers_own_program_only(tmp_path, monkeypatch):
    """``POST /v1/sessions/{id}/prefetch`` through the middleware and a real control channel to the engine side
    of a scheduler (the offline harness, no host tier): the caller's program answers with what the prefetch did,
    another tenant's is a 404 like an unknown one, a malformed id a 400, no key a 401."""
    from continuum.control.channel import ControlServer
    from continuum.control.engine_side import EngineControl
    from continuum.policy.config import ENV_VAR, ContinuumConfig
    from continuum.sched.scheduler import ContinuumScheduler
    from continuum_eval.sim.engine.vllm_offline import build_scheduler, make_request, run_step

    s = build_scheduler(ContinuumScheduler, num_blocks=64, block_size=32)
    mine = f"{tenant_of_key(A)}:agent"
    s.add_request(make_request("t0", list(range(100, 200)), 2, session_id=mine))
    while s.has_requests():
        run_step(s)
    engine, seen = EngineControl(s), []

    def handle(msg: dict) -> dict:
        seen.append(msg)
        return engine.handle(msg)

    server = ControlServer(f"ipc://{tmp_path}/control.ipc", handle)
    monkeypatch.setenv(ENV_VAR, ContinuumConfig(control_addr=server.address).to_env())
    try:
        with TestClient(stand_in_app([A, B])[0]) as client:
            def prefetch(session: str, key: str | None = None):
                headers = {"authorization": f"Bearer {key}"} if key else {}
                return client.post(f"/v1/sessions/{session}/prefetch", headers=headers)

            ok, other, named, unknown = prefetch("agent", A), prefetch("agent", B), prefetch(mine, B), \
                prefetch("nobody", A)
            bad, anonymous = prefetch("a%09b", A), prefetch("agent")
    finally:
        server.close()
    assert ok.status_code == 200, ok.text
    assert ok.json()["prefetch"] == "no_tier" and ok.json()["id"] == "agent" and ok.json()["turns"] == 1
    for r, shown in ((other, "agent"), (named, mine), (unknown, "nobody")):
        assert r.status_code == 404 and r.json()["error"] == {
            "message": f"unknown session {shown!r}", "type": "NotFoundError", "param": "session_id", "code": 404}
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "session_id"
    assert anonymous.status_code == 401
    tb = tenant_of_key(B)
    assert seen == [{"op": "prefetch", "id": i} for i in (mine, f"{tb}:agent", f"{tb}:{mine}",
                                                           f"{tenant_of_key(A)}:nobody")]
    assert s.tier is None and not s.programs.get(mine).ended  # it asked for nothing else
