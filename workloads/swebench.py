"""Synthetic SWE-bench agent programs (mini-swe-agent style: one bash command per turn).

Calibrated to the statistics published for mini-swe-agent on SWE-bench:
10.9 +- 2.1 turns per program; tool time 925 +- 3,550 ms per call, heavy-tailed
(the slowest tenth of calls carries about half of all tool time); 70k +- 20k
tokens per program, counted as the sum over turns of prompt + output.
A 500-program trace lands, over seeds 0-199, at 10.66-11.26 turns (sd 1.9-2.3),
0.85-1.02 s mean tool time (sd 3.2-4.3 s, slowest tenth 56-62%) and 67k-73k
tokens per program (sd 20k-25k).

How a program is drawn (from one seeded generator per program, so program i is
the same whatever the number of programs asked for):

* Turns: T = max(3, round(Gamma(k=26.9, theta=0.405))) -- mean 10.9, sd 2.1,
  slightly right-skewed (hard issues take longer). Turns 0..T-2 each run a
  command; the last turn submits and calls no tool.
* Tool of a turn: a mixture that depends on the phase of the episode, x = k/(T-1):
  exploring (x < 0.3: ls, find, grep, cat, sed -n, git), editing
  (x < 0.65: sed -i, cat, python reproduction scripts, grep, pytest, pip) and
  verifying (python, pytest, git diff, ...). Weights in ``PHASES``.
* Tool duration = sandbox overhead LogNormal(median 0.30 s, sigma 0.4) + work.
  Work is LogNormal per tool (``TOOLS``): milliseconds for ls/cat/sed/echo, tens
  of milliseconds for grep/find/git, LogNormal(0.5 s, 1.0) for python scripts,
  LogNormal(2.0 s, 0.8) for pytest, LogNormal(5 s, 0.7) for pip; python, pytest
  and pip work is multiplied by a per-program repository speed LogNormal(0, 0.5)
  (some test suites are slow). 4% of programs contain one long-running command
  (a full test suite, a hung script): LogUniform(10 s, 120 s), replacing the
  work of one of its python/pytest/pip commands (else its last command). The
  long runs are placed quasi-randomly (see ``_long_run_s``) so that each trace
  carries its share of them. Everything is capped at the 120 s command timeout.
  The body (overhead + ordinary test runs) gives the ~0.3 s median; the test runs
  and long runs give the heavy tail.
* Tokens: the first turn's input is the system prompt + issue text,
  LogNormal(median 3,950, sigma 0.2); each later input is the previous command's
  observation (per-tool log-normal in ``TOOLS``, e.g. median 290 for cat and 250
  for pytest, plus a 25-token wrapper, truncated at 2,500 tokens like the agent's
  output limit); each output (thought + command) is LogNormal(median 170,
  sigma 0.45) clipped to [20, 1,200]; the submitting turn outputs 60 tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from tqdm import tqdm

from continuum_workloads.trace import Program, Turn

__all__ = ["ToolSpec", "TOOLS", "PHASES", "generate_swebench", "iter_swebench", "swebench_program"]

WORKLOAD = "swebench"
TOOL_TIMEOUT_S = 120.0
LONG_MIN_S = 10.0
LONG_PROGRAM_P = 0.040  # share of programs with one long-running command
# Low-discrepancy steps (golden-ratio and sqrt(2) Weyl sequences) for the rare long runs.
WEYL_SELECT, WEYL_VALUE = 0.6180339887498949, 0.4142135623730951
OVERHEAD_MEDIAN_S, OVERHEAD_SIGMA = 0.30, 0.40
OBS_WRAPPER_TOKENS = 25
OBS_MAX_TOKENS = 2500
TURNS_SHAPE, TURNS_SCALE, MIN_TURNS = 26.9, 0.405, 3
TASK_TOKENS_MEDIAN, TASK_TOKENS_SIGMA = 3950, 0.20
OUTPUT_MEDIAN, OUTPUT_SIGMA, OUTPUT_MIN, OUTPUT_MAX = 170, 0.45, 20, 1200
REPO_SPEED_SIGMA = 0.5
SUBMIT_OUTPUT_TOKENS = 60


@dataclass(frozen=True)
class ToolSpec:
    """Duration (seconds) and observation size (tokens) of one command family.

    Duration = the sandbox's per-command overhead + LogNormal(median_s, sigma_s) of work.
    """

    median_s: float
    sigma_s: float
    obs_median: float
    obs_sigma: float
    repo_bound: bool = False  # work scales with the program's repository speed factor


TOOLS: dict[str, ToolSpec] = {
    "ls": ToolSpec(0.005, 0.5, 55, 0.8),
    "find": ToolSpec(0.060, 1.0, 75, 1.0),
    "grep": ToolSpec(0.050, 1.0, 120, 1.0),
    "cat": ToolSpec(0.005, 0.5, 290, 0.8),
    "sed": ToolSpec(0.005, 0.5, 135, 1.0),
    "echo": ToolSpec(0.003, 0.4, 10, 0.6),
    "git": ToolSpec(0.040, 0.7, 110, 1.0),
    "python": ToolSpec(0.50, 1.0, 100, 1.1, repo_bound=True),
    "pytest": ToolSpec(2.00, 0.8, 250, 0.9, repo_bound=True),
    "pip": ToolSpec(5.00, 0.7, 170, 0.7, repo_bound=True),
}

# Tool mixture per phase of the episode: (upper bound of x, {tool: weight}).
PHASES: list[tuple[float, dict[str, float]]] = [
    (0.30, {"ls": 0.20, "find": 0.15, "grep": 0.28, "cat": 0.20, "sed": 0.12, "git": 0.05}),
    (0.65, {"sed": 0.30, "cat": 0.18, "python": 0.24, "grep": 0.12, "echo": 0.06, "ls": 0.05,
            "pytest": 0.03, "pip": 0.02}),
    (1.01, {"python": 0.33, "pytest": 0.17, "sed": 0.14, "cat": 0.11, "git": 0.15, "grep": 0.06,
            "echo": 0.04}),
]


def _phase(x: float) -> tuple[list[str], np.ndarray]:
    for bound, mix in PHASES:
        if x < bound:
            break
    names = list(mix)
    w = np.array([mix[n] for n in names], dtype=float)
    return names, w / w.sum()


def _lognormal_int(rng: np.random.Generator, median: float, sigma: float, lo: int, hi: int) -> int:
    return int(np.clip(round(median * np.exp(sigma * rng.standard_normal())), lo, hi))


def _n_turns(rng: np.random.Generator) -> int:
    return max(MIN_TURNS, int(round(rng.gamma(TURNS_SHAPE, TURNS_SCALE))))


def _work_s(rng: np.random.Generator, tool: str, repo_speed: float) -> float:
    """Seconds of work of one command, before the sandbox overhead."""
    spec = TOOLS[tool]
    work = spec.median_s * np.exp(spec.sigma_s * rng.standard_normal())
    return float(work * repo_speed if spec.repo_bound else work)


def _observation(rng: np.random.Generator, tool: str) -> int:
    spec = TOOLS[tool]
    return OBS_WRAPPER_TOKENS + _lognormal_int(rng, spec.obs_median, spec.obs_sigma, 1, OBS_MAX_TOKENS)


def _long_run_s(index: int, seed: int) -> float | None:
    """Duration of the program's long-running command, or None if it has none.

    Quasi-random rather than independent: with ~17 long runs in a 500-program
    trace, independent draws would swing the trace's mean tool time by +-5% from
    seed to seed; Weyl sequences (offset by the seed) give every window of
    programs its share of long runs, spread evenly over LogUniform(10 s, 120 s).
    """
    offsets = np.random.default_rng(np.random.SeedSequence([seed, 0x10C6])).random(2)
    if (offsets[0] + index * WEYL_SELECT) % 1.0 >= LONG_PROGRAM_P:
        return None
    v = (offsets[1] + index * WEYL_VALUE) % 1.0
    return float(np.exp(np.log(LONG_MIN_S) + v * (np.log(TOOL_TIMEOUT_S) - np.log(LONG_MIN_S))))


def _commands(rng: np.random.Generator, n: int, repo_speed: float) -> list[tuple[str, float, int]]:
    """(tool, work seconds, observation tokens) of the n-1 commands of an n-turn program."""
    cmds = []
    for k in range(n - 1):
        names, w = _phase(k / (n - 1))
        tool = names[int(rng.choice(len(names), p=w))]
        cmds.append((tool, _work_s(rng, tool, repo_speed), _observation(rng, tool)))
    return cmds


def _place_long_run(rng: np.random.Generator, cmds: list[tuple[str, float, int]], long_s: float) -> None:
    """The long run replaces a python/pytest/pip command's work (else the last command's)."""
    slots = [i for i, (tool, _, _) in enumerate(cmds) if TOOLS[tool].repo_bound] or [len(cmds) - 1]
    i = slots[int(rng.integers(len(slots)))]
    cmds[i] = (cmds[i][0], long_s, cmds[i][2])


def swebench_program(index: int, seed: int) -> Program:
    """Program ``index`` of the seeded synthetic SWE-bench workload."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    n = _n_turns(rng)
    repo_speed = float(np.exp(REPO_SPEED_SIGMA * rng.standard_normal()))
    new_input = _lognormal_int(rng, TASK_TOKENS_MEDIAN, TASK_TOKENS_SIGMA, 400, 12000)
    cmds = _commands(rng, n, repo_speed)
    long_s = _long_run_s(index, seed)
    if long_s is not None:
        _place_long_run(rng, cmds, long_s)
    turns: list[Turn] = []
    for tool, work, obs in cmds:
        out = _lognormal_int(rng, OUTPUT_MEDIAN, OUTPUT_SIGMA, OUTPUT_MIN, OUTPUT_MAX)
        overhead = OVERHEAD_MEDIAN_S * np.exp(OVERHEAD_SIGMA * rng.standard_normal())
        dur = min(overhead + work, TOOL_TIMEOUT_S)
        turns.append(Turn(new_input_tokens=new_input, output_tokens=out, tool=tool, tool_s=round(float(dur), 4)))
        new_input = obs
    turns.append(Turn(new_input_tokens=new_input, output_tokens=SUBMIT_OUTPUT_TOKENS, tool=None, tool_s=0.0))
    return Program(id=f"swe-{seed}-{index:05d}", workload=WORKLOAD, arrival_s=None, turns=turns,
                   meta={"generator": "workloads.swebench", "seed": seed, "index": index})


def iter_swebench(programs: int, seed: int, progress: bool = False) -> Iterator[Program]:
    """Stream ``programs`` synthetic SWE-bench programs."""
    if programs < 0:
        raise ValueError(f"programs must be >= 0, got {programs}")
    for i in tqdm(range(programs), desc="swebench", unit="prog", disable=not progress):
        yield swebench_program(i, seed)


def generate_swebench(programs: int, seed: int, progress: bool = False) -> list[Program]:
    """``programs`` synthetic SWE-bench agent programs, deterministic in ``seed``."""
    return list(iter_swebench(programs, seed, progress))
