"""The host-tier goals table (`continuum_eval.sim.goals`): rows by policy and tier, the knee, the goal marks."""

from __future__ import annotations

import json

from continuum_eval.sim.goals import by_load, knee, main, table


def run(policy: str, jps: float, mean: float, p95: float, tier: bool = True, limit: int | None = None) -> dict:
    r = {"policy": policy, "jps": jps, "jct_s": {"mean": mean, "p95": p95}, "bound": {"mean_jct_s": 10.0}}
    if tier:
        r["host_tier"] = {"cpu_kv_gib": 128}
    if limit is not None:
        r["oracle"] = {"limit": limit}
    return r


RESULTS = [
    run("vllm", 0.5, 30.0, 50.0), run("continuum", 0.5, 30.0, 50.0), run("vllm", 0.5, 30.0, 50.0, tier=False),
    run("vllm", 1.0, 80.0, 120.0), run("continuum", 1.0, 60.0, 90.0),  # baseline 2.7x unloaded: below the knee
    run("vllm", 1.5, 95.0, 200.0), run("continuum", 1.5, 70.0, 100.0),  # 3.2x: the knee; mean 1.36x, p95 2x
    run("best-oracle", 1.5, 66.0, 100.0, limit=0),
    run("vllm", 2.0, 300.0, 500.0), run("continuum", 2.0, 100.0, 150.0), run("best-oracle", 2.0, 80.0, 140.0, limit=32),
]


def test_the_knee_is_where_the_baseline_first_triples():
    assert knee(by_load(RESULTS)) == 1.5
    assert knee(by_load([r for r in RESULTS if r["jps"] < 1.5])) is None
    assert knee(by_load([run("continuum", 1.0, 1.0, 1.0)])) is None  # no baseline: no knee


def test_rows_and_marks():
    lines = table(RESULTS).splitlines()
    rows = {line.split(" |")[0].lstrip("| "): line for line in lines if line.startswith("| ") and "JPS" not in line}
    assert rows["0.5"].startswith("| 0.5 | 30.0 / 50.0 | 30.0 / 50.0 | 30.0 / 50.0 | - | 10.0 | 1.00x ✓ |")
    assert "| 1.33x ✓ |" in rows["1"]  # below the knee only "not worse" is asked, and no p95 goal
    assert "| 1.36x ✗ | 2.00x ✓ | 1.06x ✓ |" in rows["1.5 (knee)"]  # mean short of 1.5x; within 1.10x of oracle
    assert "80.0 / 140.0 (N=32)" in rows["2"] and rows["2"].endswith("| 3.00x ✓ | 3.33x ✓ | 1.25x ✗ |")
    assert lines[-1].startswith("knee: 1.5 JPS")


def test_the_cli_reads_several_files(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(RESULTS[:5]))
    b.write_text(json.dumps(RESULTS[5:]))
    assert main([str(a), str(b), "--out", str(tmp_path / "goals.md"), "--png", str(tmp_path / "goals.png")]) == 0
    assert (tmp_path / "goals.png").read_bytes()[:4] == b"\x89PNG"
    assert "1.5 (knee)" in capsys.readouterr().out and (tmp_path / "goals.md").read_text().startswith("| JPS")
