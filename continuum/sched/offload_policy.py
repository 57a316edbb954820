"""Program-aware eviction for vLLM's CPU KV tier: a cache policy for vLLM's own ``CPUOffloadingManager``.

vLLM 0.32 lets the offloading connector's CPU manager load an out-of-tree cache policy
(``kv_connector_extra_config``: ``"eviction_policy": "ProgramAwarePolicy"``, ``"cache_policy_module_path":
"continuum.sched.offload_policy"``; read at vllm/v1/kv_offload/cpu/spec.py:134-137, loaded by
``CachePolicyFactory``, built as ``cls(cache_capacity=num_chunks)``). `ProgramAwarePolicy` is that policy. When
the CPU tier is full it evicts, in order:

1. chunks of programs that have ended (no live program stored or reused them);
2. chunks of live programs, the program predicted to return last first;
3. chunks of no known program (requests without a session id, or a scheduler that does not say);

least recently used first inside each class (recency as vLLM's LRU keeps it: a chunk's rank is refreshed when it
is stored and when a request that used it finishes, the prefix's head newest).

How a chunk's program is learnt: the policy's hooks receive vLLM's ``ReqContext``, which carries the request id
but not the session id. The Continuum scheduler, which reads the program from ``request.session_id``, says which
request belongs to which program (`ProgramAwarePolicy.request_program`, at arrival); the hooks that see a
request's chunks (``on_store_miss`` before they are inserted, ``on_request_finished`` for every chunk the request
stored or reused) then give each chunk its program. This needs nothing from the client and no knowledge of how
vLLM forms offload keys (chunk sizes, group indices), which mapping block hashes to keys would.

A chunk several programs used (a shared prefix) ranks with the live program that used it last; when that one
ends it moves to another live user (the one expected back soonest), and to the ended class only when none is left.

Cost, for N chunks in the tier and G live programs holding evictable chunks: a store or a request's finish is
O(k log N) for its k chunks (one push each on a lazy heap, like vLLM's LRU); a program's end is O(k log N) for the
k chunks it held; an eviction of n chunks orders the live programs once, O(G log G), then pops O(n + p + s) heap
entries at O(log N) each (p protected chunks passed over, s stale entries, kept below half a heap by compaction).
No eviction sorts the chunks.

The policy lives in vLLM's scheduler process, built inside the ``Scheduler``'s constructor (the connector's
scheduler side builds the manager, which builds the policy) with no handle the scheduler may read: a policy
announces itself to `policies_built`, the block the Continuum scheduler wraps its constructor in, and
`ProgramFeed` then tells it each program's arrivals, predicted returns and end.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from vllm.v1.kv_offload.base import OffloadKey, ReqContext
from vllm.v1.kv_offload.cpu.policies.base import CachePolicy, ChunkStatus, order_request_keys
from vllm.v1.request import Request

from continuum.sched.programs import Program, program_id_of

POLICY_NAME = "ProgramAwarePolicy"  # kv_connector_extra_config["eviction_policy"]
POLICY_MODULE = "continuum.sched.offload_policy"  # kv_connector_extra_config["cache_policy_module_path"]
ENDED = "\0ended"  # the group of chunks no live program uses (program ids are client strings: no NUL)
UNKNOWN = "\0unknown"  # the group of chunks of no known program
COMPACT_MIN = 64  # a group's heap is rebuilt when it holds more than twice its live entries, and at least this

Entry = tuple[int, OffloadKey]  # (recency rank, key): a heap entry, current while the rank and home still match


@dataclass
class Group:
    """The chunks one class or program holds: all of them, and a lazy min-heap of the evictable ones by rank."""

    members: set[OffloadKey] = field(default_factory=set)
    heap: list[Entry] = field(default_factory=list)
    evictable: int = 0


class ProgramAwarePolicy(CachePolicy):
    """vLLM's CachePolicy interface; evicts ended programs' chunks, then the latest-returning programs'."""

    def __init__(self, cache_capacity: int) -> None:
        super().__init__(cache_capacity)
        self.chunks: dict[OffloadKey, ChunkStatus] = {}
        self.ranks: dict[OffloadKey, int] = {}
        self.next_rank = 0
        self.evictable: set[OffloadKey] = set()
        self.home: dict[OffloadKey, str] = {}  # key -> its group: a live program's id, ENDED or UNKNOWN
        self.owners: dict[OffloadKey, set[str]] = {}  # key -> programs that stored or reused it
        self.groups: dict[str, Group] = {ENDED: Group(), UNKNOWN: Group()}
        self.incoming: dict[OffloadKey, str] = {}  # a store miss's program, until insert() (or the request's end)
        # Program facts, told by the scheduler; they outlive clear(), which drops only the cache's contents.
        self.requests: dict[str, str] = {}  # request id -> program id, until the request's finish reaches us
        self.returns: dict[str, float] = {}  # live program -> predicted return (scheduler clock)
        announce(self)

    # -- program facts (the scheduler's side) -----------------------------------------------------------------
    def request_program(self, req_id: str, program_id: str) -> None:
        """The request belongs to the program (its chunks will be the program's); the program is live."""
        self.requests[req_id] = program_id
        self.returns.setdefault(program_id, -math.inf)  # back now until a prediction says otherwise

    def program_returns(self, program_id: str, at: float) -> None:
        """The program is live and its next turn is expected at ``at`` (now, while a turn is in flight)."""
        self.returns[program_id] = at

    def program_ended(self, program_id: str) -> None:
        """The program is over: its chunks go to another live user, else to the ended class, evicted first."""
        if self.returns.pop(program_id, None) is None:
            return
        group = self.groups.pop(program_id, None)
        for key in group.members if group is not None else ():
            del self.home[key]
            self._place(key, self._settle(key))

    # -- vLLM's CachePolicy interface -------------------------------------------------------------------------
    def get(self, key: OffloadKey) -> ChunkStatus | None:
        return self.chunks.get(key)

    def insert(self, key: OffloadKey, chunk: ChunkStatus, req_context: ReqContext | None = None) -> None:
        self.chunks[key] = chunk
        if chunk.ref_cnt == 0:
            self.evictable.add(key)
        program = self.incoming.pop(key, None)
        if program is None and req_context is not None:  # vLLM 0.33+ names the storing request (`compat`)
            program = self.requests.get(req_context.req_id)
        if program is not None:
            self.owners.setdefault(key, set()).add(program)
        self._refresh(key, self._settle(key, program))

    def remove(self, key: OffloadKey) -> None:
        del self.chunks[key]
        self._forget(key)

    def touch(self, keys: Iterable[OffloadKey], req_context: ReqContext) -> None:
        program = self.requests.get(req_context.req_id)
        for key in reversed(list(keys)):
            self._use(key, program)

    def on_store_miss(self, keys: Iterable[OffloadKey], req_context: ReqContext) -> None:
        """The keys are about to be inserted (vLLM 0.32 calls insert() without a context): note their program."""
        program = self.requests.get(req_context.req_id)
        if program is not None:
            for key in keys:
                self.incoming[key] = program

    def on_request_finished(self, key_groups: Sequence[Sequence[OffloadKey]], insertion_only_keys: set[OffloadKey],
                            reused_keys: set[OffloadKey], req_context: ReqContext) -> None:
        """Every chunk the request stored or reused is its program's, and recent (the prefix's head newest, as
        vLLM's LRU ranks it). vLLM's last call for a request: its program mapping goes."""
        del insertion_only_keys, reused_keys
        program = self.requests.pop(req_context.req_id, None)
        for key in reversed(order_request_keys(key_groups, req_context)):
            self.incoming.pop(key, None)
            self._use(key, program)

    def evict(self, n: int, protected: set[OffloadKey]) -> list[tuple[OffloadKey, ChunkStatus]] | None:
        """Exactly ``n`` evictable chunks outside ``protected``, in the class order, or None and no change."""
        if n <= 0:
            return []
        if n > len(self.evictable):
            return None
        selected: list[tuple[Entry, str]] = []
        deferred: list[tuple[Entry, str]] = []
        chosen: set[OffloadKey] = set()
        for tier in self._tiers():
            self._take(tier, n, protected, selected, deferred, chosen)
            if len(selected) == n:
                break
        for entry, gid in deferred:
            heapq.heappush(self.groups[gid].heap, entry)
        if len(selected) < n:
            for entry, gid in selected:
                heapq.heappush(self.groups[gid].heap, entry)
            return None
        evicted = []
        for (_, key), _gid in selected:
            evicted.append((key, self.chunks.pop(key)))
            self._forget(key)
        return evicted

    def clear(self) -> None:
        self.chunks.clear()
        self.ranks.clear()
        self.evictable.clear()
        self.home.clear()
        self.owners.clear()
        self.incoming.clear()
        self.groups = {ENDED: Group(), UNKNOWN: Group()}
        self.next_rank = 0

    def mark_evictable(self, key: OffloadKey) -> None:
        if key in self.evictable:
            return
        self.evictable.add(key)
        group = self.groups[self.home[key]]
        group.evictable += 1
        self._push(group, key)

    def mark_non_evictable(self, key: OffloadKey) -> None:
        self.evictable.remove(key)  # its heap entry turns stale
        self.groups[self.home[key]].evictable -= 1

    # -- chunks and their groups ------------------------------------------------------------------------------
    def _use(self, key: OffloadKey, program: str | None) -> None:
        """A request of ``program`` used the chunk: it becomes that program's (if live) and the most recent."""
        if key not in self.chunks:
            return
        if program is not None:
            self.owners.setdefault(key, set()).add(program)
        self._refresh(key, self._settle(key, program))

    def _settle(self, key: OffloadKey, preferred: str | None = None) -> str:
        """The chunk's group: ``preferred`` if live, else the live user expected back soonest, else ENDED when
        it had users, else UNKNOWN. Users that ended are forgotten on the way."""
        if preferred is not None and preferred in self.returns:
            return preferred
        owners = self.owners.get(key)
        if not owners:
            return UNKNOWN
        live = {p for p in owners if p in self.returns}
        self.owners[key] = live
        return min(live, key=self.returns.__getitem__) if live else ENDED

    def _refresh(self, key: OffloadKey, gid: str) -> None:
        """Give the chunk the newest rank, in group ``gid``."""
        self.next_rank += 1
        self.ranks[key] = self.next_rank
        old = self.home.get(key)
        if old != gid:
            if old is not None:
                self._leave(key, old)
            self._place(key, gid)
        elif key in self.evictable:
            self._push(self.groups[gid], key)

    def _place(self, key: OffloadKey, gid: str) -> None:
        """Put a chunk (with no group now) into group ``gid``, which is made for a live program when new."""
        group = self.groups.get(gid)
        if group is None:
            group = self.groups[gid] = Group()
        self.home[key] = gid
        group.members.add(key)
        if key in self.evictable:
            group.evictable += 1
            self._push(group, key)

    def _leave(self, key: OffloadKey, gid: str) -> None:
        group = self.groups.get(gid)
        if group is None:
            return
        group.members.discard(key)
        if key in self.evictable:
            group.evictable -= 1

    def _forget(self, key: OffloadKey) -> None:
        """The chunk left the tier (evicted, or its store failed)."""
        gid = self.home.pop(key, None)
        if gid is not None:
            self._leave(key, gid)
        self.evictable.discard(key)
        self.ranks.pop(key, None)
        self.owners.pop(key, None)

    def _push(self, group: Group, key: OffloadKey) -> None:
        heapq.heappush(group.heap, (self.ranks[key], key))
        if len(group.heap) > max(COMPACT_MIN, 2 * group.evictable):  # drop stale entries: O(heap), amortised O(1)
            group.heap = [(self.ranks[k], k) for k in {k for _, k in group.heap}
                          if k in self.evictable and self.groups.get(self.home[k]) is group]
            heapq.heapify(group.heap)

    # -- eviction order ---------------------------------------------------------------------------------------
    def _tiers(self) -> list[list[str]]:
        """Groups in eviction order; groups in one tier are merged by recency. Ended first, then live programs
        by predicted return, latest first (equal predictions share a tier), then chunks of no known program."""
        live = sorted((gid for gid, g in self.groups.items() if gid in self.returns and g.evictable),
                      key=lambda gid: -self.returns[gid])
        tiers: list[list[str]] = [[ENDED]]
        for gid in live:
            if len(tiers) > 1 and self.returns[tiers[-1][0]] == self.returns[gid]:
                tiers[-1].append(gid)
            else:
                tiers.append([gid])
        tiers.append([UNKNOWN])
        return tiers

    def _current(self, entry: Entry, gid: str) -> bool:
        rank, key = entry
        return key in self.evictable and self.ranks.get(key) == rank and self.home.get(key) == gid

    def _next_entry(self, gid: str) -> Entry | None:
        """Pop the group's least recent evictable entry (stale ones are dropped on the way)."""
        heap = self.groups[gid].heap
        while heap:
            entry = heapq.heappop(heap)
            if self._current(entry, gid):
                return entry
        return None

    def _take(self, tier: list[str], n: int, protected: set[OffloadKey], selected: list[tuple[Entry, str]],
             deferred: list[tuple[Entry, str]], chosen: set[OffloadKey]) -> None:
        """Pop the tier's chunks, least recent first across its groups, until ``selected`` holds ``n``."""
        heads = [(entry, gid) for gid in tier if (entry := self._next_entry(gid)) is not None]
        heapq.heapify(heads)
        while heads and len(selected) < n:
            entry, gid = heapq.heappop(heads)
            key = entry[1]
            if key not in chosen:  # an entry pushed twice at one rank is one chunk
                (deferred if key in protected else selected).append((entry, gid))
                if key not in protected:
                    chosen.add(key)
            following = self._next_entry(gid)
            if following is not None:
                heapq.heappush(heads, (following, gid))
        for entry, gid in heads:
            heapq.heappush(self.groups[gid].heap, entry)


