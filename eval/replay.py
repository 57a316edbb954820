"""Live replay: drive an OpenAI-compatible server with a trace, acting as the agents.

One asyncio task per program: wait for the program's arrival, send turn 0, wait the turn's ``tool_s``, send
turn 1, ... and end the session after the last turn. Works against Continuum, plain vLLM and any server that
speaks ``/v1/completions``.

**Token-exact.** Prompts are token-id lists (``/v1/completions`` accepts ``prompt: [int, ...]``) with
``ignore_eos`` and ``max_tokens`` = the turn's output tokens, so every server does exactly the work the trace
describes. Turn k's prompt is turn k-1's prompt + turn k-1's *actual* output ids (vLLM returns them with
``"return_token_ids": true``) + ``new_input_tokens`` synthetic ids for turn k. Synthetic ids are drawn
uniformly from ``[vocab_lo, vocab_hi)`` (default 1000..30000: inside any modern vocabulary and clear of the
special tokens, which sit at the low ids of SmolLM2, Llama and Qwen tokenizers), seeded by (seed, program id,
turn), so two runs with the same seed send identical prompts. A server that does not return token ids gets
seeded synthetic ids for the outputs too (``turns.token_exact`` is false in the result).

**Context length.** Traces describe long programs (SWE-bench: 10-20k tokens of final context) and small models
have short windows. Two knobs, applied in this order, before arrivals are assigned:

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

**Failures never hang the run.** Each request has a timeout; a failed request (HTTP error, dropped connection,
timeout) marks its program failed and the run goes on. When a transport error finds the server gone (its health
check fails), every program still waiting is marked failed at once and the run reports.

**Measurements.** Streaming requests measure TTFT; ``usage.prompt_tokens_details.cached_tokens`` gives prefix
hits (vLLM reports it with ``--enable-prompt-tokens-details``; a server that does not leaves the hit rate
unknown, null, never 0); ``/continuum/stats``, when the server has it, is
sampled for pinned blocks and diffed for pin counters. :func:`eval.metrics.summarize` makes the result JSON.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import httpx
import numpy as np

from agents.session import KEEPALIVE_EXPIRY_S
from eval.metrics import PIN_KEYS, ProgramRecord, TurnRecord, summarize
from workloads import Program, assign_arrivals

__all__ = ["ReplayOptions", "ReplayError", "replay", "replay_sync", "fit_program", "scale_program",
           "prepare_programs", "synthetic_ids", "server_info"]


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
    stats_interval_s: float = 0.5
    api_key: str | None = None
    session_prefix: str = ""  # session id = prefix + program id (distinct runs on one server stay distinct)
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


# -- trace preparation ---------------------------------------------------------------------------------------------
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


def prepare_programs(programs: Sequence[Program], *, jps: float | None, seed: int, max_context: int | None,
                     token_scale: float = 1.0, tool_scale: float = 1.0) -> list[Program]:
    """Scale, fit and assign arrivals: the exact programs a replay (or a simulation of it) runs."""
    if not programs:
        raise ReplayError("the trace has no programs")
    out = [scale_program(p, token_scale, tool_scale) for p in programs]
    if max_context is not None:
        out = [fit_program(p, max_context) for p in out]
    if jps is not None:
        out = assign_arrivals(out, jps, seed)
    elif any(p.arrival_s is None for p in out):
        raise ReplayError("the trace has programs without arrival_s: give a rate (--jps)")
    return out


def synthetic_ids(n: int, *, seed: int, program_id: str, turn: int, lo: int, hi: int, salt: int = 0) -> list[int]:
    """``n`` token ids in [lo, hi), the same for the same (seed, program, turn, salt)."""
    if n <= 0:
        return []
    rng = np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(program_id.encode()), turn, salt])
    return rng.integers(lo, hi, size=n).tolist()


# -- server -------------------------------------------------------------------------------------------------------
async def server_info(client: httpx.AsyncClient, base_url: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """The served model id and its max_model_len (if the server says), and whether /continuum/stats exists."""
    try:
        r = await client.get(base_url + "/v1/models", timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise ReplayError(f"cannot reach {base_url}: {type(exc).__name__}: {exc}") from None
    if r.status_code != 200:
        raise ReplayError(f"{base_url}/v1/models answered HTTP {r.status_code}")
    try:
        data = r.json().get("data") or []
    except ValueError:
        data = []
    if not data:
        raise ReplayError(f"{base_url}/v1/models lists no model")
    info = {"models": [m.get("id") for m in data], "max_model_len": data[0].get("max_model_len"),
            "owned_by": data[0].get("owned_by")}
    info["stats"] = await _get_stats(client, base_url)
    return info


async def _get_stats(client: httpx.AsyncClient, base_url: str) -> dict[str, Any] | None:
    try:
        r = await client.get(base_url + "/continuum/stats", timeout=10.0)
        if r.status_code == 200:
            body = r.json()
            return body if isinstance(body, dict) else None
    except (httpx.HTTPError, ValueError):
        pass
    return None


async def _alive(client: httpx.AsyncClient, base_url: str) -> bool:
    for path in ("/health", "/v1/models"):
        try:
            r = await client.get(base_url + path, timeout=5.0)
            if r.status_code < 500:
                return True
        except httpx.HTTPError:
            continue
    return False


class _RequestFailed(Exception):
    pass


# -- the run ------------------------------------------------------------------------------------------------------
class _Run:
    def __init__(self, opts: ReplayOptions, programs: list[Program], model: str, client: httpx.AsyncClient) -> None:
        self.opts, self.programs, self.model, self.client = opts, programs, model, client
        self.server_down = asyncio.Event()
        self.t0 = 0.0
        self.records = [ProgramRecord(id=p.id, workload=p.workload, arrival_s=float(p.arrival_s or 0.0),
                                      num_turns=len(p.turns)) for p in programs]
        self.bar = None
        self.headers = {"Authorization": f"Bearer {opts.api_key}"} if opts.api_key else {}

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

    async def _program(self, prog: Program, rec: ProgramRecord) -> None:
        if not await self._wait(rec.arrival_s - self.now()):
            rec.failed, rec.error = True, "server unreachable before the program started"
            return
        prompt: list[int] = []
        for k, turn in enumerate(prog.turns):
            prompt = prompt + synthetic_ids(turn.new_input_tokens, seed=self.opts.seed, program_id=prog.id, turn=k,
                                            lo=self.opts.vocab_lo, hi=self.opts.vocab_hi)
            last = k == len(prog.turns) - 1
            tr = TurnRecord(index=k, prompt_tokens=len(prompt), cached_tokens=None)  # until the usage says
            rec.turns.append(tr)
            try:
                out_ids = await asyncio.wait_for(self._turn(prog, turn, k, last, prompt, tr),
                                                 timeout=self.opts.request_timeout_s)
            except (asyncio.TimeoutError, _RequestFailed, httpx.HTTPError) as exc:
                rec.failed = True
                rec.error = (f"turn {k}: timed out after {self.opts.request_timeout_s:.0f}s"
                             if isinstance(exc, asyncio.TimeoutError) else f"turn {k}: {_describe(exc)}")
                if isinstance(exc, (httpx.TransportError, asyncio.TimeoutError)) \
                        and not await _alive(self.client, self.opts.base_url):
                    self.server_down.set()
                rec.end_s = self.now()
                await self._end(self.opts.session_prefix + prog.id)
                return
            prompt = prompt + out_ids
            if not last and not await self._wait(turn.tool_s):
                rec.failed, rec.error = True, f"server unreachable during the tool call after turn {k}"
                rec.end_s = self.now()
                return
        rec.end_s = self.now()
        await self._end(self.opts.session_prefix + prog.id)

    async def _turn(self, prog: Program, turn, k: int, last: bool, prompt: list[int], tr: TurnRecord) -> list[int]:
        body: dict[str, Any] = {
            "model": self.model, "prompt": prompt, "max_tokens": turn.output_tokens,
            "ignore_eos": True, "temperature": self.opts.temperature, "stream": True,
            "stream_options": {"include_usage": True}, "return_token_ids": True,
            "session_id": self.opts.session_prefix + prog.id,
        }
        if self.opts.hints:
            xargs: dict[str, Any] = {}
            if turn.tool:
                xargs["tool"] = turn.tool
            if last:
                xargs["is_last_step"] = True
            if xargs:
                body["vllm_xargs"] = xargs
        out_ids: list[int] = []
        n_out = 0
        tr.sent_s = self.now()
        async with self.client.stream("POST", self.opts.base_url + "/v1/completions", json=body,
                                      headers=self.headers) as r:
            if r.status_code != 200:
                text = (await r.aread()).decode("utf-8", "replace")
                raise _RequestFailed(f"HTTP {r.status_code}: {_error_message(text)}")
            async for line in r.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    continue
                if "error" in chunk:
                    raise _RequestFailed(f"stream error: {_error_message(json.dumps(chunk))}")
                for choice in chunk.get("choices") or []:
                    ids = choice.get("token_ids")
                    text = choice.get("text")
                    if ids or text:
                        if tr.first_token_s is None:
                            tr.first_token_s = self.now()
                        if ids:
                            out_ids.extend(int(i) for i in ids)
                        elif text:
                            n_out += 1  # no ids: count chunks (one token each, vLLM-style streaming)
                usage = chunk.get("usage")
                if usage:
                    details = usage.get("prompt_tokens_details")
                    if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
                        tr.cached_tokens = details["cached_tokens"]
                    if not out_ids:
                        n_out = int(usage.get("completion_tokens") or n_out)
        tr.done_s = self.now()
        if not out_ids:
            # A server that does not return token ids: stand-in output ids, seeded like the inputs.
            tr.token_exact = False
            out_ids = synthetic_ids(n_out or turn.output_tokens, seed=self.opts.seed, program_id=prog.id, turn=k,
                                    lo=self.opts.vocab_lo, hi=self.opts.vocab_hi, salt=1)
        if tr.first_token_s is None:
            tr.first_token_s = tr.done_s
        tr.output_tokens = len(out_ids)
        tr.ok = True
        return out_ids

    async def _end(self, program_id: str) -> None:
        if not self.opts.end_sessions or self.server_down.is_set():
            return
        try:  # plain vLLM answers 404 here: fine
            await self.client.post(f"{self.opts.base_url}/v1/sessions/{program_id}/end", headers=self.headers,
                                   timeout=10.0)
        except httpx.HTTPError:
            pass


class _StatsSampler:
    """Polls /continuum/stats during a run for the peak of pinned blocks."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, interval_s: float) -> None:
        self.client, self.base_url, self.interval_s = client, base_url, interval_s
        self.peak = 0
        self.last: dict[str, Any] | None = None

    async def run(self) -> None:
        while True:
            stats = await _get_stats(self.client, self.base_url)
            if stats is not None:
                self.last = stats
                self.peak = max(self.peak, int((stats.get("pins") or {}).get("pinned_blocks", 0) or 0))
            await asyncio.sleep(self.interval_s)


