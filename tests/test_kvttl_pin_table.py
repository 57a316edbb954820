"""Pin table: cap, expiry, releases, pressure victims, counters, and invariants."""

import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvttl import PinTable


def test_pin_and_release_on_hit():
    t = PinTable(cap_blocks=10)
    r = t.pin("p1", ["a", "b", "c"], now=0.0, ttl_s=2.0, benefit=1.0, arrival_order=0)
    assert r.pinned == ["a", "b", "c"] and r.released == [] and r.refused == []
    assert "p1" in t and len(t) == 1 and t.pinned_blocks == 3
    info = t.get("p1")
    assert info.blocks == ("a", "b", "c") and info.expires_at == 2.0 and info.ttl_s == 2.0
    assert t.release("p1", "hit") == ["a", "b", "c"]
    assert t.release("p1", "hit") == []  # nothing left: no double release
    assert t.counters["hit"] == 1 and t.counters["created"] == 1
    assert len(t) == 0 and t.pinned_blocks == 0


def test_expiry_in_order():
    t = PinTable(100)
    t.pin("late", [1], now=0.0, ttl_s=5.0)
    t.pin("early", [2], now=0.0, ttl_s=1.0)
    t.pin("forever", [3], now=0.0, ttl_s=math.inf)
    assert t.next_expiry() == 1.0
    assert t.expire(0.5) == []
    assert t.expire(1.0) == [("early", [2])]  # expiry <= now
    assert t.expire(100.0) == [("late", [1])]
    assert t.programs() == ["forever"]
    assert t.next_expiry() is None
    assert t.counters["expired"] == 2


def test_repin_replaces_the_old_pin():
    t = PinTable(100)
    t.pin("p", ["a", "b"], now=0.0, ttl_s=1.0)
    r = t.pin("p", ["a", "b", "c"], now=1.0, ttl_s=3.0)
    assert r.released == ["a", "b"] and r.pinned == ["a", "b", "c"]
    assert t.get("p").expires_at == 4.0
    assert t.expire(2.0) == []  # the old expiry entry is stale
    assert t.counters["replaced"] == 1
    r = t.pin("p", ["x"], now=2.0, ttl_s=0.0)  # TTL 0: drop the pin, pin nothing
    assert r.released == ["a", "b", "c"] and r.pinned == [] and "p" not in t


def test_cap_truncates_to_a_prefix_or_refuses():
    t = PinTable(cap_blocks=4)
    t.pin("p1", ["a", "b", "c"], now=0.0, ttl_s=1.0)
    r = t.pin("p2", ["a", "x", "y"], now=0.0, ttl_s=1.0)  # "a" is already held: free
    assert r.pinned == ["a", "x"] and r.refused == ["y"] and r.truncated
    assert t.pinned_blocks == 4 and t.pinned_refs == 5
    r = t.pin("p3", ["z"], now=0.0, ttl_s=1.0)
    assert r.pinned == [] and r.refused == ["z"] and "p3" not in t
    assert t.counters["truncated"] == 1 and t.counters["refused"] == 1


def test_shared_blocks_are_returned_once_per_pin():
    t = PinTable(10)
    t.pin("p1", ["sys", "a"], now=0.0, ttl_s=1.0)
    t.pin("p2", ["sys", "b", "b"], now=0.0, ttl_s=1.0)  # duplicate handle pinned once
    assert t.get("p2").blocks == ("sys", "b")
    assert t.holders("sys") == 2
    assert t.release("p1", "end") == ["sys", "a"]
    assert t.holders("sys") == 1 and t.pinned_blocks == 2
    assert t.release("p2", "abort") == ["sys", "b"]
    assert t.counters["released_end"] == 1 and t.counters["released_abort"] == 1


def test_pressure_victims_lowest_benefit_then_latest_arrival():
    t = PinTable(100)
    t.pin("old-low", [1, 2], now=0.0, ttl_s=9.0, benefit=1.0, arrival_order=0)
    t.pin("new-low", [3, 4], now=0.0, ttl_s=9.0, benefit=1.0, arrival_order=5)
    t.pin("high", [5, 6], now=0.0, ttl_s=9.0, benefit=9.0, arrival_order=9)
    assert t.release_for_pressure(0) == []
    assert t.release_for_pressure(1) == [("new-low", [3, 4])]
    assert t.release_for_pressure(3) == [("old-low", [1, 2]), ("high", [5, 6])]
    assert t.release_for_pressure(1) == []
    assert t.counters["released_pressure"] == 3


def test_pressure_counts_only_blocks_it_frees_and_spares_excluded():
    t = PinTable(100)
    t.pin("a", ["s", "x"], now=0.0, ttl_s=9.0, benefit=0.0, arrival_order=0)
    t.pin("b", ["s", "y"], now=0.0, ttl_s=9.0, benefit=1.0, arrival_order=1)
    t.pin("c", ["z"], now=0.0, ttl_s=9.0, benefit=2.0, arrival_order=2)
    # Dropping "a" frees only "x" ("s" is still held by "b"), so "b" goes too.
    out = t.release_for_pressure(2, exclude=["c"])
    assert [pid for pid, _ in out] == ["a", "b"]
    assert t.programs() == ["c"]


