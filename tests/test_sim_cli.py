"""`continuum sim` / `continuum profile` argument handling and the result file."""

from __future__ import annotations

import json
import logging

import pytest

from continuum_eval.sim.cli import main
from continuum_workloads import generate_swebench, write_trace
from continuum_workloads.transforms import scale_program


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "t.jsonl"
    write_trace(path, [scale_program(p, 0.1) for p in generate_swebench(4, 5)])
    return path


def test_profile_list(capsys):
    assert main(["sim", "--profile", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("h100-llama-3.1-8b", "a100-llama-3.1-8b", "h100x4-llama-3.1-70b", "cpu"):
        assert name in out


@pytest.mark.parametrize("argv, needle", [
    (["--policy", "nope"], "--policy"),
    (["--profile", "tpu-v9"], "--profile"),
    (["--jps", "-1"], "--jps"),
])
def test_bad_input_exits_2(trace, tmp_path, capsys, argv, needle):
    code = main(["sim", "--trace", str(trace), "--out", str(tmp_path / "r.json"), "--no-progress", *argv])
    assert code == 2
    assert needle in capsys.readouterr().err


def test_missing_trace_exits_2(tmp_path, capsys):
    assert main(["sim", "--trace", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "r.json")]) == 2
    assert "cannot read trace" in capsys.readouterr().err
    assert main(["sim", "--out", str(tmp_path / "r.json")]) == 2


def test_sim_writes_the_result_json(trace, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="continuum_eval")
    out = tmp_path / "r.json"
    assert main(["sim", "--trace", str(trace), "--policy", "continuum", "--jps", "0.5", "--out", str(out),
                 "--no-progress", "--num-blocks", "2000"]) == 0
    r = json.loads(out.read_text())
    for key in ("policy", "mode", "workload", "jps", "programs", "completed", "failed", "jct_s", "ttft_s",
                "makespan_s", "throughput_tok_s", "prefix_hit_rate", "slowdown", "pins", "sched_step_ms"):
        assert key in r
    assert r["mode"] == "sim" and r["policy"] == "continuum" and r["jps"] == 0.5
    assert r["completed"] == 4 and r["sim"]["num_blocks"] == 2000
    assert set(r["jct_s"]) >= {"mean", "p50", "p90", "p95", "p99"}
    assert r["slowdown"]["mean"] >= 1.0 - 1e-9 and r["sched_step_ms"]["mean"] > 0
    assert all(p["alone_s"] > 0 for p in r["per_program"])
    assert set(r["bound"]) == {"alone_s", "saturated_s", "mean_jct_s"}
    assert r["bound"]["mean_jct_s"] <= r["jct_s"]["mean"] + 1e-9
    assert "sim continuum jps=0.5: 4/4 programs, mean JCT" in caplog.text  # the run's summary line is logged


def test_several_policies_write_a_list(trace, tmp_path):
    out = tmp_path / "r.json"
    assert main(["sim", "--trace", str(trace), "--policy", "vllm,plas", "--jps", "1,2", "--out", str(out),
                 "--no-progress", "--limit", "2"]) == 0
    rs = json.loads(out.read_text())
    assert [(r["policy"], r["jps"]) for r in rs] == [("vllm", 1.0), ("vllm", 2.0), ("plas", 1.0), ("plas", 2.0)]


def test_cpu_kv_gib_adds_vllms_host_tier_and_its_traffic(trace, tmp_path):
    out = tmp_path / "r.json"
    assert main(["sim", "--trace", str(trace), "--policy", "vllm", "--jps", "1", "--out", str(out), "--no-progress",
                 "--num-blocks", "100", "--cpu-kv-gib", "0.5", "--cpu-eviction", "arc"]) == 0
    r = json.loads(out.read_text())
    tier = r["host_tier"]
    assert tier["cpu_kv_gib"] == 0.5 and tier["eviction"] == "arc" and tier["blocks"] == 256  # 2 MiB blocks
    assert tier["stored_bytes"] > 0 and tier["stored_bytes"] % (16 * 131072) == 0
    for key in ("loaded_bytes", "store_busy_s", "load_busy_s", "loads", "cpu_hit_tokens"):
        assert key in tier
    assert r["completed"] == 4


@pytest.mark.parametrize("argv, needle", [
    (["--cpu-kv-gib", "0"], "--cpu-kv-gib"),
    (["--cpu-kv-gib", "1", "--cpu-eviction", "fifo"], "--cpu-eviction"),
])
def test_bad_host_tier_exits_2(trace, tmp_path, argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:  # argparse's own error: usage and exit status 2
        main(["sim", "--trace", str(trace), "--out", str(tmp_path / "r.json"), "--no-progress", *argv])
    assert exc.value.code == 2 and needle in capsys.readouterr().err


def test_host_tier_needs_a_gpu_profile(trace, tmp_path, capsys):
    code = main(["sim", "--trace", str(trace), "--out", str(tmp_path / "r.json"), "--no-progress",
                 "--jps", "1", "--profile", "eval/sim/fitted/cpu.json", "--cpu-kv-gib", "1"])
    assert code == 2 and "host link" in capsys.readouterr().err
