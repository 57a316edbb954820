"""The fidelity report's arithmetic (the live side needs a server: `python -m continuum_eval.sim.fit.fidelity`)."""

from __future__ import annotations

import pytest

from continuum_eval.results.metrics import ProgramRecord, TurnRecord, summarize
from continuum_eval.sim.fit.fidelity import breakdown, table


def result(policy: str, lag: float) -> dict:
    """Two programs of two turns, 0.5 s each, 3 s of tool time between them, plus ``lag`` s of client lag."""
    recs = []
    for i in range(2):
        r = ProgramRecord(id=f"p{i}", workload="swebench", arrival_s=10.0 * i, num_turns=2)
        t = r.arrival_s
        for k in range(2):
            r.turns.append(TurnRecord(index=k, prompt_tokens=100, output_tokens=10, sent_s=t, first_token_s=t + 0.1,
                                      done_s=t + 0.5, ok=True))
            t += 0.5 + (3.0 + lag if k == 0 else 0.0)
        r.end_s = r.turns[-1].done_s
        recs.append(r)
    return summarize(recs, policy=policy, jps=1.0)


def test_breakdown_separates_turn_latency_from_the_clients_lag():
    turn, gap = breakdown(result("vllm", lag=0.25), {"p0": 3.0, "p1": 3.0})
    assert turn == pytest.approx(0.5)
    assert gap == pytest.approx(0.25)


def test_table_reports_the_error_of_the_mean_jct():
    live, sim = result("vllm", lag=0.4), result("vllm", lag=0.0)
    text = table([live], [sim], {"p0": 3.0, "p1": 3.0})
    row = text.splitlines()[2].split("|")
    assert row[3].strip() == "4.40" and row[4].strip() == "4.00"  # JCT: 0.5 + 3 + lag + 0.5
    assert row[5].strip() == f"{4.0 / 4.4 - 1:+.1%}"
    assert row[12].strip() == "0.40" and row[13].strip() == "0.00"  # client gaps
