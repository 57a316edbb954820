"""End to end: `continuum cluster --replicas 2 tiny` (two real engines behind vllm-router), one cluster per module.

Programs talk to the router with the agent SDK, as any agent would; each replica's own `/continuum/stats` says
where their turns landed. The router places a new program on the replica with fewer programs (ties broken by a
hash of the session id and the replica's URL, whose port is a free one found at start), so which program lands
where changes from run to run: the tests find it out (`homes`), never assume it. The tests run in file order
(shuffling is off for this module): the failover test kills a replica, the last one stops the cluster with
SIGTERM; the others use programs of their own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from continuum.cluster.router import router_available
from continuum_agents import AgentSession

pytestmark = [pytest.mark.engine, pytest.mark.random_order(disabled=True),
              pytest.mark.skipif(not router_available(), reason="vllm-router is not installed")]

REPLICA_FLAGS = ["--max-model-len", "2048", "--block-size", "32", "--enforce-eager", "--enable-prompt-tokens-details"]
PER_REPLICA, CANDIDATES = 2, 40  # `homes`: programs wanted on each replica, out of at most this many
PREFIX_PROGRAM, ENDPOINTS_PROGRAM = "prog-90", "prog-91"  # the single-program tests' own programs


def _ports_free(*ports: int) -> bool:
    for p in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


def _three_ports() -> int:
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 65000 and _ports_free(port, port + 1, port + 2):
            return port
    raise RuntimeError("no three free ports in a row")


@pytest.fixture(scope="module")
def cluster(tiny_model, tmp_path_factory):
    logs = tmp_path_factory.mktemp("cluster")
    port = _three_ports()
    cmd = [sys.executable, "-m", "continuum.serve.cli", "cluster", "tiny", "--replicas", "2", "--port", str(port),
           "--log-dir", str(logs), *REPLICA_FLAGS]
    err = open(logs / "cluster.err", "w")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
    info = None
    for line in proc.stdout:  # blocks until the cluster says it is ready (or exits)
        if line.startswith("continuum cluster: ready "):
            info = json.loads(line.split("ready ", 1)[1])
            break
    if info is None:
        proc.wait(30)
        pytest.fail(f"cluster did not start (exit {proc.returncode}); logs in {logs}")
    info["proc"], info["logs"] = proc, logs
    yield info
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(120)
    err.close()


def stats(url: str) -> dict:
    r = httpx.get(url + "/continuum/stats", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def where(cluster, program: str) -> list[int]:
    """Indices of the live replicas that know ``program``."""
    found = []
    for i, rep in enumerate(cluster["replicas"]):
        try:
            ids = {p["id"] for p in stats(rep["url"])["programs"]}
        except httpx.HTTPError:
            continue
        if program in ids:
            found.append(i)
    return found


def program_state(url: str, program: str) -> dict:
    return next(p for p in stats(url)["programs"] if p["id"] == program)


def prompt_of(program: str, n: int = 128) -> list[int]:
    base = 1000 + 200 * int(program.rsplit("-", 1)[1])  # distinct ids per program: no shared prefixes
    return list(range(base, base + n))


def turn(cluster, program: str, prompt: list[int], max_tokens: int = 16) -> tuple[dict, AgentSession]:
    with AgentSession(cluster["router"], model="tiny", session_id=program, stream=False) as s:
        s.ended = True  # the program goes on after this turn: leaving the block must not end it
        answer = s.complete(prompt, max_tokens=max_tokens, ignore_eos=True)
    return answer, s


def wait_for(condition, failure: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"after {timeout_s} s: {failure}")
        time.sleep(0.1)


def refuses(url: str) -> bool:
    try:
        httpx.get(url + "/health", timeout=5)
    except httpx.TransportError:
        return True
    return False


@pytest.fixture(scope="module")
def homes(cluster) -> dict[int, list[str]]:
    """Programs by the replica their first turn landed on, `PER_REPLICA` or more on each: one turn for each
    candidate id until both replicas have enough. (The router places new programs on the replica with fewer, so
    a few candidates do; all `CANDIDATES` on one replica would mean the router ignores a replica.)"""
    found: dict[int, list[str]] = {0: [], 1: []}
    for prog in [f"prog-{i}" for i in range(CANDIDATES)]:
        turn(cluster, prog, prompt_of(prog, 40))
        at = where(cluster, prog)
        assert len(at) == 1, f"{prog}'s first turn is known to replicas {at}"
        found[at[0]].append(prog)
        if all(len(progs) >= PER_REPLICA for progs in found.values()):
            return found
    pytest.fail(f"the router sent {CANDIDATES} programs to one replica: {found}")


def test_every_turn_of_a_program_lands_on_one_replica(cluster, homes):
    assert homes[0] and homes[1], "the router should use both replicas"
    for _ in range(2):  # the first turn was `homes`'
        for progs in homes.values():
            for prog in progs:
                turn(cluster, prog, prompt_of(prog, 40))
    placed = {prog: where(cluster, prog) for progs in homes.values() for prog in progs}
    assert placed == {prog: [i] for i, progs in homes.items() for prog in progs}
    for i, progs in homes.items():
        for prog in progs:
            assert program_state(cluster["replicas"][i]["url"], prog)["turns"] == 3


def test_a_pinned_prefix_is_hit_through_the_router(cluster):
    prog = PREFIX_PROGRAM
    first, s1 = turn(cluster, prog, prompt_of(prog))
    (i,) = where(cluster, prog)
    url = cluster["replicas"][i]["url"]
    assert program_state(url, prog)["pinned_blocks"] > 0
    hits_before = stats(url)["pins"]["hit"]
    follow = prompt_of(prog) + s1.turn_stats[-1].output_ids + list(range(20000, 20040))
    second, _ = turn(cluster, prog, follow)
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] >= 128
    assert stats(url)["pins"]["hit"] == hits_before + 1


def test_session_endpoints_reach_the_replica_that_holds_the_program(cluster):
    prog = ENDPOINTS_PROGRAM
    for k in range(2):
        turn(cluster, prog, prompt_of(prog, 40 + 10 * k))
    (i,) = where(cluster, prog)
    r = httpx.get(f"{cluster['router']}/v1/sessions/{prog}", headers={"X-Session-ID": prog}, timeout=30)
    assert r.status_code == 200 and r.json()["id"] == prog and r.json()["turns"] == 2
    with AgentSession(cluster["router"], model="tiny", session_id=prog) as s:
        assert s.end()
    assert program_state(cluster["replicas"][i]["url"], prog)["ended"]


def test_a_dead_replicas_programs_go_on_on_the_other(cluster, homes):
    victim = 1
    moved = homes[victim]
    victim_url = cluster["replicas"][victim]["url"]
    os.killpg(cluster["replicas"][victim]["pid"], signal.SIGKILL)
    wait_for(lambda: refuses(victim_url), f"replica {victim} ({victim_url}) still answers after SIGKILL")
    survivor = cluster["replicas"][1 - victim]["url"]
    for prog in moved:
        answer, s = turn(cluster, prog, prompt_of(prog, 40) + list(range(21000, 21010)), max_tokens=8)
        assert answer["usage"]["completion_tokens"] == 8  # nothing lost
        assert s.retries <= 1
        state = program_state(survivor, prog)
        assert state["turns"] == 1 and state["cached_tokens"] == 0  # a fresh start there: re-prefill


def test_sigterm_stops_the_router_and_every_replica(cluster):
    proc = cluster["proc"]
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(120) == 0
    for pid in [cluster["router_pid"]] + [r["pid"] for r in cluster["replicas"]]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
