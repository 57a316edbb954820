"""What the HTTP layer tells the scheduler about one turn of a program while its answer goes out.

- the tool the answer calls (OpenAI ``tool_calls`` or a fenced bash block, `continuum.tool_names`), when the
  client gave no hint: the pin's TTL is re-decided for that tool;
- how many streamed events the client has taken (only with the ``backpressure`` priority term): every
  `REPORT_EVERY` events and at the end. Each ``send`` returns only once the transport took the bytes, so a
  client that stops reading stalls the count, and the scheduler holds back its stream;
- that the client went away before the answer was complete: vLLM aborts the turn, and the scheduler must not
  pin what nobody will come back for. The engine is told before vLLM learns of the disconnect (it learns it from
  the same ``receive``), so the mark is there when vLLM's abort arrives.
"""

from __future__ import annotations

from typing import Awaitable, Callable

from continuum.control import ControlClient
from continuum.tool_names import ResponseToolReader

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
REPORT_EVERY = 16


def sse_events(chunk: bytes) -> int:
    """Data events in a chunk of an SSE stream, not counting the final ``[DONE]``."""
    return chunk.count(b"data:") - chunk.count(b"data: [DONE]")


class TurnWatch:
    def __init__(self, control: ControlClient, program: str, read_tool: bool, count_events: bool) -> None:
        self.control = control
        self.program = program
        self.reader = ResponseToolReader() if read_tool else None
        self.count_events = count_events
        self.events = 0
        self.reported = 0
        self.done = False  # the whole answer was handed to the transport
        self.gone = False

    def wrap_send(self, send: Send) -> Send:
        async def _send(message: dict) -> None:
            try:
                await send(message)
            except Exception:  # the transport refused: the client is gone
                await self._client_gone()
                raise
            if message["type"] == "http.response.body":
                await self._sent(message.get("body", b""), not message.get("more_body"))

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
            if self.events - self.reported >= REPORT_EVERY or (last and self.events > self.reported):
                self.reported = self.events
                await self._tell("delivered", tokens=self.events)
        if last:
            self.done = True
            if self.reader is not None and (tool := self.reader.tool()):
                await self._tell("tool", tool=tool)

    async def _client_gone(self) -> None:
        if not self.gone and not self.done:
            self.gone = True
            await self._tell("disconnect")

    async def _tell(self, op: str, **fields: object) -> None:
        try:
            await self.control.call(op, id=self.program, **fields)
        except TimeoutError:
            pass  # advice only: the scheduler's own decision stands
