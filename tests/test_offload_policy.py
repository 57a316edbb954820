"""Program-aware eviction for vLLM's CPU KV tier (`continuum.sched.offload_policy`): the policy on its own, driven
as vLLM's CPUOffloadingManager drives it, and in vLLM's real scheduler with the real OffloadingConnector and the
simulator's stand-in copy worker, where it keeps a live program's prefix that LRU evicts."""

from __future__ import annotations

import itertools

import pytest
from vllm.v1.kv_offload.base import OffloadKey, ReqContext, make_offload_key
from vllm.v1.kv_offload.cpu.policies.base import CachePolicy, ChunkStatus
from vllm.v1.kv_offload.cpu.policies.factory import CachePolicyFactory

from continuum.sched.offload_policy import (
    POLICY_MODULE,
    POLICY_NAME,
    ProgramAwarePolicy,
    ProgramFeed,
    policies_built,
    predicted_return,
)
from continuum.sched.programs import Program
from continuum_eval.sim.cost.profiles import Profile, get_profile
from continuum_eval.sim.engine.loop import Engine
from continuum_workloads import Program as Workload
from continuum_workloads import Turn
from kvttl import Prediction

chunk_ids = itertools.count()


def key(name: str) -> OffloadKey:
    return make_offload_key(name.encode(), 0)


def keys(*names: str) -> list[OffloadKey]:
    return [key(n) for n in names]


def names(evicted: list[tuple[OffloadKey, ChunkStatus]] | None) -> list[str] | None:
    return None if evicted is None else [k[:-4].decode() for k, _ in evicted]


def store(policy: ProgramAwarePolicy, req_id: str, *chunks: str, finish: bool = True) -> None:
    """As the manager stores a request's new chunks: the miss, the insert (write pending), the store's completion
    (evictable); then, with ``finish``, the request's end."""
    ks = keys(*chunks)
    policy.on_store_miss(ks, ReqContext(req_id))
    for k in ks:
        policy.insert(k, ChunkStatus(next(chunk_ids)))
    for k in ks:
        policy.get(k).ref_cnt = 0
        policy.mark_evictable(k)
    if finish:
        policy.on_request_finished([ks], set(ks), set(), ReqContext(req_id))


def reuse(policy: ProgramAwarePolicy, req_id: str, *chunks: str) -> None:
    """A request that only reused chunks already in the tier finishes."""
    ks = keys(*chunks)
    policy.on_request_finished([ks], set(), set(ks), ReqContext(req_id))


def tier(programs: dict[str, float]) -> ProgramAwarePolicy:
    """A policy told of live programs (name -> predicted return), one request each (``r-<name>``)."""
    policy = ProgramAwarePolicy(cache_capacity=64)
    for pid, at in programs.items():
        policy.request_program(f"r-{pid}", pid)
        policy.program_returns(pid, at)
    return policy


def test_vllm_loads_it_by_module_path_as_an_out_of_tree_policy():
    cls = CachePolicyFactory.get_cache_policy_cls(POLICY_NAME, POLICY_MODULE)
    assert cls is ProgramAwarePolicy and issubclass(cls, CachePolicy)


def test_ended_programs_go_first_then_the_latest_return_then_chunks_of_no_program():
    policy = tier({"soon": 5.0, "late": 50.0, "gone": 1.0})
    store(policy, "anon", "u0", "u1")  # no program: the oldest chunks, yet the last to go
    store(policy, "r-gone", "g0", "g1")
    store(policy, "r-soon", "s0")
    store(policy, "r-late", "l0", "l1")
    policy.program_ended("gone")
    assert names(policy.evict(7, set())) == ["g1", "g0", "l1", "l0", "s0", "u1", "u0"]  # tails before heads


def test_lru_inside_a_class_across_programs_and_after_reuse():
    policy = tier({"a": 9.0, "b": 9.0, "x": 1.0, "y": 1.0})
    store(policy, "r-x", "x0")
    store(policy, "r-y", "y0")
    policy.request_program("r-x2", "x")  # x's next turn
    store(policy, "r-x2", "x1")
    store(policy, "r-a", "a0", "a1")
    store(policy, "r-b", "b0")
    policy.request_program("r-a2", "a")
    reuse(policy, "r-a2", "a1")  # a1 used again: now the most recent chunk
    policy.program_ended("x")
    policy.program_ended("y")
    # ended x and y are one class, by recency; a and b return together, so they are one class too.
    assert names(policy.evict(6, set())) == ["x0", "y0", "x1", "a0", "b0", "a1"]