# -- how the scheduler finds the policy --------------------------------------------------------------------------
_collectors = threading.local()


def announce(policy: ProgramAwarePolicy) -> None:
    """A policy was built: the innermost `policies_built` block of this thread (if any) receives it."""
    stack = getattr(_collectors, "stack", None)
    if stack:
        stack[-1].append(policy)


@contextlib.contextmanager
def policies_built() -> Iterator[list[ProgramAwarePolicy]]:
    """The program-aware policies built inside the block, in this thread: wrapped around the scheduler's
    constructor, the one its own offloading connector uses (vLLM keeps the instance in the manager's private
    ``_policy`` and offers no public handle)."""
    stack = getattr(_collectors, "stack", None)
    if stack is None:
        stack = _collectors.stack = []
    found: list[ProgramAwarePolicy] = []
    stack.append(found)
    try:
        yield found
    finally:
        stack.pop()


class ProgramFeed:
    """What the scheduler tells its program-aware CPU policies (none when its tier uses another policy)."""

    def __init__(self, policies: Sequence[ProgramAwarePolicy]) -> None:
        self.policies = list(policies)

    def arrive(self, request: Request, prog: Program | None, now: float) -> None:
        """A turn arrived: its request's chunks are its program's, which is back now."""
        pid = program_id_of(request)
        if pid is None or not self.policies:
            return
        for policy in self.policies:
            policy.request_program(request.request_id, pid)
        if prog is not None:
            self.update(prog, now)

    def update(self, prog: Program, now: float) -> None:
        """The program's state changed (a turn arrived or finished, or it ended): its class and predicted return.

        A program with a turn in flight is back now. After a turn it is expected back one turn cycle after that
        turn's finish: the predicted remaining time over the predicted remaining turns (`kvttl.ProgramWork`)."""
        if not self.policies:
            return
        for policy in self.policies:
            if prog.ended:
                policy.program_ended(prog.program_id)
            else:
                policy.program_returns(prog.program_id, predicted_return(prog, now))


def predicted_return(prog: Program, now: float) -> float:
    """When the program's next turn is expected, in the scheduler's clock."""
    if prog.running or prog.last_finish is None:
        return now
    pred = prog.prediction
    cycle = pred.seconds / max(pred.turns, 1.0) if pred is not None else 0.0
    return prog.last_finish + cycle
