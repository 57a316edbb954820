"""Runs of real agents: one record per task, run side by side, summarized in the usual result format.

A :class:`TaskRun` is what an agent bench keeps of one task (a SWE task, a BFCL entry): when it started and ended,
whether it was solved (the benchmark's own grader says), how the agent stopped, every LLM turn as the client SDK
recorded it (``agents.TurnStats``) and every tool call. :func:`run_tasks` runs tasks on a thread pool with a progress
bar; :func:`summarize_runs` turns the runs into the result dict of ``continuum_eval.results.metrics`` (JCT = task start
to its last turn's completion, tool time included) plus::

    "accuracy": solved / tasks,
    "tasks": [{"id", "solved", "turns", "tool_s", "jct_s", "exit_status", "failed", ...}],
    "outputs": {task id: [{"prompt": digest, "ids": output token ids, "text"}, ...]}

``outputs`` is what the determinism check compares across policies.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, TypeVar

from continuum_agents.protocol import ToolCall, TurnStats
from continuum_eval.results.metrics import ProgramRecord, TurnRecord, summarize

__all__ = ["TaskRun", "run_tasks", "summarize_runs", "to_record"]

T = TypeVar("T")


@dataclass
class TaskRun:
    id: str
    start_s: float
    end_s: float = 0.0
    solved: bool = False
    exit_status: str = ""
    failed: bool = False  # the run broke (server error, exception), as opposed to the agent giving up
    error: str | None = None
    turns: list[TurnStats] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def tool_s(self) -> float:
        return sum(c.seconds for c in self.tool_calls)

    @property
    def jct_s(self) -> float:
        return self.end_s - self.start_s


def run_tasks(fn: Callable[[T], TaskRun], items: Sequence[T], concurrency: int, desc: str,
              ident: Callable[[T], str], progress: bool = True) -> list[TaskRun]:
    """``fn`` over ``items`` on ``concurrency`` threads (results in input order), with a tqdm bar. A task whose
    run raises is recorded as failed (``ident`` names it); the others go on."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc=desc, unit="task", file=sys.stderr, dynamic_ncols=True)

    def one(item: T) -> TaskRun:
        t = time.monotonic()
        try:
            run = fn(item)
        except Exception as exc:  # noqa: BLE001 - one task's failure must not stop the others
            run = TaskRun(id=ident(item), start_s=t, end_s=time.monotonic(), failed=True,
                          exit_status=type(exc).__name__, error=f"{type(exc).__name__}: {exc}"[:500])
        if bar is not None:
            bar.update(1)
        return run

    try:
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            return list(pool.map(one, items))
    finally:
        if bar is not None:
            bar.close()


def to_record(run: TaskRun, t0: float, workload: str) -> ProgramRecord:
    """A task run as the per-program record the metrics read (times relative to ``t0``)."""
    rec = ProgramRecord(id=run.id, workload=workload, arrival_s=run.start_s - t0, num_turns=len(run.turns),
                        end_s=run.end_s - t0, failed=run.failed, error=run.error)
    for t in run.turns:
        rec.turns.append(TurnRecord(index=t.index, prompt_tokens=t.prompt_tokens, output_tokens=t.output_tokens,
                                    cached_tokens=t.cached_tokens, sent_s=t.sent_s - t0,
                                    first_token_s=None if t.first_token_s is None else t.first_token_s - t0,
                                    done_s=None if t.done_s is None else t.done_s - t0, ok=True,
                                    token_exact=t.output_ids is not None))
    return rec


def summarize_runs(runs: Sequence[TaskRun], *, policy: str, workload: str, t0: float,
                   pins: dict[str, Any] | None = None, sched_step_ms: dict[str, float] | None = None,
                   meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The usual result dict for the runs, plus ``accuracy``, ``tasks`` and ``outputs``."""
    records = [to_record(r, t0, workload) for r in runs]
    result = summarize(records, policy=policy, jps=None, workload=workload, pins=pins,
                       sched_step_ms=sched_step_ms, meta=meta)
    result["accuracy"] = sum(r.solved for r in runs) / len(runs) if runs else 0.0
    result["tasks"] = [{"id": r.id, "solved": r.solved, "turns": len(r.turns), "tool_s": round(r.tool_s, 4),
                        "tool_calls": len(r.tool_calls), "jct_s": round(r.jct_s, 4), "exit_status": r.exit_status,
                        "failed": r.failed, **({"error": r.error} if r.error else {}), **r.detail} for r in runs]
    result["outputs"] = {r.id: [{"prompt": t.prompt_digest, "ids": t.output_ids, "text": t.output_text}
                                for t in r.turns] for r in runs}
    return result
