"""Simulated programs, their turns, and the engine requests the turns become.

A program's turn k is one vLLM request, planned as the live replay plans it (`continuum_workloads.turn_plan`):
its prompt is turn k-1's prompt + turn k-1's output ids + the plan's ``new_input_tokens`` synthetic ids for turn
k, seeded by (seed, program id, turn). The output ids the simulator "samples" are the plan's stand-in outputs
(what the replay uses for servers that return no ids), so a program's prompts, and therefore its prefix-cache
block hashes, are the same in every run with the same seed, and the next turn's prompt extends exactly the
tokens whose KV the previous turn left in the cache.

Requests carry what a Continuum client sends: ``session_id`` = program id, and in ``extra_args`` the ``tool``
the turn will call (when it calls one), ``is_last_step`` on the last turn, ``tool_s``, the true duration of
the tool call that follows (only the ``oracle`` retention reads it), and ``future``, what the program will still
do (only the ``oracle`` work predictor, i.e. the ``clairvoyant`` preset, reads it).

Context length: programs are fitted to the engine's ``max_model_len`` before the run with
`continuum_workloads.transforms.fit_program` (a program whose final context is longer is scaled down
proportionally, turn by turn, keeping its turns and tools). For Llama-3.1's 131,072 tokens no SWE-bench or BFCL
program is touched. As a last guard a prompt that would still not fit is cut to its first
``max_model_len - output`` tokens (counted in ``clipped_turns``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vllm.sampling_params import SamplingParams
from vllm.utils.hashing import sha256
from vllm.v1.core import kv_cache_utils
from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash
from vllm.v1.request import Request

from continuum_eval.results.metrics import ProgramRecord, TurnRecord
from continuum_workloads import Program
from continuum_workloads.turn_plan import VOCAB, plan_turn


def fast_block_hash(obj: Any) -> bytes:
    """Prefix-cache block hash for the simulator: Python's tuple hash, 64 bits.

    vLLM hashes (parent hash, block token ids, extra keys) with SHA-256 to be collision-resistant across
    processes and tenants; the simulator only needs equality within one run, and this is several times faster.
    """
    return hash(obj).to_bytes(8, "little", signed=True)


_hashers: dict[int, Any] = {}


def block_hasher(block_size: int):
    if getattr(kv_cache_utils, "NONE_HASH", None) is None:
        init_none_hash(sha256)
    if block_size not in _hashers:
        _hashers[block_size] = get_request_block_hasher(block_size, fast_block_hash)
    return _hashers[block_size]


@dataclass(slots=True)
class Pending:
    """A turn inside the engine: its request, the output ids it will sample, when the engine got it."""

    program: "SimProgram"
    turn: int
    request: Request
    output_ids: list[int]
    record: TurnRecord
    submitted_s: float
    admitted: bool = False


@dataclass
class SimProgram:
    index: int
    program: Program
    seed: int
    max_model_len: int
    block_size: int
    vocab: tuple[int, int] = VOCAB
    history: list[int] = field(default_factory=list)
    next_turn: int = 0
    clipped_turns: int = 0
    record: ProgramRecord | None = None

    def __post_init__(self) -> None:
        p = self.program
        self.record = ProgramRecord(id=p.id, workload=p.workload, arrival_s=float(p.arrival_s or 0.0),
                                    num_turns=len(p.turns))

    @property
    def id(self) -> str:
        return self.program.id

    @property
    def done(self) -> bool:
        return self.next_turn >= len(self.program.turns)

    def make_turn(self, now: float) -> Pending:
        """Turn ``next_turn`` as an engine request arriving at ``now``."""
        k = self.next_turn
        plan = plan_turn(self.program, k, seed=self.seed, vocab=self.vocab)
        prompt = self.history + plan.new_ids
        out = min(plan.max_tokens, self.max_model_len - 1)
        if len(prompt) + out > self.max_model_len:
            prompt = prompt[: self.max_model_len - out]
            self.clipped_turns += 1
        self.history = prompt
        xargs: dict[str, Any] = {"is_last_step": plan.is_last_step, "tool_s": plan.tool_s,
                                 "future": self.future(k, out)}
        if plan.tool:
            xargs["tool"] = plan.tool
        if (cls := (self.program.meta or {}).get("class")) is not None:
            xargs["class"] = cls  # latency-sensitive "ls" or best-effort "be" (the ls-be classes)
        params = SamplingParams(max_tokens=out, ignore_eos=True, extra_args=xargs)
        request = Request(request_id=f"{self.id}#{k}", prompt_token_ids=prompt, sampling_params=params,
                          pooling_params=None, arrival_time=now, block_hasher=block_hasher(self.block_size),
                          session_id=self.id)
        output_ids = plan.stand_in_output(out)
        record = TurnRecord(index=k, prompt_tokens=len(prompt), sent_s=now)
        self.record.turns.append(record)
        return Pending(self, k, request, output_ids, record, now)

    def future(self, k: int, output: int) -> dict[str, Any]:
        """The program's true future from turn ``k`` on (this turn included), for the clairvoyant policy."""
        rest = self.program.turns[k:]
        return {"turns_left": len(rest), "tool_s_left": float(sum(t.tool_s for t in rest)), "output": output,
                "growth_left": output + sum(t.new_input_tokens + t.output_tokens for t in rest[1:])}

    def finish_turn(self, pending: Pending) -> None:
        """The turn's request finished: its outputs extend the history; the next turn is due after the tool."""
        self.history = self.history + pending.output_ids[: pending.request.num_output_tokens]
        self.next_turn += 1
