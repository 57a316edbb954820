"""Reports, metrics, trace fitting and the eval command line, without a server."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from continuum.policy.presets import parse_policies
from continuum.policy.registry import ConfigError
from continuum_eval import cli as eval_cli
from continuum_eval.live import runs
from continuum_eval.live.replay import prepare_programs
from continuum_eval.live.settings import BenchConfig, BenchError, policy_args, serve_command, server_flags
from continuum_eval.results.metrics import ProgramRecord, TurnRecord, summarize
from continuum_eval.results.report import format_ratios, format_table, ratios, write_report
from continuum_workloads import Program, Turn, generate_swebench, write_trace
from continuum_workloads.transforms import fit_program, scale_program
from continuum_workloads.turn_plan import synthetic_ids

RESULT_KEYS = {"policy", "mode", "workload", "jps", "programs", "completed", "failed", "jct_s", "ttft_s",
               "makespan_s", "throughput_tok_s", "prefix_hit_rate", "pins", "sched_step_ms"}


def record(pid: str, arrival: float, end: float, turns: int = 2, failed: bool = False) -> ProgramRecord:
    r = ProgramRecord(id=pid, workload="swebench", arrival_s=arrival, num_turns=turns, end_s=end, failed=failed)
    for k in range(turns if not failed else 1):
        r.turns.append(TurnRecord(index=k, prompt_tokens=100 * (k + 1), output_tokens=10, cached_tokens=50 * k,
                                  sent_s=arrival + k, first_token_s=arrival + k + 0.2, done_s=arrival + k + 0.5,
                                  ok=True))
    return r


def synthetic_result(policy: str, jps: float, scale: float) -> dict:
    recs = [record(f"p{i}", arrival=i / jps, end=i / jps + scale * (5 + i)) for i in range(12)]
    res = summarize(recs, policy=policy, jps=jps)
    if policy == "continuum":
        res["pins"].update(created=7, hit=5, peak_blocks=40)
    return res


def test_summarize_follows_the_result_contract():
    recs = [record("a", 0.0, 10.0), record("b", 1.0, 5.0), record("c", 2.0, 3.0, failed=True)]
    res = summarize(recs, policy="vllm", jps=0.5, sched_step_ms={"mean": 1.5, "p99": 3.0})
    assert RESULT_KEYS <= res.keys()
    assert (res["programs"], res["completed"], res["failed"]) == (3, 2, 1)
    assert res["jct_s"]["mean"] == pytest.approx(7.0)  # (10 - 0) and (5 - 1)
    assert res["jct_s"]["p50"] == pytest.approx(7.0)
    assert res["ttft_s"]["mean"] == pytest.approx(0.2)
    assert res["makespan_s"] == pytest.approx(10.0)
    # prompts 100+200 per completed program plus the failed program's 100; cached 50 per completed program
    assert res["prefix_hit_rate"] == pytest.approx(100 / 700)
    assert res["pins"] == dict.fromkeys(("created", "hit", "expired", "released_pressure", "released_end",
                                         "peak_blocks"), 0)
    assert res["sched_step_ms"] == {"mean": 1.5, "p99": 3.0}
    assert res["errors"] == [] and res["per_program"][2]["failed"] is True
    assert res["per_program"][0]["latency_s"] == [pytest.approx(0.5), pytest.approx(0.5)]  # sent to last token
    assert len(res["per_program"][2]["latency_s"]) == 1
    json.dumps(res)  # serializable


def test_summarize_empty_run_is_zeros():
    res = summarize([], policy="vllm", jps=1.0)
    assert res["programs"] == 0 and res["jct_s"]["mean"] == 0.0 and res["makespan_s"] == 0.0


def test_report_writes_markdown_and_plots(tmp_path):
    results = [synthetic_result(p, j, s) for j in (0.5, 1.0, 2.0)
               for p, s in (("vllm", 1.0 + j), ("continuum", 0.8 + 0.5 * j))]
    paths = write_report(results, tmp_path, notes=["synthetic"])
    text = paths["report"].read_text()
    assert "| vllm | live | 0.5 | 12/12 |" in text and "| continuum | live | 2 | 12/12 |" in text
    assert "continuum / vllm" in text and "jct_cdf.png" in text
    for name in ("jct_vs_jps", "jct_cdf"):
        png = paths[name]
        assert png.stat().st_size > 10_000
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = ratios(results)
    assert len(rows) == 3 and all(r["mean_jct"] < 1 for r in rows)
    table = format_table(results)
    assert table.count("\n") == 1 + len(results)
    assert "0.5" in format_ratios(results)


def test_report_cli(tmp_path):
    results = [synthetic_result("vllm", 1.0, 2.0), synthetic_result("continuum", 1.0, 1.0)]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    p = subprocess.run([sys.executable, "-m", "continuum_eval.results.report", str(path), "--out", str(tmp_path / "r")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "continuum / vllm" in p.stdout and (tmp_path / "r" / "jct_cdf.png").exists()


def prog(ins: list[int], outs: list[int], pid: str = "x") -> Program:
    turns = [Turn(new_input_tokens=i, output_tokens=o, tool="grep", tool_s=1.0) for i, o in zip(ins, outs)]
    turns[-1] = turns[-1].model_copy(update={"tool": None, "tool_s": 0.0})
    return Program(id=pid, workload="test", turns=turns)


def test_fit_program_scales_long_programs_into_the_context():
    p = prog([4000, 500, 800, 300], [200, 150, 100, 90])
    fitted = fit_program(p, 2048)
    assert fitted.final_context() <= 2048
    assert len(fitted.turns) == 4 and fitted.turns[0].tool == "grep"
    assert fitted.turns[0].new_input_tokens > fitted.turns[1].new_input_tokens  # shape kept
    assert fitted.final_context() > 2048 * 0.95
    short = prog([100, 10], [10, 10])
    assert fit_program(short, 2048) is short


def test_fit_program_with_more_turns_than_tokens_drops_turns():
    p = prog([10] * 30, [5] * 30)
    fitted = fit_program(p, 16)
    assert fitted.final_context() <= 16
    assert fitted.turns[-1].tool is None and fitted.turns[-1].tool_s == 0.0


def test_swebench_trace_fits_small_context():
    programs = generate_swebench(5, seed=1)
    out = prepare_programs(programs, jps=0.5, seed=3, max_context=1024, token_scale=0.5, tool_scale=0.1)
    assert all(p.final_context() <= 1024 for p in out)
    assert out[0].arrival_s == 0.0 and all(p.arrival_s is not None for p in out)
    assert [p.id for p in out] == [p.id for p in programs]
    again = prepare_programs(programs, jps=0.5, seed=3, max_context=1024, token_scale=0.5, tool_scale=0.1)
    assert [p.arrival_s for p in again] == [p.arrival_s for p in out]
    scaled = scale_program(programs[0], 0.5, 0.1)
    assert scaled.turns[0].tool_s == pytest.approx(programs[0].turns[0].tool_s * 0.1)


def test_synthetic_ids_are_seeded_and_in_range():
    a = synthetic_ids(500, seed=1, program_id="p", turn=2, lo=1000, hi=30000)
    assert a == synthetic_ids(500, seed=1, program_id="p", turn=2, lo=1000, hi=30000)
    assert a != synthetic_ids(500, seed=1, program_id="p", turn=3, lo=1000, hi=30000)
    assert a != synthetic_ids(500, seed=2, program_id="p", turn=2, lo=1000, hi=30000)
    assert min(a) >= 1000 and max(a) < 30000 and synthetic_ids(0, seed=1, program_id="p", turn=0, lo=1,
                                                               hi=2) == []


def test_bench_flags_are_the_same_for_every_policy(tmp_path):
    cfg = BenchConfig(policies=["vllm", "continuum"], jps=[1.0], out_dir=tmp_path, num_gpu_blocks=64,
                      max_model_len=1024, server_args="--max-num-seqs 8", continuum_args="--pin-cap 0.6")
    flags = server_flags(cfg)
    assert flags[:6] == ["--block-size", "32", "--num-gpu-blocks-override", "64", "--max-model-len", "1024"]
    assert "--enable-prompt-tokens-details" in flags and "--enable-prefix-caching" in flags
    assert flags[-2:] == ["--max-num-seqs", "8"]
    assert policy_args("vllm", cfg) == ("vllm", [])
    assert policy_args("continuum", cfg) == ("continuum", ["--pin-cap", "0.6"])
    assert policy_args("continuum/preserve", cfg) == ("continuum", ["--ttl-mode", "preserve", "--pin-cap", "0.6"])
    with pytest.raises(BenchError):
        policy_args("sglang", cfg)
    with pytest.raises(BenchError):
        policy_args("continuum/forever", cfg)
    model, args = serve_command("continuum/preserve", cfg)
    assert args == ["--policy", "continuum", "--ttl-mode", "preserve", "--pin-cap", "0.6", *flags]


def test_policy_lists_are_split_and_checked_once_for_every_tool():
    assert parse_policies(" vllm, continuum/preserve,,plas ") == ["vllm", "continuum/preserve", "plas"]
    assert parse_policies("vllm,continuum", pin_cap=0.5) == ["vllm", "continuum"]  # settings skip vLLM's own
    for text, needle in (("", "at least one policy"), ("vllm,tgi", "unknown policy 'tgi'"),
                         ("vllm/preserve", "no TTL mode"), ("continuum/forever", "policy 'continuum/forever'")):
        with pytest.raises(ConfigError, match=needle):
            parse_policies(text)
    with pytest.raises(ConfigError, match="policy 'continuum'"):
        parse_policies("continuum", pin_cap=7.0)


class FakeDeployment:
    """A deployment that dies after ``lives`` runs."""

    def __init__(self, started: list, lives: int) -> None:
        self.base_url, self.lives, self.stopped = f"http://fake/{len(started)}", lives, False
        started.append(self)

    def alive(self) -> bool:
        return self.lives > 0 and not self.stopped

    def reset_prefix_cache(self) -> bool:
        self.lives -= 1
        return True

    def started(self) -> dict:
        return {"start_s": 1.0}

    def stop(self) -> None:
        self.stopped = True


def test_live_runs_restart_a_dead_deployment_and_report_one_that_does_not_start(tmp_path, monkeypatch):
    programs = [prog([10, 5], [3, 3])]
    replayed = []
    monkeypatch.setattr(runs, "replay_run", lambda progs, cfg, url, label, jps, idx, meta, **o:
                        replayed.append((url, jps, dict(meta["server"]), o)) or {"jps": jps})
    cfg = BenchConfig(policies=["vllm"], jps=[1.0, 2.0, 3.0, 4.0], out_dir=tmp_path, trace="t.jsonl")
    started: list = []
    attempts = iter(["up", "fails", "up"])

    def start():
        if next(attempts) == "fails":
            raise RuntimeError("no port")
        return FakeDeployment(started, lives=2)

    results = runs.serve_runs(programs, cfg, "vllm", start, {"model": "m"}, "server", agentic_context=True)
    # Rates 1 and 2 on the first deployment; it dies; the next one does not start (rate 3 fails); rate 4 restarts.
    assert [r["jps"] for r in results] == [1.0, 2.0, 3.0, 4.0]
    assert results[2]["failed"] == 1 and "server did not start: no port" in results[2]["errors"][0]
    assert [(url, jps) for url, jps, _, _ in replayed] == [("http://fake/0", 1.0), ("http://fake/0", 2.0),
                                                           ("http://fake/1", 4.0)]
    assert replayed[0][2] == {"model": "m", "start_s": 1.0, "prefix_cache_reset": True}
    assert "start_s" not in replayed[1][2] and replayed[0][3] == {"agentic_context": True}
    assert all(d.stopped for d in started)
    cfg.restart_each_run, cfg.jps = True, [1.0, 2.0]
    started.clear()
    attempts = iter(["up", "up"])
    runs.serve_runs(programs, cfg, "vllm", start, {}, "cluster")
    assert len(started) == 2 and all(d.stopped for d in started)


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    rc = eval_cli.main(argv)
    return rc, capsys.readouterr().err


def test_cli_bad_input_is_a_clear_error(tmp_path, capsys):
    rc, err = run_cli(["replay", "--trace", str(tmp_path / "missing.jsonl"), "--base-url", "http://127.0.0.1:9",
                       "--out", str(tmp_path / "r.json")], capsys)
    assert rc == 2 and "cannot read trace" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "workload": "w", "turns": []}\n')
    rc, err = run_cli(["replay", "--trace", str(bad), "--base-url", "http://127.0.0.1:9", "--out",
                       str(tmp_path / "r.json")], capsys)
    assert rc == 2 and "bad.jsonl:1" in err
    good = tmp_path / "good.jsonl"
    write_trace(good, [prog([10, 5], [3, 3])])
    # Nothing listens on port 9: the replay cannot start, says so, and returns 2 without writing a result.
    rc, err = run_cli(["replay", "--trace", str(good), "--base-url", "http://127.0.0.1:9", "--jps", "1",
                       "--out", str(tmp_path / "r.json"), "--no-progress"], capsys)
    assert rc == 2 and "cannot reach" in err and not (tmp_path / "r.json").exists()
    rc, err = run_cli(["replay", "--trace", str(good), "--base-url", "http://127.0.0.1:9", "--out",
                       str(tmp_path / "r.json"), "--no-progress"], capsys)
    assert rc == 2
    rc, err = run_cli(["bench", "--trace", str(good), "--policies", "vllm,tgi", "--jps", "1", "--out",
                       str(tmp_path / "b")], capsys)
    assert rc == 2 and "unknown policy 'tgi'" in err


def test_cli_rejects_bad_rates(tmp_path):
    p = subprocess.run([sys.executable, "-m", "continuum_eval.cli", "bench", "--trace", "x", "--jps", "0,-1", "--out",
                        str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "positive" in p.stderr


def test_bench_sim_writes_the_same_report(tmp_path, capsys):
    good = tmp_path / "good.jsonl"
    write_trace(good, [prog([200, 50, 40], [20, 10, 10], pid=f"s{i}") for i in range(4)])
    rc, err = run_cli(["bench", "--mode", "sim", "--trace", str(good), "--jps", "1,2", "--out", str(tmp_path / "b"),
                       "--no-progress"], capsys)
    assert rc == 0, err
    results = json.loads((tmp_path / "b" / "results.json").read_text())
    assert [(r["policy"], r["jps"], r["mode"]) for r in results] == [
        ("vllm", 1.0, "sim"), ("vllm", 2.0, "sim"), ("continuum", 1.0, "sim"), ("continuum", 2.0, "sim")]
    assert all(RESULT_KEYS <= r.keys() and r["completed"] == 4 for r in results)
    assert (tmp_path / "b" / "report.md").exists() and (tmp_path / "b" / "jct_vs_jps.png").exists()


def test_an_unreported_hit_rate_is_unknown_not_zero():
    recs = [record("a", 0.0, 10.0), record("b", 1.0, 5.0)]
    for r in recs:
        for t in r.turns:
            t.cached_tokens = None  # the server sent no prompt_tokens_details
    res = summarize(recs, policy="vllm", jps=0.5)
    assert res["prefix_hit_rate"] is None
    json.dumps(res)
    table = format_table([res])
    assert "| n/a |" in table and "0.0%" not in table
    # Turns that did report still count, over their own prompt tokens.
    recs[0].turns[1].cached_tokens = 50
    assert summarize(recs, policy="vllm", jps=0.5)["prefix_hit_rate"] == pytest.approx(50 / 200)
