"""The simulator's host KV tier: vLLM's OffloadingConnector (scheduler side and CPU manager, vLLM's code) with
the transfer stand-in of `continuum_eval.sim.engine.transfers` completing its copies in virtual time."""

from __future__ import annotations

import pytest
from vllm.v1.request import RequestStatus

from continuum_eval.live.bench import run_bench, simulated
from continuum_eval.live.settings import BenchConfig, BenchError
from continuum_eval.sim.cost.costmodel import StepBatch
from continuum_eval.sim.cost.profiles import Profile, get_profile
from continuum_eval.sim.engine.loop import Engine
from continuum_eval.sim.engine.transfers import HostLink
from continuum_eval.sim.run import simulate_result
from continuum_workloads import Program, Turn, assign_arrivals, generate_swebench
from continuum_workloads.transforms import scale_program

H100 = "h100-llama-3.1-8b"


def small_h100(num_blocks: int) -> Profile:
    """The H100 profile (its host link and real block bytes) over a KV pool of ``num_blocks`` blocks of 16."""
    prof = get_profile(H100)
    prof.num_blocks = num_blocks
    return prof


def pressured_programs() -> list[Program]:
    """8 SWE-bench programs at a fifth of their size, arriving fast: 200 GPU blocks cannot keep them all."""
    return assign_arrivals([scale_program(p, 0.2) for p in generate_swebench(8, 3)], 4.0, seed=1)


def manager_of(engine: Engine):
    # vLLM internals: OffloadingConnector.connector_scheduler (the scheduler half) and its CPUOffloadingManager.
    return engine.sched.connector.connector_scheduler.manager


def cpu_chunks(engine: Engine) -> list:
    """Every chunk the CPU tier holds (vLLM internals: the cache policy ``_policy``; LRU keeps ``chunks``, ARC
    its lists ``t1`` and ``t2``)."""
    policy = manager_of(engine)._policy
    if hasattr(policy, "chunks"):
        return list(policy.chunks.values())
    return list(policy.t1.values()) + list(policy.t2.values())


def test_tier_unset_reproduces_the_numbers_without_a_tier():
    # Per-program JCTs and counters of plain vLLM on this trace, as the simulator gave them before the tier
    # existed: with --cpu-kv-gib unset nothing may move (no connector, no extra step, no time).
    engines: list[Engine] = []
    r = simulate_result(pressured_programs(), "vllm", small_h100(200), None, progress=False, engine_out=engines)
    assert engines[0].sched.connector is None and "host_tier" not in r
    assert [round(row["jct_s"], 9) for row in r["per_program"]] == \
        [19.857173, 9.564765, 9.053674, 35.016778, 26.857415, 9.376305, 11.580684, 18.02767]
    assert {k: r["sim"][k] for k in ("steps", "empty_steps", "idle_jumps", "preemptions", "computed_tokens")} == \
        {"steps": 1718, "empty_steps": 0, "idle_jumps": 23, "preemptions": 0, "computed_tokens": 79637}
    assert r["prefix_hit_rate"] == pytest.approx(0.26534911333256733, abs=1e-15)


def test_write_through_stores_every_full_prompt_block():
    prog = Program(id="w", workload="t", arrival_s=0.0, turns=[Turn(new_input_tokens=165, output_tokens=3)])
    engine = Engine([prog], "vllm", small_h100(64), cpu_kv_gib=1.0).run()
    link = HostLink.of(engine.core.profile)
    assert link.block_bytes == 16 * 131072  # Llama-3.1-8B: 128 KiB of K and V per token
    stats = engine.core.host_tier_stats()
    # offload_prompt_only (vLLM's default): the prompt's 10 full blocks, not its partial tail nor the outputs.
    assert stats["stored_bytes"] == 10 * link.block_bytes and stats["loads"] == 0
    assert stats["stores"] == 1  # one prefill step, one store job: latency + 20 MiB over the 55.2 GB/s link
    assert stats["store_busy_s"] == pytest.approx(10e-6 + 10 * 2 * 2**20 / 55.2e9, rel=1e-12)
    assert stats["blocks"] == (1 << 30) // link.block_bytes
    assert len(cpu_chunks(engine)) == 10 and all(c.ref_cnt == 0 for c in cpu_chunks(engine))
    assert not engine.core.has_work()  # the stores were drained after the last turn


def evicting_programs() -> list[Program]:
    """A's first turn (160 tokens) is cached; while its tool runs, B's 288-token prompt takes the GPU pool of 20
    blocks (19 usable), so A's second turn finds its prefix only on the CPU."""
    a = Program(id="a", workload="t", arrival_s=0.0, turns=[Turn(new_input_tokens=160, output_tokens=2, tool="ls",
                                                                 tool_s=10.0),
                                                            Turn(new_input_tokens=32, output_tokens=2)])
    b = Program(id="b", workload="t", arrival_s=1.0, turns=[Turn(new_input_tokens=288, output_tokens=2)])
    return [a, b]


