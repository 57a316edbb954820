"""Faults in a cluster of three hosts while agents run: a replica that joins, one that dies mid-turn, one cut off.

Each replica is a real `continuum serve tiny` on a host of its own (`tests.hosts`: a network namespace with its own
address and link, or a loopback address where namespaces cannot be made); `continuum cluster --replica URL ...` runs
vllm-router and the cluster's port on this host; tenancy comes from one file. Agent programs (the SDK: streamed
turns, one retry on a dropped connection) run turns with short tool calls throughout. The tests run in order:

1. two hosts serve; programs spread over both; the cluster's stats and quota are one view of both;
2. a third host is added under load: new programs go to it, running programs stay where they are;
3. a host is killed mid-turn: its programs' next turns go on elsewhere after at most one retry, starting cold;
4. a host is cut off for 30 s and comes back: turns sent to it wait and finish, nothing is lost;
5. every program ends through the cluster's port: no replica holds a program, a pin or a referenced block.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from continuum.cluster.router import router_available
from continuum.serve.launch import free_port
from continuum.tenancy import quota_blocks, split, tenant_of_key
from continuum_agents import AgentSession, SessionError, TurnStats
from tests.fake_replica import start_cluster
from tests.hosts import HostReplica, make_host

pytestmark = [pytest.mark.engine, pytest.mark.random_order(disabled=True),
              pytest.mark.skipif(not router_available(), reason="vllm-router is not installed")]

REPLICA_FLAGS = ["--max-model-len", "8192", "--block-size", "32", "--enforce-eager", "--enable-prompt-tokens-details"]
TENANCY = 'api_keys = ["key-a", "key-b"]\nadmin_api_keys = ["root"]\ntenant_pin_cap = 0.25\n'
ADMIN = {"Authorization": "Bearer root"}
# The test's patience, not defaults: checks every second, each answered within 2 s.
FAST_HEALTH = "--health-check-interval-secs 1 --health-check-timeout-secs 2 --cb-timeout-duration-secs 2"
TOOL_S, NEW_TOKENS, MAX_CONTEXT = 0.5, 4, 8000  # ~1000 turns of context: more than the module's run takes
PARTITION_S = 30.0


class Program(threading.Thread):
    """One agent program: turns through the router, each followed by a short tool call, until told to stop."""

    def __init__(self, router: str, name: str, key: str, stop: threading.Event, index: int) -> None:
        super().__init__(name=name, daemon=True)
        self.session = AgentSession(router, model="tiny", session_id=name, api_key=key, timeout_s=300)
        self.session.ended = True  # ended through the cluster's port, which reaches every replica that holds it
        self.key, self.stop, self.errors = key, stop, []
        self.prompt = list(range(1000 + 2000 * index, 1000 + 2000 * index + 64))  # no prefix shared with others
        self.in_turn = threading.Event()

    @property
    def client_id(self) -> str:
        return self.session.session_id

    def turns(self) -> int:
        return len([t for t in self.session.turn_stats if t.done_s is not None])

    def run(self) -> None:
        while not self.stop.is_set() and len(self.prompt) < MAX_CONTEXT:
            self.in_turn.set()
            try:
                self.session.complete(self.prompt, max_tokens=NEW_TOKENS, ignore_eos=True)
            except SessionError as exc:
                self.errors.append(f"turn {len(self.session.turn_stats)}: {exc}")
                return
            finally:
                self.in_turn.clear()
            out = self.session.turn_stats[-1].output_ids or []
            self.prompt += out + [len(self.prompt) % 500 + 20000 + i for i in range(NEW_TOKENS)]
            self.stop.wait(TOOL_S)


class Load:
    """The programs running against the cluster; ``start`` adds some, ``wait_turns`` waits for progress."""

    def __init__(self, router: str) -> None:
        self.router, self.stop, self.programs = router, threading.Event(), {}

    def start(self, names: list[str], key: str) -> list[Program]:
        started = [Program(self.router, n, key, self.stop, len(self.programs) + i) for i, n in enumerate(names)]
        for p in started:
            self.programs[p.client_id] = p
            p.start()
        return started

    def wait_turns(self, programs: list[Program], more: int, timeout_s: float = 120.0) -> None:
        """Until each of ``programs`` finished ``more`` turns beyond what it had, or one failed."""
        goal = {p.client_id: p.turns() + more for p in programs}
        deadline = time.monotonic() + timeout_s
        while any(p.turns() < goal[p.client_id] for p in programs):
            assert not self.errors(), self.errors()
            assert all(p.is_alive() for p in programs), "a program ran out of context: raise MAX_CONTEXT"
            assert time.monotonic() < deadline, f"no progress in {timeout_s} s: " + str(
                {p.client_id: p.turns() for p in programs if p.turns() < goal[p.client_id]})
            time.sleep(0.2)

    def errors(self) -> dict[str, list[str]]:
        return {name: p.errors for name, p in self.programs.items() if p.errors}

    def finish(self) -> None:
        self.stop.set()
        for p in self.programs.values():
            p.join(300)


@pytest.fixture(scope="module")
def hosts(tiny_model, tmp_path_factory):
    logs = tmp_path_factory.mktemp("hosts")
    tenancy = logs / "tenancy.toml"
    tenancy.write_text(TENANCY)
    made = []
    try:
        for i in range(3):
            made.append(make_host(i))
        replicas = [HostReplica(h, "tiny", [*REPLICA_FLAGS, "--tenancy", str(tenancy)], logs / f"host-{i}.log", i)
                    for i, h in enumerate(made)]
        with ThreadPoolExecutor(3) as pool:
            started = [f.exception() for f in [pool.submit(r.start) for r in replicas]]
        if any(started):
            pytest.fail(f"a host's replica did not start: {[e for e in started if e]}; logs in {logs}")
        yield {"replicas": replicas, "tenancy": tenancy, "logs": logs, "kind": made[0].kind}
    finally:
        for r in locals().get("replicas", []):
            r.stop()
        for h in made:
            h.close()


@pytest.fixture(scope="module")
def cluster(hosts):
    a, b, _ = hosts["replicas"]
    proc, info = start_cluster(["--replica", a.base_url, "--replica", b.base_url, "--port", str(free_port()),
                                "--stats-port", str(free_port()), "--tenancy", str(hosts["tenancy"]),
                                "--router-args", FAST_HEALTH], hosts["logs"])
    if info is None:
        proc.wait(30)
        pytest.fail(f"the cluster did not start (exit {proc.returncode}); logs in {hosts['logs']}")
    load = Load(info["router"])
    facts: list[str] = []  # what clients saw, printed at the end (`pytest -s`)
    yield {**info, "proc": proc, "load": load, "facts": facts, **hosts}
    load.finish()
    print(f"\nhosts: {hosts['kind']}\n" + "\n".join(facts))
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)


def view(cluster) -> dict:
    r = httpx.get(cluster["stats"] + "/continuum/stats", headers=ADMIN, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def placements(cluster) -> dict[str, list[str]]:
    """Each client's session id -> the replicas whose stats list that program (not yet ended)."""
    found: dict[str, list[str]] = {}
    for p in view(cluster)["programs"]:
        if not p.get("ended"):
            found.setdefault(split(p["id"])[1], []).append(p["replica"])
    return found


