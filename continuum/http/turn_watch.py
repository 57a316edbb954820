"""What the HTTP layer tells the scheduler about one turn of a program while its answer goes out.

- the tool the answer calls (OpenAI ``tool_calls`` or a fenced bash block, `continuum.http.tool_names`), when the
  client gave no hint: the pin's TTL is re-decided for that tool;
- how many streamed events the client has taken (only with the ``backpressure`` priority term): every
  `REPORT_EVERY` events and at the end. Each ``send`` returns only once the transport took the bytes, so a
  client that stops reading stalls the count, and the scheduler holds back its stream. Reports go out in the
  background, one at a time: the stream never waits for the engine;
- that the client went away before the answer was complete: vLLM aborts the turn, and the scheduler must not
  pin what nobody will come back for. The engine is told before vLLM learns of the disconnect (it learns it from
  the same ``receive``), so the mark is there when vLLM's abort arrives.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

from continuum.control.channel import ControlClient
from continuum.control.dp import DPControlClient
from continuum.control.messages import ClientGone, EventsRead, SessionQuery, ToolChosen
from continuum.http.tool_names import ResponseToolReader

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
REPORT_EVERY = 16


def sse_events(chunk: bytes) -> int:
    """Data events in a chunk of an SSE stream, not counting the final ``[DONE]``."""
    return chunk.count(b"data:") - chunk.count(b"data: [DONE]")


class TurnWatch:
    def __init__(self, control: ControlClient | DPControlClient, program: str, read_tool: bool,
                 count_events: bool) -> None:
        self.control = control
        self.program = program
        self.reader = ResponseToolReader() if read_tool else None
        self.count_events = count_events
        self.events = 0
        self.reported = 0
        self.report: asyncio.Task | None = None  # the delivery report in flight
        self.done = False  # the whole answer was handed to the transport
        self.gone = False

    def wrap_send(self, send: Send) -> Send:
        async def _send(message: dict) -> None:
            last = message["type"] == "http.response.body" and not message.get("more_body")
            # Done before the last send: the server reports a disconnect as soon as the response is complete,
            # and that report may run before this send returns.
            self.done = self.done or last
            try:
                await send(message)
            except Exception:  # the transport refused: the client is gone
                await self._client_gone()
                raise
            if message["type"] == "http.response.body":
                await self._sent(message.get("body", b""), last)

        return _send

    def wrap_receive(self, receive: Receive) -> Receive:
        async def _receive() -> dict:
            message = await receive()
            if message["type"] == "http.disconnect" and not self.done:
                await self._client_gone()
            return message

        return _receive

    async def _sent(self, body: bytes, last: bool) -> None:
        if self.reader is not None:
            self.reader.feed(body)
        if self.count_events:
            self.events += sse_events(body)
            due = self.events - self.reported >= REPORT_EVERY or (last and self.events > self.reported)
            idle = self.report is None or self.report.done()
            if due and (idle or last):  # else the next report says more; the final count always goes out
                self.reported = self.events
                self.report = asyncio.create_task(self._tell_after(self.report, EventsRead(self.program,
                                                                                         self.events)))
        if last:
            if self.reader is not None and (tool := self.reader.tool()):
                await self._tell(ToolChosen(self.program, tool))

    async def _tell_after(self, previous: asyncio.Task | None, message: SessionQuery) -> None:
        """Reports go out one at a time, in order: the final count waits for the report in flight."""
        if previous is not None:
            await asyncio.wait([previous])
        await self._tell(message)

    async def _client_gone(self) -> None:
        if not self.gone and not self.done:  # after a complete answer, the turn finished: nothing to say
            self.gone = True
            await self._tell(ClientGone(self.program))

    async def _tell(self, message: SessionQuery) -> None:
        try:
            await self.control.call(message)
        except TimeoutError:
            pass  # advice only: the scheduler's own decision stands
