"""The simulator's scale-out: replicas behind a router, data-parallel ranks in lockstep, balance scheduling."""

from __future__ import annotations

import json

import pytest

from continuum.cluster.affinity import home_of
from continuum_eval.sim.cli import main as sim_main
from continuum_eval.sim.engine.loop import EventLoop
from continuum_eval.sim.run import simulate_result
from continuum_eval.sim.scaleout import main as scaleout_main
from continuum_workloads import assign_arrivals, write_trace
from tests.test_sim_engine import all_blocks_free, hand_profile, small_programs

N = 12


def progs(rate: float = 2.0, n: int = N):
    return assign_arrivals(small_programs(n), rate, seed=1)


def run(n_engines: int, router: str, profile=None, policy: str = "continuum", lockstep: bool = False,
        programs=None, **overrides) -> EventLoop:
    sim = EventLoop(progs() if programs is None else programs, policy, profile or hand_profile(num_blocks=200),
                    engines=n_engines, router=router, lockstep=lockstep, seed=0, policy_overrides=overrides)
    return sim.run()


def test_session_routing_keeps_each_program_on_its_home_replica():
    sim = run(3, "session")
    assert sim.dispatch.moves == 0
    assert all(sp.done and not sp.record.failed for sp in sim.progs)
    assert all(all_blocks_free(e) for e in sim.engines)
    homes = {home_of(sp.id, 3) for sp in sim.progs}
    assert {i for i in range(3) if sim.dispatch.turns_to[i]} == homes
    # One event loop for every shape of run: each replica's clock skips its own idle time.
    assert all(sim.engines[i].stats.idle_jumps > 0 for i in homes)
    assert len({id(e.clock) for e in sim.engines}) == len(sim.engines)  # clocks of their own


def test_the_busy_queue_steps_the_group_a_scan_would():
    # The loop keeps busy groups in a heap so that finding the one furthest behind costs O(log N), not a scan of
    # every replica per event; each step must still be the scan's pick (earliest clock, first in order on ties).
    class Checked(EventLoop):
        def step(self, group):
            busy = [g for g in self.groups if g.busy()]
            assert group is min(busy, key=lambda g: g.clock.now)
            self.checked = getattr(self, "checked", 0) + 1
            super().step(group)

    for router in ("session", "session-load", "round-robin"):
        sim = Checked(progs(rate=4.0), "continuum", hand_profile(num_blocks=200), engines=3, router=router,
                      seed=0).run()
        assert sim.checked > 0 and all(sp.done and not sp.record.failed for sp in sim.progs)
        assert sim.furthest_behind() is None and not any(g.busy() for g in sim.groups)


def test_round_robin_scatters_turns_and_loses_prefix_hits():
    profile = hand_profile(num_blocks=200)
    by_router = {r: simulate_result(progs(), "continuum", profile, None, seed=0, progress=False, replicas=3,
                                    router=r) for r in ("session", "round-robin")}
    assert by_router["round-robin"]["scaleout"]["moves"] > 0 == by_router["session"]["scaleout"]["moves"]
    assert by_router["round-robin"]["prefix_hit_rate"] < by_router["session"]["prefix_hit_rate"]
    assert all(r["completed"] == N for r in by_router.values())


def test_session_load_spills_only_where_a_home_is_overloaded():
    # Twenty programs whose sessions all hash to engine 0, arriving together: the home piles up and turns spill to
    # engine 1 (a first turn placed there is no move); a later turn moves only when its engine is overloaded.
    homed = [p for p in small_programs(80) if home_of(p.id, 2) == 0][:20]
    sim = run(2, "session-load", programs=assign_arrivals(homed, 20.0, seed=1))
    assert 0 < sim.dispatch.moves <= sim.dispatch.spills
    assert sim.dispatch.turns_to[1] > 0  # only spills reach engine 1
    assert all(sp.done and not sp.record.failed for sp in sim.progs)
    assert all(all_blocks_free(e) for e in sim.engines)


def test_lockstep_ranks_wait_for_the_slowest():
    free = run(2, "session-load")
    locked = run(2, "session-load", lockstep=True)
    assert all(sp.done for sp in locked.progs) and all(all_blocks_free(e) for e in locked.engines)
    assert len({e.clock.now for e in locked.engines}) == 1  # one clock
    busy_free = sum(e.stats.busy_s for e in free.engines)
    busy_locked = sum(e.stats.busy_s for e in locked.engines)
    assert busy_locked > busy_free and locked.skew_s > 0


def test_balance_holds_admissions_in_lockstep_only_when_on():
    profile = hand_profile(num_blocks=400)
    profile.max_num_seqs = 2  # a rank is full with two running requests
    held = {}
    for balance in ("off", "any-full"):
        sim = run(2, "session-load", profile=profile, lockstep=True, balance=balance,
                  knobs={"any-full.headroom": 0})
        assert all(sp.done and not sp.record.failed for sp in sim.progs)
        held[balance] = sum(sim.state()["held_steps_per_rank"])
    assert held["off"] == 0 < held["any-full"]


def test_the_cli_runs_replicas_and_names_bad_flags(tmp_path, capsys):
    trace = tmp_path / "t.jsonl"
    write_trace(trace, small_programs(4))
    out = tmp_path / "r.json"
    args = ["sim", "--trace", str(trace), "--profile", "h100-llama-3.1-8b", "--jps", "2", "--no-progress",
            "--out", str(out)]
    assert sim_main(args + ["--replicas", "2", "--router", "round-robin"]) == 0
    result = json.loads(out.read_text())
    assert result["scaleout"]["router"] == "round-robin" and result["sim"]["engines"] == 2
    assert sim_main(args + ["--lockstep"]) == 2
    assert "--lockstep" in capsys.readouterr().err
    assert sim_main(args + ["--replicas", "2", "--dp", "2"]) == 2
    with pytest.raises(SystemExit) as exc:
        sim_main(args + ["--replicas", "2", "--router", "nearest"])
    assert exc.value.code == 2


def test_the_scaleout_report_times_the_simulator_per_program(tmp_path):
    pytest.importorskip("matplotlib")  # the eval extra's; the contract suite's vLLM environments lack it
    trace = tmp_path / "t.jsonl"
    write_trace(trace, small_programs(4))
    out = tmp_path / "so"
    assert scaleout_main(["replicas", "--trace", str(trace), "--replicas", "1,2", "--per-replica", "1", "--jps", "1",
                          "--routers", "session", "--no-progress", "--out", str(out)]) == 0
    rows = json.loads((out / "results.json").read_text())
    assert [(r["programs"], r["replicas"], r["router"]) for r in rows] == [(1, 1, "-"), (2, 1, "-"), (2, 2, "session")]
    for r in rows:  # every N, the baseline included, carries the simulator's own cost
        assert r["sim_s_per_program"] > 0 and r["sim_s_per_program"] == pytest.approx(r["wall_s"] / r["programs"])
        assert r["cpu_s_per_program"] > 0
    report = (out / "report.md").read_text()
    assert "| sim s / program | CPU s / program | wall (s) |" in report and "Simulator wall time" in report
    assert f"| {rows[2]['sim_s_per_program']:.3f} | {rows[2]['cpu_s_per_program']:.3f} |" in report
