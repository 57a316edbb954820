"""Agent bench results without a server: per-task summary, greedy-output comparison, the CLI's checks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from continuum_agents import ToolCall, TurnStats
from continuum_eval.agents_bench.bench import format_agent_table
from continuum_eval.agents_bench.determinism import compare_outputs, format_determinism
from continuum_eval.agents_bench.runs import TaskRun, summarize_runs


def turn(i: int, t: float, ids: list[int], prompt: str) -> TurnStats:
    return TurnStats(index=i, sent_s=t, first_token_s=t + 0.1, done_s=t + 0.5, prompt_tokens=100 + i,
                     cached_tokens=50 * i, output_tokens=len(ids), output_ids=ids, output_text=str(ids),
                     prompt_digest=prompt)


def runs(second_ids: list[int]) -> list[TaskRun]:
    a = TaskRun(id="a", start_s=10.0, end_s=13.0, solved=True, exit_status="Submitted",
                turns=[turn(0, 10.0, [1, 2, 3], "p0"), turn(1, 11.0, second_ids, "p1")],
                tool_calls=[ToolCall("ls", 0.25, 0)])
    b = TaskRun(id="b", start_s=10.5, end_s=12.0, exit_status="LimitsExceeded",
                turns=[turn(0, 10.5, [7], "q0"), turn(1, 11.5, [8], "q1")])
    c = TaskRun(id="c", start_s=10.0, end_s=10.2, failed=True, exit_status="BadRequestError", error="too long")
    return [a, b, c]


def test_summary_has_the_usual_keys_accuracy_and_tasks():
    res = summarize_runs(runs([4, 5]), policy="vllm", workload="swe-tasks", t0=10.0, meta={"agent": "x"})
    assert res["accuracy"] == pytest.approx(1 / 3)
    assert (res["programs"], res["completed"], res["failed"]) == (3, 2, 1)
    assert res["jct_s"]["mean"] == pytest.approx((3.0 + 1.5) / 2)
    assert res["ttft_s"]["mean"] == pytest.approx(0.1) and res["turns"]["cached_tokens"] == 100
    a = res["tasks"][0]
    assert (a["id"], a["solved"], a["turns"], a["tool_s"], a["jct_s"]) == ("a", True, 2, 0.25, 3.0)
    assert res["tasks"][2]["error"] == "too long" and res["outputs"]["a"][1]["ids"] == [4, 5]
    table = format_agent_table([res])
    assert "| vllm | 33% | 1/3 |" in table and "| a | vllm | yes | 2 |" in table


def test_outputs_are_compared_turn_by_turn_while_prompts_agree():
    base = summarize_runs(runs([4, 5]), policy="vllm", workload="w", t0=10.0)
    same = summarize_runs(runs([4, 5]), policy="continuum", workload="w", t0=10.0)
    other = summarize_runs(runs([4, 6, 9]), policy="continuum", workload="w", t0=10.0)
    other["outputs"]["b"][1]["prompt"] = "changed by a tool"
    [p] = compare_outputs([base, same])
    assert (p["turns_compared"], p["turns_identical"], p["turns_differing"]) == (4, 4, 0)
    [q] = compare_outputs([other, base])  # the baseline is found by name, not position
    assert q["policy"] == "continuum" and q["baseline"] == "vllm"
    assert (q["turns_compared"], q["turns_identical"], q["turns_differing"], q["prompt_diverged"]) == (3, 2, 1, 1)
    assert q["differences"] == [{"task": "a", "turn": 1, "first_diff_token": 1, "baseline_tokens": 2,
                                 "other_tokens": 3}]
    assert "| continuum vs vllm | 3 | 2 | 1 | 1 |" in format_determinism([q])


@pytest.mark.parametrize("argv, flag", [
    (["--agent", "bfcl", "--tasks", "2"], "--tasks"),
    (["--agent", "mini-swe-agent", "--entries", "2"], "--entries"),
    (["--agent", "bfcl", "--trace", "x.jsonl"], "--trace"),
    (["--agent", "bfcl", "--bfcl-categories", "base,nope"], "--bfcl-categories"),
    (["--agent", "bfcl", "--policies", "vllm,nope"], "--policies"),
    (["--agent", "bfcl", "--base-urls", "continuum=http://x:1", "--policies", "vllm"], "--base-urls"),
    (["--agent", "bfcl", "--base-urls", "vllm"], "--base-urls"),
    (["--agent", "bfcl", "--mode", "sim"], "--mode"),
    ([], "--trace"),
])
def test_bad_agent_flags_exit_2_naming_the_flag(argv, flag, tmp_path):
    p = subprocess.run([sys.executable, "-m", "continuum.serve.cli", "bench", *argv, "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert flag in p.stderr


def test_a_task_that_raises_is_recorded_failed_and_the_others_run():
    from continuum_eval.agents_bench.runs import run_tasks

    def fn(n: int) -> TaskRun:
        if n == 2:
            raise OSError("no such checkout")
        return TaskRun(id=str(n), start_s=0.0, end_s=1.0, solved=True)

    out = run_tasks(fn, [1, 2, 3], concurrency=2, desc="t", ident=str, progress=False)
    assert [r.id for r in out] == ["1", "2", "3"] and [r.failed for r in out] == [False, True, False]
    assert out[1].error == "OSError: no such checkout" and not out[1].solved
