"""Tier-aware retention (`continuum.sched.tier`): with vLLM's host KV tier the TTL rule pins, parks or drops a
finished turn's KV, and a parked program's KV is prefetched before its predicted return, or at once when its client
says the tool's result is coming (the control channel's prefetch op). Run in the simulator: vLLM's real scheduler
and OffloadingConnector scheduler side, the stand-in copy worker on the virtual clock."""

from __future__ import annotations

import dataclasses

import pytest

from continuum.control.engine_side import EngineControl
from continuum.control.messages import PrefetchSession
from continuum.sched.tier import HostTier
from continuum_eval.sim.cost.profiles import Profile, get_profile
from continuum_eval.sim.engine.loop import Engine
from continuum_eval.sim.engine.vllm_offline import make_request
from continuum_workloads import Program, Turn

PREDICTED_TOOL_S = 20.0  # every recorded run of the tool "slow" took this long
CONTEXT = 320  # tokens of the parked program's first turn: 20 blocks of 16


def small_h100(num_blocks: int = 360, h2d_bytes_per_s: float | None = None) -> Profile:
    """The H100 profile over a small KV pool; ``h2d_bytes_per_s`` slows its host-to-device link."""
    prof = get_profile("h100-llama-3.1-8b")
    prof.num_blocks = num_blocks
    if h2d_bytes_per_s is not None:
        gpu = dataclasses.replace(prof.cost.gpu, host_to_device_bw=h2d_bytes_per_s)
        prof.cost = dataclasses.replace(prof.cost, gpu=gpu)
    return prof


def parked_and_busy(tool_s: float) -> list[Program]:
    """A runs the slow tool for ``tool_s`` between two turns; B decodes long enough (about 34 s) to keep the
    engine stepping through A's tool call (a prefetch is issued by a ``schedule()``, and an idle engine calls
    none); C's long prompt at 5 s takes the GPU blocks A's first turn left cached (360 in the pool), so A's KV is
    left only in host memory."""
    a = Program(id="a", workload="t", arrival_s=0.0, turns=[
        Turn(new_input_tokens=CONTEXT, output_tokens=2, tool="slow", tool_s=tool_s),
        Turn(new_input_tokens=32, output_tokens=2)])
    b = Program(id="b", workload="t", arrival_s=0.0, turns=[Turn(new_input_tokens=32, output_tokens=4500)])
    c = Program(id="c", workload="t", arrival_s=5.0, turns=[Turn(new_input_tokens=5000, output_tokens=2)])
    return [a, b, c]


def engine_with_history(progs: list[Program], profile: Profile, engine: type[Engine] = Engine,
                        policy: str = "continuum-ttl", cpu_kv_gib: float | None = 1.0, **knobs: float) -> Engine:
    """`continuum-ttl` (the TTL rule, no admission door) with the tier, its predictor already taught that the
    tool takes PREDICTED_TOOL_S and that a turn that lost its KV waits 30 s (a loaded engine)."""
    engine = engine(progs, policy, profile, cpu_kv_gib=cpu_kv_gib,
                    policy_overrides={"knobs": knobs} if knobs else None)
    retention = engine.sched.retention
    for _ in range(retention.predictor.min_tool_samples):
        retention.observe_tool("slow", PREDICTED_TOOL_S)
        retention.observe_miss_delay(30.0)
    return engine


def test_the_tier_is_seen_only_with_the_offloading_connector():
    with_tier = Engine(parked_and_busy(1.0), "continuum-ttl", small_h100(), cpu_kv_gib=1.0)
    assert isinstance(with_tier.sched.tier, HostTier)
    assert with_tier.sched.tier.link.h2d_bytes_per_s == pytest.approx(55.3e9)  # the profile's link, not a default
    assert with_tier.sched.tier.bytes_per_token == 131072  # Llama-3.1-8B
    assert Engine(parked_and_busy(1.0), "continuum-ttl", small_h100()).sched.tier is None
    # The default's door reserves every admitted program's working set: it keeps pinning until the return.
    default = Engine(parked_and_busy(1.0), "continuum", small_h100(), cpu_kv_gib=1.0)
    default.sched.add_request(make_request("p#0", list(range(CONTEXT)), 2, block_size=16, session_id="p"))
    prog = default.sched.programs.get("p")
    assert default.sched.admission.reserves(prog)
    assert default.sched.turns.decide(prog, CONTEXT, {}).ttl_s == float("inf")


