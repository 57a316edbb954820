"""`continuum cluster` over replicas that already run elsewhere: the router alone (no engine here: the replicas
are fakes on ports of this machine), its own health checks deciding which replica serves, and the cluster's
merged stats naming a replica that is down."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from continuum.cluster.cluster import Cluster
from continuum.cluster.replicas import local_replicas
from continuum.cluster.router import HEALTH, router_available
from continuum.serve.cli import build_parser, main
from continuum.serve.launch import free_port
from tests.fake_replica import FakeReplica, start_cluster

needs_router = pytest.mark.skipif(not router_available(), reason="vllm-router is not installed")
SESSIONS = [f"s{i}" for i in range(12)]
FAST_HEALTH = "--health-check-interval-secs 1 --cb-timeout-duration-secs 2"  # the test's patience, not a default


def test_replica_urls_and_how_many_start_here(capsys):
    parse = build_parser().parse_known_args
    assert local_replicas(parse(["cluster", "tiny"])[0]) == 2
    args, _ = parse(["cluster", "--replica", "http://h1:8000/", "--replica", "http://h2:8000"])
    assert args.replica == ["http://h1:8000", "http://h2:8000"] and local_replicas(args) == 0
    assert local_replicas(parse(["cluster", "--replicas", "1", "--replica", "http://h1:8000"])[0]) == 1
    with pytest.raises(SystemExit) as exc:
        main(["cluster", "--replica", "h1:8000"])
    assert exc.value.code == 2 and "--replica" in capsys.readouterr().err


@needs_router
def test_the_router_gets_local_and_remote_replicas_and_health_checks():
    cluster = Cluster("tiny", 1, port=9000, remote=["http://h1:8000/"], stats_port=9100)
    cmd = cluster.router.cmd
    workers = cmd[cmd.index("--worker-urls") + 1:cmd.index("--policy")]
    assert workers == ["http://127.0.0.1:9001", "http://h1:8000"]
    for flag, value in HEALTH.items():
        assert cmd[cmd.index(flag) + 1] == str(value)
    assert cluster.describe()["stats"] == "http://127.0.0.1:9100"
    with pytest.raises(ValueError):
        Cluster("tiny", 0)


def where(router: str, session: str) -> str:
    r = httpx.post(router + "/v1/completions", headers={"X-Session-ID": session}, timeout=10,
                   json={"model": "tiny", "prompt": "hi", "max_tokens": 1})
    assert r.status_code == 200, r.text  # never an error for the client, whatever the replicas do
    return r.json()["replica"]


def wait_until(check, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"after {timeout_s} s: {what}"
        time.sleep(0.2)


@needs_router
def test_a_replica_that_stops_answering_leaves_and_one_that_comes_back_or_is_added_joins(tmp_path):
    a, b, c = FakeReplica("a", ["pa"]).start(), FakeReplica("b", ["pb"]).start(), FakeReplica("c")
    cluster, info = start_cluster(["--replica", a.url, "--replica", b.url, "--port", str(free_port()),
                                   "--stats-port", str(free_port()), "--router-args", FAST_HEALTH], tmp_path)
    try:
        assert info is not None and info["replicas"] == [] and info["remote"] == [a.url, b.url], info
        router, stats = info["router"], info["stats"]
        homes = {s: where(router, s) for s in SESSIONS}
        assert sorted(homes.values()) == ["a"] * 6 + ["b"] * 6, homes  # new programs: the replica with fewer
        assert all(where(router, s) == homes[s] for s in SESSIONS)  # and each stays on its replica
        view = httpx.get(stats + "/continuum/stats", timeout=10).json()
        assert {p["id"]: p["replica"] for p in view["programs"]} == {"pa": a.url, "pb": b.url}

        b.stop()
        assert {where(router, s) for s in SESSIONS} == {"a"}  # b's sessions go on on a
        view = httpx.get(stats + "/continuum/stats", timeout=10).json()
        assert [m["replica"] for m in view["missing"]] == [b.url] and view["num_replicas"] == 2

        b.start()  # the same address answers again: the router's health checks bring it back
        fresh = (f"new-{i}" for i in range(1000))  # a new program each try: a placed one stays where it went
        wait_until(lambda: where(router, next(fresh)) == "b", "b did not come back for new programs")
        assert {where(router, s) for s in SESSIONS} == {"a"}  # programs placed again stay where they went

        c.start()  # a replica added while the cluster serves: new programs reach it, running ones stay put
        r = httpx.post(router + "/add_worker", params={"url": c.url}, timeout=10)
        assert r.status_code == 200, r.text
        wait_until(lambda: where(router, next(fresh)) == "c", "the added replica took no new program")
        assert {where(router, s) for s in SESSIONS} == {"a"}
        view = httpx.get(stats + "/continuum/stats", timeout=10).json()
        assert view["num_replicas"] == 3 and view["missing"] == []  # the view follows the router's replicas
        os.killpg(cluster.pid, signal.SIGTERM)
        assert cluster.wait(30) == 0
    finally:
        if cluster.poll() is None:
            os.killpg(cluster.pid, signal.SIGKILL)
        for replica in (a, b, c):
            replica.stop()
