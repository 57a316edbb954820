"""The Continuum scheduler on vLLM's real Scheduler, KV cache manager and block pool (no engine, no weights)."""

from __future__ import annotations

import pytest
from vllm.v1.core.sched.async_scheduler import AsyncScheduler
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.request import RequestStatus

from continuum.policy.config import ContinuumConfig
from continuum.sched.scheduler import ContinuumAsyncScheduler, ContinuumScheduler
from continuum_eval.sim.engine.vllm_offline import build_scheduler, make_request, run_step
from tests.fake_clock import Clock

BS = 32



def make(policy: str = "continuum", num_blocks: int = 40, clock: Clock | None = None, is_async: bool = False,
         **cfg):
    if policy == "vllm":
        return build_scheduler(AsyncScheduler if is_async else Scheduler, num_blocks=num_blocks, block_size=BS,
                               async_scheduling=is_async)
    config = ContinuumConfig(**{"ttl_mode": "model", **cfg})
    cls = ContinuumAsyncScheduler if is_async else ContinuumScheduler
    s = build_scheduler(cls, num_blocks=num_blocks, block_size=BS, continuum_config=config, async_scheduling=is_async)
    s.clock = clock or Clock()
    return s


def drain(s, clock: Clock | None = None, dt: float = 0.01, max_steps: int = 10_000) -> int:
    steps = 0
    while s.has_requests():
        run_step(s)
        steps += 1
        if clock is not None:
            clock.now += dt
        assert steps < max_steps
    return steps


def tokens(start: int, n: int) -> list[int]:
    return list(range(start, start + n))


def flush_lru(s, n: int = 6) -> None:
    """Traffic without a program, one request at a time: enough to evict every unpinned cached block."""
    for i in range(n):
        s.add_request(make_request(f"flood{i}", tokens(20_000 + 700 * i, 320), 32))
        drain(s)


def second_turn_hit(policy: str, is_async: bool) -> tuple[int, int]:
    s = make(policy, is_async=is_async)
    first = tokens(1000, 320)
    s.add_request(make_request("a1", first, 32, session_id="A", tool="grep"))
    drain(s)
    flush_lru(s)
    history = first + [1000] * 32  # the offline driver samples token 1000
    s.add_request(make_request("a2", history + tokens(3000, 64), 8, session_id="A"))
    out = s.schedule()
    (new,) = out.scheduled_new_reqs
    return new.num_computed_tokens, len(history)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_pinned_turn_survives_an_lru_flush(is_async):
    hit, history = second_turn_hit("continuum", is_async)
    full_blocks = (history - 1) // BS * BS  # the last sampled token has no KV yet
    assert hit >= 0.9 * full_blocks and hit >= 0.9 * history
    plain_hit, _ = second_turn_hit("vllm", is_async)
    assert plain_hit == 0


def all_refs_zero(s) -> bool:
    pool = s.kv_cache_manager.block_pool
    return all(b.ref_cnt == 0 for b in pool.blocks if not b.is_null)


def test_blocks_return_to_zero_after_programs_end():
    clock = Clock()
    s = make("continuum", clock=clock, ttl_mode="preserve")
    for p in range(4):
        s.add_request(make_request(f"p{p}-1", tokens(100 * p + 5000, 100), 8, session_id=f"P{p}"))
    drain(s, clock)
    assert s.pins.pinned_blocks > 0 and not all_refs_zero(s)
    for p in range(4):
        s.end_program(f"P{p}")
    assert s.pins.pinned_blocks == 0 and all_refs_zero(s)
    assert s.reset_prefix_cache()


def test_last_step_is_not_pinned_and_ends_the_program():
    s = make("continuum", ttl_mode="preserve")
    s.add_request(make_request("x", tokens(7000, 200), 8, session_id="X", is_last_step=True))
    drain(s)
    assert "X" not in s.pins and s.programs.get("X").ended
    assert all_refs_zero(s)


def test_no_pin_outlives_its_ttl_by_more_than_one_step():
    clock = Clock()
    s = make("continuum", clock=clock, ttl_mode="fixed", fixed_ttl_s=0.5)
    s.add_request(make_request("a", tokens(1000, 200), 8, session_id="A", tool="ls"))
    drain(s, clock)
    pin = s.pins.table.get("A")
    assert pin is not None and pin.ttl_s == 0.5
    # Unrelated traffic keeps the engine stepping; the pin must be gone by the first step past expiry.
    s.add_request(make_request("b", tokens(9000, 64), 200))
    while s.has_requests():
        run_step(s)
        if "A" in s.pins:
            assert clock.now <= pin.expires_at
        clock.now += 0.1
    assert "A" not in s.pins and s.pins.table.counters["expired"] == 1


