"""The pin table: which programs' KV blocks are being kept, until when, and at what value.

The table never touches memory itself. Blocks are opaque hashable handles (vLLM
``KVCacheBlock`` objects in the live scheduler, anything in the simulator); the caller
takes one reference for every block a pin reports as ``pinned`` and drops one for every
block any release reports. Each pin holds its own reference to each of its blocks, so a
block shared by two programs' pins (a common prefix) is reported by both, once each,
and no pin ever reports a block twice.

Rules:

- one pin per program: pinning a program again replaces its pin (the old blocks come
  back in :attr:`PinResult.released`);
- a global cap on pinned blocks, counted as distinct blocks (a shared block occupies
  memory once); a pin that does not fit is truncated to the longest prefix of its block
  list that does (a prefix of the context still gives prefix-cache hits), or refused;
- an optional quota per group (a tenant): the distinct blocks one group's pins hold stay
  under ``group_cap_blocks``, so one tenant cannot hold the whole budget; a pin over it is
  truncated or refused like a pin over the global cap;
- expiry in order of ``expires_at`` (a heap with lazy deletion); ``ttl_s = inf`` never
  expires;
- under memory pressure, the victims are the pins with the lowest expected benefit,
  ties going to the latest-arriving program (the one program-first ordering would serve
  last anyway);
- time is always an explicit ``now`` argument (the simulator runs on a virtual clock).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["RELEASE_REASONS", "PinInfo", "PinResult", "PinTable"]

#: Why a pin ends: the program returned and was admitted, it ended, it was aborted,
#: memory was needed, its TTL ran out, the prefix cache was reset, or its KV was parked
#: in a host-memory tier instead (retention learnt it is worth more there).
RELEASE_REASONS = ("hit", "end", "abort", "pressure", "expired", "reset", "park")

_COUNTER_OF_REASON = {
    "hit": "hit",
    "end": "released_end",
    "abort": "released_abort",
    "pressure": "released_pressure",
    "expired": "expired",
    "reset": "released_reset",
    "park": "released_park",
}

_COUNTERS = (
    "created",  # pins created (at least one block pinned)
    "hit",
    "expired",
    "released_end",
    "released_pressure",
    "released_abort",
    "released_reset",
    "released_park",
    "replaced",  # pins replaced by a new pin of the same program
    "truncated",  # pins cut short by the cap
    "refused",  # pins refused entirely by the cap
    "quota_limited",  # pins cut short or refused by their group's quota
    "peak_blocks",  # most distinct blocks pinned at once
)


@dataclass(frozen=True, slots=True)
class PinInfo:
    """A read-only view of one pin."""

    program_id: str
    blocks: tuple[Hashable, ...]
    pinned_at: float
    ttl_s: float
    expires_at: float
    benefit: float
    arrival_order: float


@dataclass(frozen=True, slots=True)
class PinResult:
    """What :meth:`PinTable.pin` did.

    ``pinned``: blocks now held by the new pin (take a reference on each);
    ``released``: blocks of the program's previous pin, no longer held (drop a reference
    on each); ``refused``: offered blocks left unpinned (because of the cap, or because
    the TTL was 0).
    """

    pinned: list[Hashable]
    released: list[Hashable]
    refused: list[Hashable]

    @property
    def truncated(self) -> bool:
        return bool(self.pinned) and bool(self.refused)


class _Pin:
    __slots__ = ("arrival_order", "benefit", "blocks", "expires_at", "group", "pinned_at", "program_id", "seq",
                 "ttl_s")

    def __init__(self, program_id, blocks, pinned_at, ttl_s, expires_at, benefit, arrival_order, seq, group=None):
        self.program_id = program_id
        self.blocks = blocks
        self.pinned_at = pinned_at
        self.ttl_s = ttl_s
        self.expires_at = expires_at
        self.benefit = benefit
        self.arrival_order = arrival_order
        self.seq = seq
        self.group = group

    def info(self) -> PinInfo:
        return PinInfo(
            self.program_id, self.blocks, self.pinned_at, self.ttl_s, self.expires_at, self.benefit, self.arrival_order
        )


def _number(name: str, value: float, *, allow_inf: bool = False) -> float:
    v = float(value)
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return v


class PinTable:
    """Pins keyed by program id, ordered by expiry, bounded by a cap in blocks (and per group by a quota)."""

    def __init__(self, cap_blocks: int, group_cap_blocks: int | None = None) -> None:
        cap = int(cap_blocks)
        if cap < 0:
            raise ValueError(f"cap_blocks must be >= 0, got {cap_blocks!r}")
        if group_cap_blocks is not None and int(group_cap_blocks) < 0:
            raise ValueError(f"group_cap_blocks must be >= 0, got {group_cap_blocks!r}")
        self._cap = cap
        self._group_cap = None if group_cap_blocks is None else int(group_cap_blocks)
        self._pins: dict[str, _Pin] = {}
        self._holders: dict[Hashable, int] = {}  # block -> number of pins holding it
        self._group_holders: dict[Hashable, dict[Hashable, int]] = {}  # group -> its own block -> holders
        self._heap: list[tuple[float, int, str]] = []  # (expires_at, seq, program_id)
        self._seq = 0
        self._counters = dict.fromkeys(_COUNTERS, 0)

    # -- size and lookup -----------------------------------------------------------

    @property
    def cap_blocks(self) -> int:
        return self._cap

    @property
    def group_cap_blocks(self) -> int | None:
        return self._group_cap

    def group_blocks(self, group: Hashable) -> int:
        """Distinct blocks held by the pins of ``group``."""
        return len(self._group_holders.get(group, ()))

    @property
    def pinned_blocks(self) -> int:
        """Distinct blocks held by at least one pin."""
        return len(self._holders)

    @property
    def pinned_refs(self) -> int:
        """Block references held, summed over pins (shared blocks count once per pin)."""
        return sum(len(p.blocks) for p in self._pins.values())

    @property
    def counters(self) -> dict[str, int]:
        """A copy of the counters (see module docstring)."""
        return dict(self._counters)

    def __len__(self) -> int:
        return len(self._pins)

    def __contains__(self, program_id: object) -> bool:
        return program_id in self._pins

    def programs(self) -> list[str]:
        """Program ids with a pin, oldest pin first."""
        return list(self._pins)

    def get(self, program_id: str) -> PinInfo | None:
        """The program's pin, or None."""
        pin = self._pins.get(program_id)
        return pin.info() if pin is not None else None

    def holders(self, block: Hashable) -> int:
        """How many pins hold ``block``."""
        return self._holders.get(block, 0)

    def next_expiry(self) -> float | None:
        """Earliest ``expires_at`` among the pins (None when there is none, or only infinite ones)."""
        heap = self._heap
        while heap and self._stale(heap[0]):
            heapq.heappop(heap)
        if not heap or math.isinf(heap[0][0]):
            return None
        return heap[0][0]

    # -- pinning -------------------------------------------------------------------

    def pin(
        self,
        program_id: str,
        blocks: Iterable[Hashable],
        now: float,
        ttl_s: float,
        benefit: float = 0.0,
        arrival_order: float = 0,
        group: Hashable | None = None,
    ) -> PinResult:
        """Pin ``blocks`` (in context order) for ``program_id`` until ``now + ttl_s``.

        Replaces the program's previous pin, if any. ``ttl_s <= 0`` pins nothing (but
        still drops the previous pin). Duplicate handles in ``blocks`` are pinned once.
        ``group``: the tenant the program belongs to, held to the group quota (None: no quota).
        """
        now = _number("now", now)
        ttl = _number("ttl_s", ttl_s, allow_inf=True)
        benefit = _number("benefit", benefit, allow_inf=True)
        arrival_order = _number("arrival_order", arrival_order)
        offered = list(dict.fromkeys(blocks))
        released: list[Hashable] = []
        if program_id in self._pins:
            released = self._drop(program_id)
            self._counters["replaced"] += 1
        if ttl <= 0 or not offered:
            return PinResult([], released, offered)
        quota = self._group_cap is not None and group is not None
        take, by_quota = self._fit(offered, self._group_holders.get(group, {}) if quota else None)
        if by_quota:
            self._counters["quota_limited"] += 1
        if take == 0:
            self._counters["refused"] += 1
            return PinResult([], released, offered)
        pinned, refused = offered[:take], offered[take:]
        if refused:
            self._counters["truncated"] += 1
        _hold(self._holders, pinned)
        if quota:
            _hold(self._group_holders.setdefault(group, {}), pinned)
        self._seq += 1
        expires_at = now + ttl
        pin = _Pin(program_id, tuple(pinned), now, ttl, expires_at, benefit, arrival_order, self._seq,
                   group if quota else None)
        self._pins[program_id] = pin
        heapq.heappush(self._heap, (expires_at, pin.seq, program_id))
        self._counters["created"] += 1
        self._counters["peak_blocks"] = max(self._counters["peak_blocks"], len(self._holders))
        self._maybe_compact()
        return PinResult(pinned, released, refused)

    def _fit(self, offered: list[Hashable], own: dict[Hashable, int] | None) -> tuple[int, bool]:
        """How many of ``offered`` (a prefix) fit under the cap and, given ``own`` (the group's blocks), under
        the group quota; and whether the quota was what stopped it."""
        room = self._cap - len(self._holders)
        group_room = self._group_cap - len(own) if own is not None else math.inf
        take = 0
        for block in offered:
            new_here, new_to_group = block not in self._holders, own is not None and block not in own
            if (new_here and room <= 0) or (new_to_group and group_room <= 0):
                return take, new_to_group and group_room <= 0 and not (new_here and room <= 0)
            room -= new_here
            group_room -= new_to_group
            take += 1
        return take, False

    # -- releasing -----------------------------------------------------------------

    def release(self, program_id: str, reason: str) -> list[Hashable]:
        """End the program's pin; return its blocks (empty when it had none)."""
        counter = self._counter_for(reason)
        if program_id not in self._pins:
            return []
        blocks = self._drop(program_id)
        self._counters[counter] += 1
        return blocks

    def expire(self, now: float) -> list[tuple[str, list[Hashable]]]:
        """Release every pin whose ``expires_at <= now``, earliest first."""
        now = _number("now", now, allow_inf=True)
        heap = self._heap
        out: list[tuple[str, list[Hashable]]] = []
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if self._stale(entry):
                continue
            pid = entry[2]
            out.append((pid, self._drop(pid)))
            self._counters["expired"] += 1
        return out

    def release_for_pressure(self, blocks_needed: int, exclude: Iterable[str] = ()) -> list[tuple[str, list[Hashable]]]:
        """Release pins, lowest benefit first (ties: latest arrival first), until at least
        ``blocks_needed`` distinct blocks are no longer held by any pin, or no pin is left.

        Programs in ``exclude`` are spared (e.g. the program whose turn is being admitted).
        """
        needed = int(blocks_needed)
        if needed <= 0 or not self._pins:
            return []
        spared = set(exclude)
        victims = sorted(
            (p for p in self._pins.values() if p.program_id not in spared),
            key=lambda p: (p.benefit, -p.arrival_order, -p.seq),
        )
        out: list[tuple[str, list[Hashable]]] = []
        freed = 0
        holders = self._holders
        for pin in victims:
            if freed >= needed:
                break
            freed += sum(1 for b in pin.blocks if holders[b] == 1)
            out.append((pin.program_id, self._drop(pin.program_id)))
            self._counters["released_pressure"] += 1
        return out

    def clear(self, reason: str = "reset") -> list[tuple[str, list[Hashable]]]:
        """Release every pin (e.g. before ``reset_prefix_cache``)."""
        counter = self._counter_for(reason)
        out = []
        for pid in list(self._pins):
            out.append((pid, self._drop(pid)))
            self._counters[counter] += 1
        self._heap.clear()
        return out

    def set_cap(self, cap_blocks: int) -> list[tuple[str, list[Hashable]]]:
        """Change the cap; pins over a lowered cap are released as for pressure."""
        cap = int(cap_blocks)
        if cap < 0:
            raise ValueError(f"cap_blocks must be >= 0, got {cap_blocks!r}")
        self._cap = cap
        return self.release_for_pressure(len(self._holders) - cap)

    def state(self) -> dict[str, Any]:
        """JSON-able summary for a stats endpoint."""
        return {
            "pins": len(self._pins),
            "pinned_blocks": len(self._holders),
            "cap_blocks": self._cap,
            "group_cap_blocks": self._group_cap,
            "counters": dict(self._counters),
        }

    # -- internals -----------------------------------------------------------------

    @staticmethod
    def _counter_for(reason: str) -> str:
        try:
            return _COUNTER_OF_REASON[reason]
        except KeyError:
            raise ValueError(
                f"unknown release reason {reason!r}; expected one of {', '.join(RELEASE_REASONS)}"
            ) from None

    def _stale(self, entry: tuple[float, int, str]) -> bool:
        pin = self._pins.get(entry[2])
        return pin is None or pin.seq != entry[1]

    def _drop(self, program_id: str) -> list[Hashable]:
        pin = self._pins.pop(program_id)
        _unhold(self._holders, pin.blocks)
        if pin.group is not None:
            own = self._group_holders[pin.group]
            _unhold(own, pin.blocks)
            if not own:
                del self._group_holders[pin.group]
        return list(pin.blocks)

    def _maybe_compact(self) -> None:
        # Lazy deletion leaves stale heap entries behind; rebuild when they dominate.
        if len(self._heap) > 2 * len(self._pins) + 64:
            self._heap = [(p.expires_at, p.seq, p.program_id) for p in self._pins.values()]
            heapq.heapify(self._heap)


def _hold(holders: dict[Hashable, int], blocks: Sequence[Hashable]) -> None:
    """Count one more pin holding each of ``blocks``."""
    for block in blocks:
        holders[block] = holders.get(block, 0) + 1


def _unhold(holders: dict[Hashable, int], blocks: Sequence[Hashable]) -> None:
    """Count one pin fewer on each of ``blocks``; a block no pin holds leaves the map."""
    for block in blocks:
        left = holders[block] - 1
        if left:
            holders[block] = left
        else:
            del holders[block]