def test_clear_and_set_cap_and_reasons():
    t = PinTable(10)
    t.pin("a", [1, 2, 3], now=0.0, ttl_s=1.0, benefit=1.0)
    t.pin("b", [4, 5], now=0.0, ttl_s=1.0, benefit=2.0)
    assert t.set_cap(2) == [("a", [1, 2, 3])]
    assert t.cap_blocks == 2 and t.pinned_blocks == 2
    assert t.clear() == [("b", [4, 5])]
    assert t.counters["released_reset"] == 1
    with pytest.raises(ValueError):
        t.release("b", "bored")
    with pytest.raises(ValueError):
        t.pin("c", [1], now=math.nan, ttl_s=1.0)
    assert t.state()["pins"] == 0


def test_peak_blocks():
    t = PinTable(10)
    t.pin("a", [1, 2, 3], now=0.0, ttl_s=1.0)
    t.pin("b", [3, 4], now=0.0, ttl_s=1.0)
    t.release("a", "hit")
    assert t.counters["peak_blocks"] == 4


# -- property test: random operation sequences ----------------------------------------

PROGRAMS = [f"p{i}" for i in range(6)]
BLOCK = st.integers(0, 15)
op = st.one_of(
    st.tuples(
        st.just("pin"),
        st.sampled_from(PROGRAMS),
        st.lists(BLOCK, max_size=8),
        st.sampled_from([0.0, 0.5, 1.0, 3.0, math.inf]),
        st.floats(0, 10, allow_nan=False),
    ),
    st.tuples(st.just("release"), st.sampled_from(PROGRAMS), st.sampled_from(["hit", "end", "abort", "pressure"])),
    st.tuples(st.just("advance"), st.floats(0, 2, allow_nan=False)),
    st.tuples(st.just("pressure"), st.integers(0, 10)),
    st.tuples(st.just("clear")),
)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.integers(0, 12), st.lists(op, max_size=40))
def test_random_sequences_keep_the_invariants(cap, ops):
    t = PinTable(cap)
    now = 0.0
    held: dict[str, list] = {}  # what the caller believes each pin references
    refs: Counter = Counter()  # the caller's per-block reference counts
    arrival = {pid: i for i, pid in enumerate(PROGRAMS)}

    def take(pid, blocks):
        assert len(blocks) == len(set(blocks)), "a pin reported a block twice"
        held[pid] = list(blocks)
        refs.update(blocks)

    def drop(pid, blocks):
        assert held.pop(pid) == blocks, "released blocks differ from the pinned ones"
        refs.subtract(blocks)
        assert min(refs.values(), default=0) >= 0, "a block was released too often"

    def check():
        assert t.pinned_blocks <= cap
        assert set(t.programs()) == set(held)
        assert t.pinned_blocks == sum(1 for c in refs.values() if c > 0)
        for pid, blocks in held.items():
            info = t.get(pid)
            assert list(info.blocks) == blocks
            assert info.expires_at > now  # nothing outlives its expiry once expire() ran

    for o in ops:
        kind = o[0]
        if kind == "pin":
            _, pid, blocks, ttl, benefit = o
            r = t.pin(pid, blocks, now=now, ttl_s=ttl, benefit=benefit, arrival_order=arrival[pid])
            if r.released:
                drop(pid, r.released)
            elif pid in held:  # a re-pin of a program whose pin had no blocks cannot happen
                raise AssertionError("old pin not reported")
            if r.pinned:
                take(pid, r.pinned)
            assert r.pinned + r.refused == list(dict.fromkeys(blocks))
        elif kind == "release":
            _, pid, reason = o
            had = pid in held
            out = t.release(pid, reason)
            assert bool(out) == had
            if had:
                drop(pid, out)
        elif kind == "advance":
            now += o[1]
            for pid, blocks in t.expire(now):
                drop(pid, blocks)
        elif kind == "pressure":
            before = t.pinned_blocks
            out = t.release_for_pressure(o[1])
            for pid, blocks in out:
                drop(pid, blocks)
            freed = before - t.pinned_blocks
            assert freed >= o[1] or len(t) == 0 or o[1] <= 0
        else:
            for pid, blocks in t.clear("reset"):
                drop(pid, blocks)
        check()

    # Every program ends: the table is empty and every reference is back to zero.
    for pid in PROGRAMS:
        out = t.release(pid, "end")
        if out:
            drop(pid, out)
    assert len(t) == 0 and t.pinned_blocks == 0 and t.pinned_refs == 0
    assert held == {} and all(c == 0 for c in refs.values())
    assert t.counters["peak_blocks"] <= cap
