"""Live: a program's second turn keeps its prefix through an LRU flush under Continuum, not under vLLM."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from continuum.serve.launch import ServerProcess

pytestmark = pytest.mark.engine
POLICIES = ["continuum", "vllm"]
FLAGS = ["--max-model-len", "1024", "--block-size", "32", "--num-gpu-blocks-override", "40",
         "--enable-prompt-tokens-details", "--enforce-eager"]  # eager: start-up without compiling


@pytest.fixture(scope="module")
def servers(tiny_model, tmp_path_factory):
    """Both servers, started side by side: a start waits on its processes much of the time, so two overlap."""
    logs = tmp_path_factory.mktemp("live-pins")
    procs = {p: ServerProcess("tiny", ["--policy", p, *FLAGS], log_path=logs / f"{p}.log") for p in POLICIES}
    try:
        with ThreadPoolExecutor(len(procs)) as pool:
            for started in [pool.submit(proc.start) for proc in procs.values()]:
                started.result()
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()


@pytest.fixture(scope="module", params=POLICIES)
def server(request, servers):
    proc = servers[request.param]
    proc.policy = request.param
    return proc


def complete(server, prompt: list[int], max_tokens: int, session: str | None = None) -> dict:
    body = {"model": "tiny", "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True,
            "temperature": 0.0, "return_token_ids": True}
    if session:
        body["session_id"] = session
    r = httpx.post(server.base_url + "/v1/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def ids(start: int, n: int) -> list[int]:
    return list(range(start, start + n))


def test_second_turn_prefix_survives_competing_traffic(server):
    first = ids(1000, 320)
    answer = complete(server, first, 32, session="agent-1")
    history = first + answer["choices"][0]["token_ids"]
    for i in range(6):  # traffic from elsewhere: 6 x 11 blocks through a 39-block pool
        complete(server, ids(20_000 + 700 * i, 320), 8)
    second = complete(server, history + ids(3000, 64), 4, session="agent-1")
    cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    full_blocks = (len(history) - 1) // 32 * 32
    print(f"{server.policy}: cached {cached} of {len(history)} history tokens")
    if server.policy == "continuum":
        assert cached >= 0.9 * full_blocks
    else:
        assert cached < 0.1 * full_blocks


def test_session_end_releases_pins_and_metrics_show_them(server):
    if server.policy != "continuum":
        assert httpx.get(server.base_url + "/continuum/stats", timeout=30).status_code == 404
        return
    complete(server, ids(5000, 200), 8, session="agent-2")
    state = httpx.get(server.base_url + "/v1/sessions/agent-2", timeout=30).json()
    # The default admits the program, so its pin lasts until it returns (no TTL); other retentions give one.
    assert state["pinned_blocks"] > 0 and (state["pinned_until_return"] or state["ttl_s"] > 0)
    metrics = httpx.get(server.base_url + "/metrics", timeout=30).text
    assert "continuum_pinned_blocks" in metrics and "vllm:" in metrics
    r = httpx.post(server.base_url + "/v1/sessions/agent-2/end", timeout=30)
    assert r.status_code == 200 and r.json()["ended"] and r.json()["pinned_blocks"] == 0
    stats = httpx.get(server.base_url + "/continuum/stats", timeout=30).json()
    assert stats["pins"]["released_end"] >= 1
    assert httpx.post(server.base_url + "/v1/sessions/nobody/end", timeout=30).status_code == 404
