"""Synthetic SWE-bench agent programs (mini-swe-agent style: one bash command per turn).

Calibrated to the statistics published for mini-swe-agent on SWE-bench:
10.9 +- 2.1 turns per program; tool time 925 +- 3,550 ms per call, heavy-tailed
(the slowest tenth of calls carries about half of all tool time); 70k +- 20k
tokens per program, counted as the sum over turns of prompt + output.

How a program is drawn (all draws from one seeded generator per program, so
program i is the same whatever the number of programs asked for):

* Turns: T = max(3, round(Gamma(k=26.9, theta=0.405))) -- mean 10.9, sd 2.1,
  slightly right-skewed (hard issues take longer). Turns 0..T-2 each run a
  command; the last turn submits and calls no tool.
* Tool of a turn: a mixture that depends on the phase of the episode, x = k/(T-1):
  exploring (x < 0.3: ls, find, grep, cat, sed -n, git), editing
  (x < 0.65: sed -i, cat, python reproduction scripts, grep, ...) and verifying
  (python, pytest, git diff, ...). See ``PHASES``.
* Tool duration: log-normal per tool (median, sigma in ``TOOLS``), multiplied for
  python/pytest/pip by a per-program "repository speed" factor LogNormal(0, 0.6)
  (some test suites are slow), capped at the 120 s command timeout. File
  inspection runs in tens of milliseconds; test runs take seconds with a tail
  into minutes: that tail is what makes the slowest tenth carry half the time.
* Tokens: the first turn's input is the system prompt + issue text,
  LogNormal(median 1,900, sigma 0.35); each later input is the previous command's
  observation (per-tool log-normal, plus a 25-token wrapper, truncated at 2,500
  tokens like the agent's output limit); each output (thought + command) is
  LogNormal(median 170, sigma 0.45), clipped to [20, 1,200].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from tqdm import tqdm

from workloads.trace import Program, Turn

__all__ = ["ToolSpec", "TOOLS", "PHASES", "generate_swebench", "iter_swebench", "swebench_program"]

WORKLOAD = "swebench"
TOOL_TIMEOUT_S = 120.0
LONG_MIN_S = 10.0
OVERHEAD_MEDIAN_S, OVERHEAD_SIGMA = 0.28, 0.40
OBS_WRAPPER_TOKENS = 25
OBS_MAX_TOKENS = 2500
TURNS_SHAPE, TURNS_SCALE, MIN_TURNS = 26.9, 0.405, 3
TASK_TOKENS_MEDIAN, TASK_TOKENS_SIGMA = 3700, 0.30
OUTPUT_MEDIAN, OUTPUT_SIGMA, OUTPUT_MIN, OUTPUT_MAX = 170, 0.45, 20, 1200
REPO_SPEED_SIGMA = 0.5
SUBMIT_OUTPUT_TOKENS = 60


@dataclass(frozen=True)
class ToolSpec:
    """Duration (seconds) and observation size (tokens) of one command family.

    Duration = the sandbox's per-command overhead + LogNormal(median_s, sigma_s) of
    work; with probability ``long_p`` the command instead runs long,
    LogUniform(LONG_MIN_S, TOOL_TIMEOUT_S) (a full test suite, a hung script).
    """

    median_s: float
    sigma_s: float
    obs_median: float
    obs_sigma: float
    long_p: float = 0.0
    repo_bound: bool = False  # work scales with the program's repository speed factor


TOOLS: dict[str, ToolSpec] = {
    "ls": ToolSpec(0.005, 0.5, 70, 0.8),
    "find": ToolSpec(0.060, 1.0, 100, 1.0),
    "grep": ToolSpec(0.050, 1.0, 160, 1.0),
    "cat": ToolSpec(0.005, 0.5, 380, 0.8),
    "sed": ToolSpec(0.005, 0.5, 180, 1.0),
    "echo": ToolSpec(0.003, 0.4, 12, 0.6),
    "git": ToolSpec(0.040, 0.7, 150, 1.0),
    "python": ToolSpec(0.50, 1.0, 130, 1.1, long_p=0.012, repo_bound=True),
    "pytest": ToolSpec(2.00, 0.8, 340, 0.9, long_p=0.028, repo_bound=True),
    "pip": ToolSpec(5.00, 0.7, 220, 0.7, repo_bound=True),
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


def _tool_turn(rng: np.random.Generator, tool: str, repo_speed: float) -> tuple[float, int]:
    """Duration (s) of one command and the size (tokens) of its observation."""
    spec = TOOLS[tool]
    work = spec.median_s * np.exp(spec.sigma_s * rng.standard_normal())
    if spec.repo_bound:
        work *= repo_speed
    if rng.random() < spec.long_p:
        work = float(np.exp(rng.uniform(np.log(LONG_MIN_S), np.log(TOOL_TIMEOUT_S))))
    dur = OVERHEAD_MEDIAN_S * np.exp(OVERHEAD_SIGMA * rng.standard_normal()) + work
    obs = _lognormal_int(rng, spec.obs_median, spec.obs_sigma, 1, OBS_MAX_TOKENS)
    return float(min(dur, TOOL_TIMEOUT_S)), OBS_WRAPPER_TOKENS + obs


def swebench_program(index: int, seed: int) -> Program:
    """Program ``index`` of the seeded synthetic SWE-bench workload."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    n = _n_turns(rng)
    repo_speed = float(np.exp(REPO_SPEED_SIGMA * rng.standard_normal()))
    new_input = _lognormal_int(rng, TASK_TOKENS_MEDIAN, TASK_TOKENS_SIGMA, 400, 12000)
    turns: list[Turn] = []
    for k in range(n - 1):
        names, w = _phase(k / (n - 1))
        tool = names[int(rng.choice(len(names), p=w))]
        out = _lognormal_int(rng, OUTPUT_MEDIAN, OUTPUT_SIGMA, OUTPUT_MIN, OUTPUT_MAX)
        dur, obs = _tool_turn(rng, tool, repo_speed)
        turns.append(Turn(new_input_tokens=new_input, output_tokens=out, tool=tool, tool_s=round(dur, 4)))
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
