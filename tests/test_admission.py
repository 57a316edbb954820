"""Program admission on vLLM's real scheduler: programs wait at the door, never forever, never deadlocked."""

from __future__ import annotations

import json
import math

from vllm.v1.request import RequestStatus

from continuum.control.engine_side import EngineControl
from continuum.sched.scheduler import scheduler_for
from continuum_eval.sim.engine.loop import Engine
from continuum_eval.sim.engine.vllm_offline import build_scheduler, make_request, run_step
from continuum_eval.sim.run import prepare, simulate_result
from continuum_workloads import Program, Turn, assign_arrivals
from tests.fake_clock import Clock
from tests.test_sim_engine import all_blocks_free, hand_profile, small_programs

BS = 32


def make(num_blocks: int, policy: str = "continuum", **overrides):
    cls, ctor = scheduler_for(policy, **overrides)
    s = build_scheduler(cls, num_blocks=num_blocks, block_size=BS, max_num_seqs=16, **ctor)
    s.clock = Clock()
    return s


def add(s, rid: str, start: int, n: int, out: int, session: str, **hints):
    request = make_request(rid, list(range(start, start + n)), out, arrival_time=s.clock.now, session_id=session,
                           **hints)
    s.add_request(request)
    return request


def test_a_program_waits_at_the_door_until_memory_frees():
    s = make(num_blocks=41)  # 40 usable blocks of 32 tokens
    add(s, "a1", 1000, 640, 8, "A")  # 21 blocks with its output
    add(s, "b1", 5000, 640, 8, "B")  # would need 21 more: 42 > 40
    assert s.programs.get("A").admitted and not s.programs.get("B").admitted
    out, _ = run_step(s)
    assert "a1" in out.num_scheduled_tokens and "b1" not in out.num_scheduled_tokens
    assert len(s.waiting) == 1 and not s.waiting  # counted (the engine keeps stepping), but not schedulable
    while "a1" in s.requests:
        run_step(s)
        s.clock.now += 0.01
    s.end_program("A")
    out, _ = run_step(s)
    assert s.programs.get("B").admitted and "b1" in out.num_scheduled_tokens


def test_a_program_larger_than_the_pool_still_runs_alone_and_nothing_deadlocks():
    # 20 usable blocks. The clairvoyant scheduler is told BIG's future: three more turns adding 1,500 tokens of
    # context, so its working set (its 19-block turn plus the growth of the next 3 turns) is far above the pool.
    s = make(num_blocks=21, policy="clairvoyant", knobs={"memory.horizon": 3})
    future = {"turns_left": 4, "tool_s_left": 3.0, "growth_left": 1500, "output": 8}
    big1 = add(s, "big1", 1000, 600, 8, "BIG", future=future, tool_s=1.0)
    adm, big = s.admission, s.programs.get("BIG")
    assert adm.working_set(big) > 2 * adm.capacity()
    assert big.admitted  # nothing else admitted: it goes in whatever its size
    add(s, "small1", 9000, 64, 4, "SMALL")
    assert not s.programs.get("SMALL").admitted  # it runs alone
    steps = 0
    while s.has_requests():
        out, _ = run_step(s)
        s.clock.now += 0.01
        steps += 1
        if not big.ended:
            assert "small1" not in out.num_scheduled_tokens
            if big1.is_finished():
                s.end_program("BIG")  # the client stops after one turn: the door opens
        assert steps < 2000
    assert big1.status == RequestStatus.FINISHED_LENGTH_CAPPED and big1.num_output_tokens == 8
    assert s.programs.get("SMALL").admitted and "small1" not in s.requests


def test_returning_turns_of_admitted_programs_go_before_new_programs():
    s = make(num_blocks=41, ttl_mode="preserve")
    add(s, "a1", 1000, 320, 8, "A")
    while s.has_requests():
        run_step(s)
    add(s, "b1", 5000, 900, 8, "B")  # does not fit beside A's working set: held
    add(s, "a2", 1000, 320 + 8 + 32, 8, "A")  # A's next turn (pinned prefix)
    assert [r.request_id for r in s.waiting] == ["a2", "b1"]
    out, _ = run_step(s)
    assert "a2" in out.num_scheduled_tokens and "b1" not in out.num_scheduled_tokens


def test_single_turn_programs_in_a_burst_of_1000_all_finish_and_free_every_block():
    s = make(num_blocks=200)
    for i in range(1000):
        add(s, f"r{i}", 100_000 + 100 * i, 96, 4, f"P{i}", is_last_step=True)
    held = sum(not p.admitted for p in s.programs.all())
    assert held > 900  # the door holds the burst; vLLM's scheduler sees a short queue
    steps = 0
    while s.has_requests():
        run_step(s)
        s.clock.now += 0.01
        steps += 1
        assert steps < 20_000
    assert all(p.ended for p in s.programs.all()) and len(s.programs) >= 1000
    pool = s.kv_cache_manager.block_pool
    assert all(b.ref_cnt == 0 for b in pool.blocks if not b.is_null) and s.reset_prefix_cache()


