"""mini-swe-agent on a Continuum server: its default agent, text-based model and local environment.

The package's own ``mini_textbased.yaml`` configuration (prompts and templates), the model and environment
of :mod:`continuum_agents.mini_swe` (program id per run, ``is_last_step`` on the step-limit call, timed commands),
greedy decoding. The agent works in ``--dir``; the run ends the program on the server.

    python -m continuum_agents.examples.mini_swe_agent --base-url http://127.0.0.1:8000 --dir /tmp/sandbox \\
        --task "Create a file hello.txt containing the word hello, then submit."
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import httpx  # noqa: E402
import yaml  # noqa: E402
from minisweagent.agents.default import DefaultAgent  # noqa: E402
from minisweagent.config import builtin_config_dir  # noqa: E402

from continuum_agents.mini_swe import ContinuumEnvironment, ContinuumModel, end_run  # first: quiet imports


def run(base_url: str, task: str, folder: str, model: str | None = None, step_limit: int = 5,
        max_tokens: int = 128, end: bool = True) -> dict[str, Any]:
    if model is None:
        model = httpx.get(base_url.rstrip("/") + "/v1/models", timeout=30).json()["data"][0]["id"]
    cfg = yaml.safe_load((builtin_config_dir / "mini_textbased.yaml").read_text())
    templates = {k: v for k, v in cfg.get("model", {}).items() if k.endswith("_template")}
    llm = ContinuumModel(model_name=f"hosted_vllm/{model}", base_url=base_url, step_limit=step_limit,
                         model_kwargs={"temperature": 0.0, "max_tokens": max_tokens}, **templates)
    env = ContinuumEnvironment(session=llm.session, cwd=folder, timeout=30)
    agent_cfg = {"system_template": cfg["agent"]["system_template"],
                 "instance_template": cfg["agent"]["instance_template"], "step_limit": step_limit, "cost_limit": 0.0}
    try:
        info = DefaultAgent(llm, env, **agent_cfg).run(task=task)
    finally:
        ended = end_run(llm) if end else False
    s = llm.session
    return {"session_id": s.session_id, "exit_status": info.get("exit_status"), "turns": s.turns,
            "commands": [c.name for c in s.tool_calls], "tool_time_s": s.tool_time_s,
            "ttft_s": [t.ttft_s for t in s.turn_stats], "ended_on_server": ended}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m continuum_agents.examples.mini_swe_agent",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-url", default="http://127.0.0.1:8000")
    ap.add_argument("--model", help="default: the server's first model")
    ap.add_argument("--dir", required=True, help="the folder the agent works in")
    ap.add_argument("--task", required=True)
    ap.add_argument("--step-limit", type=int, default=5)
    args = ap.parse_args(argv)
    for k, v in run(args.base_url, args.task, args.dir, args.model, args.step_limit).items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
