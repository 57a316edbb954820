"""The simulator's event loop: vLLM's real scheduler and block pool on a virtual clock."""

from __future__ import annotations

import pytest

from continuum_eval.sim.cost.costmodel import LinearCostModel
from continuum_eval.sim.cost.profiles import Profile, get_profile
from continuum_eval.sim.engine.isolated import isolated_jct
from continuum_eval.sim.engine.loop import Engine
from continuum_eval.sim.run import simulate_result
from continuum_workloads import Program, Turn, assign_arrivals, generate_swebench
from continuum_workloads.transforms import scale_program

POLICIES = ("vllm", "continuum", "fixed", "preserve", "plas", "oracle")


def hand_profile(num_blocks: int = 256, block_size: int = 16, chunk: int = 2048) -> Profile:
    """step = 10 ms + 1 ms per token: easy to add up by hand."""
    return Profile("hand", "test", LinearCostModel({"const": 0.010, "tokens": 0.001}), num_blocks=num_blocks,
                   block_size=block_size, max_model_len=4096, max_num_seqs=64, max_num_batched_tokens=chunk)


def small_programs(n: int, seed: int = 3, scale: float = 0.05) -> list[Program]:
    return [scale_program(p, scale) for p in generate_swebench(n, seed)]


def all_blocks_free(engine: Engine) -> bool:
    pool = engine.sched.kv_cache_manager.block_pool
    return all(b.ref_cnt == 0 for b in pool.blocks if not b.is_null) and \
        pool.get_num_free_blocks() == pool.num_gpu_blocks - 1


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_completes_under_pressure_and_frees_every_block(policy):
    # 8 programs of ~700-token contexts arriving fast, 60 blocks of 16 tokens: pins, pressure and preemption.
    progs = assign_arrivals(small_programs(8), 4.0, seed=1)
    profile = hand_profile(num_blocks=60)
    engines: list[Engine] = []
    result = simulate_result(progs, policy, profile, None, seed=0, progress=False, engine_out=engines)
    (engine,) = engines
    assert result["completed"] == 8 and result["failed"] == 0
    assert result["mode"] == "sim" and result["policy"] == policy
    assert all_blocks_free(engine)
    assert engine.sched.reset_prefix_cache() is True
    assert result["slowdown"]["mean"] >= 1.0 - 1e-9
    assert result["sim"]["blocks_in_use_at_end"] == 0
    if policy in ("continuum", "preserve", "oracle", "fixed"):
        assert result["pins"]["created"] > 0


def test_single_program_jct_by_hand():
    prog = Program(id="p", workload="t", arrival_s=2.0, turns=[
        Turn(new_input_tokens=64, output_tokens=3, tool="ls", tool_s=1.5),
        Turn(new_input_tokens=32, output_tokens=2)])
    # Turn 0: prefill 64 tokens (10 + 64 ms, samples the first token), 2 decode steps of 11 ms.
    # Tool: 1.5 s. Turn 1: prompt 64 + 3 + 32 = 99 tokens; the cache holds 66 computed tokens = 4 full
    # blocks (64 tokens); prefill the other 35 (10 + 35 ms), then 1 decode step (11 ms).
    want = (0.074 + 0.022) + 1.5 + (0.045 + 0.011)
    for policy in ("vllm", "continuum"):
        engine = Engine([prog], policy, hand_profile()).run()
        rec = engine.progs[0].record
        assert rec.jct_s == pytest.approx(want, abs=1e-9)
        assert [t.cached_tokens for t in rec.turns] == [0, 64]
        assert rec.turns[0].ttft_s == pytest.approx(0.074, abs=1e-9)
        assert engine.clock.now == pytest.approx(2.0 + want, abs=1e-9)  # idle time before arrival skipped
    assert isolated_jct(prog, hand_profile()) == pytest.approx(want, abs=1e-9)


def test_chunked_prefill_costs_each_chunk():
    prog = Program(id="c", workload="t", arrival_s=0.0, turns=[Turn(new_input_tokens=300, output_tokens=1)])
    engine = Engine([prog], "vllm", hand_profile(chunk=128)).run()
    # 128 + 128 + 44 tokens in three steps, the last one samples the only output token.
    assert engine.stats.steps == 3
    assert engine.progs[0].record.jct_s == pytest.approx(3 * 0.010 + 0.300, abs=1e-9)


def test_isolated_jct_equals_the_engine_alone():
    profile = get_profile("h100-llama-3.1-8b")
    for prog in generate_swebench(3, seed=11):
        alone = prog.model_copy(update={"arrival_s": 0.0})
        engine = Engine([alone], "vllm", profile).run()
        assert engine.progs[0].record.jct_s == pytest.approx(isolated_jct(alone, profile), rel=1e-9)


def test_requests_carry_session_and_hints():
    progs = assign_arrivals(small_programs(2), 1.0, seed=0)
    engine = Engine(progs, "oracle", hand_profile())
    seen = []
    add = engine.sched.add_request

    def spy(request):
        seen.append(request)
        add(request)

    engine.sched.add_request = spy
    engine.run()
    assert len(seen) == sum(len(p.turns) for p in progs)
    by_prog = {p.id: p for p in progs}
    for r in seen:
        pid, k = r.request_id.split("#")
        turn = by_prog[pid].turns[int(k)]
        xargs = r.sampling_params.extra_args
        assert r.session_id == pid
        assert xargs["is_last_step"] == (int(k) == len(by_prog[pid].turns) - 1)
        assert xargs["tool_s"] == turn.tool_s and xargs.get("tool") == turn.tool
        assert r.arrival_time >= by_prog[pid].arrival_s


def test_next_turn_extends_the_previous_context():
    progs = assign_arrivals(small_programs(1), 1.0, seed=0)
    engine = Engine(progs, "vllm", hand_profile())
    prompts = []
    add = engine.sched.add_request
    engine.sched.add_request = lambda r: (prompts.append(list(r.prompt_token_ids)), add(r))
    engine.run()
    turns = progs[0].turns
    for k in range(1, len(prompts)):
        prev = prompts[k - 1]
        assert prompts[k][: len(prev)] == prev
        assert len(prompts[k]) == len(prev) + turns[k - 1].output_tokens + turns[k].new_input_tokens


def test_virtual_time_waits_for_tools():
    prog = Program(id="t", workload="t", arrival_s=0.0, turns=[
        Turn(new_input_tokens=16, output_tokens=1, tool="sleep", tool_s=100.0),
        Turn(new_input_tokens=16, output_tokens=1)])
    engine = Engine([prog], "vllm", hand_profile()).run()
    assert engine.stats.steps == 2 and engine.stats.idle_jumps >= 1
    # Turn 0: one 16-token step (26 ms). Turn 1: 33-token prompt, 16 cached, 17 computed (27 ms).
    assert engine.progs[0].record.jct_s == pytest.approx(0.026 + 100.0 + 0.027, abs=1e-9)


def test_context_longer_than_the_model_is_fitted():
    prog = Program(id="long", workload="t", arrival_s=0.0, turns=[
        Turn(new_input_tokens=3000, output_tokens=10, tool="cat", tool_s=0.1),
        Turn(new_input_tokens=3000, output_tokens=10)])
    engines: list[Engine] = []
    result = simulate_result([prog], "vllm", hand_profile(num_blocks=600), None, progress=False,
                             engine_out=engines)
    assert result["completed"] == 1 and result["sim"]["clipped_turns"] == 0
    turns = engines[0].progs[0].record.turns
    assert len(turns) == 2 and turns[-1].prompt_tokens + turns[-1].output_tokens <= 4096
