"""Reference agent: a small mini-swe-agent-style loop over :class:`agents.AgentSession`.

Each turn the model answers with one fenced ``bash`` block; the agent runs the command (read-only commands
only, no shell: ``ls``, ``cat``, ``head``, ``tail``, ``grep``, ``wc``, ``find``, ``pwd``, ``echo``) in a working
folder, times it as a tool call, appends the output as the next user message and asks again, until the model
answers without a command, says ``DONE``, or the turn budget runs out. The last allowed turn is sent with
``is_last_step``; the session ends on exit. The server reads the tool name from the reply itself (first word of
the bash block), so the agent does not send a ``tool`` hint.

    python -m continuum_agents.shell_agent --base-url http://127.0.0.1:8000 --task "How many Python files are here?"
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from continuum_agents.session import AgentSession, SessionError

SYSTEM = ("You are a helpful assistant that can run shell commands to answer questions about files. "
          "Reply with exactly one command in a ```bash code block. When you know the answer, reply with the "
          "answer and the word DONE, without a code block.")
ALLOWED = ("ls", "cat", "head", "tail", "grep", "wc", "find", "pwd", "echo")
MAX_OUTPUT = 2000
_BLOCK = re.compile(r"```(?:bash|sh)?\s*\n(.*?)```", re.S)


@dataclass
class AgentRun:
    answer: str = ""
    turns: int = 0
    commands: list[str] = field(default_factory=list)
    tool_time_s: float = 0.0
    ended_on_server: bool = False


def extract_command(text: str) -> str | None:
    """The single command of the reply's first fenced bash block (None if there is none)."""
    m = _BLOCK.search(text or "")
    if not m:
        return None
    lines = [ln.strip() for ln in m.group(1).strip().splitlines() if ln.strip()]
    return lines[0] if lines else None


def run_command(command: str, workdir: Path, timeout_s: float = 10.0) -> str:
    """Run one allowed read-only command without a shell; returns its (truncated) output or an error line."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        return f"error: cannot parse command: {exc}"
    if not argv or argv[0] not in ALLOWED:
        return f"error: only these commands are allowed: {', '.join(ALLOWED)}"
    try:
        p = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return f"error: timed out after {timeout_s:.0f}s"
    except OSError as exc:
        return f"error: {exc}"
    out = (p.stdout + p.stderr).strip() or f"(no output, exit status {p.returncode})"
    return out[:MAX_OUTPUT]


def run_agent(base_url: str, task: str, *, model: str | None = None, workdir: str | Path = ".",
              max_turns: int = 6, max_tokens: int = 128) -> AgentRun:
    run = AgentRun()
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": task}]
    with AgentSession(base_url, model=model) as s:
        for turn in range(max_turns):
            last = turn == max_turns - 1
            reply = s.chat(messages, is_last_step=last, max_tokens=max_tokens, temperature=0.0)
            text = reply["choices"][0]["message"].get("content") or ""
            messages.append({"role": "assistant", "content": text})
            run.turns += 1
            command = extract_command(text)
            if last or command is None or "DONE" in text:
                run.answer = text.replace("DONE", "").strip()
                break
            run.commands.append(command)
            with s.tool(command.split()[0]):
                output = run_command(command, Path(workdir))
            messages.append({"role": "user", "content": f"Output:\n{output}"})
        run.tool_time_s = s.tool_time_s
    run.ended_on_server = s.end_status == 200
    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m continuum_agents.shell_agent", description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-url", default="http://127.0.0.1:8000")
    ap.add_argument("--model", help="default: the server's only model")
    ap.add_argument("--task", required=True)
    ap.add_argument("--workdir", default=".")
    ap.add_argument("--max-turns", type=int, default=6)
    args = ap.parse_args(argv)
    try:
        run = run_agent(args.base_url, args.task, model=args.model, workdir=args.workdir, max_turns=args.max_turns)
    except SessionError as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return 1
    for c in run.commands:
        print(f"$ {c}")
    print(f"answer: {run.answer}")
    print(f"turns: {run.turns}, tool time: {run.tool_time_s:.3f}s, ended on server: {run.ended_on_server}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
