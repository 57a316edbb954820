"""The SDK with the clients agent authors use, against `continuum serve tiny` (the run's shared server):
the openai client, litellm, mini-swe-agent, the OpenAI Agents SDK; streaming turn stats; a turn whose connection
is cut is sent again."""

from __future__ import annotations

import json
import socket
import threading

import httpx
import pytest

from continuum_agents import AgentSession
from continuum_agents.examples import litellm_client, mini_swe_agent, openai_agents_sdk, openai_client

pytestmark = pytest.mark.engine


@pytest.fixture
def server(tiny_server):
    return tiny_server  # with vLLM's development endpoints: /reset_prefix_cache, for the determinism probe


def session_state(server, sid: str) -> dict:
    r = httpx.get(f"{server.base_url}/v1/sessions/{sid}", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_openai_client_example(server, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    out = openai_client.run(server.base_url, folder=str(tmp_path), max_tokens=8)
    assert len(out["answers"]) == 2 and all(t >= 0 for t in out["ttft_s"]) and out["ended_on_server"]
    state = session_state(server, out["session_id"])
    assert state["turns"] == 2 and state["ended"]


def test_litellm_example(server):
    out = litellm_client.run(server.base_url, max_tokens=8)
    assert out["ended_on_server"] and out["cached_tokens_turn2"] is not None
    assert session_state(server, out["session_id"])["turns"] == 2


def test_mini_swe_agent_example_marks_its_last_step(server, tmp_path):
    # Not ended by the client: the session can only have ended through the is_last_step hint of call 2.
    out = mini_swe_agent.run(server.base_url, "Create hello.txt, then submit.", str(tmp_path), step_limit=2,
                             max_tokens=16, end=False)
    assert out["exit_status"] == "LimitsExceeded" and out["turns"] == 2 and len(out["ttft_s"]) == 2
    state = session_state(server, out["session_id"])
    assert state["turns"] == 2 and state["ended"] and state["pinned_blocks"] == 0


def test_openai_agents_sdk_example(server):
    # The shared server has no tool-call parser, so the agent runs without its tool: one streamed turn, which
    # offers no tool and so carries is_last_step; the run's end ends the program as well.
    out = openai_agents_sdk.run(server.base_url, max_tokens=8, tools=False)
    assert out["turns"] == 1 and out["prompt_tokens"][0] > 0 and out["ttft_s"][0] >= 0 and out["ended_on_server"]
    state = session_state(server, out["session_id"])
    assert state["turns"] == 1 and state["ended"] and state["pinned_blocks"] == 0


def test_streamed_turns_report_tokens_and_prefix_hits(server):
    with AgentSession(server.base_url, model="tiny") as s:
        prompt = list(range(1000, 1100))
        a = s.complete(prompt, max_tokens=8, ignore_eos=True)
        b = s.complete(prompt + a["choices"][0]["token_ids"] + [2000, 2001], max_tokens=4, ignore_eos=True,
                       is_last_step=True)
    t0, t1 = s.turn_stats
    assert t0.prompt_tokens == 100 and t0.output_tokens == 8 and len(t0.output_ids) == 8
    assert t1.prompt_tokens == 110 and t1.cached_tokens >= 96  # turn 0's prompt and output, whole blocks of 32
    assert 0 <= t0.ttft_s <= t0.latency_s and b["choices"][0]["finish_reason"] == "length"
    assert s.retries == 0 and t0.prompt_digest != t1.prompt_digest


class CuttingProxy:
    """TCP proxy to the server that closes the first connection after a few hundred bytes of the answer."""

    def __init__(self, port: int, cut_after: int = 400) -> None:
        self.port, self.cut_after, self.connections = port, cut_after, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.port))
            limit = self.cut_after if self.connections == 1 else None
            threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, limit), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while data := src.recv(4096):
                if limit is not None and sent + len(data) > limit:
                    dst.sendall(data[: limit - sent])
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):  # the cut: both sides closed
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.sock.close()


def test_a_turn_cut_by_the_network_is_sent_again(server):
    proxy = CuttingProxy(server.port)
    try:
        s = AgentSession(proxy.url, model="tiny", session_id="cut-1")
        answer = s.chat([{"role": "user", "content": "Count to twenty."}], max_tokens=48, ignore_eos=True)
        s.end()
        s.close()
    finally:
        proxy.close()
    assert s.retries == 1 and s.turn_stats[0].attempts == 2 and proxy.connections >= 2
    assert answer["choices"][0]["finish_reason"] == "length" and len(answer["choices"][0]["token_ids"]) == 48
    assert json.loads(json.dumps(answer))["usage"]["completion_tokens"] == 48


def test_determinism_probe_same_schedule_repeats_bitwise(server):
    from continuum_eval.probes.determinism_probe import probe

    out = probe(server.base_url, others=2, max_tokens=16)
    assert out["prefix_cache_reset"] and set(out["conditions"]) == {"cold-again", "warm", "batched", "batched-warm"}
    again = out["conditions"]["cold-again"]
    # The control: the same question alone on an empty cache twice gives the same tokens and log-probabilities.
    assert again["identical"] and again["max_logprob_diff"] == 0.0 and again["tokens"] == 16
    # Other schedules may differ: every answer is whole, and a difference names the first token that differs.
    for name, c in out["conditions"].items():
        assert c["tokens"] == 16 and c["max_logprob_diff"] >= 0.0, (name, c)
        if c["identical"]:
            assert c["first_diff_token"] is None, (name, c)
        else:
            assert isinstance(c["first_diff_token"], int) and 0 <= c["first_diff_token"] < 16, (name, c)
