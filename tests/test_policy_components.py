"""Each policy component changes what runs, on vLLM's real scheduler (no engine, no weights).

Every test compares the same scenario with and without the component, so it fails if the component does
nothing.
"""

from __future__ import annotations

from continuum.policy.presets import resolve
from continuum.sched.phases import PhaseSwitch
from continuum.sched.scheduler import scheduler_for
from continuum_eval.sim.engine.vllm_offline import build_scheduler, make_request, run_step
from tests.fake_clock import Clock

BS = 32



def make(policy: str, num_blocks: int = 256, max_num_seqs: int = 8, **overrides):
    cls, ctor = scheduler_for(policy, **overrides)
    s = build_scheduler(cls, num_blocks=num_blocks, block_size=BS, max_num_seqs=max_num_seqs, **ctor)
    s.clock = Clock()
    return s


def tokens(start: int, n: int) -> list[int]:
    return list(range(start, start + n))


def step(s, dt: float = 0.01):
    out, _ = run_step(s)
    s.clock.now += dt
    return out


def add(s, request_id: str, prompt: list[int], max_tokens: int, **kw) -> None:
    """A request arriving now on the scheduler's clock (as the engine stamps arrivals)."""
    s.add_request(make_request(request_id, prompt, max_tokens, arrival_time=s.clock.now, **kw))


def waiting_ids(s) -> list[str]:
    """The waiting order after a re-sort (the scheduler refreshes time-dependent keys every quarter second)."""
    s.next_resort = 0.0
    s._prepare_order()
    return [r.request_id for r in s.waiting]


def test_demotion_lets_a_newcomer_take_the_slot_of_a_long_request():
    def newcomer_runs(terms: list[str]) -> bool:
        s = make("fcfs", max_num_seqs=1, terms=terms, knobs={"demotion.chunk": 64})
        add(s, "long", tokens(100, 32), 400, session_id="L")
        for _ in range(80):  # 32 prompt + 80 output tokens served: past one 64-token chunk
            step(s)
        s.clock.now += 1.0
        add(s, "new", tokens(5000, 32), 4, session_id="N")
        out = step(s)
        return "new" in out.num_scheduled_tokens and "long" in out.preempted_req_ids

    assert newcomer_runs(["demotion"])
    assert not newcomer_runs([])  # vLLM's order: the newcomer waits for the slot


def test_demotion_survives_preemption():
    s = make("fcfs", max_num_seqs=1, terms=["demotion"], knobs={"demotion.chunk": 64})
    add(s, "long", tokens(100, 32), 400, session_id="L")
    for _ in range(80):
        step(s)
    s.clock.now += 1.0
    add(s, "new", tokens(5000, 32), 200, session_id="N")
    step(s)
    assert s.served["long"] >= 100 and s.levels.level(s.requests["long"]) >= 1
    add(s, "third", tokens(9000, 32), 4, session_id="T")
    assert waiting_ids(s) == ["third", "long"]  # preempted but demoted: behind a fresh request


def test_aging_lets_a_starved_request_overtake_after_aging_s():
    def order_at(t: float, terms: list[str]) -> list[str]:
        s = make("fcfs", max_num_seqs=1, terms=terms,
                 knobs={"sjf.ramp": 1, "sjf.scale": 100, "aging.aging_s": 5.0})
        add(s, "blocker", tokens(1, 32), 10_000, session_id="B")
        step(s)
        add(s, "long", tokens(2000, 400), 4, session_id="L")  # SJF: level 4
        s.clock.now = t
        add(s, "short", tokens(7000, 32), 4, session_id="S")
        return waiting_ids(s)

    assert order_at(5.0, ["sjf"]) == ["short", "long"]
    assert order_at(5.0, ["sjf", "aging"]) == ["short", "long"]  # one period waited: not yet
    assert order_at(30.0, ["sjf"]) == ["short", "long"]  # SJF alone starves it
    assert order_at(30.0, ["sjf", "aging"]) == ["long", "short"]


def test_sjf_puts_short_jobs_first_and_ramps_with_the_queue():
    def sjf(n_waiting: int):
        s = make("fcfs", max_num_seqs=1, terms=["sjf"], knobs={"sjf.ramp": 4, "sjf.scale": 16})
        add(s, "blocker", tokens(1, 32), 10_000, session_id="B")
        step(s)
        add(s, "long", tokens(2000, 400), 4, session_id="L")
        add(s, "short", tokens(7000, 32), 4, session_id="S")
        for i in range(n_waiting - 2):
            add(s, f"x{i}", tokens(10_000 + 100 * i, 64), 4, session_id=f"X{i}")
        return waiting_ids(s)[:2], s.levels.level(s.requests["long"])

    (order2, level2), (order8, level8) = sjf(2), sjf(8)
    assert order2 == ["short", "long"] and order8[0] == "short"
    assert level2 == 0.5 * 404 / 16 and level8 == 404 / 16  # half weight at 2 of 4 waiting, full past 4
    s = make("fcfs", max_num_seqs=1)
    add(s, "long", tokens(2000, 400), 4, session_id="L")
    add(s, "short", tokens(7000, 32), 4, session_id="S")
    assert [r.request_id for r in s.waiting] == ["long", "short"]  # without SJF: arrival order


