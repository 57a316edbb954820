"""Balance scheduling across data-parallel ranks that step in lockstep (the ``balance`` policy kind).

Data-parallel ranks of a mixture-of-experts model run each forward pass together (the experts' all-to-all), so
a step lasts as long as the slowest rank's batch: one rank's prefill stalls every other rank's decodes. When a
rank's running queue is nearly full it cannot admit anyway, and what its peers admit meanwhile only lengthens
the steps its own decodes wait on. ``any-full`` (vllm-ascend's balance scheduling) therefore holds new
admissions on every rank while any rank's running queue is within ``headroom`` requests of ``max_num_seqs``;
running requests, and waiting requests that already hold KV blocks, keep going.

How this differs from vLLM 0.32's own DP prefill balancing (``--prefill-schedule-interval N``: the engine core
passes ``schedule(throttle_prefills=True)`` on steps whose lockstep counter is not a multiple of N): vLLM bunches
every rank's prefills onto the same steps by the clock, with no information about the other ranks, and stops
throttling a rank that is capacity bound. ``any-full`` reacts to the other ranks' load instead and holds only
while one of them is saturated. The two compose: this component wraps ``schedule()`` and passes vLLM's
``throttle_prefills`` through untouched, so ``--prefill-schedule-interval`` still works underneath.

Counts travel through `continuum.sched.rank_board` (never a collective inside ``schedule()``). The hold is vLLM's
own ``PAUSED_NEW`` scheduler state for the one ``schedule()`` call, so nothing of ``schedule()`` is copied; the
scheduler sets and clears it (``ContinuumMixin.hold_admissions``), the component only asks for it.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Callable, Iterator

from continuum.policy.config import ContinuumConfig
from continuum.sched.rank_board import LocalBoard, RankBoard, SharedBoard, counts_path
from continuum.sched.view import SchedulerView

log = logging.getLogger(__name__)
# Holds new admissions for the ``with`` block; says whether it did (not when vLLM was paused already).
Hold = Callable[[], contextlib.AbstractContextManager[bool]]


class NoBalance:
    """Every rank admits on its own (vLLM's behaviour)."""

    enabled = False
    holds = 0

    def gate(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def publish(self) -> None:
        pass

    def attach(self, board: RankBoard, rank: int) -> None:
        pass

    def close(self) -> None:
        pass

    def state(self) -> dict:
        return {"mode": "off"}


class AnyFullBalance(NoBalance):
    """Hold new admissions on this rank while any rank's running queue is nearly full."""

    enabled = True

    def __init__(self, cfg: ContinuumConfig, view: SchedulerView, hold: Hold, board: RankBoard | None = None,
                 rank: int = 0) -> None:
        self.view = view
        self.hold = hold
        self.headroom = cfg.knob("any-full.headroom")
        self.board: RankBoard = board or LocalBoard(1)
        self.rank = rank
        self.holds = 0  # steps this rank held its admissions
        self.steps = 0

    def attach(self, board: RankBoard, rank: int) -> None:
        """Share counts through ``board`` as rank ``rank`` (the simulator and tests; live ranks build their own)."""
        self.board.close()
        self.board, self.rank = board, rank

    def publish(self) -> None:
        self.board.publish(self.rank, len(self.view.running_requests()))

    def full(self) -> bool:
        limit = self.view.max_num_running_reqs - self.headroom
        return max(self.board.counts()) >= limit

    @contextlib.contextmanager
    def gate(self) -> Iterator[None]:
        """Around one ``schedule()``: post this rank's count, then hold admissions if any rank is full."""
        self.publish()
        self.steps += 1
        try:
            if self.full():
                with self.hold() as held:
                    self.holds += int(held)
                    yield
            else:
                yield
        finally:
            self.publish()

    def close(self) -> None:
        self.board.close()

    def state(self) -> dict:
        return {"mode": "any-full", "rank": self.rank, "headroom": self.headroom, "counts": self.board.counts(),
                "held_steps": self.holds, "steps": self.steps}


def make_balance(cfg: ContinuumConfig, view: SchedulerView, hold: Hold, rank: int, size: int) -> NoBalance:
    """The balance component the config names, as data-parallel rank ``rank`` of ``size``."""
    if cfg.balance == "off":
        return NoBalance()
    if size > 1 and cfg.control_addr:
        return AnyFullBalance(cfg, view, hold, SharedBoard(counts_path(cfg.control_addr), rank, size), rank)
    if size > 1:
        log.warning("balance scheduling without a control address: ranks cannot see each other's counts")
    return AnyFullBalance(cfg, view, hold)
