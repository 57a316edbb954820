"""`continuum bench --agent mini-swe-agent|bfcl`: real agents against one server per policy.

For each policy the bench starts ``continuum serve MODEL --policy P`` with the flags every server of a comparison shares
(``continuum_eval.live.settings.server_flags``: block size, KV pool, max model length, prefix caching, cached token
counts) and the policy's own (``continuum_eval.live.settings.policy_args``), empties its prefix cache, runs the agent on
the same tasks, and stops it. ``base_urls`` runs against servers already up instead (one per policy label).

- ``mini-swe-agent``: the shipped repository tasks (``continuum_workloads.repo_tasks``, built into git repositories on
  first use), mini-swe-agent with its local environment, graded by SWE-bench's harness
  (``continuum_eval.agents_bench.swe``);
- ``bfcl``: BFCL multi-turn entries on BFCL's backends, scored by its checker (``continuum_eval.agents_bench.bfcl``);
  with a small context window, only entries whose first prompt fits are taken (the skipped ids are in ``meta``).

Decoding is greedy. The output folder gets ``results.json`` (one result per policy: the usual keys, pins and scheduler
step times from ``/continuum/stats``, plus ``accuracy``, ``tasks`` and ``outputs``), ``determinism.json`` (turns whose
outputs differ between policies, ``continuum_eval.agents_bench.determinism``), ``report.md`` with the plots of
``continuum_eval.results.report``, and the servers' logs.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from continuum_eval.agents_bench.determinism import compare_outputs, format_determinism
from continuum_eval.agents_bench.runs import TaskRun, summarize_runs
from continuum_eval.live.policy_server import PinPeak, PolicyServer, continuum_stats, served_model
from continuum_eval.live.runs import reset_prefix_cache
from continuum_eval.live.server_stats import pin_delta
from continuum_eval.live.settings import BenchConfig, ServerSettings, policy_args
from continuum_eval.results.report import format_ratios, format_table, write_report

__all__ = ["AGENTS", "AgentBenchConfig", "AgentBenchError", "run_agent_bench", "format_agent_table"]

AGENTS = ("mini-swe-agent", "bfcl")

log = logging.getLogger(__name__)


class AgentBenchError(RuntimeError):
    """Bad settings (unknown agent or policy, no tasks)."""


@dataclass(kw_only=True)
class AgentBenchConfig(ServerSettings):
    agent: str
    policies: Sequence[str]
    out_dir: Path
    count: int | None = None  # tasks (mini-swe-agent) or entries (bfcl); None: 5 / 4
    max_steps: int = 10  # mini-swe-agent's step limit
    max_tokens: int = 256
    concurrency: int | None = None  # None: every task at once
    tool_delay: float = 0.0  # bfcl: scale of the injected per-call delay
    categories: Sequence[str] = ("base",)  # bfcl
    fc: bool = False  # bfcl: OpenAI tools instead of BFCL's prompt format
    fit_share: float = 0.6  # bfcl: an entry's first prompt may take this share of the context
    seed: int = 0
    base_urls: dict[str, str] = field(default_factory=dict)  # policy label -> running server
    progress: bool = True
    plots: bool = True
    echo: bool = True

    def bench_config(self) -> BenchConfig:
        return BenchConfig(policies=self.policies, jps=[0.0], out_dir=self.out_dir, **self.server_settings())


class _Workload:
    """The tasks of one agent, chosen once, run the same way against every policy's server."""

    def __init__(self, cfg: AgentBenchConfig) -> None:
        self.cfg = cfg
        self.items: list[dict[str, Any]] = []
        self.meta: dict[str, Any] = {}
        self.repos: dict[str, Path] = {}

    def choose(self, base_url: str, model: str, max_model_len: int) -> None:
        cfg = self.cfg
        if cfg.agent == "mini-swe-agent":
            from continuum_workloads.repo_tasks import build_repos, load_tasks

            try:
                self.items = load_tasks(limit=cfg.count or 5)
                self.repos = build_repos(self.items)
            except RuntimeError as exc:  # a task or its repository is broken
                raise AgentBenchError(str(exc)) from None
        else:
            from continuum_eval.agents_bench.bfcl import fitting_entries, load_entries

            entries = load_entries(cfg.categories)
            self.items, skipped = fitting_entries(entries, cfg.count or 4, base_url, model,
                                                  max_model_len or 10**9, cfg.fit_share, cfg.fc)
            self.meta["skipped_entries"] = skipped
        if not self.items:
            raise AgentBenchError("no task to run (none fits the model's context?)")
        self.meta["tasks"] = [i.get("instance_id", i.get("id")) for i in self.items]

    def run(self, base_url: str, model: str, label: str) -> tuple[list[TaskRun], str]:
        cfg, conc = self.cfg, self.cfg.concurrency or len(self.items)
        tag = label.replace("/", "_")
        if cfg.agent == "mini-swe-agent":
            from continuum_eval.agents_bench.swe import WORKLOAD, SweOptions, run_swe_tasks

            opts = SweOptions(base_url=base_url, model=model, work_dir=cfg.out_dir / "testbeds",
                              out_dir=cfg.out_dir / "runs" / tag, repos=self.repos,
                              step_limit=cfg.max_steps, max_tokens=cfg.max_tokens, concurrency=conc,
                              session_prefix=f"{tag}-", progress=cfg.progress)
            return run_swe_tasks(self.items, opts, desc=f"mini-swe-agent {label}"), WORKLOAD
        from continuum_eval.agents_bench.bfcl import WORKLOAD, BfclOptions, run_bfcl_entries

        opts = BfclOptions(base_url=base_url, model=model, run_name=f"continuum_{tag}_{time.monotonic_ns()}",
                           fc=cfg.fc, max_tokens=cfg.max_tokens, tool_delay=cfg.tool_delay, seed=cfg.seed,
                           concurrency=conc, session_prefix=f"{tag}-", progress=cfg.progress)
        return run_bfcl_entries(self.items, opts, desc=f"bfcl {label}"), WORKLOAD


