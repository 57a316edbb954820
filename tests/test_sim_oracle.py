"""The best oracle: the clairvoyant searched over programs in service, and the sweep's check against it."""

from __future__ import annotations

from continuum_eval.sim import oracle
from continuum_eval.sim.sweep import sim_table


def fake_result(policy: str, mean: float, jps: float = 1.0) -> dict:
    return {"policy": policy, "jps": jps, "jct_s": {"mean": mean, "p95": 2 * mean}, "failed": 0}


def u_shaped(best: int):
    """A fake batch runner whose mean JCT is smallest at ``best`` programs in service (none: like 4 * best)."""
    calls: list[int] = []

    def run_many(batch):
        out = []
        for policy, overrides in batch:
            assert policy == "clairvoyant"
            n = int(overrides["knobs"]["memory.programs"])
            calls.append(n)
            out.append(fake_result(policy, 100 + abs((n or 4 * best) - best)))
        return out
    return run_many, calls


def test_the_search_refines_around_the_best_limit_of_the_grid():
    run_many, calls = u_shaped(40)
    best = oracle.search(run_many, {"knobs": {"memory.horizon": 2.0}})
    assert calls[:6] == list(oracle.GRID)
    assert best["oracle"]["limit"] == 40 and best["jct_s"]["mean"] == 100  # 32 -> 48, then 40
    assert best["policy"] == oracle.LABEL and set(best["oracle"]["mean_jct_s"]) >= {"0", "32", "48", "40"}


def test_the_search_looks_past_the_largest_limit_and_keeps_other_settings():
    seen = []

    def run_many(batch):
        seen.extend(ov for _, ov in batch)
        return [fake_result("clairvoyant", 100 - min(int(ov["knobs"]["memory.programs"]) or 1000, 300))
                for _, ov in batch]
    best = oracle.search(run_many, {"pin_cap": 0.5}, grid=(0, 64, 128), rounds=2)
    assert best["oracle"]["limit"] == 0 or best["oracle"]["limit"] > 128  # 192, 288: still improving
    assert "192" in best["oracle"]["mean_jct_s"] and all(ov["pin_cap"] == 0.5 for ov in seen)


def test_rows_below_the_oracle_are_named_and_the_table_shows_its_limit():
    best = fake_result(oracle.LABEL, 50.0) | {"oracle": {"limit": 40, "mean_jct_s": {}}}
    rows = [fake_result("continuum", 55.0), fake_result("vllm-cap", 48.0), best, fake_result("vllm", 40.0, jps=2)]
    assert oracle.below_oracle(rows) == ["vllm-cap @ 1 JPS: 48.0 s < oracle 50.0 s"]  # no oracle at 2 JPS
    assert "50.0 / 100.0 (N=40)" in sim_table(rows)
