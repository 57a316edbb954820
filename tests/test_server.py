"""End to end: `continuum serve tiny` on the real vLLM engine (the run's shared server, tests/conftest.py).

A server's clean shutdown on SIGTERM is tested on the default model's server (tests/test_default_model.py),
which stops anyway."""

from __future__ import annotations

import os
import time

import httpx
import pytest

pytestmark = pytest.mark.engine


@pytest.fixture
def server(tiny_server):
    return tiny_server


def post(server, path: str, body: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.post(server.base_url + path, json=body, headers=headers or {}, timeout=60)


def completion(**extra) -> dict:
    return {"model": "tiny", "prompt": "Hello there", "max_tokens": 4, **extra}


def chat(**extra) -> dict:
    return {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, **extra}


def test_completions_answer(server):
    r = post(server, "/v1/completions", completion())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["usage"]["completion_tokens"] == 4
    assert isinstance(body["choices"][0]["text"], str)


def test_chat_completions_answer(server):
    r = post(server, "/v1/chat/completions", chat())
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["role"] == "assistant"


def stats(server) -> dict:
    r = httpx.get(server.base_url + "/continuum/stats", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_session_id_reaches_the_scheduler(server):
    post(server, "/v1/completions", completion(session_id="prog-body"))
    post(server, "/v1/chat/completions", chat(), headers={"X-Session-ID": "prog-header"})
    post(server, "/v1/completions", completion(session_id="prog-body"))
    programs = {p["id"]: p for p in stats(server)["programs"]}
    assert programs["prog-body"]["turns"] == 2
    assert programs["prog-header"]["turns"] == 1
    r = httpx.get(server.base_url + "/v1/sessions/prog-body", timeout=30)
    assert r.status_code == 200 and r.json()["turns"] == 2


def test_unknown_session_is_404(server):
    r = httpx.get(server.base_url + "/v1/sessions/never-seen", timeout=30)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == 404


@pytest.mark.parametrize(
    "body, headers, field",
    [
        (completion(session_id=""), {}, "session_id"),
        (completion(session_id="x" * 257), {}, "session_id"),
        (completion(session_id="bad\nid"), {}, "session_id"),
        (completion(session_id="bad\x00id"), {}, "session_id"),
        (completion(session_id=12), {}, "session_id"),
        (chat(), {"X-Session-ID": "y" * 300}, "X-Session-ID"),
        (chat(), {"X-Session-ID": "a\tb"}, "X-Session-ID"),
        (completion(vllm_xargs={"is_last_step": "yes"}), {}, "vllm_xargs.is_last_step"),
        (completion(vllm_xargs={"tool": 3}), {}, "vllm_xargs.tool"),
    ],
)
def test_malformed_input_is_400_naming_the_field(server, body, headers, field):
    r = post(server, body.get("messages") and "/v1/chat/completions" or "/v1/completions", body, headers)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == field
    assert field.split(".")[-1].lower() in error["message"].lower()
    # ... and the engine keeps serving.
    assert post(server, "/v1/completions", completion()).status_code == 200


def test_the_engine_core_runs_at_a_lower_priority_than_the_api_server(server):
    from continuum.serve import engine_priority

    api = server.proc.pid
    engines = engine_priority.children(api, engine_priority.ENGINE_CORE_COMM)
    assert len(engines) == 1

    def nices() -> set[int]:
        return {os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir(f"/proc/{engines[0]}/task")}

    deadline = time.monotonic() + 10  # the watcher looks once a second
    while time.monotonic() < deadline and nices() != {engine_priority.DEFAULT_CPU_NICE}:
        time.sleep(0.2)
    assert nices() == {engine_priority.DEFAULT_CPU_NICE}
    assert os.getpriority(os.PRIO_PROCESS, api) == os.getpriority(os.PRIO_PROCESS, 0)


def test_beam_search_with_patience_is_served_and_a_bad_patience_named(server):
    # Without EOS (ignore_eos) no hypothesis finishes early, so patience cannot stop the search: the answer must
    # be the same as vLLM's own search gives.
    beam = completion(use_beam_search=True, n=2, max_tokens=6, ignore_eos=True)
    plain = post(server, "/v1/completions", beam)
    patient = post(server, "/v1/completions", {**beam, "vllm_xargs": {"patience": 0.5}})
    assert plain.status_code == patient.status_code == 200, patient.text
    texts = lambda r: sorted(c["text"] for c in r.json()["choices"])  # noqa: E731
    assert texts(plain) == texts(patient) and len(texts(plain)) == 2
    bad = post(server, "/v1/completions", {**beam, "vllm_xargs": {"patience": -1}})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "vllm_xargs.patience"
