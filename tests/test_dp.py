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

from continuum.cluster.affinity import home_of
from continuum.serve.launch import ServerProcess
from continuum_agents import AgentSession

pytestmark = pytest.mark.engine

# A long turn's cap: far more decoding than the test needs before it releases the turn (4000 tokens took 14 s
# here, short enough for a slow machine to finish one before the other had started).
LONG_TOKENS = 16000
FLAGS = ["--max-model-len", "16384", "--block-size", "32", "--enforce-eager", "--data-parallel-size", "2",
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
        prog = on_rank(rank, 1, prefix="ctl")[0]
        turn(server, prog, list(range(5000 + 100 * rank, 5040 + 100 * rank)))
        r = httpx.get(f"{server.base_url}/v1/sessions/{prog}", timeout=30)
        assert r.status_code == 200 and r.json()["rank"] == rank
        r = httpx.post(f"{server.base_url}/v1/sessions/{prog}/end", timeout=30)
        assert r.status_code == 200 and r.json()["ended"]
    assert httpx.get(f"{server.base_url}/v1/sessions/never-seen", timeout=30).status_code == 404


def wait_for(condition, failure: str, timeout_s: float = 60.0, every_s: float = 0.05):
    """Poll ``condition`` until it holds (its value), or fail after ``timeout_s`` with ``failure()``."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"after {timeout_s} s: {failure()}")
        time.sleep(every_s)
    return value


class LongTurn:
    """A streamed turn that runs until the test lets it go: its client reads the events until `release`, then
    hangs up, and vLLM aborts the request. (On its own it would end only after ``max_tokens``, far later.)"""

    def __init__(self, server, program: str, prompt: list[int], max_tokens: int = LONG_TOKENS) -> None:
        self.url = server.base_url + "/v1/completions"
        self.body = {"model": "tiny", "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True,
                     "stream": True, "session_id": program}
        self.headers = {"X-Session-ID": program}
        self.events = 0
        self.started = time.monotonic()
        self.first_event_s: float | None = None  # seconds from the start to its first and last event
        self.finished_s: float | None = None
        self.finished = False  # it ended on its own
        self.error: BaseException | None = None
        self.released = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with httpx.Client(timeout=60) as client, \
                    client.stream("POST", self.url, json=self.body, headers=self.headers) as r:
                if r.status_code != 200:
                    raise AssertionError(f"HTTP {r.status_code}: {r.read()!r}")
                for line in r.iter_lines():
                    if self.released.is_set():
                        return  # leaving the block closes the connection
                    if line == "data: [DONE]":
                        self.finished, self.finished_s = True, time.monotonic() - self.started
                    elif line.startswith("data:"):
                        self.events += 1
                        if self.first_event_s is None:
                            self.first_event_s = time.monotonic() - self.started
        except BaseException as e:  # noqa: BLE001 - reported by the test, not lost in the thread
            self.error = e

    def running(self) -> bool:
        if self.error is not None:
            raise AssertionError(f"a long turn failed: {self.error!r}")
        return self.events > 0 and not self.finished

    def timeline(self) -> str:
        return f"{self.events} events, first at {self.first_event_s} s, done at {self.finished_s} s"

    def release(self) -> None:
        self.released.set()
        self.thread.join(60)


def engine_state(server) -> str:
    """What each rank holds and does, for a failure message: vLLM's request gauges and our balance and door."""
    try:
        gauges = [line for line in httpx.get(server.base_url + "/metrics", timeout=30).text.splitlines()
                  if line.startswith(("vllm:num_requests_running", "vllm:num_requests_waiting"))]
        ranks = [{k: r[k] for k in ("balance", "admission", "sched_step_ms")} for r in stats(server)["ranks"]]
    except (httpx.HTTPError, AssertionError) as e:  # the server did not answer: say so, keep the failure's own text
        return f"the server's state could not be read: {e!r}"
    return f"gauges {gauges}; ranks {ranks}"


def balance(server, rank: int) -> dict:
    return stats(server)["ranks"][rank]["balance"]


def test_a_full_rank_holds_the_others_admissions(server):
    """Two long turns fill rank 0 (two running requests: full) and keep it full until the test lets them go; a
    turn on rank 1 meanwhile is held (rank 1 counts held steps, the turn gets no answer), and runs once they are
    gone. Each step waits for its condition, none for a length of time."""
    long: list[LongTurn] = []
    answers: list = []
    held = threading.Thread(target=lambda: answers.append(
        turn(server, on_rank(1, 1, prefix="held")[0], list(range(9000, 9040)))), daemon=True)
    try:
        for i, program in enumerate(on_rank(0, 2, prefix="full")):  # one at a time: the second joins a busy rank
            long.append(LongTurn(server, program, list(range(3000 + 50 * i, 3040 + 50 * i))))
            wait_for(lambda: all(t.running() for t in long),
                     lambda: f"the long turns did not all stream at once: {[t.timeline() for t in long]}; "
                             f"{engine_state(server)}")
        views: list = []  # rank 1's view of the counts (rank 0, rank 1), each time it is asked

        def rank_1_sees_rank_0_full() -> bool:
            views.append(balance(server, 1)["counts"])
            return views[-1][0] == 2

        wait_for(rank_1_sees_rank_0_full, lambda: f"rank 1 never saw rank 0's two running requests; its views: "
                                                  f"first {views[:3]}, last {views[-3:]}")
        held_before = balance(server, 1)["held_steps"]
        held.start()
        wait_for(lambda: balance(server, 1)["held_steps"] > held_before,
                 lambda: f"rank 1 held no step for its new turn (held_steps {held_before}); answered: {answers}")
        assert held.is_alive() and not answers, "rank 1 answered a turn while rank 0 was full"
        assert all(t.running() for t in long), \
            f"a long turn ended by itself ({LONG_TOKENS} tokens) before the check: raise LONG_TOKENS"
    finally:
        for t in long:
            t.release()
    wait_for(lambda: balance(server, 0)["counts"][0] == 0,
             lambda: f"rank 0 still runs requests after their clients left: {balance(server, 0)['counts']}")
    held.join(120)
    assert not held.is_alive(), "the held turn did not finish within 120 s of rank 0 emptying"
    assert answers[0]["usage"]["completion_tokens"] == 8  # it ran once rank 0 had room again
