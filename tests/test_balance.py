"""Balance scheduling on vLLM's real scheduler, and the session-to-engine placement it travels with."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

from continuum.cluster.affinity import SessionAffinity, home_of
from continuum.control.dp import merge_stats, rank_address
from continuum.policy.presets import describe, resolve
from continuum.policy.registry import ConfigError
from continuum.sched.rank_board import LocalBoard, SharedBoard, counts_path
from continuum.sched.scheduler import scheduler_for
from continuum_eval.sim.engine.vllm_offline import build_scheduler, make_request, run_step

BS = 32


def make(policy: str = "continuum", max_num_seqs: int = 4, **overrides):
    cls, ctor = scheduler_for(policy, **overrides)
    return build_scheduler(cls, num_blocks=400, block_size=BS, max_num_seqs=max_num_seqs, **ctor)


def add(s, rid: str, session: str, start: int = 1000, n: int = 64, out: int = 50) -> None:
    s.add_request(make_request(rid, list(range(start, start + n)), out, session_id=session))


# -- placement ---------------------------------------------------------------------------------------------
def test_a_session_stays_home_under_ordinary_imbalance():
    a = SessionAffinity(4)
    home = home_of("prog-1", 4)
    loads = [5.0] * 4
    loads[home] = 12.0  # 7 above the others: within the slack of 8
    assert [a.pick("prog-1", loads) for _ in range(3)] == [home] * 3
    assert a.spills == 0


def test_an_overloaded_home_spills_to_the_least_loaded_and_the_program_stays_there():
    a = SessionAffinity(4)
    home = home_of("prog-1", 4)
    loads = [10.0] * 4
    loads[home] = 40.0
    target = (home + 2) % 4
    loads[target] = 1.0
    assert a.pick("prog-1", loads) == target and a.spills == 1
    assert a.pick("prog-1", [10.0] * 4) == target  # its KV is there now
    a.forget("prog-1")
    assert a.pick("prog-1", [10.0] * 4) == home


def test_homes_spread_sessions_over_engines():
    counts = [0] * 4
    for i in range(400):
        counts[home_of(f"agent-{i}", 4)] += 1
    assert min(counts) > 60


# -- the component in the registry ---------------------------------------------------------------------------
def test_balance_is_off_by_default_and_named_in_the_registry():
    assert resolve("continuum").balance == "off"
    assert resolve("continuum", balance="any-full").knob("any-full.headroom") == 1
    assert "--balance" in describe() and "any-full" in describe()
    with pytest.raises(ConfigError):
        resolve("continuum", balance="sometimes")


# -- the rule on real schedulers ------------------------------------------------------------------------------
def ranks(n: int, balance: str = "any-full", **knobs):
    board = LocalBoard(n)
    scheds = [make(balance=balance, knobs=knobs) for _ in range(n)]
    for r, s in enumerate(scheds):
        s.balance.attach(board, r)
    return board, scheds


def fill(s, prefix: str, n: int) -> None:
    for i in range(n):
        add(s, f"{prefix}{i}", f"{prefix}-prog{i}", start=1000 + 100 * i)


def test_a_full_rank_holds_admissions_on_every_rank():
    board, (r0, r1) = ranks(2)
    fill(r0, "a", 4)  # max_num_seqs 4: rank 0 becomes full
    run_step(r0)
    assert len(r0.running) == 4
    add(r1, "b0", "b-prog0")
    out, _ = run_step(r1)
    assert "b0" not in out.num_scheduled_tokens and len(r1.waiting) == 1
    assert r1.balance.holds == 1


def test_admissions_resume_when_the_full_rank_drains_and_running_work_never_stops():
    board, (r0, r1) = ranks(2)
    add(r1, "b-running", "b-prog-running")
    run_step(r1)
    fill(r0, "a", 4)
    run_step(r0)
    add(r1, "b-new", "b-prog-new")
    out, _ = run_step(r1)
    assert "b-running" in out.num_scheduled_tokens and "b-new" not in out.num_scheduled_tokens
    while r0.has_requests():  # rank 0's requests finish; its count reaches the board after each output
        run_step(r0)
    out, _ = run_step(r1)
    assert "b-new" in out.num_scheduled_tokens


def test_without_balance_the_other_rank_admits():
    board, (r0, r1) = ranks(2, balance="off")
    fill(r0, "a", 4)
    run_step(r0)
    add(r1, "b0", "b-prog0")
    out, _ = run_step(r1)
    assert "b0" in out.num_scheduled_tokens


def test_headroom_counts_a_rank_as_full_earlier():
    board, (r0, r1) = ranks(2, **{"any-full.headroom": 2})
    fill(r0, "a", 2)
    run_step(r0)
    add(r1, "b0", "b-prog0")
    out, _ = run_step(r1)
    assert "b0" not in out.num_scheduled_tokens


def test_a_snapshot_shows_the_previous_step_to_ranks_stepping_one_after_another():
    board = LocalBoard(2)
    board.publish(0, 3)
    board.snapshot()
    board.publish(0, 7)
    assert board.counts() == [3, 0]
    board.snapshot()
    assert board.counts() == [7, 0]


POST = "import sys; from continuum.sched.rank_board import SharedBoard; SharedBoard(sys.argv[1], int(sys.argv[2]), 3)" \
       ".publish(int(sys.argv[2]), int(sys.argv[3]))"  # a rank process posts its count and ends; the count stays


def test_ranks_in_separate_processes_read_counts_without_waiting(tmp_path):
    path = counts_path(f"ipc://{tmp_path}/ctl")
    reader = SharedBoard(path, 0, 3)
    try:
        assert reader.counts() == [0, 0, 0]  # nothing posted yet: zeros, no wait
        for rank, count in ((1, 5), (2, 9), (1, 6)):
            subprocess.run([sys.executable, "-c", POST, path, str(rank), str(count)], check=True, timeout=60)
        assert reader.counts() == [0, 6, 9]  # each rank's latest, read at once
        reader.publish(0, 2)
        assert SharedBoard(path, 1, 3).counts() == [2, 6, 9]  # a rank that maps the board late sees it all
    finally:
        reader.close()
    assert not os.path.exists(path)


def test_the_board_of_a_tcp_control_address_lives_in_the_temp_dir():
    path = counts_path("tcp://127.0.0.1:5555")
    assert os.path.dirname(path) == tempfile.gettempdir() and path != counts_path("tcp://127.0.0.1:5556")


# -- the control channel over ranks -----------------------------------------------------------------------------
def test_each_rank_has_its_own_control_address():
    assert rank_address("ipc:///tmp/c", 0, 1) == "ipc:///tmp/c"
    assert len({rank_address("ipc:///tmp/c", r, 4) for r in range(4)}) == 4


def test_stats_of_ranks_merge_into_one_view():
    def stats(pids, pinned, free):
        return {"config": {"ttl_mode": "model"}, "programs": [{"id": p} for p in pids], "num_programs": len(pids),
                "pins": {"hit": 1, "active": len(pids), "pinned_blocks": pinned},
                "kv": {"num_blocks": 100, "free_blocks": free, "usage": 0.5}, "preempted_for_waiting": 0,
                "sched_step_ms": {"mean": 0.2, "p99": 1.0}}

    m = merge_stats([stats(["a"], 3, 90), stats(["b", "c"], 5, 80)])
    assert m["num_programs"] == 3 and {(p["id"], p["rank"]) for p in m["programs"]} == {("a", 0), ("b", 1), ("c", 1)}
    assert m["pins"] == {"hit": 2, "active": 3, "pinned_blocks": 8}
    assert m["kv"]["num_blocks"] == 200 and m["kv"]["free_blocks"] == 170
    assert m["data_parallel_size"] == 2 and len(m["ranks"]) == 2 and "programs" not in m["ranks"][0]
