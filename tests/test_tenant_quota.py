"""The per-tenant pin quota: one tenant's pins hold at most a share of the pin budget; others still get theirs."""

from __future__ import annotations

import pytest

from continuum.policy.config import ContinuumConfig
from continuum.sched.scheduler import ContinuumScheduler
from continuum.tenancy import qualify, tenant_of_key
from continuum_eval.sim.engine.vllm_offline import build_scheduler, make_request, run_step
from kvttl import PinTable

T1, T2 = tenant_of_key("key-1"), tenant_of_key("key-2")


def test_a_group_is_held_to_its_quota_and_others_are_not():
    table = PinTable(cap_blocks=10, group_cap_blocks=4)
    assert table.pin("a", range(0, 3), 0.0, 5.0, group="g1").pinned == [0, 1, 2]
    r = table.pin("b", range(10, 13), 0.0, 5.0, group="g1")
    assert r.pinned == [10] and r.refused == [11, 12]  # truncated to the group's last free block
    assert table.pin("c", range(20, 22), 0.0, 5.0, group="g1").pinned == []
    assert table.group_blocks("g1") == 4 and table.counters["quota_limited"] == 2
    assert table.pin("d", range(30, 34), 0.0, 5.0, group="g2").pinned == [30, 31, 32, 33]
    assert table.pin("e", range(40, 42), 0.0, 5.0).pinned == [40, 41]  # no group, no quota: only the cap
    assert table.pinned_blocks == 10


def test_blocks_a_group_already_holds_do_not_count_twice_and_releases_give_room_back():
    table = PinTable(cap_blocks=10, group_cap_blocks=3)
    table.pin("a", [1, 2, 3], 0.0, 5.0, group="g")
    assert table.pin("b", [1, 2, 3], 0.0, 5.0, group="g").pinned == [1, 2, 3]  # a shared prefix
    assert table.group_blocks("g") == 3
    table.release("a", "end")
    assert table.group_blocks("g") == 3  # b still holds them
    table.release("b", "end")
    assert table.group_blocks("g") == 0
    assert table.pin("c", [7, 8, 9], 0.0, 5.0, group="g").pinned == [7, 8, 9]


def test_the_quota_leaves_with_the_pins_on_expiry_pressure_and_reset():
    table = PinTable(cap_blocks=10, group_cap_blocks=3)
    table.pin("a", [1, 2], 0.0, 1.0, group="g")
    table.pin("b", [3], 0.0, 9.0, group="g")
    table.expire(2.0)
    assert table.group_blocks("g") == 1
    table.release_for_pressure(1)
    assert table.group_blocks("g") == 0
    table.pin("c", [4, 5, 6], 0.0, 9.0, group="g")
    table.clear("reset")
    assert table.group_blocks("g") == 0


@pytest.mark.parametrize("share", [0.25, 1.0])
def test_one_tenant_cannot_hold_every_pinned_block_on_the_scheduler(share):
    s = build_scheduler(ContinuumScheduler, num_blocks=81, block_size=32,
                        continuum_config=ContinuumConfig(ttl_mode="preserve", pin_cap=0.5, tenant_pin_cap=share))
    s.clock = lambda: 0.0
    budget = s.pins.table.cap_blocks  # 40
    for i in range(5):  # tenant 1: five programs of four blocks each
        s.add_request(make_request(f"r{i}", list(range(1000 * (i + 1), 1000 * (i + 1) + 128)), 2,
                                   session_id=qualify(T1, f"agent-{i}")))
    s.add_request(make_request("other", list(range(90_000, 90_128)), 2, session_id=qualify(T2, "agent-0")))
    while s.has_requests():
        run_step(s)
    t1 = s.pins.table.group_blocks(T1)
    if share < 1:
        assert t1 == int(share * budget) == 10
        assert s.pins.table.group_blocks(T2) == 4  # the other tenant still pins its turn
    else:
        assert s.pins.table.group_cap_blocks is None and s.pins.pinned_blocks == 24  # no quota: all 5 + 1 pins
