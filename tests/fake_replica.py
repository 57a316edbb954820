"""A stand-in for a `continuum serve` replica, no engine: `/health`, `/continuum/stats`, `/metrics` and a
`/v1/completions` that says which replica answered. Served by uvicorn in a thread of the test process; stopping it
closes its port, as a dead host would."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from continuum.cluster.view import ViewServer
from continuum.serve.launch import free_port


def exposition(name: str, requests: int) -> str:
    registry = CollectorRegistry()
    Counter("vllm:request_success", "finished requests", ["model_name"], registry=registry).labels("tiny").inc(
        requests)
    Gauge("continuum_pins_active", "pinned programs", registry=registry).set(len(name))
    return generate_latest(registry).decode()


def stats_of(name: str, programs: list[str], blocks: int = 100, free: int = 50) -> dict:
    return {"config": {"policy": "continuum"}, "programs": [{"id": p, "turns": 1} for p in programs],
            "num_programs": len(programs), "pins": {"active": len(programs), "hit": 2},
            "kv": {"num_blocks": blocks, "free_blocks": free, "usage": 1 - free / blocks},
            "preempted_for_waiting": 1, "sched_step_ms": {"mean": 1.0, "p99": 2.0}}


class FakeReplica:
    """``stats``: its `/continuum/stats`; ``key``: 401 without ``Authorization: Bearer KEY``; ``delay_s``: every
    answer waits that long (a stuck replica)."""

    def __init__(self, name: str, programs: list[str] = (), key: str | None = None, delay_s: float = 0.0,
                 port: int | None = None) -> None:
        self.name, self.key, self.delay_s = name, key, delay_s
        self.stats = stats_of(name, list(programs))
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: ViewServer | None = None

    def app(self) -> FastAPI:
        app = FastAPI()

        async def gate(request: Request) -> JSONResponse | None:
            await asyncio.sleep(self.delay_s)
            if self.key and request.headers.get("authorization") != f"Bearer {self.key}":
                return JSONResponse({"error": "Unauthorized"}, status_code=401)
            return None

        @app.get("/health")
        async def health() -> dict:
            return {}

        @app.get("/continuum/stats")
        async def stats(request: Request) -> JSONResponse:
            return await gate(request) or JSONResponse(self.stats)

        @app.get("/metrics")
        async def metrics() -> PlainTextResponse:
            await asyncio.sleep(self.delay_s)
            return PlainTextResponse(exposition(self.name, 3))

        @app.post("/v1/completions")
        async def completions(request: Request) -> dict:
            return {"replica": self.name, "session": request.headers.get("x-session-id"),
                    "choices": [{"text": "ok", "index": 0, "finish_reason": "length"}]}

        return app

    def start(self) -> "FakeReplica":
        self.server = ViewServer(self.app(), self.port).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def start_cluster(args: list[str], log_dir) -> tuple["subprocess.Popen[str]", dict | None]:
    """`continuum cluster ARGS` in its own session; the process and its "ready" line (None if it never said it)."""
    cmd = [sys.executable, "-m", "continuum.serve.cli", "cluster", *args, "--log-dir", str(log_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    ready = next((json.loads(line.split("ready ", 1)[1]) for line in proc.stdout
                  if line.startswith("continuum cluster: ready ")), None)
    return proc, ready