def test_pinned_blocks_never_exceed_the_cap():
    s = make("continuum", num_blocks=64, ttl_mode="preserve", pin_cap=0.25)
    cap = s.pins.table.cap_blocks
    for p in range(8):
        s.add_request(make_request(f"p{p}", tokens(1000 * p + 100, 150), 4, session_id=f"P{p}"))
        drain(s)
        assert s.pins.pinned_blocks <= cap
    assert s.pins.table.counters["peak_blocks"] <= cap
    assert s.pins.table.counters["refused"] + s.pins.table.counters["truncated"] > 0


def test_pressure_releases_pins_before_preempting_running_work():
    s = make("continuum", num_blocks=40, ttl_mode="preserve", pin_cap=1.0)
    for p in range(3):  # 3 x 10 blocks pinned out of 39
        s.add_request(make_request(f"p{p}", tokens(1000 * p + 100, 320), 1, session_id=f"P{p}"))
        drain(s)
    assert s.pins.pinned_blocks >= 27
    # Two long-running requests need far more than the free blocks: pins must give way first.
    for q in range(2):
        s.add_request(make_request(f"q{q}", tokens(50_000 + 1000 * q, 100), 300, session_id=f"Q{q}"))
    preempted = 0
    while s.has_requests():
        out, _ = run_step(s)
        preempted += len(out.preempted_req_ids)
        if out.preempted_req_ids:
            assert s.pins.pinned_blocks == 0 or set(s.pins.table.programs()) <= {"Q0", "Q1"}
    assert s.pins.table.counters["released_pressure"] >= 2
    assert preempted == 0


def test_nothing_to_preempt_does_not_crash():
    s = make("continuum", num_blocks=8, ttl_mode="preserve")
    # One request bigger than the whole pool can never be scheduled; the step must not crash.
    s.add_request(make_request("huge", tokens(100, 32 * 10), 4, session_id="H"))
    for _ in range(3):
        out, _ = run_step(s)
        assert out.total_num_scheduled_tokens <= 32 * 7
    s.finish_requests(["huge"], RequestStatus.FINISHED_ABORTED)
    assert all_refs_zero(s)


def test_program_first_ordering_and_victim_choice():
    clock = Clock()
    s = make("continuum", clock=clock, ttl_mode="preserve")
    s.add_request(make_request("old-1", tokens(100, 64), 2, session_id="OLD"))
    drain(s, clock)
    # A newer program queues first; the old program's returning (pinned) turn still goes first.
    clock.now += 1
    s.add_request(make_request("new-1", tokens(5000, 64), 2, session_id="NEW"))
    s.add_request(make_request("old-2", tokens(100, 64) + [1000] * 2 + tokens(200, 32), 2, session_id="OLD"))
    assert [r.request_id for r in s.waiting] == ["old-2", "new-1"]
    assert s.requests["new-1"].priority > s.requests["old-2"].priority  # the newer program is the victim


def test_abort_before_output_releases_the_programs_pin():
    s = make("continuum", ttl_mode="preserve")
    s.add_request(make_request("a1", tokens(100, 200), 4, session_id="A"))
    drain(s)
    assert "A" in s.pins
    s.add_request(make_request("a2", tokens(100, 200) + [1000] * 4 + tokens(900, 40), 4, session_id="A"))
    s.finish_requests(["a2"], RequestStatus.FINISHED_ABORTED)
    assert "A" not in s.pins
    assert s.pins.table.counters["released_abort"] == 1


def test_reset_prefix_cache_releases_pins():
    s = make("continuum", ttl_mode="preserve")
    s.add_request(make_request("a1", tokens(100, 200), 4, session_id="A"))
    drain(s)
    assert s.pins.pinned_blocks > 0
    assert s.reset_prefix_cache()
    assert s.pins.pinned_blocks == 0 and all_refs_zero(s)


def test_a_program_that_goes_quiet_is_ended_and_its_pin_released():
    clock = Clock()
    s = make("continuum", clock=clock, ttl_mode="preserve", idle_end_s=60.0)
    s.add_request(make_request("q1", tokens(7000, 100), 8, session_id="quiet"))
    s.add_request(make_request("b1", tokens(9000, 100), 8, session_id="busy"))
    drain(s, clock)
    assert "quiet" in s.pins and not s.programs.get("quiet").ended
    clock.now += 30.0
    s.add_request(make_request("b2", tokens(9000, 100) + [1000] * 8 + tokens(9500, 16), 8, session_id="busy"))
    drain(s, clock)
    assert not s.programs.get("quiet").ended  # 30 s of tool time is not abandonment
    clock.now += 45.0  # quiet: 75 s idle; busy: 45 s
    s.schedule()
    assert s.programs.get("quiet").ended and "quiet" not in s.pins
    assert not s.programs.get("busy").ended and "busy" in s.pins