def test_returning_turn_loads_its_prefix_from_cpu_at_the_link_time():
    progs = evicting_programs()
    without = Engine(progs, "vllm", small_h100(20)).run()
    assert without.progs[0].record.turns[1].cached_tokens == 0  # the GPU prefix cache lost A's blocks

    engine = Engine(progs, "vllm", small_h100(20), cpu_kv_gib=1.0)
    core, seen = engine.core, []
    plan = core.plan

    def watching_plan():  # what A's second turn is doing after each schedule()
        step = plan()
        req = core.sched.requests.get("a#1")
        if req is not None:
            seen.append((core.clock.now, req.status, step is not None and "a#1" in step.req_ids))
        return step

    core.plan = watching_plan
    engine.run()
    turn = engine.progs[0].record.turns[1]
    link = HostLink.of(core.profile)
    load_s = link.gpu.host_copy_s(10 * link.rank_block_bytes, True)  # 10 blocks: latency + bytes / bandwidth
    assert load_s == pytest.approx(10e-6 + 10 * 2 * 2**20 / 55.3e9)
    t_arrive = turn.sent_s
    waiting = [t for t, status, _ in seen if status == RequestStatus.WAITING_FOR_REMOTE_KVS]
    assert waiting and waiting[0] == pytest.approx(t_arrive)
    first_run = next(t for t, _, ran in seen if ran)
    assert first_run == pytest.approx(t_arrive + load_s, abs=1e-12)  # scheduled only once the load is done
    assert turn.cached_tokens == 160
    prefill = core.profile.step_time(_batch(q=194 - 160, c=194))  # prompt 160 + 2 outputs + 32; 160 loaded
    assert turn.first_token_s == pytest.approx(t_arrive + load_s + prefill, abs=1e-12)
    stats = core.host_tier_stats()
    assert stats["loads"] == 1 and stats["loaded_bytes"] == 10 * link.block_bytes
    assert stats["cpu_hit_tokens"] == 160
    assert engine.progs[0].record.jct_s < without.progs[0].record.jct_s


def _batch(q: int, c: int) -> StepBatch:
    b = StepBatch()
    b.add(q, c, True)
    return b


@pytest.mark.parametrize("eviction, policy_class", [("lru", "LRUCachePolicy"), ("arc", "ARCCachePolicy")])
def test_cpu_eviction_policy_is_selectable(eviction, policy_class):
    engine = Engine(evicting_programs(), "vllm", small_h100(20), cpu_kv_gib=0.01, cpu_eviction=eviction).run()
    assert type(manager_of(engine)._policy).__name__ == policy_class  # vLLM internals: the manager's policy
    assert engine.core.host_tier_stats()["blocks"] == 5  # 10 MiB of 2 MiB blocks
    with pytest.raises(ValueError, match="CPU eviction"):
        Engine(evicting_programs(), "vllm", small_h100(20), cpu_kv_gib=1.0, cpu_eviction="fifo")


def test_a_host_tier_lowers_plain_vllms_jct_under_pressure():
    progs = pressured_programs()
    off = simulate_result(progs, "vllm", small_h100(200), None, progress=False)
    on = simulate_result(progs, "vllm", small_h100(200), None, progress=False, cpu_kv_gib=1.0)
    print(f"\nvLLM mean JCT: {off['jct_s']['mean']:.4f} s without a host tier, {on['jct_s']['mean']:.4f} s with 1 GiB "
          f"(prefix hits {off['prefix_hit_rate']:.3f} -> {on['prefix_hit_rate']:.3f}, {on['host_tier']})")
    assert on["completed"] == off["completed"] == 8
    assert on["jct_s"]["mean"] < off["jct_s"]["mean"]
    assert on["prefix_hit_rate"] > off["prefix_hit_rate"]
    tier = on["host_tier"]
    assert tier["cpu_kv_gib"] == 1.0 and tier["loads"] > 0 and tier["loaded_bytes"] > 0 and tier["stored_bytes"] > 0


@pytest.mark.parametrize("policy", ["vllm", "continuum"])
def test_nothing_stays_referenced_after_the_last_program(policy):
    engines: list[Engine] = []
    result = simulate_result(pressured_programs(), policy, small_h100(200), None, progress=False,
                             engine_out=engines, cpu_kv_gib=1.0)
    (engine,) = engines
    assert result["completed"] == 8 and result["host_tier"]["loads"] > 0
    pool = engine.sched.kv_cache_manager.block_pool
    assert all(b.ref_cnt == 0 for b in pool.blocks if not b.is_null)
    assert engine.sched.reset_prefix_cache() is True
    chunks = cpu_chunks(engine)
    assert chunks and all(c.ref_cnt == 0 for c in chunks)  # no load pins them, no store is pending
    # vLLM internals: the connector's jobs in flight (OffloadingConnectorScheduler._jobs).
    assert not engine.sched.connector.connector_scheduler._jobs
    assert engine.core.next_transfer_s() is None and not engine.core.has_work()


def test_bench_sim_mode_takes_the_tier_and_live_mode_refuses_it(tmp_path):
    progs = evicting_programs()
    cfg = BenchConfig(policies=["vllm"], jps=[1.0], out_dir=tmp_path, mode="sim", profile=H100, cpu_kv_gib=2.0,
                      cpu_eviction="arc", progress=False)
    (result,) = simulated(progs, cfg)
    assert result["host_tier"]["cpu_kv_gib"] == 2.0 and result["host_tier"]["eviction"] == "arc"
    assert result["host_tier"]["blocks"] == 1024
    with pytest.raises(BenchError, match="--cpu-kv-gib"):
        run_bench(progs, BenchConfig(policies=["vllm"], jps=[1.0], out_dir=tmp_path, mode="live", cpu_kv_gib=2.0))