def test_a_slow_tool_is_parked_and_a_quick_one_pinned():
    # A link of 0.05 GB/s: the context's reload (about 0.8 s) costs more than pinning it through a 50 ms tool.
    engine = engine_with_history(parked_and_busy(1.0), small_h100(), **{"model.h2d_gbps": 0.05})
    turns, retention = engine.sched.turns, engine.sched.retention
    prog = engine.sched.programs.arrive("p", 0.0)
    prog.last_tool = "slow"
    assert turns.decide(prog, CONTEXT, {}).tier == "cpu"
    for _ in range(retention.predictor.min_tool_samples):
        retention.observe_tool("quick", 0.05)
    prog.last_tool = "quick"
    assert turns.decide(prog, CONTEXT, {}).tier == "gpu"
    assert turns.decide(prog, CONTEXT, {"is_last_step": True}).tier == "drop"


@pytest.mark.parametrize("tool_s, h2d, outcome", [
    # back half a second after the predicted return: its KV is pinned in GPU memory again
    (PREDICTED_TOOL_S + 0.5, None, "in_time"),
    # the same, over a link 2,700x slower than the rule is told: back while the load (2 s) is in flight
    (PREDICTED_TOOL_S + 0.5, 20e6, "late"),
    # back 15 s after the prediction: the prefetched pin (the predicted wait plus 1 s) has expired
    (PREDICTED_TOOL_S + 15.0, None, "wasted"),
])
def test_a_parked_programs_prefetch(tool_s, h2d, outcome):
    # quantile 1: the prefetch aims at the predicted return itself (all samples are equal anyway)
    knobs = {"model.prefetch_quantile": 1.0}
    if h2d is not None:  # the rule is told the fast link (and so prefetches 1 ms ahead); the copy takes 2 s
        knobs["model.h2d_gbps"] = 55.3
    engine = engine_with_history(parked_and_busy(tool_s), small_h100(h2d_bytes_per_s=h2d), **knobs)
    engine.run()
    counts = engine.sched.tier.counts
    assert counts["parked"] == 1 and counts["prefetches"] == 1
    assert counts[outcome] == 1 and sum(counts[k] for k in ("in_time", "late", "wasted")) == 1
    a = engine.progs[0].record
    assert all(t.first_token_s is not None for t in a.turns) and not a.failed
    returning = a.turns[1]
    if outcome == "in_time":  # every full block of the first turn was a GPU prefix hit, loaded before the return
        assert returning.cached_tokens == CONTEXT
        assert engine.core.host_tier_stats()["cpu_hit_tokens"] == CONTEXT  # the prefetch loaded it, not the turn
        assert returning.first_token_s - returning.sent_s < 0.1
    pool = engine.sched.kv_cache_manager.block_pool
    assert all(b.ref_cnt == 0 for b in pool.blocks if not b.is_null)  # nothing stays referenced, in either tier
    # vLLM internals: the connector's scheduler half, its CPU manager's policy (LRU: ``chunks``) and jobs in flight.
    offloading = engine.sched.connector.connector_scheduler
    assert all(c.ref_cnt == 0 for c in offloading.manager._policy.chunks.values()) and not offloading._jobs
    assert not engine.sched.tier.parked and not engine.sched.tier.inflight and not engine.sched.tier.returning


def test_without_prefetch_the_returning_turn_loads_its_parked_kv_itself():
    engine = engine_with_history(parked_and_busy(PREDICTED_TOOL_S), small_h100(), **{"model.prefetch": 0.0})
    engine.run()
    counts = engine.sched.tier.counts
    assert counts["parked"] == 1 and counts["prefetches"] == 0
    stats = engine.core.host_tier_stats()
    assert stats["cpu_hit_tokens"] == CONTEXT  # the returning turn's prefix came back over the link
    assert engine.sched.pins.table.counters["created"] == 0  # nothing was pinned in GPU memory


# -- a client's word that the tool's result is coming ----------------------------------------------------------
class HintedEngine(Engine):
    """The engine with a client that says, at ``hint_at`` seconds, that program a's tool result is about to come
    back: over the control channel's engine side, as the HTTP endpoint sends it. It asks for b (a turn running)
    and a program the engine never saw at the same moment, and for a once more."""

    hint_at = float("inf")

    def step(self, group) -> None:
        if not hasattr(self, "answers") and self.clock.now >= self.hint_at:
            parked = self.sched.tier.parked.get("a") if self.sched.tier is not None else None
            self.planned_in_s = parked.prefetch_at - self.clock.now if parked is not None else None
            control = EngineControl(self.sched)
            self.answers = [control.handle(PrefetchSession(pid).to_wire()) for pid in ("a", "a", "b", "nobody")]
        super().step(group)


