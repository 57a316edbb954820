"""`continuum cluster` and `continuum bench --router`: bad input is refused before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from continuum.cluster.router import SESSION_EXPIRY_ENV, SESSION_EXPIRY_S, RouterProcess, router_available
from continuum.serve.cli import main
from continuum_eval.live.bench import run_bench
from continuum_eval.live.bench_cluster import router_options
from continuum_eval.live.settings import BenchConfig, BenchError


@pytest.mark.parametrize("argv, flag", [(["--replicas", "0"], "--replicas"),
                                        (["--router-policy", "nearest"], "--router-policy")])
def test_cluster_names_the_bad_flag(argv, flag, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["cluster", "tiny", *argv])
    assert exc.value.code == 2
    assert flag in capsys.readouterr().err


@pytest.mark.skipif(not router_available(), reason="vllm-router is not installed")
def test_the_router_drops_a_dead_replica_at_its_first_failure():
    router = RouterProcess(["http://127.0.0.1:1", "http://127.0.0.1:2"], port=5, program_scheduling=True)
    cmd = router.cmd
    assert cmd[cmd.index("--cb-failure-threshold") + 1] == "1"
    assert cmd[cmd.index("--policy") + 1] == "sticky_least_loaded" and "--enable-program-scheduling" in cmd
    assert router.env[SESSION_EXPIRY_ENV] == str(SESSION_EXPIRY_S)  # forgets silent programs sooner than its 2 h


def test_bench_router_setups(tmp_path: Path):
    cfg = BenchConfig(policies=["vllm"], jps=[1.0], out_dir=tmp_path, routers=["bogus"],
                      router_config='{"token_capacity_per_dp_rank": 2048}')
    with pytest.raises(BenchError, match="--router"):
        run_bench([], cfg)
    program = router_options("program", cfg)
    assert program["program_scheduling"] and program["router_args"][-1] == cfg.router_config
    assert router_options("hash", cfg) == {"router_policy": "consistent_hash", "program_scheduling": False,
                                           "router_args": []}
    with pytest.raises(BenchError, match="live"):
        run_bench([], BenchConfig(policies=["vllm"], jps=[1.0], out_dir=tmp_path, mode="sim", routers=["hash"]))
