"""The cluster's one view: `/continuum/stats` and `/metrics` of every replica, merged; a replica that does not
answer is named, never an error. Fake replicas (no engine): in-memory transports, then real ports."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from continuum.cluster import metrics_merge, stats_merge
from continuum.cluster.fanout import Answer, fan_out
from continuum.cluster.view import ViewServer, cluster_app, members
from continuum.serve.launch import free_port
from tests.fake_replica import FakeReplica, exposition, stats_of

A, B, C = "http://a:1", "http://b:2", "http://c:3"


def ok(replica: str, body: dict) -> Answer:
    return Answer(replica, 200, json.dumps(body))


def test_programs_carry_their_replica_and_counters_add_up():
    status, view = stats_merge.merge([ok(A, stats_of("a", ["p1", "p2"], 100, 50)),
                                      ok(B, stats_of("b", ["p3"], 300, 0))])
    assert status == 200
    assert {(p["id"], p["replica"]) for p in view["programs"]} == {("p1", A), ("p2", A), ("p3", B)}
    assert view["num_programs"] == 3 and view["pins"] == {"active": 3, "hit": 4}
    assert view["kv"]["num_blocks"] == 400 and view["kv"]["usage"] == pytest.approx(350 / 400)
    assert view["preempted_for_waiting"] == 2 and view["sched_step_ms"] == {"mean": 1.0, "p99": 2.0}
    assert [r["replica"] for r in view["replicas"]] == [A, B] and "programs" not in view["replicas"][0]
    assert view["missing"] == [] and view["num_replicas"] == 2


def test_a_replica_that_does_not_answer_is_named_not_an_error():
    status, view = stats_merge.merge([ok(A, stats_of("a", ["p1"])), Answer(B, error="ConnectError"),
                                      Answer(C, 500, "boom")])
    assert status == 200
    assert view["missing"] == [{"replica": B, "reason": "ConnectError"}, {"replica": C, "reason": "HTTP 500"}]
    assert [p["id"] for p in view["programs"]] == ["p1"] and view["num_replicas"] == 3
    status, view = stats_merge.merge([Answer(A, error="down"), Answer(B, error="down")])
    assert status == 200 and view["programs"] == [] and len(view["missing"]) == 2


def test_a_key_every_replica_refuses_is_refused_and_a_tenant_view_stays_a_tenant_view():
    status, body = stats_merge.merge([Answer(A, 401, "{}"), Answer(B, error="down")])
    assert status == 401 and body["error"] == "Unauthorized"
    tenant = {"config": {}, "pins": {"active": 1}, "kv": {"num_blocks": 10, "free_blocks": 5, "usage": 0.5},
              "programs": [{"id": "mine"}], "num_programs": 1}
    _, view = stats_merge.merge([ok(A, tenant)])
    assert "preempted_for_waiting" not in view and "sched_step_ms" not in view


def test_metrics_get_a_replica_label_and_an_up_series():
    text = metrics_merge.merge([Answer(A, 200, exposition("a", 3)), Answer(B, 200, exposition("bb", 5)),
                                Answer(C, error="down")])
    samples = {(s.name, s.labels.get("replica")): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("vllm:request_success_total", A)] == 3 and samples[("vllm:request_success_total", B)] == 5
    assert samples[("continuum_pins_active", B)] == 2
    assert [samples[(metrics_merge.UP, r)] for r in (A, B, C)] == [1, 1, 0]
    assert text.count("# TYPE vllm:request_success_total counter") == 1  # one family, both replicas' samples


def test_fan_out_names_refused_and_stuck_replicas_within_its_deadline():
    async def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "b":
            raise httpx.ConnectError("refused", request=request)
        if request.url.host == "c":
            await asyncio.sleep(10)
        return httpx.Response(200, text="{}", headers={"x-auth": request.headers.get("authorization", "")})

    answers = asyncio.run(fan_out([A, B, C], "/continuum/stats", {"Authorization": "Bearer k", "Cookie": "x"},
                                  timeout_s=0.3, transport=httpx.MockTransport(answer)))
    assert [a.replica for a in answers] == [A, B, C]
    assert answers[0].ok and answers[1].error.startswith("ConnectError") and "no answer in 0.3 s" in answers[2].error


@pytest.fixture
def replicas():
    started = [FakeReplica("a", ["p1", "p2"]).start(), FakeReplica("b", ["p3"]).start()]
    yield started
    for r in started:
        r.stop()


def test_the_view_merges_live_replicas_and_names_a_dead_one(replicas):
    dead = f"http://127.0.0.1:{free_port()}"
    urls = [r.url for r in replicas] + [dead]
    view = ViewServer(cluster_app(urls, timeout_s=2.0), free_port()).start()
    try:
        r = httpx.get(view.base_url + "/continuum/stats", timeout=10)
        assert r.status_code == 200
        body = r.json()
        assert {(p["id"], p["replica"]) for p in body["programs"]} == {
            ("p1", replicas[0].url), ("p2", replicas[0].url), ("p3", replicas[1].url)}
        assert [m["replica"] for m in body["missing"]] == [dead]
        text = httpx.get(view.base_url + "/metrics", timeout=10).text
        up = {s.labels["replica"]: s.value for f in text_string_to_metric_families(text) for s in f.samples
              if s.name == metrics_merge.UP}
        assert up == {replicas[0].url: 1, replicas[1].url: 1, dead: 0}
    finally:
        view.stop()


def test_the_view_forwards_the_callers_key():
    keyed = FakeReplica("k", ["mine"], key="secret").start()
    view = ViewServer(cluster_app([keyed.url], timeout_s=2.0), free_port()).start()
    try:
        assert httpx.get(view.base_url + "/continuum/stats", timeout=10).status_code == 401
        r = httpx.get(view.base_url + "/continuum/stats", headers={"Authorization": "Bearer secret"}, timeout=10)
        assert r.status_code == 200 and [p["id"] for p in r.json()["programs"]] == ["mine"]
    finally:
        view.stop()
        keyed.stop()


def test_replicas_the_router_took_on_later_are_asked_too():
    router_app = FastAPI()

    @router_app.get("/list_workers")
    async def list_workers() -> dict:  # vllm-router's answer: every worker it has, added at run time included
        return {"urls": [A, "http://d:4/"]}

    router = ViewServer(router_app, free_port()).start()
    try:
        assert asyncio.run(members([A, B], router.base_url)) == [A, B, "http://d:4"]
    finally:
        router.stop()
    assert asyncio.run(members([A], router.base_url)) == [A]  # the router does not answer: the configured ones