def test_locality_is_known_when_a_request_arrives():
    def order(terms: list[str]) -> list[str]:
        s = make("fcfs", max_num_seqs=1, terms=terms)
        add(s, "warm", tokens(3000, 320), 2)  # leaves 10 cached blocks behind
        while s.has_requests():
            step(s)
        add(s, "blocker", tokens(1, 32), 10_000, session_id="B")
        step(s)
        add(s, "cold", tokens(8000, 352), 4, session_id="C")
        add(s, "hot", tokens(3000, 320) + tokens(9000, 32), 4, session_id="H")
        return waiting_ids(s)

    assert order([]) == ["cold", "hot"]
    assert order(["locality"]) == ["hot", "cold"]


def test_las_serves_the_program_with_less_service_first():
    def order(policy: str) -> list[str]:
        s = make(policy, max_num_seqs=1)
        add(s, "big-1", tokens(100, 2000), 50, session_id="BIG")
        while s.has_requests():
            step(s)
        add(s, "blocker", tokens(1, 32), 10_000, session_id="B")
        step(s)
        add(s, "big-2", tokens(100, 2000) + [1000] * 50 + tokens(50_000, 32), 4, session_id="BIG")
        add(s, "small-1", tokens(60_000, 64), 4, session_id="SMALL")
        return waiting_ids(s)

    assert order("fcfs") == ["big-2", "small-1"]
    assert order("plas") == ["small-1", "big-2"]
    assert resolve("fcfs", terms=["las"]).terms == ["las"]


def test_a_latency_sensitive_arrival_preempts_best_effort_work():
    def ls_runs(policy: str) -> tuple[bool, bool]:
        s = make(policy, max_num_seqs=1)
        add(s, "be", tokens(100, 64), 500, session_id="BE")
        step(s)
        add(s, "ls", tokens(5000, 64), 4, session_id="LS", **{"class": "ls"})
        out = step(s)
        return "ls" in out.num_scheduled_tokens, "be" in out.preempted_req_ids

    assert ls_runs("ls-be") == (True, True)
    assert ls_runs("continuum") == (False, False)


def test_best_effort_starvation_is_bounded():
    # Admission open: the running LS request asks 10,000 tokens, which would keep the BE program at the door.
    s = make("ls-be", max_num_seqs=1, admission="open", knobs={"ls-be.be_max_wait_s": 10.0})
    add(s, "ls0", tokens(1, 32), 10_000, session_id="L0", **{"class": "ls"})
    step(s)
    add(s, "be", tokens(100, 64), 4, session_id="BE")
    s.clock.now = 5.0
    add(s, "ls1", tokens(5000, 64), 4, session_id="L1", **{"class": "ls"})
    assert waiting_ids(s) == ["ls1", "be"]
    s.clock.now = 12.0
    assert waiting_ids(s) == ["be", "ls1"]  # waited 12 s > 10 s: served as latency-sensitive


def test_backpressure_holds_a_lagging_stream_until_its_client_reads():
    s = make("fcfs", terms=["backpressure"], knobs={"backpressure.lag_tokens": 8})
    add(s, "r", tokens(100, 32), 100, session_id="R")
    s.client_read_events("R", 0)
    decoded = [("r" in step(s).num_scheduled_tokens) for _ in range(20)]
    assert s.requests["r"].num_output_tokens == 8 and not any(decoded[-5:])  # capped at the lag
    s.client_read_events("R", 8)
    assert "r" in step(s).num_scheduled_tokens  # caught up: it runs again
    plain = make("fcfs")
    add(plain, "r", tokens(100, 32), 100, session_id="R")
    for _ in range(20):
        step(plain)
    assert plain.requests["r"].num_output_tokens == 20


def test_phase_switches_only_after_the_dwell_time():
    cfg = resolve("adaptive", knobs={"adaptive.dwell_s": 5.0, "adaptive.bypass_queue": 2})
    clock = Clock()
    ph = PhaseSwitch(cfg, clock)
    for t in range(10):  # 10 arrivals in 1 s, 1 completion: arrivals far outpace completions
        ph.arrivals.add(t / 10)
    ph.completions.add(0.5)
    clock.now = 1.0
    assert ph.update(queue_len=10) == ["aging", "sjf"] and ph.switches == 1
    assert ph.update(queue_len=1) == []  # short queue: the plain order
    for t in range(60):  # completions catch up and pass arrivals
        ph.completions.add(1.0 + t / 20)
    clock.now = 4.0
    assert ph.ratio(4.0) < 1.0
    assert ph.update(queue_len=10) == ["aging", "sjf"]  # calm again, but within the dwell time
    clock.now = 6.1
    assert ph.update(queue_len=10) == [] and ph.name == "baseline" and ph.switches == 2


def test_phase_thresholds_have_hysteresis():
    ph = PhaseSwitch(resolve("adaptive"), Clock())
    assert ph.target(1.12) == 0  # above baseline_max 1.10 but inside the 0.05 margin
    assert ph.target(1.2) == 1 and ph.target(1.5) == 2
    ph.index = 1
    assert ph.target(1.07) == 1 and ph.target(1.0) == 0


def test_adaptive_preset_switches_inside_the_scheduler():
    s = make("adaptive", max_num_seqs=1, knobs={"adaptive.dwell_s": 1.0, "adaptive.bypass_queue": 1})
    add(s, "run", tokens(1, 32), 10_000, session_id="R")
    for i in range(20):
        add(s, f"w{i}", tokens(1000 + 100 * i, 32), 4, session_id=f"W{i}")
        step(s, dt=0.1)
    assert s.phases.switches >= 1 and s.levels.active_names != []
