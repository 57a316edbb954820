"""Live replay: drive an OpenAI-compatible server with a trace, acting as the agents.

One asyncio task per program: wait for the program's arrival, send turn 0, wait the turn's ``tool_s``, send
turn 1, ... and end the session after the last turn. Works against Continuum, plain vLLM and any server that
speaks ``/v1/completions``.

Each program is an :class:`agents.AsyncAgentSession` (the client SDK agents use): its requests carry the
session id and hints, stream, and are sent once more if the connection drops.

**Token-exact.** Prompts are token-id lists (``/v1/completions`` accepts ``prompt: [int, ...]``) with ``ignore_eos`` and
``max_tokens`` = the turn's output tokens, so every server does exactly the work the trace describes. What each turn
sends comes from the shared turn plan (:mod:`continuum_workloads.turn_plan`, which the simulator uses too): turn k's
prompt is turn k-1's prompt + turn k-1's *actual* output ids (vLLM returns them with ``"return_token_ids": true``) +
``new_input_tokens`` seeded synthetic ids from ``[vocab_lo, vocab_hi)``, so two runs with the same seed send identical
prompts. A server that does not return token ids gets the plan's seeded stand-in ids for the outputs
(``turns.token_exact`` is false in the result).

**Context length.** Traces describe long programs (SWE-bench: 10-20k tokens of final context) and small models
have short windows. Two knobs (:mod:`continuum_workloads.transforms`), applied in this order, before arrivals
are assigned:

1. ``token_scale`` F (``--token-scale``): every turn's ``new_input_tokens`` and ``output_tokens`` times F,
   rounded (at least 1 output token, 1 token of first prompt). Shrinks the whole trace and keeps the relative
   sizes of programs.
2. ``max_context`` N (``--max-context``, default: the server's ``max_model_len`` from ``/v1/models``): a program
   whose final context (the sum of all its new-input and output tokens) exceeds N is scaled down
   proportionally, every turn by N / final, so its turn count, tools and shape stay and it fits; programs that
   already fit are left alone. Rounding leftovers are taken off the largest inputs; a program with more turns
   than N allows is cut to the turns that fit.

**Hints.** Every request carries ``session_id`` = the program id. With ``hints`` on (default), ``vllm_xargs``
carries the turn's ``tool`` (the trace knows the tool call that follows) and ``is_last_step`` on the last turn.

**Failures never hang the run.** Each request has a timeout; a failed request (HTTP error, a connection dropped
twice, timeout) marks its program failed and the run goes on. When a transport error finds the server gone (its health
check fails), every program still waiting is marked failed at once and the run reports.

**Measurements.** Streaming requests measure TTFT; ``usage.prompt_tokens_details.cached_tokens`` gives prefix hits (vLLM
reports it with ``--enable-prompt-tokens-details``; a server that does not leaves the hit rate unknown, null, never 0);
``/continuum/stats``, when the server has it, is sampled for pinned blocks and diffed for pin counters.
:func:`continuum_eval.results.metrics.summarize` makes the result JSON.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import httpx

from continuum_agents.protocol import KEEPALIVE_EXPIRY_S, DroppedConnection
from continuum_agents.session import AsyncAgentSession, SessionError
from continuum_eval.live.server_stats import ServerInfoError, StatsSampler, alive, get_stats, pin_delta, server_info
from continuum_eval.results.metrics import ProgramRecord, TurnRecord, summarize
from continuum_workloads import Program, assign_arrivals, shape_programs
from continuum_workloads.turn_plan import TurnPlan, plan_turn

__all__ = ["ReplayOptions", "ReplayError", "replay", "replay_sync", "prepare_programs", "server_info"]


class ReplayError(RuntimeError):
    """The run could not start (server unreachable, no model, bad options)."""


@dataclass
class ReplayOptions:
    base_url: str
    model: str | None = None  # None: the first model of /v1/models
    jps: float | None = None  # None: the trace's own arrival_s
    seed: int = 0
    max_context: int | None = None  # None: the server's max_model_len
    token_scale: float = 1.0
    tool_scale: float = 1.0
    hints: bool = True
    end_sessions: bool = True
    request_timeout_s: float = 300.0
    connect_timeout_s: float = 10.0
    vocab_lo: int = 1000
    vocab_hi: int = 30000
    temperature: float = 0.0
    progress: bool = True
    policy: str | None = None  # label in the result; None: "continuum" if the server has /continuum/stats
    # How often /continuum/stats is sampled (for the peak of pinned blocks): rarely, since the server answers it
    # under the scheduler's lock and only Continuum servers are polled, so it must not tilt a comparison.
    stats_interval_s: float = 5.0
    api_key: str | None = None
    session_prefix: str = ""  # session id = prefix + program id (distinct runs on one server stay distinct)
    # Also name the program the way vllm-router's program scheduling reads it (vllm_xargs.agentic_context)
    agentic_context: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        if self.base_url.endswith("/v1"):
            self.base_url = self.base_url[: -len("/v1")]
        if self.jps is not None and not (math.isfinite(self.jps) and self.jps > 0):
            raise ReplayError(f"jps must be a positive number, not {self.jps}")
        if not (math.isfinite(self.token_scale) and self.token_scale > 0):
            raise ReplayError(f"token scale must be positive, not {self.token_scale}")
        if not (math.isfinite(self.tool_scale) and self.tool_scale >= 0):
            raise ReplayError(f"tool scale must be >= 0, not {self.tool_scale}")
        if self.max_context is not None and self.max_context < 2:
            raise ReplayError(f"max context must be at least 2 tokens, not {self.max_context}")
        if not 0 <= self.vocab_lo < self.vocab_hi:
            raise ReplayError(f"bad vocabulary range [{self.vocab_lo}, {self.vocab_hi})")
        if self.request_timeout_s <= 0:
            raise ReplayError("request timeout must be positive")


def prepare_programs(programs: Sequence[Program], *, jps: float | None, seed: int, max_context: int | None,
                     token_scale: float = 1.0, tool_scale: float = 1.0) -> list[Program]:
    """Scale, fit and assign arrivals: the exact programs a replay (or a simulation of it) runs."""
    if not programs:
        raise ReplayError("the trace has no programs")
    out = shape_programs(programs, token_scale=token_scale, tool_scale=tool_scale, max_context=max_context)
    if jps is not None:
        out = assign_arrivals(out, jps, seed)
    elif any(p.arrival_s is None for p in out):
        raise ReplayError("the trace has programs without arrival_s: give a rate (--jps)")
    return out


def agentic_context(session_id: str) -> dict[str, str]:
    """vllm-router's program identity for a request. A JSON string: vLLM's ``vllm_xargs`` take no objects."""
    return {"agentic_context": json.dumps({"program_id": session_id})}


# -- the run ------------------------------------------------------------------------------------------------------
class _Run:
    def __init__(self, opts: ReplayOptions, programs: list[Program], model: str, client: httpx.AsyncClient) -> None:
        self.opts, self.programs, self.model, self.client = opts, programs, model, client
        self.server_down = asyncio.Event()
        self.t0 = 0.0
        self.records = [ProgramRecord(id=p.id, workload=p.workload, arrival_s=float(p.arrival_s or 0.0),
                                      num_turns=len(p.turns)) for p in programs]
        self.bar = None

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def _wait(self, delay: float) -> bool:
        """Sleep ``delay`` seconds; False if the server went down meanwhile."""
        if delay > 0:
            try:
                await asyncio.wait_for(self.server_down.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass
        return not self.server_down.is_set()

    async def program(self, prog: Program, rec: ProgramRecord) -> None:
        try:
            await self._program(prog, rec)
        except Exception as exc:  # noqa: BLE001 - one program's bug must not stop the others
            rec.failed, rec.error = True, rec.error or f"{type(exc).__name__}: {exc}"
        finally:
            if rec.end_s is None:
                rec.end_s = self.now()
            if self.bar is not None:
                self.bar.update(1)
                self.bar.set_postfix(failed=sum(r.failed for r in self.records), refresh=False)

    def _session(self, prog: Program) -> AsyncAgentSession:
        o = self.opts
        return AsyncAgentSession(o.base_url, self.model, o.session_prefix + prog.id, api_key=o.api_key,
                                 send_hints=o.hints, timeout_s=o.request_timeout_s, client=self.client)

    async def _program(self, prog: Program, rec: ProgramRecord) -> None:
        if not await self._wait(rec.arrival_s - self.now()):
            rec.failed, rec.error = True, "server unreachable before the program started"
            return
        session = self._session(prog)
        prompt: list[int] = []
        for k in range(len(prog.turns)):
            plan = plan_turn(prog, k, seed=self.opts.seed, vocab=(self.opts.vocab_lo, self.opts.vocab_hi))
            prompt = prompt + plan.new_ids
            tr = TurnRecord(index=k, prompt_tokens=len(prompt))
            rec.turns.append(tr)
            try:
                out_ids = await asyncio.wait_for(self._turn(session, plan, prompt, tr),
                                                 timeout=self.opts.request_timeout_s)
            except (asyncio.TimeoutError, SessionError) as exc:
                await self._fail(rec, k, exc)
                await self._end(session)
                return
            prompt = prompt + out_ids
            if not plan.is_last_step and not await self._wait(plan.tool_s):
                rec.failed, rec.error = True, f"server unreachable during the tool call after turn {k}"
                rec.end_s = self.now()
                return
        rec.end_s = self.now()
        await self._end(session)

    async def _fail(self, rec: ProgramRecord, k: int, exc: BaseException) -> None:
        timed_out = isinstance(exc, asyncio.TimeoutError)
        rec.failed = True
        rec.error = (f"turn {k}: timed out after {self.opts.request_timeout_s:.0f}s" if timed_out
                     else f"turn {k}: {exc}")
        transport = isinstance(exc.__cause__, (httpx.TransportError, DroppedConnection))
        if (timed_out or transport) and not await alive(self.client, self.opts.base_url):
            self.server_down.set()
        rec.end_s = self.now()

    async def _turn(self, session: AsyncAgentSession, plan: TurnPlan, prompt: list[int], tr: TurnRecord) -> list[int]:
        tr.sent_s = self.now()
        extra = {"vllm_xargs": agentic_context(session.session_id)} if self.opts.agentic_context else {}
        await session.complete(prompt, tool=plan.tool, is_last_step=plan.is_last_step, max_tokens=plan.max_tokens,
                               ignore_eos=True, temperature=self.opts.temperature, **extra)
        stats = session.turn_stats[-1]
        tr.sent_s = stats.sent_s - self.t0
        tr.first_token_s = stats.first_token_s - self.t0
        tr.done_s = stats.done_s - self.t0
        tr.cached_tokens = stats.cached_tokens
        out_ids = stats.output_ids
        if not out_ids:
            # A server that does not return token ids: the plan's stand-in output ids.
            tr.token_exact = False
            out_ids = plan.stand_in_output(stats.output_tokens or None)
        tr.output_tokens = len(out_ids)
        tr.ok = True
        return out_ids

    async def _end(self, session: AsyncAgentSession) -> None:
        if self.opts.end_sessions and not self.server_down.is_set():
            await session.end()  # plain vLLM answers 404 here: fine


async def replay(programs: Sequence[Program], opts: ReplayOptions) -> dict[str, Any]:
    """Replay ``programs`` against ``opts.base_url``; returns the result dict (see continuum_eval.results.metrics)."""
    timeout = httpx.Timeout(connect=opts.connect_timeout_s, read=opts.request_timeout_s, write=60.0, pool=None)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64, keepalive_expiry=KEEPALIVE_EXPIRY_S)
    headers = {"Authorization": f"Bearer {opts.api_key}"} if opts.api_key else {}
    async with httpx.AsyncClient(timeout=timeout, limits=limits, headers=headers) as client:
        try:
            info = await server_info(client, opts.base_url)
        except ServerInfoError as exc:
            raise ReplayError(str(exc)) from None
        model = opts.model or info["models"][0]
        max_context = opts.max_context or info.get("max_model_len")
        progs = prepare_programs(programs, jps=opts.jps, seed=opts.seed, max_context=max_context,
                                 token_scale=opts.token_scale, tool_scale=opts.tool_scale)
        has_stats = info["stats"] is not None
        policy = opts.policy or ("continuum" if has_stats else (info.get("owned_by") or "unknown"))
        run = _Run(opts, progs, model, client)
        sampler = StatsSampler(client, opts.base_url, opts.stats_interval_s) if has_stats else None
        if opts.progress:
            from tqdm import tqdm

            run.bar = tqdm(total=len(progs), desc=f"replay {policy} jps={opts.jps}", unit="prog", file=sys.stderr,
                           dynamic_ncols=True)
        run.t0 = time.monotonic()
        sampler_task = asyncio.create_task(sampler.run()) if sampler else None
        try:
            await asyncio.gather(*(run.program(p, r) for p, r in zip(progs, run.records)))
        finally:
            if sampler_task is not None:
                sampler_task.cancel()
                await asyncio.gather(sampler_task, return_exceptions=True)
            if run.bar is not None:
                run.bar.close()
        wall = time.monotonic() - run.t0
        after = None if run.server_down.is_set() or not has_stats else await get_stats(client, opts.base_url)
        after = after or (sampler.last if sampler else None)
        pins = pin_delta(info["stats"], after, sampler.peak if sampler else 0) if has_stats else None
        sched = (after or {}).get("sched_step_ms") if has_stats else None
        scheduler = {k: (after or {}).get(k) for k in ("admission", "phase", "preempted_for_waiting")}
    meta = {"base_url": opts.base_url, "model": model, "seed": opts.seed, "max_context": max_context,
            "token_scale": opts.token_scale, "tool_scale": opts.tool_scale, "hints": opts.hints,
            "wall_s": wall, "server_down": run.server_down.is_set(), "continuum_stats": has_stats,
            "scheduler": scheduler if has_stats else None, **opts.meta}
    return summarize(run.records, policy=policy, jps=opts.jps, pins=pins, sched_step_ms=sched, meta=meta)


def replay_sync(programs: Sequence[Program], opts: ReplayOptions) -> dict[str, Any]:
    return asyncio.run(replay(programs, opts))
