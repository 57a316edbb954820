"""Trace transforms: programs reshaped to fit a model, the same way for the live replay, the bench and the
simulator, so that they run the same programs.

- :func:`scale_program`: every turn's token counts times F (``--token-scale``), tool times times G
  (``--tool-scale``); shrinks a whole trace and keeps the relative sizes of programs;
- :func:`fit_program`: a program whose final context exceeds N tokens (``--max-context``, or the model's length)
  is scaled down proportionally, turn by turn, keeping its turns and tools; programs that fit are left alone;
- :func:`shape_programs`: both, in that order.
"""

from __future__ import annotations

import math
from typing import Sequence

from continuum_workloads.trace import Program

__all__ = ["scale_program", "fit_program", "shape_programs"]


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


def shape_programs(programs: Sequence[Program], *, token_scale: float = 1.0, tool_scale: float = 1.0,
                   max_context: int | None = None) -> list[Program]:
    """Scale every program, then fit it into ``max_context`` tokens (None: no limit)."""
    out = [scale_program(p, token_scale, tool_scale) for p in programs]
    return [fit_program(p, max_context) for p in out] if max_context is not None else out
