"""Sessions across replicas with one tenancy: another tenant gets 404 for a session on every replica and through
the cluster, its owner finds it wherever it is, an end reaches every replica. No engine: each replica is
Continuum's real routes and keys (built from the cluster's tenancy file as `continuum serve` builds them) over a
stand-in scheduler that knows some programs; the cluster's view asks them over real ports."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from argparse import Namespace

import httpx
import pytest
from fastapi import FastAPI, Request

from continuum.cluster import sessions
from continuum.cluster.fanout import Answer
from continuum.cluster.router import router_available
from continuum.cluster.view import ViewServer, cluster_app
from continuum.control.messages import EndSession, ErrorReply, OkReply, PrefetchSession, StatsQuery
from continuum.http.keys import ADMIN_ENV, Keys
from continuum.http.middleware import ContinuumState
from continuum.http.routes import router as continuum_routes
from continuum.serve import server
from continuum.serve.launch import free_port
from continuum.serve.tenancy_file import load
from continuum.tenancy import qualify, tenant_of_key

A, B, ROOT = "key-a", "key-b", "root"
MINE = qualify(tenant_of_key(A), "s1")  # tenant A's session "s1", as the scheduler knows it


class StandInScheduler:
    """The engine's side of the control channel: the programs this replica holds, by qualified id."""

    def __init__(self, programs: list[str]) -> None:
        self.programs = {p: {"id": p, "turns": 1, "ended": False} for p in programs}
        self.parked: set[str] = set()  # programs whose KV waits in host memory: a prefetch acts on them

    async def call(self, message):
        if isinstance(message, StatsQuery):
            return OkReply(stats={"programs": list(self.programs.values())})
        state = self.programs.get(message.id)
        if state is None:
            return ErrorReply.unknown_session(message.id)
        if isinstance(message, EndSession):
            state = self.programs.pop(message.id) | {"ended": True}
        if isinstance(message, PrefetchSession):
            state = state | {"prefetch": "issued" if message.id in self.parked else "not_parked"}
        return OkReply(session=dict(state))


def replica(tenancy_path, programs: list[str], monkeypatch) -> tuple[ViewServer, StandInScheduler]:
    t = load(tenancy_path)
    monkeypatch.setenv(ADMIN_ENV, "")  # restored after the test: key_flags writes this process's environment
    flags = server.key_flags(list(t.api_keys), list(t.admin_keys))  # what `continuum serve` hands vLLM
    app = FastAPI()
    app.state.args = Namespace(api_key=flags[1:])
    scheduler = StandInScheduler(programs)
    app.state.continuum = ContinuumState(Keys.of_app(app), scheduler, None)
    app.include_router(continuum_routes)
    return ViewServer(app, free_port()).start(), scheduler


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    path = tmp_path / "tenancy.toml"
    path.write_text(f'api_keys = ["{A}", "{B}"]\nadmin_api_keys = ["{ROOT}"]\n')
    (r1, s1), (r2, s2) = replica(path, [MINE], monkeypatch), replica(path, [], monkeypatch)
    dead = f"http://127.0.0.1:{free_port()}"
    view = ViewServer(cluster_app([r1.base_url, r2.base_url, dead], timeout_s=2.0), free_port()).start()
    yield Namespace(view=view.base_url, replicas=[r1.base_url, r2.base_url], dead=dead, schedulers=[s1, s2])
    for s in (view, r1, r2):
        s.stop()