def without_aging(sched) -> None:
    """SRPT with its aging taken out: a waiting request's key is its predicted work alone, not work + arrival.
    The admission door opens in the same order (it sorts by the queue's key)."""
    aged = sched.waiting.key

    def key(r) -> tuple:
        held, cls, level, tier, work_plus_arrival, arrival = aged(r)
        return (held, cls, level, tier, work_plus_arrival - arrival, arrival)

    sched.waiting.key = key


def test_aging_bounds_the_wait_of_a_long_program_behind_a_stream_of_short_ones():
    # Knowing the future, SRPT puts every new short program ahead of the long one; aging (a second waited is a
    # second less of predicted work) must let it in while short programs keep arriving.
    progs = [Program(id="long", workload="t", arrival_s=0.5, turns=[
        Turn(new_input_tokens=100, output_tokens=20, tool="pytest", tool_s=2.0) for _ in range(5)]
        + [Turn(new_input_tokens=50, output_tokens=10)])]
    progs += [Program(id=f"s{i}", workload="t", arrival_s=0.05 * i, turns=[
        Turn(new_input_tokens=300, output_tokens=20, tool="ls", tool_s=0.5),
        Turn(new_input_tokens=50, output_tokens=10)]) for i in range(300)]

    def ends(aging: bool) -> tuple[float, float]:
        """(the long program's end, the last short program's end)."""
        profile = hand_profile(num_blocks=80)
        engine = Engine(prepare(progs, profile, None, 0), "clairvoyant", profile)
        if not aging:
            without_aging(engine.sched)
        engine.run()
        assert all(p.record.completed for p in engine.progs) and engine.sched.admission.held_total > 0
        return (next(p.record.end_s for p in engine.progs if p.id == "long"),
                max(p.record.end_s for p in engine.progs if p.id != "long"))

    aged_long, aged_last_short = ends(aging=True)
    plain_long, plain_last_short = ends(aging=False)
    assert aged_long < aged_last_short  # admitted and finished while short programs were still coming
    assert plain_long > plain_last_short  # without aging it is starved until the stream of short ones ends
    assert aged_long < 0.75 * plain_long


def test_every_admitted_program_finishes_under_pressure_with_admission():
    progs = assign_arrivals(small_programs(30), 6.0, seed=2)
    for policy in ("continuum", "clairvoyant", "vllm-admit"):
        engines: list[Engine] = []
        r = simulate_result(progs, policy, hand_profile(num_blocks=90), None, progress=False, engine_out=engines)
        assert r["completed"] == 30 and r["failed"] == 0, policy
        (engine,) = engines
        assert all_blocks_free(engine) and engine.sched.reset_prefix_cache()
        adm = engine.sched.admission
        assert adm.held_total > 0 and not adm.door and not adm.active


def test_a_latency_sensitive_program_skips_the_door():
    s = make(num_blocks=41, policy="ls-be")
    add(s, "a1", 1000, 640, 8, "A")
    add(s, "b1", 5000, 640, 8, "B")  # best-effort: waits at the door
    add(s, "c1", 9000, 640, 8, "C", **{"class": "ls"})  # latency-sensitive: admitted at once
    assert s.programs.get("A").admitted and not s.programs.get("B").admitted and s.programs.get("C").admitted


def test_a_pin_kept_until_return_reads_as_json():
    s = make(num_blocks=41)
    add(s, "a1", 1000, 320, 8, "A")
    while s.has_requests():
        run_step(s)
    ctl = EngineControl(s)
    state = ctl.handle({"op": "session", "id": "A"})["session"]
    assert state["pinned_blocks"] > 0 and state["pinned_until_return"] and state["ttl_s"] is None
    json.dumps(ctl.handle({"op": "stats"}), allow_nan=False)  # what the HTTP layer reads: no Infinity anywhere


# -- the cap and the compute-aware door -------------------------------------------------------------------------
def test_the_cap_admits_at_most_n_programs_in_the_door_order():
    s = make(num_blocks=2000, policy="vllm-cap", knobs={"cap.programs": 3})
    for i in range(5):
        add(s, f"p{i}", 1000 * (i + 1), 64, 4, f"P{i}", is_last_step=True)
        s.clock.now += 0.01
    assert [p.program_id for p in s.programs.all() if p.admitted] == ["P0", "P1", "P2"]
    while s.has_requests():
        run_step(s)
        s.clock.now += 0.01
        assert len(s.admission.active) <= 3
    assert all(p.ended for p in s.programs.all()) and s.admission.state()["admitted"] == 5