def test_programs_spread_over_two_hosts_and_the_cluster_has_one_view_and_quota(cluster):
    a, b, _ = cluster["replicas"]
    load = cluster["load"]
    first = load.start([f"a-{i}" for i in range(3)], "key-a") + load.start([f"b-{i}" for i in range(3)], "key-b")
    load.wait_turns(first, 2)
    where = placements(cluster)
    assert all(len(where[p.client_id]) == 1 for p in first), where
    homes = [where[p.client_id][0] for p in first]
    assert sorted(homes) == sorted([a.base_url] * 3 + [b.base_url] * 3), where  # the replica with fewer programs
    cluster["homes"] = dict(zip([p.client_id for p in first], homes))

    stats = view(cluster)
    assert stats["num_replicas"] == 2 and stats["missing"] == []
    budgets = {r["replica"]: r["config"]["pin_cap_blocks"] for r in stats["replicas"]}
    assert stats["quota"] == {"tenant_pin_cap": 0.25, "agree": True, "pin_budget_blocks": sum(budgets.values()),
                              "tenant_quota_blocks": sum(quota_blocks(0.25, n) for n in budgets.values())}
    for r in stats["replicas"]:  # no tenant holds more than its share of any replica's pins
        for tenant in map(tenant_of_key, ("key-a", "key-b")):
            held = sum(p.get("pinned_blocks", 0) for p in stats["programs"]
                       if p["replica"] == r["replica"] and split(p["id"])[0] == tenant)
            assert held <= quota_blocks(0.25, budgets[r["replica"]])

    # A tenant reaches its own session through the cluster's port, wherever it is, and never another's.
    own = httpx.get(cluster["stats"] + "/v1/sessions/a-0", headers={"Authorization": "Bearer key-a"}, timeout=30)
    assert own.status_code == 200 and own.json()["replica"] == cluster["homes"]["a-0"], own.text
    other = httpx.get(cluster["stats"] + "/v1/sessions/a-0", headers={"Authorization": "Bearer key-b"}, timeout=30)
    assert other.status_code == 404, other.text


def test_an_added_host_takes_new_programs_and_running_ones_stay_put(cluster):
    c = cluster["replicas"][2]
    load = cluster["load"]
    r = httpx.post(cluster["router"] + "/add_worker", params={"url": c.base_url}, timeout=30)
    assert r.status_code == 200, r.text
    newcomers = load.start([f"a-{i}" for i in range(3, 6)], "key-a")
    load.wait_turns(newcomers, 2)
    load.wait_turns(list(load.programs.values()), 1)  # the running programs went on meanwhile
    where = placements(cluster)
    assert {p.client_id: where[p.client_id] for p in newcomers} == {p.client_id: [c.base_url] for p in newcomers}
    assert {prog: where[prog] for prog in cluster["homes"]} == {prog: [h] for prog, h in cluster["homes"].items()}
    assert view(cluster)["num_replicas"] == 3  # the view follows the router's replicas