def hinted(tool_s: float, hint_at: float, policy: str = "continuum-ttl", cpu_kv_gib: float | None = 1.0,
           **knobs: float) -> HintedEngine:
    engine = engine_with_history(parked_and_busy(tool_s), small_h100(), HintedEngine, policy, cpu_kv_gib, **knobs)
    engine.hint_at = hint_at
    return engine.run()


def assert_nothing_left(engine: Engine) -> None:
    """No GPU block, host chunk or copy still held after the programs ended; the tier forgot them."""
    pool = engine.sched.kv_cache_manager.block_pool
    assert all(b.ref_cnt == 0 for b in pool.blocks if not b.is_null)
    assert not engine.sched.pins.table
    if engine.sched.tier is not None:
        offloading = engine.sched.connector.connector_scheduler
        assert all(c.ref_cnt == 0 for c in offloading.manager._policy.chunks.values()) and not offloading._jobs
        tier = engine.sched.tier
        assert not tier.parked and not tier.inflight and not tier.due_prefetches(float("inf"))


@pytest.mark.parametrize("tool_s, hint_at, prefetches, wasted", [
    # back at about 9 s, 11 s before the predicted return: the hint at 7 s (after C took A's GPU blocks) is the
    # first prefetch, due 13 s early
    (9.0, 7.0, 1, 0),
    # back at about 32 s, 12 s after the prediction: the predicted prefetch's pin expired at about 21 s, so the
    # hint at 30 s loads it again
    (32.0, 30.0, 2, 1),
])
def test_a_hint_prefetches_a_parked_program_at_once(tool_s, hint_at, prefetches, wasted):
    engine = hinted(tool_s, hint_at)
    a_now, a_again, b, nobody = engine.answers
    assert a_now["session"]["prefetch"] == "issued" and a_again["session"]["prefetch"] == "already"
    assert b["session"]["prefetch"] == "not_parked"  # its turn is running: nothing parked
    assert nobody == {"ok": False, "error": "unknown session 'nobody'", "status": 404}
    if not wasted:
        assert engine.planned_in_s > 10  # the predicted prefetch was far ahead when the hint came
    counts = engine.sched.tier.counts
    assert counts["parked"] == 1 and counts["hinted"] == 1 and counts["prefetches"] == prefetches
    assert counts["in_time"] == 1 and counts["late"] == 0 and counts["wasted"] == wasted
    returning = engine.progs[0].record.turns[1]
    assert returning.cached_tokens == CONTEXT  # every full block of the first turn was a GPU hit on arrival
    assert returning.first_token_s - returning.sent_s < 0.1
    # The first prefetch loaded it from host memory (a second finds it still cached in GPU memory, and pins it).
    assert engine.core.host_tier_stats()["cpu_hit_tokens"] == CONTEXT
    assert engine.sched.stats()["host_tier"]["hinted"] == 1
    assert_nothing_left(engine)


def test_without_the_hint_the_early_return_loads_its_kv_itself():
    """The first case above without the client's word: the prediction was 11 s late, nothing was prefetched."""
    engine = engine_with_history(parked_and_busy(9.0), small_h100())
    engine.run()
    counts = engine.sched.tier.counts
    assert counts["parked"] == 1 and counts["prefetches"] == counts["hinted"] == counts["in_time"] == 0
    assert engine.core.host_tier_stats()["cpu_hit_tokens"] == CONTEXT  # the returning turn loaded it
    assert_nothing_left(engine)


@pytest.mark.parametrize("policy, cpu_kv_gib, answer", [
    ("continuum", 1.0, "not_parked"),  # the door reserves A's working set: pinned in GPU memory until its return
    ("continuum-ttl", None, "no_tier"),  # no host tier: nothing is ever parked
])
def test_a_hint_for_a_program_not_parked_does_nothing(policy, cpu_kv_gib, answer):
    engine = hinted(9.0, 7.0, policy, cpu_kv_gib)
    a_now, a_again, b, nobody = engine.answers
    assert a_now["session"]["prefetch"] == a_again["session"]["prefetch"] == b["session"]["prefetch"] == answer
    assert nobody["status"] == 404
    if policy == "continuum":
        assert a_now["session"]["pinned_blocks"] == CONTEXT // 16 and a_now["session"]["pinned_until_return"]
        counts = engine.sched.tier.counts
        assert counts["parked"] == counts["prefetches"] == counts["hinted"] == 0
        assert engine.progs[0].record.turns[1].cached_tokens == CONTEXT  # the pin kept it through C's prompt
    assert_nothing_left(engine)
