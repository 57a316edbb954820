"""mini-swe-agent on the shipped repository tasks against one server, graded by SWE-bench's harness.

For each task (``continuum_workloads.repo_tasks``): a fresh checkout of its repository at ``base_commit``;
mini-swe-agent's ``DefaultAgent`` with its SWE-bench text-based configuration
(``config/benchmarks/swebench_backticks.yaml`` of the package: system and instance prompts, observation and format-error
templates), the Continuum model and local environment of :mod:`continuum_agents.mini_swe` working in that checkout,
temperature 0 and a step limit; then the agent's submission (the patch it printed after
``COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT``) is graded by :func:`continuum_eval.agents_bench.swe_grade.grade`. The prompts
name ``/testbed`` (SWE-bench's container path); here it is replaced by the checkout's path, the one change to the
package's configuration besides the limits.

The agent ends on its own terms: it submits, or hits the step limit, the wall-time limit or repeated format
errors. A run that raises (the server failed, the context window was exceeded) is recorded as failed, unsolved.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from continuum_eval.agents_bench.runs import TaskRun, run_tasks
from continuum_eval.agents_bench.swe_grade import grade, tool_env

__all__ = ["SweOptions", "run_swe_tasks", "agent_config"]

CONFIG_NAME = "swebench_backticks.yaml"
WORKLOAD = "swe-tasks"


@dataclass
class SweOptions:
    base_url: str
    model: str  # the served model name
    work_dir: Path  # checkouts (the same paths for every policy: the path is in the agent's prompt)
    out_dir: Path  # trajectories and grading logs
    repos: dict[str, Path]  # instance id -> built repository
    step_limit: int = 10
    max_tokens: int = 256
    command_timeout_s: int = 60
    wall_time_limit_s: int = 900
    concurrency: int = 5
    session_prefix: str = ""
    progress: bool = True


def agent_config(testbed: Path) -> dict[str, Any]:
    """mini-swe-agent's SWE-bench text-based configuration, pointed at ``testbed`` instead of /testbed."""
    import yaml
    from minisweagent.config import builtin_config_dir

    import continuum_agents.mini_swe  # noqa: F401 - sets mini-swe-agent's and litellm's quiet defaults first

    text = (builtin_config_dir / "benchmarks" / CONFIG_NAME).read_text(encoding="utf-8")
    return yaml.safe_load(text.replace("/testbed", str(testbed)))


def _run_one(task: dict[str, Any], opts: SweOptions) -> TaskRun:
    from minisweagent.agents.default import DefaultAgent

    from continuum_agents.mini_swe import ContinuumEnvironment, ContinuumModel, end_run  # first: quiets the imports
    from continuum_workloads.repo_tasks import checkout

    iid = task["instance_id"]
    work = opts.out_dir / iid
    testbed = checkout(opts.repos[iid], task["base_commit"], opts.work_dir / iid)
    cfg = agent_config(testbed)
    model_cfg = {k: v for k, v in cfg.get("model", {}).items() if k in ("observation_template",
                                                                      "format_error_template")}
    model = ContinuumModel(model_name=f"hosted_vllm/{opts.model}", base_url=opts.base_url,
                           session_id=opts.session_prefix + iid, step_limit=opts.step_limit,
                           model_kwargs={"temperature": 0.0, "max_tokens": opts.max_tokens}, **model_cfg)
    env_vars = {k: str(v) for k, v in (cfg.get("environment", {}).get("env") or {}).items()}
    env = ContinuumEnvironment(session=model.session, cwd=str(testbed), timeout=opts.command_timeout_s,
                               env={"PATH": tool_env()["PATH"], "PYTHONDONTWRITEBYTECODE": "1", **env_vars})
    agent_cfg = {**copy.deepcopy(cfg["agent"]), "step_limit": opts.step_limit, "cost_limit": 0.0,
                 "wall_time_limit_seconds": opts.wall_time_limit_s, "output_path": work / "trajectory.json"}
    run = TaskRun(id=iid, start_s=time.monotonic())
    submission = ""
    try:
        info = DefaultAgent(model, env, **agent_cfg).run(task=task["problem_statement"])
        run.exit_status = info.get("exit_status", "")
        submission = info.get("submission") or ""
    except Exception as exc:  # noqa: BLE001 - one task's failure must not stop the others
        run.failed, run.exit_status, run.error = True, type(exc).__name__, f"{type(exc).__name__}: {exc}"[:500]
    finally:
        run.end_s = time.monotonic()
        end_run(model)
    run.turns, run.tool_calls = list(model.session.turn_stats), list(model.session.tool_calls)
    verdict = grade(task, submission, opts.repos[iid], work / "grade")
    run.solved = verdict["resolved"]
    run.detail = {"grade": verdict["status"], "patch_lines": len(submission.splitlines()),
                  "retries": model.session.retries}
    return run


def run_swe_tasks(tasks: Sequence[dict[str, Any]], opts: SweOptions, desc: str = "mini-swe-agent") -> list[TaskRun]:
    """Every task once, ``opts.concurrency`` at a time; results in task order."""
    opts.work_dir.mkdir(parents=True, exist_ok=True)
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    return run_tasks(lambda t: _run_one(t, opts), list(tasks), opts.concurrency, desc,
                     lambda t: t["instance_id"], opts.progress)
