"""Soak: 10,000 programs on the real Continuum scheduler (vLLM's scheduler and block pool, no model), with random
aborts, disconnects, stop strings, session ends, clients that vanish (idle timeout) and several tenants.

Pins never exceed the cap (nor a tenant its quota); at the end every block's reference count is zero, no
disconnect mark is left behind, and ``reset_prefix_cache`` succeeds."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from vllm.v1.request import RequestStatus

from continuum.control.engine_side import EngineControl
from continuum.policy.config import ContinuumConfig
from continuum.sched.scheduler import ContinuumScheduler
from continuum.tenancy import qualify, tenant_of_key
from continuum_eval.sim.engine.vllm_offline import build_scheduler, make_request, run_step

PROGRAMS = 10_000
ACTIVE = 48  # programs alive at once (in a turn or in a tool call)
DT = 0.01  # virtual seconds per engine step
TENANTS = [tenant_of_key(f"key-{i}") for i in range(3)] + [None]  # None: a server without keys


@dataclass
class Agent:
    pid: str
    history: list[int]
    turns_left: int
    request: str | None = None  # in flight
    back_at: float = 0.0  # the tool call ends
    seq: list[int] = field(default_factory=lambda: [0])


class Soak:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        cfg = ContinuumConfig(ttl_mode="preserve", pin_cap=0.3, tenant_pin_cap=0.5, idle_end_s=0.5)
        self.s = build_scheduler(ContinuumScheduler, num_blocks=96, block_size=32, max_num_seqs=32,
                                 continuum_config=cfg)
        self.s.clock = lambda: self.now
        self.control = EngineControl(self.s)
        self.agents: dict[str, Agent] = {}
        self.started = 0
        self.counts = dict.fromkeys(("turns", "aborts", "disconnects", "stops", "ends", "vanished"), 0)

    def run(self) -> None:
        while self.started < PROGRAMS or self.agents:
            while self.started < PROGRAMS and len(self.agents) < ACTIVE:
                self.start()
            for agent in list(self.agents.values()):
                self.act(agent)
            run_step(self.s)
            self.check()
            self.now += DT

    def start(self) -> None:
        tenant = self.rng.choice(TENANTS)
        pid = qualify(tenant, f"p{self.started}")
        self.started += 1
        self.agents[pid] = Agent(pid, [], self.rng.randint(1, 4), back_at=self.now)

    def act(self, agent: Agent) -> None:
        rng, s = self.rng, self.s
        if agent.request is not None and agent.request not in s.requests:
            agent.request = None  # finished (or aborted) last step
            if agent.turns_left == 0:
                self.leave(agent)
                return
            agent.back_at = self.now + rng.uniform(0.0, 0.3)
        if agent.request is None:
            if self.now >= agent.back_at:
                self.send(agent)
            return
        roll = rng.random()
        if roll < 0.004:
            self.counts["aborts"] += 1
            s.finish_requests([agent.request], RequestStatus.FINISHED_ABORTED)
        elif roll < 0.008:
            self.counts["disconnects"] += 1
            self.control.handle({"op": "disconnect", "id": agent.pid})
            s.finish_requests([agent.request], RequestStatus.FINISHED_ABORTED)
        elif roll < 0.012 and s.requests[agent.request].num_output_tokens:
            self.counts["stops"] += 1  # the API process found a stop string
            s.finish_requests([agent.request], RequestStatus.FINISHED_ABORTED)

    def send(self, agent: Agent) -> None:
        rng = self.rng
        agent.turns_left -= 1
        new = [rng.randrange(1000, 30_000) for _ in range(rng.randint(10, 60))]
        agent.history = (agent.history + new)[-300:]
        out = rng.randint(1, 6)
        rid = f"{agent.pid}#{agent.seq[0]}"
        agent.seq[0] += 1
        request = make_request(rid, agent.history, out, session_id=agent.pid,
                               is_last_step=agent.turns_left == 0 and rng.random() < 0.5)
        if rng.random() < 0.3:
            request.sampling_params.stop = ["</s>"]
        self.s.add_request(request)
        agent.history = agent.history + [1000] * out
        agent.request = rid
        self.counts["turns"] += 1

    def leave(self, agent: Agent) -> None:
        if self.rng.random() < 0.5:
            self.counts["ends"] += 1
            self.s.end_program(agent.pid)
        else:
            self.counts["vanished"] += 1  # never heard of again: the idle timeout ends it
        del self.agents[agent.pid]

    def check(self) -> None:
        table = self.s.pins.table
        assert table.pinned_blocks <= table.cap_blocks
        for tenant in TENANTS[:-1]:
            assert table.group_blocks(tenant) <= table.group_cap_blocks


def test_ten_thousand_programs_leave_nothing_behind():
    soak = Soak(seed=16)
    soak.run()
    s = soak.s
    while s.has_requests():
        run_step(s)
    soak.now += 2 * s.config.idle_end_s + 1.0  # past every idle timeout and the once-a-second scan
    run_step(s)
    assert all(p.ended for p in s.programs.all())
    pool = s.kv_cache_manager.block_pool
    assert s.pins.pinned_blocks == 0 and len(s.pins.table) == 0
    assert all(b.ref_cnt == 0 for b in pool.blocks if not b.is_null)
    assert not s.gone and not s.requests
    assert s.reset_prefix_cache()
    c, pins = soak.counts, s.pins.table.counters
    assert c["aborts"] > 100 and c["disconnects"] > 100 and c["stops"] > 50 and c["vanished"] > 1000
    assert pins["created"] > 1000 and pins["released_pressure"] > 0 and pins["quota_limited"] > 0
