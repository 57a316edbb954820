"""The turn plan: what one trace turn becomes as an LLM request, shared by the live replay and the simulator.

A trace gives token *counts*; a request needs token *ids*. Turn k of a program is planned as:

- ``new_ids``: ``new_input_tokens`` synthetic ids drawn uniformly from ``[lo, hi)`` (default 1000..30000: inside
  any modern vocabulary and clear of the special tokens, which sit at the low ids of SmolLM2, Llama and Qwen
  tokenizers), seeded by (seed, program id, turn), so every run with the same seed sends identical prompts.
  The prompt is the previous turn's prompt + its output ids + these.
- ``max_tokens`` = the turn's ``output_tokens`` (generated with ``ignore_eos``, so the work is exactly the trace's);
- the hints a Continuum client sends: ``tool`` (the tool call that follows, which the trace knows) and
  ``is_last_step`` on the last turn; ``tool_s`` (the true tool duration, read only by an oracle policy);
- ``stand_in_output``: seeded output ids (salt 1) for a server that does not return its output ids, and for the
  simulator, which samples nothing.

A trace is shaped to a model before planning (`continuum_workloads.transforms`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from continuum_workloads.trace import Program

__all__ = ["VOCAB", "TurnPlan", "plan_turn", "synthetic_ids"]

VOCAB = (1000, 30000)


def synthetic_ids(n: int, *, seed: int, program_id: str, turn: int, lo: int, hi: int, salt: int = 0) -> list[int]:
    """``n`` token ids in [lo, hi), the same for the same (seed, program, turn, salt)."""
    if n <= 0:
        return []
    rng = np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(program_id.encode()), turn, salt])
    return rng.integers(lo, hi, size=n).tolist()


@dataclass(frozen=True)
class TurnPlan:
    program_id: str
    index: int
    new_ids: list[int]
    max_tokens: int
    tool: str | None
    tool_s: float
    is_last_step: bool
    seed: int
    vocab: tuple[int, int] = VOCAB

    def hints(self) -> dict[str, Any]:
        """``vllm_xargs`` of the request: the tool that follows and the last-step flag."""
        xargs: dict[str, Any] = {}
        if self.tool:
            xargs["tool"] = self.tool
        if self.is_last_step:
            xargs["is_last_step"] = True
        return xargs

    def stand_in_output(self, n: int | None = None) -> list[int]:
        """Seeded output ids (``n``, default ``max_tokens``) where the real ones are not known."""
        return synthetic_ids(self.max_tokens if n is None else n, seed=self.seed, program_id=self.program_id,
                             turn=self.index, lo=self.vocab[0], hi=self.vocab[1], salt=1)


def plan_turn(program: Program, k: int, *, seed: int, vocab: tuple[int, int] = VOCAB) -> TurnPlan:
    """Turn ``k`` of ``program`` as a request plan."""
    turn = program.turns[k]
    lo, hi = vocab
    return TurnPlan(program_id=program.id, index=k,
                    new_ids=synthetic_ids(turn.new_input_tokens, seed=seed, program_id=program.id, turn=k, lo=lo,
                                          hi=hi),
                    max_tokens=turn.output_tokens, tool=turn.tool, tool_s=float(turn.tool_s),
                    is_last_step=k == len(program.turns) - 1, seed=seed, vocab=(lo, hi))
