"""End to end: `continuum bench --agent mini-swe-agent|bfcl` on the embedded model, plain vLLM vs Continuum.

Two servers, `tiny` with the same flags: plain vLLM for the module, and Continuum, the run's shared server
(tests/conftest.py). The mini-swe-agent bench runs against both, the BFCL bench against the vllm one and a
Continuum server it starts itself (the bench's own launch path). Small slices: two tasks / entries, two steps,
a few tokens per answer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

pytestmark = pytest.mark.engine

RESULT_KEYS = {"policy", "mode", "workload", "jps", "programs", "completed", "failed", "jct_s", "ttft_s",
               "makespan_s", "throughput_tok_s", "prefix_hit_rate", "pins", "sched_step_ms", "accuracy", "tasks"}


@pytest.fixture(scope="module")
def vllm_server(shared_tiny, tmp_path_factory):
    proc = shared_tiny.launch("vllm", tmp_path_factory.mktemp("agent-bench") / "vllm.log")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def servers(vllm_server, tiny_server):
    return {"vllm": vllm_server, "continuum": tiny_server}


def bench(args: list[str], out, tmp_path) -> tuple[list[dict], list[dict], str]:
    env = {**os.environ, "CONTINUUM_TASKS_DIR": str(tmp_path / "task-repos")}
    p = subprocess.run([sys.executable, "-m", "continuum.serve.cli", "bench", *args, "--out", str(out)], env=env,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    pairs = json.loads((out / "determinism.json").read_text())
    return results, pairs, p.stdout


def check_common(results: list[dict], pairs: list[dict], out, n: int) -> None:
    assert [r["policy"] for r in results] == ["vllm", "continuum"]
    for r in results:
        assert RESULT_KEYS <= r.keys() and r["mode"] == "live"
        assert r["programs"] == n == len(r["tasks"]) and r["completed"] + r["failed"] == n
        assert r["accuracy"] == sum(t["solved"] for t in r["tasks"]) / n
        for t in r["tasks"]:
            assert t["turns"] >= 1 and t["jct_s"] > 0 and t["tool_s"] >= 0 and t["exit_status"]
            assert len(r["outputs"][t["id"]]) == t["turns"]
        assert r["ttft_s"]["mean"] > 0 and r["turns"]["prompt_tokens"] > 0
    [p] = pairs
    assert p["turns_compared"] == p["turns_identical"] + p["turns_differing"] > 0
    report = (out / "report.md").read_text()
    assert "## Agent results" in report and "## Greedy outputs across policies" in report
    assert (out / "jct_vs_jps.png").stat().st_size > 0 and (out / "jct_cdf.png").stat().st_size > 0


def test_mini_swe_agent_bench(servers, tmp_path):
    out = tmp_path / "swe"
    urls = f"vllm={servers['vllm'].base_url},continuum={servers['continuum'].base_url}"
    results, pairs, stdout = bench(["--agent", "mini-swe-agent", "--tasks", "2", "--max-steps", "2",
                                    "--max-tokens", "16", "--policies", "vllm,continuum", "--base-urls", urls],
                                   out, tmp_path)
    check_common(results, pairs, out, 2)
    for r in results:
        assert r["workload"] == "swe-tasks"
        for t in r["tasks"]:
            # The random-weight model cannot act: the agent stops at its step limit (or on format errors).
            assert t["turns"] <= 2 and not t["solved"] and t["grade"] == "empty_patch"
            assert (out / "runs" / r["policy"] / t["id"] / "trajectory.json").exists()
    # The continuum server saw each task as one program of that many turns, ended.
    programs = {p["id"]: p for p in httpx.get(servers["continuum"].base_url + "/continuum/stats",
                                              timeout=30).json()["programs"]}
    for t in results[1]["tasks"]:
        assert programs[f"continuum-{t['id']}"]["turns"] == t["turns"]
    assert "| continuum | 0% | 0/2 |" in stdout


def test_bfcl_bench_starts_its_own_continuum_server(servers, tmp_path):
    out = tmp_path / "bfcl"
    results, pairs, _ = bench(["--agent", "bfcl", "--entries", "2", "--max-tokens", "16", "--tool-delay", "0.1",
                               "--policies", "vllm,continuum", "--base-urls", f"vllm={servers['vllm'].base_url}",
                               "--model", "tiny", "--max-model-len", "8192", "--server-args=--enforce-eager"],
                              out, tmp_path)
    check_common(results, pairs, out, 2)
    assert (out / "serve-continuum.log").exists() and not (out / "serve-vllm.log").exists()
    assert results[1]["meta"]["server"]["args"][:2] == ["--policy", "continuum"]
    for r in results:
        assert r["workload"] == "bfcl" and r["meta"]["tasks"] == results[0]["meta"]["tasks"]
        for t in r["tasks"]:
            assert t["id"].startswith("multi_turn_base_") and t["check"].startswith(("valid", "multi_turn:"))
            assert t["turns"] >= t["user_turns"] or t["exit_status"] == "force_terminated"