def test_a_host_killed_mid_turn_its_programs_go_on_elsewhere_after_one_retry_cold(cluster):
    a = cluster["replicas"][0]
    load = cluster["load"]
    victims = [load.programs[prog] for prog, home in cluster["homes"].items() if home == a.base_url]
    deadline = time.monotonic() + 30
    while not any(p.in_turn.is_set() for p in victims):  # kill it while one of its programs waits on a turn
        assert time.monotonic() < deadline, "no turn in flight on the host to kill"
        time.sleep(0.01)
    killed_at = time.monotonic()
    a.kill()
    cluster["killed"] = a.base_url
    load.wait_turns(victims, 3)
    where = placements(cluster)
    for p in victims:
        assert len(where[p.client_id]) == 1 and where[p.client_id][0] != a.base_url, where
        after = [t for t in p.session.turn_stats if t.done_s is not None and t.done_s > killed_at]
        assert all(t.attempts <= 2 for t in after)  # nothing lost beyond the one retry
        first = first_turn_elsewhere(after, killed_at)
        assert first.cached_tokens == 0, "the first turn on its new replica starts cold"
        assert after[-1].cached_tokens > 0, "later turns there hit the KV the first one computed"
        cluster["facts"].append(f"kill: {p.client_id} first turn elsewhere: {first.attempts} attempt(s), "
                                f"{first.done_s - first.sent_s:.2f} s, {first.prompt_tokens} tokens cold")
    stats = view(cluster)
    assert [m["replica"] for m in stats["missing"]] == [a.base_url], stats["missing"]


def first_turn_elsewhere(after: list[TurnStats], killed_at: float) -> TurnStats:
    """The first of the turns finished after the kill that its new replica served.

    A turn in flight at the kill may still have been answered by the dying host: its whole stream was written
    before the kill and read by the client just after it. Only that host holds the program's prefix, so such a
    turn is the one sent before the kill, in one attempt, with cached tokens; the next turn is the first elsewhere.
    """
    first = after[0]
    answered_by_dying_host = first.sent_s < killed_at and first.attempts == 1 and (first.cached_tokens or 0) > 0
    return after[1] if answered_by_dying_host else first


def test_a_host_cut_off_for_30_s_comes_back_and_nothing_is_lost(cluster):
    b = cluster["replicas"][1]
    load = cluster["load"]
    running = [p for p in load.programs.values() if p.is_alive()]
    counts = {p.client_id: len(p.session.turn_stats) for p in running}
    b.host.partition(b)
    try:
        time.sleep(PARTITION_S)
    finally:
        b.host.heal(b)
    load.wait_turns(running, 2, timeout_s=180)  # turns held across the partition finish once it heals
    assert load.errors() == {}
    where = placements(cluster)
    for p in running:
        turns = p.session.turn_stats[counts[p.client_id]:]
        assert all(t.attempts <= 2 for t in turns)
        longest = max(t.done_s - t.sent_s for t in turns if t.done_s is not None)
        cluster["facts"].append(f"partition: {p.client_id} on {where[p.client_id]}, {len(turns)} turns, "
                                f"longest {longest:.1f} s, attempts {max(t.attempts for t in turns)}")
    deadline = time.monotonic() + 30
    while [m["replica"] for m in view(cluster)["missing"]] != [cluster["killed"]]:
        assert time.monotonic() < deadline, view(cluster)["missing"]
        time.sleep(1)


def test_every_program_ends_and_no_replica_holds_a_block(cluster):
    load = cluster["load"]
    load.finish()
    assert load.errors() == {}
    for name, p in load.programs.items():
        r = httpx.post(f"{cluster['stats']}/v1/sessions/{name}/end", timeout=30,
                       headers={"Authorization": f"Bearer {p.key}"})
        assert r.status_code == 200, (name, r.text)
    live = [r for r in cluster["replicas"] if r.base_url != cluster["killed"]]
    deadline = time.monotonic() + 30
    while True:
        views = [httpx.get(r.base_url + "/continuum/stats", headers=ADMIN, timeout=30).json() for r in live]
        left = [(v["pins"]["active"], v["pins"]["pinned_blocks"], v["kv"]["usage"],
                 [p["id"] for p in v["programs"] if not p.get("ended")]) for v in views]
        if all(x == (0, 0, 0.0, []) for x in left):
            break
        assert time.monotonic() < deadline, f"left on each live replica (pins, pinned, KV usage, programs): {left}"
        time.sleep(0.5)
    proc = cluster["proc"]
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(60) == 0