def test_protected_chunks_stay_and_pinned_ones_are_never_taken():
    policy = tier({"p": 1.0})
    store(policy, "r-p", "p0", "p1", "p2", "p3")
    policy.get(key("p1")).ref_cnt = 1  # a load pins it, as the manager does
    policy.mark_non_evictable(key("p1"))
    policy.insert(key("w"), ChunkStatus(next(chunk_ids)))  # write pending
    assert names(policy.evict(2, set(keys("p3")))) == ["p2", "p0"]
    assert policy.get(key("p3")) is not None and policy.get(key("p2")) is None
    assert policy.evict(1, set(keys("p3"))) is None  # p1 pinned, w pending, p3 protected
    policy.get(key("p1")).ref_cnt = 0
    policy.mark_evictable(key("p1"))
    assert names(policy.evict(2, set())) == ["p3", "p1"]


def test_evict_takes_exactly_n_or_nothing():
    def build() -> ProgramAwarePolicy:
        policy = tier({"a": 3.0, "b": 7.0})
        store(policy, "r-a", "a0", "a1", "a2")
        store(policy, "r-b", "b0", "b1")
        store(policy, "anon", "u0")
        policy.program_ended("a")
        return policy

    policy, untouched = build(), build()
    assert policy.evict(0, set()) == []
    assert policy.evict(7, set()) is None  # more than the tier holds
    assert policy.evict(6, set(keys("u0"))) is None  # enough chunks, but one is protected
    assert [policy.get(k) is not None for k in keys("a0", "a1", "a2", "b0", "b1", "u0")] == [True] * 6
    assert names(policy.evict(3, set())) == ["a2", "a1", "a0"]
    assert names(untouched.evict(3, set())) == ["a2", "a1", "a0"]  # the failed calls changed nothing
    assert names(policy.evict(3, set())) == names(untouched.evict(3, set())) == ["b1", "b0", "u0"]


def test_a_shared_prefix_stays_while_one_of_its_programs_lives():
    policy = tier({"a": 1.0, "b": 2.0, "c": 3.0})
    store(policy, "r-a", "shared", "a1")
    policy.request_program("r-b2", "b")
    reuse(policy, "r-b2", "shared")
    store(policy, "r-c", "c0")
    policy.program_ended("a")  # a1 ends with a; the shared chunk is b's now
    assert names(policy.evict(2, set())) == ["a1", "c0"]
    policy.program_ended("b")
    assert names(policy.evict(1, set())) == ["shared"]


def test_a_program_that_ended_before_its_request_finished_leaves_its_chunks_to_the_ended_class():
    policy = tier({"a": 1.0, "b": 2.0})
    store(policy, "r-a", "a0", finish=False)
    store(policy, "r-b", "b0")
    policy.program_ended("a")  # its last turn ended it; vLLM's request finish reaches the policy a step later
    reuse(policy, "r-a", "a0")
    assert names(policy.evict(1, set())) == ["a0"] and "r-a" not in policy.requests


def test_a_failed_store_and_a_reset_forget_chunks_but_not_programs():
    policy = tier({"a": 1.0})
    policy.on_store_miss(keys("a0"), ReqContext("r-a"))
    policy.insert(key("a0"), ChunkStatus(next(chunk_ids)))
    policy.remove(key("a0"))  # the store failed
    assert policy.get(key("a0")) is None and policy.evict(1, set()) is None
    store(policy, "r-a", "a1")
    policy.clear()
    assert policy.get(key("a1")) is None and policy.returns == {"a": 1.0}
    store(policy, "r-a2", "x")  # r-a2 was never mapped: no program
    assert policy.home[key("x")] != "a"


