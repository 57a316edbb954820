"""`continuum bench --mode live` end to end on the tiny model: two servers, two rates, one report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from continuum_workloads import Program, Turn, write_trace

pytestmark = pytest.mark.engine


def test_live_bench_ab(tiny_model, tmp_path):
    programs = []
    for i in range(4):
        turns = [Turn(new_input_tokens=300 if k == 0 else 40, output_tokens=8, tool="grep", tool_s=0.2)
                 for k in range(3)]
        turns[-1] = turns[-1].model_copy(update={"tool": None, "tool_s": 0.0})
        programs.append(Program(id=f"b{i}", workload="tiny", turns=turns))
    trace = tmp_path / "trace.jsonl"
    write_trace(trace, programs)
    out = tmp_path / "bench"
    p = subprocess.run(
        [sys.executable, "-m", "continuum.serve.cli", "bench", "--mode", "live", "--trace", str(trace),
         "--model", "tiny",
         "--policies", "vllm,continuum", "--jps", "2,4", "--out", str(out), "--num-gpu-blocks", "64",
         "--max-model-len", "1024", "--server-args=--enforce-eager", "--no-progress"],
        capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert [(r["policy"], r["jps"]) for r in results] == [("vllm", 2.0), ("vllm", 4.0), ("continuum", 2.0),
                                                          ("continuum", 4.0)]
    assert all(r["completed"] == 4 and r["failed"] == 0 for r in results)
    # Both servers got the same flags; the prefix cache was emptied before every run.
    for r in results:
        assert "--enable-prompt-tokens-details" in r["meta"]["server"]["args"]
        assert r["meta"]["server"]["prefix_cache_reset"] is True
        assert r["prefix_hit_rate"] > 0
    assert results[0]["pins"]["created"] == 0 and results[0]["meta"]["continuum_stats"] is False
    assert results[2]["meta"]["continuum_stats"] is True
    # Runs on one server use distinct session ids, so the second run starts with no program state.
    assert results[1]["turns"]["prompt_tokens"] == results[0]["turns"]["prompt_tokens"]
    report = (out / "report.md").read_text()
    assert "continuum / vllm" in report
    assert (out / "jct_vs_jps.png").stat().st_size > 0 and (out / "jct_cdf.png").stat().st_size > 0
    assert "continuum / vllm" in p.stdout and "| vllm | live | 2 | 4/4 |" in p.stdout
