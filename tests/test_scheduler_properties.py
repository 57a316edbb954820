"""Random arrivals, steps, aborts, ends and tool gaps against the real vLLM scheduler keep the invariants."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vllm.v1.request import RequestStatus

from continuum.policy.config import ContinuumConfig
from continuum.sched.scheduler import ContinuumScheduler
from continuum_eval.sim.engine.vllm_offline import build_scheduler, make_request, run_step

BS = 32
OPS = st.one_of(
    st.tuples(st.just("turn"), st.integers(0, 5), st.integers(1, 200), st.integers(1, 40), st.booleans()),
    st.tuples(st.just("step"), st.integers(1, 6)),
    st.tuples(st.just("gap"), st.floats(0.0, 3.0)),
    st.tuples(st.just("abort"), st.integers(0, 5)),
    st.tuples(st.just("end"), st.integers(0, 5)),
)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(OPS, min_size=1, max_size=40),
       mode=st.sampled_from(["model", "fixed", "preserve"]), cap=st.sampled_from([0.2, 0.5, 1.0]))
def test_random_programs_keep_the_invariants(ops, mode, cap):
    now = [0.0]
    s = build_scheduler(ContinuumScheduler, num_blocks=48, block_size=BS, max_num_seqs=8,
                        continuum_config=ContinuumConfig(ttl_mode=mode, pin_cap=cap, fixed_ttl_s=1.0))
    s.clock = lambda: now[0]
    history: dict[int, list[int]] = {}
    live: dict[int, str] = {}  # program -> its request in flight
    seq = 0

    def step() -> None:
        run_step(s)
        check()
        now[0] += 0.05
        for p, rid in list(live.items()):
            if rid not in s.requests:  # finished
                del live[p]

    def check() -> None:
        assert s.pins.pinned_blocks <= s.pins.table.cap_blocks
        for pid in s.pins.table.programs():
            # expiry runs at the start of each step: a pin may be at most one step past its TTL
            assert s.pins.table.get(pid).expires_at >= now[0] - 0.05 - 1e-9

    for op in ops:
        kind = op[0]
        if kind == "turn":
            _, p, new_tokens, out_tokens, last = op
            if p in live:
                continue
            prompt = history.get(p, []) + list(range(10_000 * (p + 1) + seq, 10_000 * (p + 1) + seq + new_tokens))
            prompt = prompt[-600:]  # stay well inside the pool
            seq += new_tokens
            rid = f"r{seq}"
            s.add_request(make_request(rid, prompt, out_tokens, session_id=f"P{p}", is_last_step=last,
                                       tool="t" if p % 2 else None))
            live[p] = rid
            history[p] = prompt + [1000] * out_tokens
        elif kind == "step":
            for _ in range(op[1]):
                step()
        elif kind == "gap":
            now[0] += op[1]
        elif kind == "abort" and op[1] in live:
            s.finish_requests([live.pop(op[1])], RequestStatus.FINISHED_ABORTED)
        elif kind == "end":
            s.end_program(f"P{op[1]}")
    steps = 0
    while s.has_requests():
        step()
        steps += 1
        assert steps < 5000
    for p in range(6):
        s.end_program(f"P{p}")
    pool = s.kv_cache_manager.block_pool
    assert s.pins.pinned_blocks == 0
    assert all(b.ref_cnt == 0 for b in pool.blocks if not b.is_null)
    assert s.reset_prefix_cache()
