"""The lower bound on the mean JCT (`continuum_eval.sim.bound`): SRPT exact, prices below every step the cost
model can charge, and the bound below what the simulated policies achieve."""

from __future__ import annotations

import random

import pytest

from continuum_eval.sim.bound import jct_bound, program_work, srpt_completions, token_prices
from continuum_eval.sim.cost.costmodel import LinearCostModel, StepBatch
from continuum_eval.sim.cost.profiles import Profile, get_profile
from continuum_eval.sim.engine.isolated import isolated_jct
from continuum_eval.sim.run import prepare, simulate_result
from continuum_eval.sim.sweep import sim_table
from continuum_workloads import generate_swebench
from continuum_workloads.transforms import scale_program

GPU_PROFILES = ("h100-llama-3.1-8b", "h200-llama-3.1-8b", "a100-llama-3.1-8b", "h100x4-llama-3.1-70b")
POLICIES = ("vllm", "continuum", "clairvoyant")


def hand_profile() -> Profile:
    """step = 10 ms + 1 ms per token, 64 requests and 2048 tokens a step at most."""
    return Profile("hand", "test", LinearCostModel({"const": 0.010, "tokens": 0.001}), num_blocks=4096,
                   block_size=16, max_model_len=8192, max_num_seqs=64, max_num_batched_tokens=2048)


def best_sum_of_completions(release: list[int], work: list[int]) -> int:
    """Exhaustive search over unit time slots (integer data: some optimal preemptive schedule uses them)."""
    best = [sum(release) + sum(work) * len(work) + max(release) * len(work)]

    def go(t: int, left: tuple[int, ...], total: int) -> None:
        if not any(left):
            best[0] = min(best[0], total)
            return
        ready = [i for i, w in enumerate(left) if w and release[i] <= t]
        if not ready:
            go(t + 1, left, total)
            return
        for i in ready:
            nxt = left[:i] + (left[i] - 1,) + left[i + 1:]
            go(t + 1, nxt, total + (t + 1 if nxt[i] == 0 else 0))

    go(0, tuple(work), 0)
    return best[0]


def test_srpt_by_hand():
    # A (r 0, p 5) runs 0-1; B (r 1, p 2) preempts it and ends at 3; C (r 2, p 3) has more left than B, then
    # less than A (3 < 4): C ends at 6, A at 10. Sum of completions 19, of flow times 16.
    assert srpt_completions([0.0, 1.0, 2.0], [5.0, 2.0, 3.0]) == [10.0, 3.0, 6.0]
    assert srpt_completions([4.0, 0.0], [1.0, 1.0]) == [5.0, 1.0]  # idle gap before a release
    assert srpt_completions([], []) == []


def test_srpt_is_optimal_on_small_instances():
    rng = random.Random(7)
    for _ in range(30):
        n = rng.randint(2, 4)
        release = [rng.randint(0, 4) for _ in range(n)]
        work = [rng.randint(1, 3) for _ in range(n)]
        assert sum(srpt_completions(release, work)) == pytest.approx(best_sum_of_completions(release, work))


def random_batches(profile: Profile, rng: random.Random) -> list[StepBatch]:
    """Steps vLLM could schedule: prefill chunks and decodes, within the token budget and the request cap."""
    budget, cap = profile.max_num_batched_tokens, profile.max_num_seqs
    out = [StepBatch.decode([1]), StepBatch.decode([100_000] * cap), StepBatch.decode([1] * cap),
           StepBatch.prefill(budget), StepBatch.prefill(1, 100_000), StepBatch.prefill(budget, 120_000)]
    for _ in range(300):
        b, room = StepBatch(), budget
        for _ in range(rng.randint(1, cap)):
            if room == 0:
                break
            q = 1 if rng.random() < 0.7 else rng.randint(1, room)
            b.add(q, q + rng.choice((0, rng.randint(0, 100_000))), rng.random() < 0.8)
            room -= q
        out.append(b)
    return out


@pytest.mark.parametrize("name", GPU_PROFILES + ("cpu", "hand"))
def test_prices_are_floors_of_every_step(name):
    profile = hand_profile() if name == "hand" else get_profile(name)
    prices = token_prices(profile)
    assert prices.pair <= prices.decode_kv  # a one-token prefill chunk is costed as a decode
    for b in random_batches(profile, random.Random(name)):
        assert prices.floor(b) <= profile.step_time(b) * (1 + 1e-12)


def test_a_programs_work_is_at_most_its_gpu_time_alone():
    profile = get_profile("h100-llama-3.1-8b")
    prices = token_prices(profile)
    for p in generate_swebench(10, 0):
        gpu_alone = isolated_jct(scale_program(p, 1.0, 0.0), profile)
        assert 0 < program_work(p, profile, prices) <= gpu_alone


@pytest.fixture(scope="module")
def swebench_runs() -> dict[float, list[dict]]:
    programs = generate_swebench(20, 0)
    return {jps: [simulate_result(programs, pol, "h100-llama-3.1-8b", jps, 0, progress=False) for pol in POLICIES]
            for jps in (0.05, 5.0)}


def test_the_bound_is_below_every_policy_on_swebench(swebench_runs):
    for jps, results in swebench_runs.items():
        bound = results[0]["bound"]
        assert bound["mean_jct_s"] == max(bound["alone_s"], bound["saturated_s"])
        for r in results:
            assert r["bound"] == bound  # a property of the trace and the load, not of the policy
            assert bound["mean_jct_s"] <= r["jct_s"]["mean"], (jps, r["policy"])
    low = swebench_runs[0.05][0]
    assert low["bound"]["mean_jct_s"] == low["bound"]["alone_s"]
    assert low["jct_s"]["mean"] <= 1.03 * low["bound"]["mean_jct_s"]  # tight when programs rarely meet
    assert "lower bound, mean JCT (s)" in sim_table([r for rs in swebench_runs.values() for r in rs])


def test_the_saturated_part_dominates_at_high_load():
    # Small programs without tools on a slow engine: at 100 programs/s the engine's work sets the bound.
    programs = [scale_program(p, 0.05, 0.0) for p in generate_swebench(40, 0)]
    profile = hand_profile()
    for jps, saturated in ((0.01, False), (100.0, True)):
        bound = jct_bound(prepare(programs, profile, jps, 0), profile)
        assert (bound.saturated_s > bound.alone_s) is saturated
        for pol in POLICIES:
            r = simulate_result(programs, pol, profile, jps, 0, progress=False)
            assert r["bound"] == pytest.approx(bound.to_dict())
            assert bound.mean_jct_s <= r["jct_s"]["mean"]
            if not saturated:
                assert r["jct_s"]["mean"] <= 1.05 * bound.mean_jct_s


def test_more_engines_share_the_work():
    profile = get_profile("h100-llama-3.1-8b")
    programs = prepare(generate_swebench(40, 0), profile, 20.0, 0)
    one, two = jct_bound(programs, profile), jct_bound(programs, profile, engines=2)
    assert two.alone_s == one.alone_s and two.saturated_s < one.saturated_s

