"""The cluster's one view: a small HTTP server beside the router with `/continuum/stats` and `/metrics` of them all,
and the session endpoints (`GET /v1/sessions/{id}`, `POST /v1/sessions/{id}/end` and `.../prefetch`) answered from
every replica (`continuum.cluster.sessions` says why the router cannot carry them with API keys); an end also tells
the router the program is gone (its placement table stops counting it).

The router forwards every path to one replica (the program's), so a replica's `/continuum/stats` through
the router is that replica's view only. This server asks every replica at once (`continuum.cluster.fanout`) and
merges (`stats_merge`, `metrics_merge`). Which replicas: those `continuum cluster` was given or started, and any
the router has taken on since (its ``POST /add_worker``), read from the router's ``GET /list_workers`` on each
request; a replica the router knows to be down is still asked, and named as missing.
`continuum cluster` runs it in a thread of its own process (``--stats-port``).
"""

from __future__ import annotations

import threading
import time
from typing import Sequence
from urllib.parse import quote

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from continuum.cluster import metrics_merge, sessions, stats_merge
from continuum.cluster.fanout import DEFAULT_TIMEOUT_S, fan_out, forwarded


async def members(configured: Sequence[str], router: str | None, timeout_s: float = 1.0) -> list[str]:
    """``configured``, then the router's other workers (none if the router does not answer)."""
    found = [u.rstrip("/") for u in configured]
    if router:
        try:
            async with httpx.AsyncClient(timeout=timeout_s) as client:
                urls = (await client.get(router.rstrip("/") + "/list_workers")).json().get("urls", [])
        except (httpx.HTTPError, ValueError, AttributeError):
            urls = []
        found += [u.rstrip("/") for u in urls if isinstance(u, str) and u.rstrip("/") not in found]
    return found


async def forget_placement(router: str, session_id: str, timeout_s: float = 1.0) -> None:
    """Tell the router a program ended, so its sticky table stops counting it (`continuum.cluster.router`). Best
    effort: a router that does not answer forgets it when it expires."""
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            await client.post(router.rstrip("/") + "/finish_session", params={"session_id": session_id})
    except httpx.HTTPError:
        pass


def cluster_app(replicas: Sequence[str], router: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> FastAPI:
    app = FastAPI(title="continuum cluster view")

    @app.get("/health")
    async def health() -> dict:
        return {"replicas": len(await members(replicas, router))}

    @app.get("/continuum/stats")
    async def stats(request: Request) -> JSONResponse:
        answers = await fan_out(await members(replicas, router), "/continuum/stats", forwarded(request.headers),
                                timeout_s)
        status, body = stats_merge.merge(answers)
        return JSONResponse(body, status_code=status)

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        answers = await fan_out(await members(replicas, router), "/metrics", timeout_s=timeout_s)
        return PlainTextResponse(metrics_merge.merge(answers), media_type=CONTENT_TYPE_LATEST)

    async def session_op(request: Request, session_id: str, method: str, suffix: str = "") -> JSONResponse:
        path = f"/v1/sessions/{quote(session_id, safe='')}{suffix}"
        answers = await fan_out(await members(replicas, router), path, forwarded(request.headers), timeout_s,
                                method=method)
        if suffix == "/prefetch":
            answers = sessions.acted_first(answers)
        status, body = sessions.merge(session_id, answers)
        return JSONResponse(body, status_code=status)

    @app.get("/v1/sessions/{session_id:path}")
    async def session_state(session_id: str, request: Request) -> JSONResponse:
        return await session_op(request, session_id, "GET")

    @app.post("/v1/sessions/{session_id:path}/end")
    async def end_session(session_id: str, request: Request) -> JSONResponse:
        answer = await session_op(request, session_id, "POST", "/end")
        if answer.status_code == 200 and router:
            await forget_placement(router, session_id)
        return answer

    @app.post("/v1/sessions/{session_id:path}/prefetch")
    async def prefetch_session(session_id: str, request: Request) -> JSONResponse:
        return await session_op(request, session_id, "POST", "/prefetch")

    return app


class ViewServer:
    """``cluster_app`` served by uvicorn in a daemon thread (the cluster's own process stays one process)."""

    def __init__(self, app: FastAPI, port: int, host: str = "127.0.0.1") -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                                    access_log=False))
        self.base_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
        self.thread = threading.Thread(target=self.server.run, name="continuum-cluster-view", daemon=True)

    def start(self, timeout_s: float = 30.0) -> "ViewServer":
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the cluster's stats server did not start on {self.base_url}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(10.0)
