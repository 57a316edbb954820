"""Small stand-ins for the HTTP layer's tests: FastAPI apps in place of vLLM's handlers (they record what reached
them) with Continuum's middleware in front, and a recorder in place of the engine's control handler."""

from __future__ import annotations

import asyncio
from argparse import Namespace

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from vllm.entrypoints.serve.middleware.authenticate import AuthenticationMiddleware

from continuum.control.channel import ControlServer
from continuum.http.middleware import ContinuumMiddleware


def stand_in_app(keys: list[str]) -> tuple[FastAPI, list]:
    """vLLM's app in miniature: handlers that record what they got; vLLM's auth; Continuum's middleware outermost."""
    app, seen = FastAPI(), []
    app.state.args = Namespace(api_key=keys)

    @app.post("/v1/completions")
    @app.post("/v1/chat/completions")
    @app.post("/invocations")
    async def handler(request: Request):
        seen.append((request.url.path, request.headers.getlist("x-session-id"), await request.body()))
        return JSONResponse({"ok": True})

    if keys:
        app.add_middleware(AuthenticationMiddleware, tokens=keys)
    app.add_middleware(ContinuumMiddleware)
    return app, seen


class Recorder:
    """Stands in for the engine's control handler (a real ControlServer over ZeroMQ): records each message."""

    def __init__(self, tmp_path) -> None:
        self.log: list[dict] = []
        self.reply: dict = {"ok": True}
        self.address = f"ipc://{tmp_path}/control.ipc"
        self.server = ControlServer(self.address, self.handle)

    def handle(self, msg: dict) -> dict:
        self.log.append(msg)
        return self.reply

    def ops(self, op: str) -> list[dict]:
        return [m for m in self.log if m.get("op") == op]


def streaming_app(events: int, log: list) -> FastAPI:
    """A completions handler streaming ``events`` events (``log`` learns when its stream closes) and a chat handler
    answering with a tool call, behind Continuum's middleware."""
    app = FastAPI()
    app.state.args = Namespace(api_key=None)

    @app.post("/v1/completions")
    async def handler(request: Request):
        async def stream():
            try:
                for i in range(events):
                    yield f'data: {{"choices": [{{"text": "t{i}"}}]}}\n\n'
                    await asyncio.sleep(0.01)
                yield "data: [DONE]\n\n"
            finally:
                log.append({"op": "<stream closed>"})

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        call = {"type": "function", "function": {"name": "run_tests", "arguments": "{}"}}
        return JSONResponse({"choices": [{"message": {"role": "assistant", "tool_calls": [call]}}]})

    app.add_middleware(ContinuumMiddleware)
    return app
