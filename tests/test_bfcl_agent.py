"""BFCL glue: entries from bfcl-eval's loaders, scored by its multi-turn checker, the injected tool delay."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from continuum_agents import AgentSession
from continuum_eval.agents_bench.bfcl import load_entries, score_entry
from continuum_eval.agents_bench.bfcl_handler import ContinuumHandler, call_names, trace_delay
from continuum_workloads.bfcl import function_duration_params


def handler(run_name: str) -> ContinuumHandler:
    return ContinuumHandler(AgentSession("http://127.0.0.1:9", model="m"), run_name=run_name, fc=False,
                            max_tokens=8)


def as_prompting_answers(ground_truth: list[list[str]]) -> list[list[str]]:
    """Each user turn answered in one step with the ground-truth calls, in BFCL's prompt format."""
    return [[f"[{', '.join(calls)}]"] if calls else ["I cannot do that."] for calls in ground_truth]


def test_checker_passes_the_ground_truth_and_fails_other_answers():
    entries = load_entries(["base"])
    assert len(entries) == 200 and all(e["ground_truth"] and e["function"] for e in entries[:5])
    e = entries[1]
    assert score_entry(handler("gt_run"), e, as_prompting_answers(e["ground_truth"])) == (True, "")
    silent = [["I will not call anything."] for _ in e["ground_truth"]]
    valid, why = score_entry(handler("silent_run"), e, silent)
    assert not valid and why.startswith("multi_turn:")
    assert score_entry(handler("short_run"), e, silent[:-1]) == (False, "multi_turn:force_terminated")
    # miss_func entries come with the held-back function documents, as BFCL's loader prepares them.
    mf = load_entries(["miss_func"])[0]
    assert mf["missed_function"] and all(isinstance(d, dict) for docs in mf["missed_function"].values()
                                         for d in docs)


def test_injected_delay_follows_the_trace_distribution():
    assert call_names(["cd(folder='a')", "ls(a=True)", 3]) == ["cd", "ls"]
    doc_class = {"ls": "GorillaFileSystem", "post_tweet": "TwitterAPI"}
    delay = trace_delay(doc_class, "e1", seed=0, scale=1.0)
    # One log-normal draw per call, seeded by (seed, entry, step): computed here from the trace's parameters.
    median, sigma = function_duration_params("ls", "GorillaFileSystem")
    z = np.random.default_rng([0, zlib.crc32(b"e1"), 1]).standard_normal()
    assert delay(["ls"], 1) == pytest.approx(median * np.exp(sigma * z), rel=1e-12)
    # The same draw in another run (a fresh closure); another step, entry or seed draws anew.
    assert trace_delay(dict(doc_class), "e1", seed=0, scale=1.0)(["ls"], 1) == delay(["ls"], 1)
    assert len({delay(["ls"], 1), delay(["ls"], 2), trace_delay(doc_class, "e2", seed=0, scale=1.0)(["ls"], 1),
                trace_delay(doc_class, "e1", seed=1, scale=1.0)(["ls"], 1)}) == 4
    assert trace_delay({}, "e1", seed=0, scale=0.5)(["ls"], 1) == 0.5 * trace_delay({}, "e1", seed=0,
                                                                                     scale=1.0)(["ls"], 1)
    samples = np.array([delay(["post_tweet"], k) for k in range(400)])
    median, _ = function_duration_params("post_tweet", "TwitterAPI")
    assert abs(np.median(samples) / median - 1) < 0.15  # log-normal around the function's median
    assert delay(["ls", "post_tweet"], 7) > delay(["ls"], 7)  # a step's calls add up
