"""KV pins over vLLM's block pool: a finished turn's full, hashed blocks stay referenced until released.

A pin is one extra reference per block (`BlockPool.touch`), so a pinned block is neither free nor evictable;
releasing drops that reference (`BlockPool.free_blocks`) and the block becomes an ordinary prefix-cache entry
again (evictable LRU, still a hit until evicted). Which blocks, until when, and who yields under pressure is
kvttl's `PinTable`; block handles are block ids. With tenants (`continuum.tenancy`), each tenant's pins may
hold at most a share of the budget: the tenant is read from the program id the HTTP layer qualified.
"""

from __future__ import annotations

from typing import Callable, Iterable

from vllm.v1.core.block_pool import BlockPool
from vllm.v1.request import Request

from continuum.tenancy import quota_blocks, tenant_of_program
from kvttl import PinTable


class KVPins:
    def __init__(self, block_pool: BlockPool, cap_blocks: int,
                 on_change: Callable[[str], None] = lambda program_id: None, tenant_share: float = 1.0) -> None:
        """``tenant_share``: the fraction of ``cap_blocks`` one tenant's pins may hold (1: no quota)."""
        self.pool = block_pool
        # The per-replica quota of a cluster-wide share: `continuum.tenancy.quota_blocks` says why this rule.
        self.table = PinTable(cap_blocks, quota_blocks(tenant_share, cap_blocks))
        self.on_change = on_change  # told the program id whenever a pin is taken or released

    def __contains__(self, program_id: str) -> bool:
        return program_id in self.table

    @property
    def pinned_blocks(self) -> int:
        return self.table.pinned_blocks

    def pin(self, program_id: str, block_ids: list[int], now: float, ttl_s: float, benefit: float,
            arrival_order: int) -> int:
        """Pin these blocks for the program (replacing its old pin); returns how many blocks are pinned."""
        result = self.table.pin(program_id, block_ids, now, ttl_s, benefit=benefit, arrival_order=arrival_order,
                                group=tenant_of_program(program_id))
        self.pool.touch([self.pool.blocks[b] for b in result.pinned])
        self._unref(result.released)
        self.on_change(program_id)
        return len(result.pinned)

    def release(self, program_id: str, reason: str) -> int:
        blocks = self.table.release(program_id, reason)
        self._unref(blocks)
        if blocks:
            self.on_change(program_id)
        return len(blocks)

    def expire(self, now: float) -> int:
        return self._unref_all(self.table.expire(now))

    def relieve_pressure(self, exclude: Iterable[str] = ()) -> int:
        """Release the least valuable pin (not one of ``exclude``); returns blocks released, 0 if none."""
        return self._unref_all(self.table.release_for_pressure(1, exclude=exclude))

    def clear(self, reason: str) -> int:
        return self._unref_all(self.table.clear(reason))

    def _unref_all(self, released: list[tuple[str, list[int]]]) -> int:
        for program_id, blocks in released:
            self._unref(blocks)
            self.on_change(program_id)
        return sum(len(blocks) for _, blocks in released)

    def _unref(self, block_ids: list[int]) -> None:
        if block_ids:
            # Tail blocks first: under LRU they are the cheapest to lose (a shorter prefix still hits).
            self.pool.free_blocks([self.pool.blocks[b] for b in reversed(block_ids)])


def pinnable_blocks(request: Request, block_ids: list[int], pool: BlockPool) -> list[int]:
    """The request's full blocks that carry a prefix-cache hash (partial blocks cannot be hit)."""
    out = []
    for block_id in block_ids:
        block = pool.blocks[block_id]
        if block.is_null or block.block_hash is None:
            break  # hashes cover a prefix; nothing after a gap can be hit
        out.append(block_id)
    return out
