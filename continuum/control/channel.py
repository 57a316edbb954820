"""A small request/reply channel between the API server process and the engine-core process.

vLLM runs the scheduler in its own process and offers no hook to reach it, so the scheduler binds a ZeroMQ
REP socket on an ipc address chosen by `continuum serve`; the HTTP layer asks it for stats and session state
and tells it when a session ends. Messages are small JSON objects, {"op": ..., ...} -> {"ok": bool, ...}, built
and read through `continuum.control.messages`: the server hands its handler the decoded object, the client
sends a typed request and returns the typed reply.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Callable

import zmq
import zmq.asyncio

from continuum.control.messages import ControlReply, ControlRequest, ErrorReply, parse_reply

log = logging.getLogger(__name__)
Handler = Callable[[dict], dict]


class ControlServer:
    """Answers control messages on a daemon thread; ``handler`` is responsible for its own locking.

    The socket belongs to that thread alone (ZeroMQ sockets are not thread-safe): `close` asks the thread to
    stop, and the thread closes it."""

    POLL_MS = 100  # how soon the thread notices `close`

    def __init__(self, address: str, handler: Handler) -> None:
        self.address = address
        self._handler = handler
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.REP)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.bind(address)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="continuum-control", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            while not self._stop.is_set():
                if self._sock.poll(self.POLL_MS):
                    self._sock.send(self._answer(self._sock.recv()))
        except zmq.ZMQError:  # the context went away at shutdown
            return
        finally:
            self._sock.close(linger=0)

    def _answer(self, raw: bytes) -> bytes:
        try:
            reply = self._handler(json.loads(raw))
        except Exception as exc:  # a bad message must not kill the engine
            log.exception("control message failed")
            reply = ErrorReply(f"{type(exc).__name__}: {exc}").to_wire()
        return json.dumps(reply, default=str).encode()

    def close(self, timeout_s: float = 1.0) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout_s)


class ControlClient:
    """Async client used by the HTTP layer; one short-lived socket per call keeps REQ/REP strictly paired."""

    def __init__(self, address: str, timeout_s: float = 5.0) -> None:
        self.address = address
        self.timeout_ms = int(timeout_s * 1000)
        self._ctx = zmq.asyncio.Context.instance()

    async def call(self, request: ControlRequest) -> ControlReply:
        """The engine's reply; `TimeoutError` if it does not answer within the timeout."""
        sock = self._ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.address)
        try:
            await sock.send(json.dumps(request.to_wire()).encode())
            if not await sock.poll(self.timeout_ms):
                raise TimeoutError(f"engine did not answer control op {request.op!r} in time")
            return parse_reply(json.loads(await sock.recv()))
        finally:
            sock.close(linger=0)