def test_many_chunks_evict_without_sorting_them():
    policy = tier({f"p{i}": float(i) for i in range(64)})
    for i in range(64):
        store(policy, f"r-p{i}", *(f"p{i}.{j}" for j in range(1024)))  # 65,536 chunks
    for i in range(0, 64, 2):
        policy.program_ended(f"p{i}")
    first = names(policy.evict(32 * 1024 + 2, set()))
    assert first[:2] == ["p0.1023", "p0.1022"] and first[-2:] == ["p63.1023", "p63.1022"]
    assert all(int(n.split(".")[0][1:]) % 2 == 0 for n in first[:32 * 1024])
    assert len(policy.chunks) == 65536 - len(first)


def test_the_policy_built_inside_the_block_is_the_one_collected():
    outside = ProgramAwarePolicy(4)
    with policies_built() as found:
        with policies_built() as inner:
            nested = ProgramAwarePolicy(4)
        mine = ProgramAwarePolicy(4)
    assert found == [mine] and inner == [nested] and outside not in found


def test_the_feed_says_when_a_program_is_back():
    policy = ProgramAwarePolicy(4)
    feed = ProgramFeed([policy])
    prog = Program("p", order=0, first_arrival=0.0)
    prog.running.add("r1")
    assert predicted_return(prog, 3.0) == 3.0  # a turn in flight: back now
    prog.running.clear()
    prog.last_finish, prog.prediction = 4.0, Prediction(turns=2.0, seconds=10.0, growth_tokens=0.0)
    feed.update(prog, 5.0)
    assert policy.returns == {"p": 9.0}  # one turn cycle (10 s over 2 turns) after the finish
    prog.ended = True
    feed.update(prog, 6.0)
    assert policy.returns == {}


# -- in vLLM's scheduler, with the OffloadingConnector and the stand-in worker ----------------------------------
BLOCK_MIB = 2  # Llama-3.1-8B: 16 tokens of 128 KiB


def small_h100(num_blocks: int) -> Profile:
    prof = get_profile("h100-llama-3.1-8b")
    prof.num_blocks = num_blocks
    return prof


def returning_and_ending() -> list[Workload]:
    """A's first turn (10 blocks) goes to the CPU tier, then it runs a 10 s tool. E (10 blocks, one turn) is
    stored and ends. B's prompt (18 blocks) then takes the GPU pool of 20 and needs 10 of the tier's 28 chunks:
    LRU takes A's, the oldest; the program-aware policy takes E's, whose program has ended."""
    a = Workload(id="a", workload="t", arrival_s=0.0, turns=[Turn(new_input_tokens=160, output_tokens=2, tool="ls",
                                                                  tool_s=10.0),
                                                             Turn(new_input_tokens=32, output_tokens=2)])
    e = Workload(id="e", workload="t", arrival_s=0.5, turns=[Turn(new_input_tokens=160, output_tokens=2)])
    b = Workload(id="b", workload="t", arrival_s=1.0, turns=[Turn(new_input_tokens=288, output_tokens=2)])
    return [a, e, b]


@pytest.mark.parametrize("eviction, cpu_hit", [("lru", 0), ("program", 160)])
def test_the_returning_program_keeps_its_cpu_prefix_only_under_program_eviction(eviction, cpu_hit):
    # No pins and an open door: Continuum's defaults would keep A's prefix on the GPU (pinned) or hold E and B
    # back until A is done; either hides the CPU tier this test is about.
    engine = Engine(returning_and_ending(), "continuum", small_h100(20), cpu_kv_gib=28 * BLOCK_MIB / 1024,
                    cpu_eviction=eviction, policy_overrides={"ttl_mode": "off", "admission": "open"})
    # vLLM internals: the connector's scheduler half, its CPU manager and the manager's policy.
    policy = engine.sched.connector.connector_scheduler.manager._policy
    assert engine.sched.offload.policies == ([policy] if eviction == "program" else [])
    engine.run()
    stats = engine.core.host_tier_stats()
    assert stats["blocks"] == 28
    returning = engine.progs[0].record.turns[1]
    assert returning.cached_tokens == cpu_hit and stats["cpu_hit_tokens"] == cpu_hit
    assert all(r.turns[-1].first_token_s is not None for r in (p.record for p in engine.progs))