def _failed(label: str, cfg: AgentBenchConfig, work: _Workload, error: str) -> dict[str, Any]:
    now = time.monotonic()
    runs = [TaskRun(id=i, start_s=now, end_s=now, failed=True, exit_status="no server", error=error)
            for i in work.meta.get("tasks", [])]
    workload = "swe-tasks" if cfg.agent == "mini-swe-agent" else "bfcl"
    return summarize_runs(runs, policy=label, workload=workload, t0=now, meta={"agent": cfg.agent, "error": error})


def _run_policy(label: str, cfg: AgentBenchConfig, work: _Workload) -> dict[str, Any]:
    try:
        return _run_on_server(label, cfg, work)
    except (RuntimeError, TimeoutError, OSError) as exc:
        if isinstance(exc, AgentBenchError):
            raise
        log.warning(f"[bench] {label}: {type(exc).__name__}: {exc}")
        return _failed(label, cfg, work, f"{type(exc).__name__}: {exc}")


def _run_on_server(label: str, cfg: AgentBenchConfig, work: _Workload) -> dict[str, Any]:
    with PolicyServer(label, cfg.bench_config(), cfg.base_urls.get(label)) as server:
        model, max_len = served_model(server.base_url)
        if not work.items:
            work.choose(server.base_url, model, max_len)
        meta = {"agent": cfg.agent, "model": model, "max_model_len": max_len, "server": {"args": server.args},
                "max_steps": cfg.max_steps, "max_tokens": cfg.max_tokens, "tool_delay": cfg.tool_delay,
                "prefix_cache_reset": reset_prefix_cache(server.base_url), **work.meta}
        before, peak = continuum_stats(server.base_url), PinPeak(server.base_url)
        peak.start()
        t0 = time.monotonic()
        try:
            runs, workload = work.run(server.base_url, model, label)
        finally:
            peak.stop.set()
        after = continuum_stats(server.base_url)
        meta["wall_s"] = time.monotonic() - t0
        pins = pin_delta(before, after, peak.peak) if before is not None else None
        sched = (after or {}).get("sched_step_ms") if before is not None else None
    return summarize_runs(runs, policy=label, workload=workload, t0=t0, pins=pins, sched_step_ms=sched, meta=meta)


def format_agent_table(results: Sequence[dict[str, Any]]) -> str:
    """Accuracy and agent-side numbers per policy, then one row per task and policy."""
    lines = ["| policy | accuracy | solved | mean turns | mean tool s | mean JCT (s) | failed runs |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        ts = r.get("tasks") or []
        n = max(1, len(ts))
        lines.append(f"| {r['policy']} | {100 * r.get('accuracy', 0.0):.0f}% | {sum(t['solved'] for t in ts)}/"
                     f"{len(ts)} | {sum(t['turns'] for t in ts) / n:.1f} | {sum(t['tool_s'] for t in ts) / n:.2f} "
                     f"| {sum(t['jct_s'] for t in ts) / n:.1f} | {sum(t['failed'] for t in ts)} |")
    lines += ["", "| task | policy | solved | turns | tool s | JCT (s) | how it ended |",
              "|---|---|---|---|---|---|---|"]
    for task in (results[0].get("tasks") or []) if results else []:
        for r in results:
            t = next((x for x in r.get("tasks") or [] if x["id"] == task["id"]), None)
            if t is not None:
                how = t.get("grade") or t.get("check") or ""
                lines.append(f"| {t['id']} | {r['policy']} | {'yes' if t['solved'] else 'no'} | {t['turns']} "
                             f"| {t['tool_s']:.2f} | {t['jct_s']:.1f} | {t['exit_status']} {how} |")
    return "\n".join(lines)


def run_agent_bench(cfg: AgentBenchConfig) -> list[dict[str, Any]]:
    """Run the agent against every policy; write results.json, determinism.json, report.md and plots."""
    if cfg.agent not in AGENTS:
        raise AgentBenchError(f"unknown agent {cfg.agent!r}: choose {' or '.join(AGENTS)}")
    if not cfg.policies:
        raise AgentBenchError("need at least one policy")
    cfg.out_dir = Path(cfg.out_dir).resolve()  # the checkouts' paths are in the agent's prompt
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    for p in cfg.policies:
        if p not in cfg.base_urls:
            policy_args(p, cfg.bench_config())  # fail on a bad name before anything starts
    work = _Workload(cfg)
    results = [_run_policy(label, cfg, work) for label in cfg.policies]
    pairs = compare_outputs(results)
    (cfg.out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (cfg.out_dir / "determinism.json").write_text(json.dumps(pairs, indent=2) + "\n")
    model = next((r["meta"]["model"] for r in results if "model" in r["meta"]), cfg.model or "the default model")
    title = f"{cfg.agent} on {model}: " + " vs ".join(cfg.policies)
    paths = write_report(results, cfg.out_dir, title=title, plots=cfg.plots)
    agent_table, det = format_agent_table(results), format_determinism(pairs)
    with open(paths["report"], "a") as fh:
        fh.write(f"\n## Agent results\n\n{agent_table}\n")
        if det:
            fh.write(f"\n## Greedy outputs across policies\n\n{det}\n")
    if cfg.echo:
        print(format_table(results), agent_table, sep="\n\n")
        for extra in (format_ratios(results), det):
            if extra:
                print(f"\n{extra}")
        print(f"\nresults: {cfg.out_dir / 'results.json'}\nreport:  {paths['report']}")
    return results
