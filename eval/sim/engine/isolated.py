"""Each program's JCT alone on an idle engine: the denominator of its slowdown.

Alone, vLLM's scheduler does the same thing for every turn, so the engine loop's result has a closed form
(tests/test_sim_engine.py checks it equals running `continuum_eval.sim.engine.loop.Engine` on the single program):

- the turn's prompt P reuses the KV the previous turn left in the prefix cache: full blocks of its prompt and
  output except the last sampled token (never computed), capped like vLLM caps hits (at least the prompt's
  last token is computed):  hit = B * min(floor((P' + O' - 1) / B), floor((P - 1) / B)), with P', O' the
  previous turn's prompt and output and B the block size (0 on the first turn);
- the rest of the prompt is prefilled in chunks of at most ``max_num_batched_tokens``; the last chunk samples
  the first output token;
- each further output token is one decode step with the context grown by one.

A step of one request decoding is linear in its context under both cost models (roofline: kernel time plus a
memory-bound KV read; fitted: a linear form), so the O - 1 decode steps sum exactly as n * (first + last) / 2.
The pool must hold the program's longest context, or the engine could not run it either. Results are memoized
per (profile, program shape).
"""

from __future__ import annotations

from continuum_eval.sim.cost.costmodel import StepBatch
from continuum_eval.sim.cost.profiles import Profile
from continuum_workloads import Program


def _shape(program: Program) -> tuple:
    return tuple((t.new_input_tokens, t.output_tokens, t.tool_s) for t in program.turns)


_CACHE: dict[tuple, float] = {}


def decode_seconds(profile: Profile, context: int, n: int) -> float:
    """``n`` decode steps of one request whose context after the first of them is ``context + 1``."""
    if n <= 0:
        return 0.0
    first = profile.step_time(StepBatch.decode([context + 1]))
    if n == 1:
        return first
    last = profile.step_time(StepBatch.decode([context + n]))
    return n * (first + last) / 2


def isolated_jct(program: Program, profile: Profile) -> float:
    """Seconds from the program's arrival to the agent seeing its last turn, alone on an idle engine."""
    key = (profile.name, id(profile.cost), profile.block_size, profile.max_num_batched_tokens,
           profile.max_model_len, _shape(program))
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    value = _isolated(program, profile)
    _CACHE[key] = value
    return value


def _isolated(program: Program, profile: Profile) -> float:
    B, L = profile.block_size, profile.max_model_len
    overhead = float(profile.extra.get("client_overhead_s", 0.0))
    total, prev_prompt, prev_out = 0.0, 0, 0
    prompt = 0
    for k, turn in enumerate(program.turns):
        out = min(turn.output_tokens, L - 1)
        prompt = min(prompt + prev_out + turn.new_input_tokens, L - out)
        cached = 0 if k == 0 else B * min((prev_prompt + prev_out - 1) // B, (prompt - 1) // B)
        total += overhead + profile.prefill_seconds(prompt, cached) + decode_seconds(profile, prompt, out - 1)
        total += turn.tool_s
        prev_prompt, prev_out = prompt, out
    return total


def isolated_jcts(programs: list[Program], profile: Profile) -> dict[str, float]:
    return {p.id: isolated_jct(p, profile) for p in programs}


def clear_cache() -> None:
    _CACHE.clear()
