"""BFCL multi-turn entries against one server: BFCL's own loop, backends and multi-turn checker.

Entries come from ``bfcl-eval``'s loaders (``load_dataset_entry`` / ``load_ground_truth_entry``, with the function
documents filled in and, for ``miss_func``, the held-back ones). Each entry runs
:class:`continuum_eval.agents_bench.bfcl_handler.ContinuumHandler` (BFCL's OpenAI-compatible handler over an agent
session) in BFCL's prompting format (function documents in the system prompt, answers as ``[f(a=1)]``; the default, for
models without tool calling) or with ``fc`` (OpenAI ``tools``; the server needs a tool parser, e.g.
``--enable-auto-tool-choice --tool-call-parser llama3_json``). The result is scored as BFCL's evaluation runner does:
every step's answer decoded (undecodable or empty steps skipped), a run cut short by BFCL's step limit fails, and
``multi_turn_checker`` compares the backends' states and results with the ground truth's.

A small model's context window may not hold an entry's system prompt (BFCL's function documents are 4-8k
tokens with SmolLM2's tokenizer): :func:`fitting_entries` keeps the entries whose first prompt, counted by the
server (``POST /tokenize``), fits in a given share of ``max_model_len``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import time
from dataclasses import dataclass
from typing import Any, Sequence

import httpx

from continuum_eval.agents_bench.runs import TaskRun, run_tasks

__all__ = ["BfclOptions", "load_entries", "fitting_entries", "run_bfcl_entries", "score_entry", "BFCL_CATEGORIES"]

BFCL_CATEGORIES = ("base", "long_context", "miss_func", "miss_param")
WORKLOAD = "bfcl"


@dataclass
class BfclOptions:
    base_url: str
    model: str
    run_name: str  # distinct per run: BFCL keys backend state by it
    fc: bool = False
    max_tokens: int = 256
    tool_delay: float = 0.0  # scale of the injected per-call delay (0: none, 1: the trace's distribution)
    seed: int = 0
    concurrency: int = 4
    session_prefix: str = ""
    progress: bool = True


def load_entries(categories: Sequence[str] = ("base",)) -> list[dict[str, Any]]:
    """BFCL's multi-turn entries with their ground truth (``entry["ground_truth"]``), in BFCL's order."""
    from bfcl_eval.utils import load_dataset_entry, load_ground_truth_entry

    out = []
    for cat in categories:
        if cat not in BFCL_CATEGORIES:
            raise ValueError(f"unknown BFCL category {cat!r}; choose from {', '.join(BFCL_CATEGORIES)}")
        truth = {g["id"]: g["ground_truth"] for g in load_ground_truth_entry(f"multi_turn_{cat}")}
        out += [{**e, "ground_truth": truth[e["id"]]} for e in load_dataset_entry(f"multi_turn_{cat}")
                if e["id"] in truth]
    return out


def _first_prompt(entry: dict[str, Any], fc: bool) -> list[dict[str, Any]]:
    from bfcl_eval.model_handler.utils import system_prompt_pre_processing_chat_model

    first = copy.deepcopy(entry["question"][0])
    return first if fc else system_prompt_pre_processing_chat_model(first, entry["function"], entry["id"])


def fitting_entries(entries: Sequence[dict[str, Any]], n: int, base_url: str, model: str, max_model_len: int,
                    share: float = 0.6, fc: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
    """The first ``n`` entries whose first prompt is at most ``share`` of the context; and the skipped ids."""
    kept, skipped = [], []
    for e in entries:
        if len(kept) >= n:
            break
        r = httpx.post(base_url + "/tokenize", json={"model": model, "messages": _first_prompt(e, fc)}, timeout=60)
        if r.status_code != 200:
            raise RuntimeError(f"{base_url}/tokenize answered HTTP {r.status_code}: {r.text[:200]}")
        (kept if r.json()["count"] <= share * max_model_len else skipped).append(e)
    return kept, [e["id"] for e in skipped]


def score_entry(handler: Any, entry: dict[str, Any], result: Any) -> tuple[bool, str]:
    """(valid, error type) of one entry's result, as BFCL's evaluation runner scores multi-turn entries."""
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker import multi_turn_checker
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils import is_empty_execute_response

    truth = entry["ground_truth"]
    if not isinstance(result, list):
        return False, "multi_turn:inference_error"
    if len(result) != len(truth):
        return False, "multi_turn:force_terminated"
    decoded = []
    for turn in result:
        steps = []
        for step in turn:
            try:
                calls = handler.decode_execute(step, has_tool_call_tag=False)
            except Exception:  # noqa: BLE001 - BFCL skips answers it cannot decode
                continue
            if not is_empty_execute_response(calls):
                steps.append(calls)
        decoded.append(steps)
    category = entry["id"].rsplit("_", 1)[0]
    check = multi_turn_checker(decoded, truth, entry, category, handler.model_name)
    return bool(check["valid"]), "" if check["valid"] else str(check.get("error_type", "multi_turn:wrong"))


def _run_one(entry: dict[str, Any], opts: BfclOptions, doc_class: dict[str, str]) -> TaskRun:
    from continuum_agents.session import AgentSession
    from continuum_eval.agents_bench.bfcl_handler import ContinuumHandler, trace_delay

    eid = entry["id"]
    session = AgentSession(opts.base_url, model=opts.model, session_id=opts.session_prefix + eid)
    delay = trace_delay(doc_class, eid, opts.seed, opts.tool_delay) if opts.tool_delay > 0 else None
    handler = ContinuumHandler(session, run_name=opts.run_name, fc=opts.fc, max_tokens=opts.max_tokens,
                               delay=delay)
    run = TaskRun(id=eid, start_s=time.monotonic())
    result: Any = None
    try:
        result, _ = handler.inference(copy.deepcopy(entry), include_input_log=False, exclude_state_log=True)
        run.exit_status = "done"
    except Exception as exc:  # noqa: BLE001 - one entry's failure must not stop the others
        run.failed, run.exit_status, run.error = True, type(exc).__name__, f"{type(exc).__name__}: {exc}"[:500]
    finally:
        run.end_s = time.monotonic()
        session.end()
        session.close()
    run.turns, run.tool_calls = list(session.turn_stats), list(session.tool_calls)
    if not run.failed:
        run.solved, error_type = score_entry(handler, copy.deepcopy(entry), result)
        run.detail = {"check": error_type or "valid", "user_turns": len(entry["question"])}
        run.exit_status = "force_terminated" if error_type.endswith("force_terminated") else "done"
    run.detail["retries"] = session.retries
    return run


def run_bfcl_entries(entries: Sequence[dict[str, Any]], opts: BfclOptions, desc: str = "bfcl") -> list[TaskRun]:
    """Every entry once, ``opts.concurrency`` at a time; results in entry order. BFCL's progress prints are
    silenced (its loop prints every step)."""
    from continuum_workloads.bfcl import load_bfcl_entries

    categories = sorted({e["id"].rsplit("_", 1)[0].removeprefix("multi_turn_") for e in entries})
    doc_class = {k: v for be in load_bfcl_entries(categories) for k, v in be.doc_class.items()}
    with contextlib.redirect_stdout(io.StringIO()):
        return run_tasks(lambda e: _run_one(e, opts, doc_class), list(entries), opts.concurrency, desc,
                         lambda e: e["id"], opts.progress)