def call(base: str, key: str | None, session: str, end: bool = False, op: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    op = "end" if end else op
    path = f"{base}/v1/sessions/{session}" + (f"/{op}" if op else "")
    return (httpx.post if op else httpx.get)(path, headers=headers, timeout=10)


def test_another_tenant_gets_404_on_every_replica_and_through_the_cluster(cluster):
    for base in [*cluster.replicas, cluster.view]:
        assert call(base, B, "s1").status_code == 404  # B's own "s1" exists nowhere; A's is not B's
        assert call(base, B, MINE).status_code == 404  # nor by A's qualified id
        assert call(base, None, "s1").status_code == 401
    assert [m["replica"] for m in call(cluster.view, B, "s1").json()["missing"]] == [cluster.dead]
    r = call(cluster.view, A, "s1")
    assert r.status_code == 200 and r.json()["id"] == "s1" and r.json()["replica"] == cluster.replicas[0]
    assert call(cluster.view, ROOT, MINE).json()["tenant"] == tenant_of_key(A)  # an admin names it qualified
    assert call(cluster.view, B, "s1", end=True).status_code == 404
    assert MINE in cluster.schedulers[0].programs  # B's end reached nothing of A's
    r = call(cluster.view, A, "s1", end=True)
    assert r.status_code == 200 and r.json()["ended"] is True and MINE not in cluster.schedulers[0].programs


def test_a_session_held_on_two_replicas_is_found_and_ended_on_both(cluster):
    cluster.schedulers[1].programs[MINE] = {"id": MINE, "turns": 1, "ended": False}  # it moved after a failure
    r = call(cluster.view, A, "s1")
    assert r.json()["replica"] == cluster.replicas[0] and r.json()["also_on"] == [cluster.replicas[1]]
    assert call(cluster.view, A, "s1", end=True).status_code == 200
    assert all(MINE not in s.programs for s in cluster.schedulers)  # no replica keeps a pin for it


def test_a_prefetch_is_answered_by_the_replica_that_acted_on_it(cluster):
    cluster.schedulers[1].programs[MINE] = {"id": MINE, "turns": 3, "ended": False}  # moved; parked there
    cluster.schedulers[1].parked.add(MINE)
    r = call(cluster.view, A, "s1", op="prefetch")
    assert r.status_code == 200 and r.json()["prefetch"] == "issued", r.text
    assert r.json()["replica"] == cluster.replicas[1] and r.json()["also_on"] == [cluster.replicas[0]]
    assert call(cluster.view, B, "s1", op="prefetch").status_code == 404  # never another tenant's


def answer(status: int | None, body: dict | None = None, replica: str = "http://r1") -> Answer:
    return Answer(replica, status, json.dumps(body) if body is not None else "", None if status else "refused")


def test_the_merge_of_session_answers():
    status, body = sessions.merge("s", [answer(404, {}), answer(200, {"id": "s"}, "http://r2")])
    assert status == 200 and body == {"id": "s", "replica": "http://r2"}
    assert sessions.merge("s", [answer(401, {}), answer(401, {})])[0] == 401
    assert sessions.merge("s", [answer(400, {"error": {"param": "session_id"}}), answer(400, {})])[0] == 400
    status, body = sessions.merge("s", [answer(404, {}), answer(None, replica="http://down")])
    assert status == 404 and body["missing"] == [{"replica": "http://down", "reason": "refused"}]
    # A replica that refuses a key the others take is misconfigured: named, not taken for the answer.
    status, body = sessions.merge("s", [answer(404, {}), answer(401, {}, "http://old-keys")])
    assert status == 404 and body["missing"][0]["replica"] == "http://old-keys"
    assert sessions.merge("s", [answer(None), answer(None)])[0] == 503


@pytest.mark.skipif(not router_available(), reason="vllm-router is not installed")
def test_the_router_drops_the_key_on_the_session_endpoints_which_is_why_the_cluster_answers_them():
    """vllm-router 0.1.17's forwarding of paths it has no handler for; the day it passes headers, this fails
    and the router's docstring and the README should say the session endpoints work through it with keys."""
    app, seen = FastAPI(), {}

    @app.get("/health")
    async def health() -> dict:
        return {}

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def anything(path: str, request: Request) -> dict:
        seen[path] = request.headers.get("authorization")
        return {}

    worker = ViewServer(app, free_port()).start()
    port = free_port()
    router = subprocess.Popen([sys.executable, "-m", "vllm_router.launch_router", "--port", str(port),
                               "--worker-urls", worker.base_url, "--policy", "consistent_hash",
                               "--prometheus-port", str(free_port())],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        headers = {"Authorization": "Bearer key-a", "X-Session-ID": "s1"}
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.post(f"http://127.0.0.1:{port}/v1/completions", headers=headers, timeout=5,
                              json={"model": "m", "prompt": "x"}).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the router did not start"
            time.sleep(0.3)
        httpx.get(f"http://127.0.0.1:{port}/v1/sessions/s1", headers=headers, timeout=10)
        assert seen == {"v1/completions": "Bearer key-a", "v1/sessions/s1": None}
    finally:
        router.terminate()
        router.wait(10)
        worker.stop()