def test_the_memory_door_with_a_program_limit_counts_both():
    s = make(num_blocks=2000, policy="clairvoyant", knobs={"memory.programs": 2})
    for i in range(4):
        add(s, f"p{i}", 1000 * (i + 1), 64, 4, f"P{i}", is_last_step=True)
    assert [p.program_id for p in s.programs.all() if p.admitted] == ["P0", "P1"]  # memory had room for all four
    while s.has_requests():
        run_step(s)
        s.clock.now += 0.01
        assert len(s.admission.active) <= 2
    assert s.admission.state()["admitted"] == 4
    tight = make(num_blocks=5, policy="clairvoyant", knobs={"memory.programs": 8})  # 4 usable blocks: one fits
    for i in range(2):
        add(tight, f"p{i}", 1000 * (i + 1), 64, 4, f"P{i}")
    assert [p.admitted for p in tight.programs.all()] == [True, False]


def stepped(s, seconds) -> None:
    """One step; the clock then moves by ``seconds(out)``, as long as the engine took for the batch."""
    out, _ = run_step(s)
    s.clock.now += seconds(out)


def busy_engine(seconds) -> object:
    """Eight programs decoding long answers, arriving a few steps apart (batches of 1 to 8 requests, prefills
    among decodes), with each step lasting ``seconds(out)``; then a ninth program arrives."""
    s = make(num_blocks=2000, policy="continuum", admission="compute")
    for i in range(8):
        add(s, f"p{i}", 1000 * (i + 1), 64 + 32 * i, 400, f"P{i}")
        for _ in range(4):
            stepped(s, seconds)
    for _ in range(40):
        stepped(s, seconds)
    add(s, "n", 50_000, 64, 8, "N")
    return s


def test_the_compute_door_holds_a_new_program_while_step_time_grows_with_the_batch():
    s = busy_engine(lambda out: 0.002 * len(out.num_scheduled_tokens))  # no fixed cost: every request slows all
    state = s.admission.state()
    assert state["mode"] == "compute" and state["step_per_request_ms"] > 1.5 and state["limit_programs"] < 8
    assert not s.programs.get("N").admitted
    out, _ = run_step(s)
    assert "n" not in out.num_scheduled_tokens


def test_the_compute_door_admits_while_a_step_costs_the_same_whatever_its_batch():
    s = busy_engine(lambda out: 0.010)  # the fixed cost dominates: more requests are free throughput
    assert s.admission.state()["limit_programs"] is None or s.admission.state()["limit_programs"] > 9
    assert s.programs.get("N").admitted


def test_memory_still_limits_the_compute_door():
    s = make(num_blocks=41, admission="compute")  # 40 usable blocks of 32 tokens
    add(s, "a1", 1000, 640, 8, "A")  # 21 blocks with its output
    add(s, "b1", 5000, 640, 8, "B")  # would need 21 more: 42 > 40
    assert s.admission.limit() == float("inf")  # no step measured yet: memory alone limits
    assert s.programs.get("A").admitted and not s.programs.get("B").admitted


def test_the_compute_door_keeps_the_engine_at_its_knee_while_a_backlog_drains():
    # A burst of one-turn programs, more than the pool holds; then no arrival for many half-lives of the fit (one
    # second) while the door drains. Step time grows with the batch (7 ms + 1 ms a request), so the throughput
    # knee is about a / beta = 7 requests. Whatever the queue left and however far the arrivals' rate has decayed,
    # the limit does not fall below the knee while programs wait at the door.
    s = make(num_blocks=181, admission="compute", knobs={"compute.half_life_s": 1.0})  # 180 blocks: ~12 programs
    for i in range(40):
        add(s, f"p{i}", 1000 * (i + 1), 320, 64, f"P{i}", is_last_step=True)
    seen = []
    while s.has_requests():
        stepped(s, lambda out: 0.007 + 0.001 * len(out.num_scheduled_tokens))
        state = s.admission.state()
        if state["at_door"] and state.get("step_per_request_ms"):
            a, beta = state["step_fixed_ms"], state["step_per_request_ms"]
            k, t = state["request_steps_per_turn"], 1e3 * state["outside_s_per_turn"]
            knee = a / beta * math.sqrt(1 + t / (k * a))  # Kleinrock's power point, in requests (t = 0: a / beta)
            seen.append((state["at_door"], state["limit_programs"], knee))
    assert len(seen) > 50 and seen[-1][0] < seen[0][0] / 4  # the backlog drained over many steps
    assert all(limit is None or limit >= knee for _, limit, knee in seen)
    assert all(p.ended for p in s.programs.all())
