"""End to end: `continuum serve tiny --data-parallel-size 2` (two engine-core ranks behind one API server).

The Continuum scheduler runs on each rank; programs are kept on one rank; the control channel reaches both and
`/continuum/stats` merges them. The server runs balance scheduling (``--balance any-full``) with two running
requests per rank (full at two: ``any-full.headroom=0``), so the last test can fill one rank and watch the other
hold.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from continuum_agents import AgentSession
from continuum.cluster.affinity import home_of
from continuum.serve.launch import ServerProcess

pytestmark = pytest.mark.engine

FLAGS = ["--max-model-len", "2048", "--block-size", "32", "--enforce-eager", "--data-parallel-size", "2",
         "--max-num-seqs", "2", "--balance", "any-full", "--knob", "any-full.headroom=0"]


def on_rank(rank: int, n: int, prefix: str = "dp") -> list[str]:
    ids, i = [], 0
    while len(ids) < n:
        if home_of(f"{prefix}-{i}", 2) == rank:
            ids.append(f"{prefix}-{i}")
        i += 1
    return ids


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    log = tmp_path_factory.mktemp("dp") / "serve.log"
    with ServerProcess("tiny", FLAGS, log_path=log) as proc:
        yield proc


def stats(server) -> dict:
    r = httpx.get(server.base_url + "/continuum/stats", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def turn(server, program: str, prompt: list[int], max_tokens: int = 8) -> dict:
    with AgentSession(server.base_url, model="tiny", session_id=program, stream=False) as s:
        s.ended = True  # the program goes on
        return s.complete(prompt, max_tokens=max_tokens, ignore_eos=True)


def test_a_programs_turns_stay_on_one_rank_and_stats_merge_the_ranks(server):
    programs = on_rank(0, 2) + on_rank(1, 2)
    for k in range(3):
        for i, prog in enumerate(programs):
            turn(server, prog, list(range(1000 + 100 * i, 1040 + 100 * i + 10 * k)))
    s = stats(server)
    assert s["data_parallel_size"] == 2 and len(s["ranks"]) == 2
    rows = [p for p in s["programs"] if p["id"] in programs]
    assert sorted(p["id"] for p in rows) == sorted(programs)  # each program once: on one rank
    assert all(p["turns"] == 3 for p in rows)
    assert {p["id"]: p["rank"] for p in rows} == {p: home_of(p, 2) for p in programs}


def test_the_control_channel_reaches_every_rank(server):
    for rank in (0, 1):
        prog = on_rank(rank, 1)[0]
        r = httpx.get(f"{server.base_url}/v1/sessions/{prog}", timeout=30)
        assert r.status_code == 200 and r.json()["rank"] == rank
        r = httpx.post(f"{server.base_url}/v1/sessions/{prog}/end", timeout=30)
        assert r.status_code == 200 and r.json()["ended"]
    assert httpx.get(f"{server.base_url}/v1/sessions/never-seen", timeout=30).status_code == 404


def test_a_full_rank_holds_the_others_admissions(server):
    errors: list[BaseException] = []

    def long_turn(program: str, start: int) -> None:
        try:
            turn(server, program, list(range(start, start + 40)), 1500)
        except BaseException as e:  # noqa: BLE001 - reported by the test, not lost in the thread
            errors.append(e)

    long = [threading.Thread(target=long_turn, args=(p, 3000 + 50 * i))
            for i, p in enumerate(on_rank(0, 2, prefix="full"))]
    for t in long:
        t.start()
    try:
        views = []
        for _ in range(600):  # until rank 1 has seen rank 0 full (counts cross within a step or two)
            views.append([r["balance"]["counts"] for r in stats(server)["ranks"]])
            if views[-1][1][0] == 2 or errors or not any(t.is_alive() for t in long):
                break
            time.sleep(0.05)
        assert not errors, errors
        assert views[-1][1][0] == 2, f"rank 1 never saw rank 0's two running requests; (rank 0, rank 1) views: " \
                                     f"first {views[:3]}, last {views[-3:]}, turns alive {[t.is_alive() for t in long]}"
        held_before = stats(server)["ranks"][1]["balance"]["held_steps"]
        answer = turn(server, on_rank(1, 1, prefix="held")[0], list(range(9000, 9040)))
        assert answer["usage"]["completion_tokens"] == 8  # it ran once rank 0 had room again
        assert stats(server)["ranks"][1]["balance"]["held_steps"] > held_before
    finally:
        for t in long:
            t.join()
    assert not errors, errors
