"""The host KV tier as retention sees it: park a finished turn's KV in host memory, and prefetch it back.

With vLLM's ``--kv-offloading-size`` (its OffloadingConnector) every computed block is written through to host
memory, so a turn's KV is already there when it finishes. Retention (`continuum.sched.turns`) then chooses among
three holds with `kvttl.TTLPolicy.decide_tier`: pin the blocks in GPU memory, *park* them (free the GPU blocks;
the host copy stays, and a program-aware CPU policy, `continuum.sched.offload_policy`, evicts it after those of
programs that ended or return later), or drop them. The rule prices a park's reload as exposed (L = bytes over
the link plus its latency): a prefetch is a bonus it does not count on, since a tool that returns early finds
its prefetch late.

A *prefetch* brings a parked program's KV back before its turn does, at the predicted return minus the load time
(the predicted return: the ``model.prefetch_quantile`` quantile of the tool's recorded durations after the
finish). It is a request the scheduler adds itself: the program's last context, one output token, no session
(so it is no turn of the program), first in the waiting queue with preempted work (`continuum.sched.ordering`:
late, it is useless). vLLM's connector loads its host
prefix while it waits (WAITING_FOR_REMOTE_KVS), it computes one token, and when it finishes its blocks are
pinned until the program returns (released by the turn's admission like any pin, or by expiry). Its output
reaches no client: vLLM's output processor drops outputs of request ids it does not know. A due prefetch is
issued at the next ``schedule()``; an idle engine calls none, so there it waits for the next request.

A client that knows its tool result is about to come back says so (``POST /v1/sessions/{id}/prefetch``, `hint`):
the program's prefetch becomes due at once, however far ahead the prediction put it, and, if an earlier prefetch
finished and its pin is gone (the tool ran past the prediction), a new one is due. Hints act whether or not
predicted prefetches are on (``model.prefetch``). A hinted prefetch's pin lasts until the predicted return, and
HINT_WAIT_S at least. (A kv_hints ``kv.prefetch`` or Dynamo's ``speculative_prefill`` comes with the turn itself,
which loads its own prefix: `continuum.http.dialects` only counts it.)

Counted: prefetches issued (*hinted*: those a client's hint made due); *in time* (the turn arrived after the
prefetch finished), *late* (it arrived while the prefetch was still loading or computing: vLLM serves it from
whatever is in GPU or host memory by then), and *wasted* (the program ended, or its next turn came without the
prefetched pin, which expired or gave way, or a hint loaded it again).
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from vllm.sampling_params import SamplingParams
from vllm.v1.request import Request

from continuum.control.messages import PREFETCH_ALREADY, PREFETCH_ISSUED, PREFETCH_NOT_PARKED
from continuum.policy.config import ContinuumConfig
from kvttl import HostLink

OFFLOADING_CONNECTOR = "OffloadingConnector"  # what `--kv-offloading-size` configures (vllm/config/vllm.py)
PREFETCH_PREFIX = "continuum-prefetch-"
PREFETCH_SLACK_S = 1.0  # a prefetched pin outlives the predicted return by this much: the turn must be admitted
HINT_WAIT_S = 5.0  # a hinted prefetch's pin waits at least this long: the client said the turn is coming


@dataclass
class Parked:
    """A program whose KV waits in host memory, and what its prefetch needs."""

    token_ids: list[int]  # the finished turn's context: what the next turn's prompt begins with
    block_hashes: list  # its full blocks' hashes, as the engine computed them (the prefetch hits what they name)
    prefetch_at: float  # when its prefetch is due (scheduler clock)
    returns_at: float  # its predicted return
    request_id: str | None = None  # its prefetch, once issued
    done: bool = False  # the prefetch finished and its blocks are pinned
    hinted: bool = False  # a client's hint made the prefetch due


@dataclass
class HostTier:
    """The engine's host tier: its link, what a token of KV weighs, host memory's price, and the parked
    programs with their prefetches."""

    link: HostLink
    bytes_per_token: float
    cpu_price: float  # seconds of saving a second of host memory is worth, against 1.0 for GPU memory
    prefetch: bool
    quantile: float
    parked: dict[str, Parked] = field(default_factory=dict)
    due: list[tuple[float, str]] = field(default_factory=list)  # (prefetch at, program id), lazy
    inflight: dict[str, str] = field(default_factory=dict)  # prefetch request id -> program id
    returning: set[str] = field(default_factory=set)  # parked programs back and not yet admitted: they go first
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("parked", "prefetches", "hinted", "in_time", "late", "wasted"), 0))
    ids: Any = field(default_factory=itertools.count)

    @classmethod
    def of(cls, vllm_config: Any, kv_cache_config: Any, cfg: ContinuumConfig) -> "HostTier | None":
        """The tier of an engine whose vLLM config has the OffloadingConnector; None otherwise."""
        kvt = vllm_config.kv_transfer_config
        if kvt is None or kvt.kv_connector != OFFLOADING_CONNECTOR:
            return None
        gpu_bytes = sum(t.size for t in kv_cache_config.kv_cache_tensors)
        cpu_bytes = float((kvt.kv_connector_extra_config or {}).get("cpu_bytes_to_use") or 0.0)
        block_size = vllm_config.cache_config.block_size
        if gpu_bytes <= 0 or cpu_bytes <= 0:
            return None
        knob = cfg.knob
        link = HostLink(knob("model.h2d_gbps") * 1e9, knob("model.d2h_gbps") * 1e9,
                        knob("model.link_latency_ms") / 1e3)
        # The same bytes take a smaller share of a larger host pool: they displace that much less (kvttl.tier_rule).
        return cls(link, gpu_bytes / (kv_cache_config.num_blocks * block_size), gpu_bytes / cpu_bytes,
                   knob("model.prefetch") > 0, min(1.0, knob("model.prefetch_quantile")))

    # -- parking --------------------------------------------------------------------------------------------
    def park(self, pid: str, request: Request, tool_samples: np.ndarray, now: float) -> None:
        """The program's finished turn (``request``) is parked: plan its prefetch from the tool's durations."""
        self.counts["parked"] += 1
        back = float(np.quantile(tool_samples, self.quantile)) if len(tool_samples) else 0.0
        load = self.link.load_seconds(request.num_tokens * self.bytes_per_token)
        self.forget(pid)
        self.parked[pid] = Parked(list(request.all_token_ids), list(request.block_hashes),
                                  now + max(0.0, back - load), now + back)
        if self.prefetch:
            heapq.heappush(self.due, (self.parked[pid].prefetch_at, pid))

    def due_prefetches(self, now: float) -> list[Request]:
        """The prefetch requests due by ``now`` (the caller adds them to vLLM's waiting queue)."""
        out = []
        while self.due and self.due[0][0] <= now:
            at, pid = heapq.heappop(self.due)
            p = self.parked.get(pid)
            if p is None or p.request_id is not None or p.prefetch_at != at:
                continue
            p.request_id = f"{PREFETCH_PREFIX}{next(self.ids)}"
            self.inflight[p.request_id] = pid
            self.counts["prefetches"] += 1
            prefetch = Request(request_id=p.request_id, prompt_token_ids=p.token_ids,
                               sampling_params=SamplingParams(max_tokens=1), pooling_params=None, arrival_time=now)
            # The turn's own hashes: the engine's hash function, whichever it is; one token adds no full block.
            prefetch.block_hashes = p.block_hashes
            out.append(prefetch)
        return out

    def hint(self, pid: str, now: float, pinned: bool) -> str:
        """The client says the program's tool result is about to come back: make its prefetch due ``now``
        (``pinned``: the program holds a pin in GPU memory). What it did: issued, already or not parked."""
        p = self.parked.get(pid)
        if p is None:
            return PREFETCH_NOT_PARKED
        if (p.request_id is None and p.hinted) or (p.request_id is not None and (pinned or not p.done)):
            return PREFETCH_ALREADY  # due at the next step, loading, or loaded and pinned
        if p.request_id is not None:  # it loaded, and its pin expired or gave way before the return: load again
            self.counts["wasted"] += 1
            p.request_id, p.done = None, False
        p.prefetch_at, p.hinted = now, True
        heapq.heappush(self.due, (now, pid))
        self.counts["hinted"] += 1
        return PREFETCH_ISSUED

    def prefetched(self, request_id: str) -> tuple[str, float] | None:
        """A prefetch finished: (its program, seconds to pin its blocks) or None (not a live prefetch)."""
        pid = self.inflight.pop(request_id, None)
        p = self.parked.get(pid) if pid is not None else None
        if p is None or p.request_id != request_id:
            return None
        p.done = True
        wait = max(p.returns_at - p.prefetch_at, HINT_WAIT_S if p.hinted else 0.0)
        return pid, wait + PREFETCH_SLACK_S

    def returned(self, pid: str, pinned: bool) -> None:
        """The program's next turn arrived (``pinned``: its KV is pinned in GPU memory now)."""
        p = self.parked.pop(pid, None)
        if p is not None:
            self.returning.add(pid)  # ordered as a pinned program's return: the rule priced it so
        if p is None or p.request_id is None:
            return
        key = "late" if not p.done else "in_time" if pinned else "wasted"
        self.counts[key] += 1
        self.inflight.pop(p.request_id, None)

    def admitted(self, pid: str) -> None:
        self.returning.discard(pid)

    def forget(self, pid: str) -> None:
        """The program ended (or was parked again): a prefetch it had is wasted."""
        self.returning.discard(pid)
        p = self.parked.pop(pid, None)
        if p is not None and p.request_id is not None:
            self.counts["wasted"] += 1
            self.inflight.pop(p.request_id, None)

    def state(self) -> dict:
        return {"h2d_gbps": self.link.h2d_bytes_per_s / 1e9, "bytes_per_token": self.bytes_per_token,
                "cpu_price": self.cpu_price, "prefetch": self.prefetch, "parked_now": len(self.parked),
                **self.counts}


def is_prefetch(request_id: str) -> bool:
    return request_id.startswith(PREFETCH_PREFIX)
