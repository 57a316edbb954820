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

Two knobs shape a trace to a model before planning: :func:`scale_program` (every token count times F) and
:func:`fit_program` (a program whose final context exceeds N is scaled down proportionally, turn by turn).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from continuum_workloads.trace import Program

__all__ = ["VOCAB", "TurnPlan", "plan_turn", "synthetic_ids", "scale_program", "fit_program"]

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


def scale_program(program: Program, factor: float, tool_factor: float = 1.0) -> Program:
    """Every turn's token counts times ``factor`` (rounded, minimums kept), tool times times ``tool_factor``."""
    if factor == 1.0 and tool_factor == 1.0:
        return program
    turns = []
    for i, t in enumerate(program.turns):
        turns.append(t.model_copy(update={
            "new_input_tokens": max(1 if i == 0 else 0, round(t.new_input_tokens * factor)),
            "output_tokens": max(1, round(t.output_tokens * factor)),
            "tool_s": float(t.tool_s * tool_factor),
        }))
    return program.model_copy(update={"turns": turns})


def fit_program(program: Program, max_context: int) -> Program:
    """``program`` scaled down proportionally so its final context is at most ``max_context`` tokens."""
    final = program.final_context()
    if final <= max_context:
        return program
    f = max_context / final
    ins = [max(1 if i == 0 else 0, math.floor(t.new_input_tokens * f)) for i, t in enumerate(program.turns)]
    outs = [max(1, math.floor(t.output_tokens * f)) for t in program.turns]
    # Minimums can push a program with many turns over the limit: take the excess off the largest inputs, then
    # the largest outputs, and as a last resort drop turns from the end.
    excess = sum(ins) + sum(outs) - max_context
    for seq, floor_of in ((ins, lambda i: 1 if i == 0 else 0), (outs, lambda i: 1)):
        while excess > 0:
            i = max(range(len(seq)), key=lambda j: seq[j] - floor_of(j))
            room = seq[i] - floor_of(i)
            if room <= 0:
                break
            cut = min(room, excess)
            seq[i] -= cut
            excess -= cut
    n = len(program.turns)
    while excess > 0 and n > 1:
        n -= 1
        excess -= ins[n] + outs[n]
    turns = [t.model_copy(update={"new_input_tokens": ins[i], "output_tokens": outs[i]})
             for i, t in enumerate(program.turns[:n])]
    if n < len(program.turns):
        turns[-1] = turns[-1].model_copy(update={"tool": None, "tool_s": 0.0})
    meta = {**(program.meta or {}), "fitted_to_context": max_context}
    return program.model_copy(update={"turns": turns, "meta": meta})
