"""Data-parallel ranks: one Continuum scheduler per rank, one control channel that reaches them all.

With ``--data-parallel-size N`` vLLM runs N engine-core processes, each with its own scheduler (and so its own
programs, pins and predictor). Each rank binds the control channel at its own address (`rank_address`), and the
HTTP layer talks to all of them through `DPControlClient`, which has the same ``call(request)`` as
`continuum.control.channel.ControlClient`:

- ``stats``: asked of every rank and merged (`merge_stats`): programs listed with their ``rank``, counters
  summed, per-rank views under ``ranks``;
- session ops (``session``, ``end``, ``tool``, ``delivered``, ``disconnect``): sent to every rank; the rank that
  knows the program answers (a program lives on one rank: `continuum.http.dp_affinity` keeps it there), the others
  say 404.
"""

from __future__ import annotations

import asyncio
from typing import Any, Sequence

from vllm.config import ParallelConfig

from continuum.control.channel import ControlClient
from continuum.control.messages import (
    NOT_FOUND,
    UNAVAILABLE,
    ControlReply,
    ControlRequest,
    ErrorReply,
    OkReply,
    Stats,
    StatsQuery,
)


def dp_rank_and_size(parallel_config: ParallelConfig | None, dp_size: int) -> tuple[int, int]:
    """(rank, size) of the data-parallel group a scheduler runs in ((0, ``dp_size``) without a vLLM config).

    vLLM runs the ranks of a dense model as independent engines (their ``data_parallel_size`` is reset to 1;
    ``data_parallel_index`` keeps the rank), so the size comes from `continuum serve` (``dp_size``) as well."""
    pc = parallel_config
    if pc is None:
        return 0, dp_size
    rank = getattr(pc, "data_parallel_index", None)  # newer vLLM only
    rank = pc.data_parallel_rank if rank is None else rank
    return int(rank or 0), max(int(pc.data_parallel_size or 1), int(dp_size or 1))


def rank_address(base: str, rank: int, size: int) -> str:
    """The control address of one rank: the server's own address without data parallelism."""
    return base if size <= 1 or not base else f"{base}-dp{rank}"


def sum_numbers(dicts: Sequence[dict]) -> dict:
    """Key by key, the sum of the numbers (counters, gauges of one kind); other values are left out."""
    out: dict[str, Any] = {}
    for d in dicts:
        for k, v in d.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[k] = out.get(k, 0) + v
    return out


def merge_stats(per_rank: list[Stats]) -> Stats:
    """One `/continuum/stats` view of every rank's stats (rank order)."""
    merged = per_rank[0].copy()
    merged["programs"] = [{**p, "rank": r} for r, s in enumerate(per_rank) for p in s.get("programs", [])]
    merged["num_programs"] = sum(s.get("num_programs", 0) for s in per_rank)
    merged["pins"] = sum_numbers([s.get("pins", {}) for s in per_rank])
    kv = sum_numbers([s.get("kv", {}) for s in per_rank])
    kv["usage"] = sum(s.get("kv", {}).get("usage", 0.0) for s in per_rank) / len(per_rank)
    merged["kv"] = kv
    merged["preempted_for_waiting"] = sum(s.get("preempted_for_waiting", 0) for s in per_rank)
    steps = [s.get("sched_step_ms", {}) for s in per_rank]
    merged["sched_step_ms"] = {"mean": sum(x.get("mean", 0.0) for x in steps) / len(steps),
                               "p99": max(x.get("p99", 0.0) for x in steps)}
    merged["data_parallel_size"] = len(per_rank)
    merged["ranks"] = [{k: v for k, v in s.items() if k != "programs"} for s in per_rank]
    return merged


class DPControlClient:
    """The control channel of every rank, behind the single-rank client's ``call``."""

    def __init__(self, base: str, size: int, timeout_s: float = 5.0) -> None:
        self.address = base
        self.size = size
        self.clients = [ControlClient(rank_address(base, r, size), timeout_s) for r in range(size)]

    async def _all(self, request: ControlRequest) -> list[ControlReply | BaseException]:
        return await asyncio.gather(*(c.call(request) for c in self.clients), return_exceptions=True)

    async def call(self, request: ControlRequest) -> ControlReply:
        replies = await self._all(request)
        answered = [(r, rep) for r, rep in enumerate(replies) if isinstance(rep, (OkReply, ErrorReply))]
        if not answered:
            raise TimeoutError(f"no data-parallel rank answered control op {request.op!r} in time")
        if isinstance(request, StatsQuery):
            if len(answered) < self.size:
                missing = sorted(set(range(self.size)) - {r for r, _ in answered})
                return ErrorReply(f"ranks {missing} did not answer", UNAVAILABLE)
            stats = [rep.stats for _, rep in answered if isinstance(rep, OkReply) and rep.stats is not None]
            failed = [rep for _, rep in answered if isinstance(rep, ErrorReply)]
            if len(stats) < self.size:
                return failed[0] if failed else ErrorReply("a rank answered without stats", UNAVAILABLE)
            return OkReply(stats=merge_stats(stats))
        for rank, rep in answered:
            if isinstance(rep, OkReply):
                return OkReply(session={**rep.session, "rank": rank}) if rep.session is not None else rep
        not_found = [rep for _, rep in answered if isinstance(rep, ErrorReply) and rep.status == NOT_FOUND]
        return not_found[0] if len(not_found) == len(answered) else answered[0][1]


def control_client(address: str, size: int, timeout_s: float = 5.0) -> ControlClient | DPControlClient:
    """The HTTP layer's control client: one rank's, or all ranks' behind one ``call``."""
    return DPControlClient(address, size, timeout_s) if size > 1 else ControlClient(address, timeout_s)