def _pin_delta(before: dict[str, Any] | None, after: dict[str, Any] | None, sampled_peak: int) -> dict[str, int]:
    b = (before or {}).get("pins") or {}
    a = (after or {}).get("pins") or {}
    out = {k: max(0, int(a.get(k, 0) or 0) - int(b.get(k, 0) or 0)) for k in PIN_KEYS if k != "peak_blocks"}
    # The server's peak is since its start: it belongs to this run only if it rose during it.
    server_peak_a, server_peak_b = int(a.get("peak_blocks", 0) or 0), int(b.get("peak_blocks", 0) or 0)
    out["peak_blocks"] = max(sampled_peak, server_peak_a if server_peak_a > server_peak_b else 0)
    return out


async def replay(programs: Sequence[Program], opts: ReplayOptions) -> dict[str, Any]:
    """Replay ``programs`` against ``opts.base_url``; returns the result dict (see eval.metrics)."""
    timeout = httpx.Timeout(connect=opts.connect_timeout_s, read=opts.request_timeout_s, write=60.0, pool=None)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64, keepalive_expiry=KEEPALIVE_EXPIRY_S)
    # The key goes with every call (models, stats, session ends), not only the completions: a server with
    # keys guards them all.
    auth = {"Authorization": f"Bearer {opts.api_key}"} if opts.api_key else {}
    async with httpx.AsyncClient(timeout=timeout, limits=limits, headers=auth) as client:
        info = await server_info(client, opts.base_url)
        model = opts.model or info["models"][0]
        max_context = opts.max_context or info.get("max_model_len")
        progs = prepare_programs(programs, jps=opts.jps, seed=opts.seed, max_context=max_context,
                                 token_scale=opts.token_scale, tool_scale=opts.tool_scale)
        has_stats = info["stats"] is not None
        policy = opts.policy or ("continuum" if has_stats else (info.get("owned_by") or "unknown"))
        run = _Run(opts, progs, model, client)
        sampler = _StatsSampler(client, opts.base_url, opts.stats_interval_s) if has_stats else None
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
        after = None if run.server_down.is_set() or not has_stats else await _get_stats(client, opts.base_url)
        after = after or (sampler.last if sampler else None)
        pins = _pin_delta(info["stats"], after, sampler.peak if sampler else 0) if has_stats else None
        sched = (after or {}).get("sched_step_ms") if has_stats else None
    meta = {"base_url": opts.base_url, "model": model, "seed": opts.seed, "max_context": max_context,
            "token_scale": opts.token_scale, "tool_scale": opts.tool_scale, "hints": opts.hints,
            "wall_s": wall, "server_down": run.server_down.is_set(), "continuum_stats": has_stats, **opts.meta}
    return summarize(run.records, policy=policy, jps=opts.jps, pins=pins, sched_step_ms=sched, meta=meta)


def replay_sync(programs: Sequence[Program], opts: ReplayOptions) -> dict[str, Any]:
    return asyncio.run(replay(programs, opts))


def _error_message(text: str) -> str:
    try:
        body = json.loads(text)
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            return str(err.get("message") or err)[:300]
        if err:
            return str(err)[:300]
    except ValueError:
        pass
    return text.strip()[:300]


def _describe(exc: BaseException) -> str:
    msg = str(exc)
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
