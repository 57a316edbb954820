"""Live replay against `continuum serve tiny`: the run's shared server (tests/conftest.py); the test that kills
it runs after every other test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from continuum_eval.live.replay import ReplayOptions, replay_sync
from continuum_workloads import Program, Turn, write_trace

pytestmark = pytest.mark.engine

RESULT_KEYS = {"policy", "mode", "workload", "jps", "programs", "completed", "failed", "jct_s", "ttft_s",
               "makespan_s", "throughput_tok_s", "prefix_hit_rate", "pins", "sched_step_ms"}


@pytest.fixture
def server(tiny_server):
    return tiny_server


def tiny_trace(n: int, turns: int = 3, tool_s: float = 0.3, prefix: str = "p") -> list[Program]:
    out = []
    for i in range(n):
        ts = [Turn(new_input_tokens=100 if k == 0 else 30, output_tokens=40 if k == 0 else 8, tool="grep",
                   tool_s=tool_s) for k in range(turns)]
        ts[-1] = ts[-1].model_copy(update={"tool": None, "tool_s": 0.0})
        out.append(Program(id=f"{prefix}{i}", workload="tiny", turns=ts))
    return out


def programs_seen(server) -> dict[str, dict]:
    r = httpx.get(server.base_url + "/continuum/stats", timeout=30)
    assert r.status_code == 200, r.text
    return {p["id"]: p for p in r.json()["programs"]}


def test_replay_cli_completes_with_token_exact_prompts(server, tmp_path):
    trace = tmp_path / "trace.jsonl"
    write_trace(trace, tiny_trace(3, prefix="cli-p"))  # session ids of its own on the shared server
    out = tmp_path / "result.json"
    p = subprocess.run([sys.executable, "-m", "continuum.serve.cli", "replay", "--trace", str(trace), "--base-url",
                        server.base_url, "--jps", "2", "--out", str(out), "--seed", "5"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    res = json.loads(out.read_text())
    assert RESULT_KEYS <= res.keys()
    assert (res["programs"], res["completed"], res["failed"]) == (3, 3, 0)
    assert res["policy"] == "continuum" and res["mode"] == "live" and res["jps"] == 2.0
    assert 0 < res["jct_s"]["mean"] <= res["jct_s"]["p99"] and res["ttft_s"]["mean"] > 0
    assert res["turns"]["token_exact"] and res["turns"]["output_tokens"] == 3 * (40 + 8 + 8)
    assert res["meta"]["continuum_stats"] is True
    for prog in res["per_program"]:
        # turn k's prompt = turn k-1's prompt + its output + the new input
        assert prog["prompt_tokens"] == [100, 170, 208]
        # Memory is plentiful: turn 1 reuses turn 0's prompt *and* its actual output ids (139 tokens known to
        # the cache -> 4 full blocks of 32); with made-up output ids only 3 blocks (96 tokens) would match.
        assert prog["cached_tokens"][1] >= 128, prog
        assert prog["cached_tokens"][2] >= 160, prog
    assert res["prefix_hit_rate"] > 0.5
    # One program per session id, each with all its turns.
    seen = programs_seen(server)
    assert all(seen[f"cli-p{i}"]["turns"] == 3 for i in range(3))


def test_replay_sends_hints_and_session_ids(server):
    res = replay_sync(tiny_trace(2, turns=2, tool_s=0.1, prefix="h"),
                      ReplayOptions(base_url=server.base_url, jps=5, session_prefix="run2-", progress=False))
    assert res["completed"] == 2
    seen = programs_seen(server)
    assert seen["run2-h0"]["turns"] == 2 and seen["run2-h1"]["turns"] == 2
    res = replay_sync(tiny_trace(1, turns=2, tool_s=0.0, prefix="fit-x"),
                      ReplayOptions(base_url=server.base_url, jps=1, max_context=60, progress=False, hints=False))
    assert res["completed"] == 1 and res["per_program"][0]["prompt_tokens"][-1] + 4 <= 60  # fitted


def test_replay_against_a_server_killed_mid_run(tiny_server_to_stop):
    """Kills the shared server (so it runs last)."""
    server = tiny_server_to_stop
    programs = tiny_trace(4, turns=4, tool_s=1.5, prefix="kill")
    box: dict = {}

    def run() -> None:
        box["result"] = replay_sync(programs, ReplayOptions(base_url=server.base_url, jps=4, progress=False,
                                                            request_timeout_s=60, session_prefix="k-"))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until some program has finished a turn and waits on its tool
        if any(p.get("turns", 0) >= 1 for pid, p in programs_seen(server).items() if pid.startswith("k-")):
            break
        time.sleep(0.2)
    killed_at = time.monotonic()
    os.killpg(server.proc.pid, signal.SIGKILL)
    t.join(timeout=120)
    assert not t.is_alive(), "replay hung after the server died"
    assert time.monotonic() - killed_at < 90
    res = box["result"]
    assert res["programs"] == 4 and res["failed"] >= 1 and res["completed"] + res["failed"] == 4
    assert res["meta"]["server_down"] is True and res["errors"]
    assert all(p["failed"] for p in res["per_program"] if p["turns_done"] < 4)
