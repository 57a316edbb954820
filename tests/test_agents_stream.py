"""The SDK's streaming and its retry: SSE folded into the usual answer; a dropped connection is sent once more.

The drops are real: a socket server that sends the response head and part of the event stream, then closes
the connection (no engine needed, so not marked).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading

import pytest

from continuum_agents import AgentSession, AsyncAgentSession, SessionError
from continuum_agents.stream import StreamAccumulator, StreamError


def sse(*events: dict) -> list[str]:
    return [f"data: {json.dumps(e)}" for e in events] + ["data: [DONE]"]


CHAT_EVENTS = [
    {"id": "c1", "model": "m", "created": 1, "prompt_token_ids": [1, 2, 3],
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
    {"choices": [{"index": 0, "delta": {"content": "Let me "}, "token_ids": [10, 11]}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                         "function": {"name": "grep", "arguments": "{\"pat"}}]},
                  "token_ids": [12]}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "tern\": \"x\"}"}}]},
                  "token_ids": [13], "finish_reason": "tool_calls"}]},
    {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4,
                              "prompt_tokens_details": {"cached_tokens": 2}}},
]


def test_chat_stream_folds_into_one_answer():
    acc = StreamAccumulator(chat=True)
    for line in [": comment", ""] + sse(*CHAT_EVENTS):
        acc.feed_line(line)
    out = acc.result()
    choice = out["choices"][0]
    assert acc.complete and acc.first_token_s is not None
    assert choice["message"]["content"] == "Let me " and choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"] == [{"id": "call_1", "type": "function",
                                                "function": {"name": "grep", "arguments": "{\"pattern\": \"x\"}"}}]
    assert choice["token_ids"] == [10, 11, 12, 13] and out["prompt_token_ids"] == [1, 2, 3]
    assert out["usage"]["prompt_tokens_details"]["cached_tokens"] == 2 and out["id"] == "c1"


def test_text_stream_cut_short_is_incomplete_and_errors_raise():
    acc = StreamAccumulator(chat=False)
    acc.feed_line('data: {"choices": [{"index": 0, "text": "ab", "token_ids": [5]}]}')
    assert not acc.complete and acc.result()["choices"][0]["text"] == "ab"
    acc.feed_line('data: {"choices": [{"index": 0, "text": "c", "finish_reason": "length"}]}')
    assert acc.complete and acc.result()["choices"][0]["text"] == "abc"
    with pytest.raises(StreamError, match="boom"):
        StreamAccumulator(chat=True).feed_line('data: {"error": {"message": "boom"}}')


class DroppingServer:
    """An HTTP server on a real socket: the first ``drops`` connections get half an event stream, then a close."""

    def __init__(self, drops: int) -> None:
        self.drops = drops
        self.requests: list[tuple[str, bytes]] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _read_request(self, conn: socket.socket) -> tuple[str, bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, body = data.split(b"\r\n\r\n", 1)
        length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))
        while len(body) < length:
            body += conn.recv(65536)
        return head.decode(), body

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.requests.append(self._read_request(conn))
                head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                events = "".join(f"{line}\n\n" for line in sse(*CHAT_EVENTS)).encode()
                if len(self.requests) <= self.drops:
                    part = events[:120]
                    conn.sendall(head + b"%x\r\n" % len(part) + part + b"\r\n")
                    conn.shutdown(socket.SHUT_RDWR)  # the connection drops mid-answer
                    continue
                conn.sendall(head + b"%x\r\n" % len(events) + events + b"\r\n0\r\n\r\n")

    def close(self) -> None:
        self.sock.close()


def test_a_dropped_turn_is_sent_once_more():
    srv = DroppingServer(drops=1)
    try:
        with AgentSession(srv.url, model="m", session_id="prog-r") as s:
            answer = s.chat([{"role": "user", "content": "hi"}], max_tokens=4)
        assert answer["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "grep"
        assert s.retries == 1 and s.turns == 1 and s.turn_stats[0].attempts == 2
        stats = s.turn_stats[0]
        assert stats.prompt_tokens == 3 and stats.cached_tokens == 2 and stats.output_ids == [10, 11, 12, 13]
        posts = [(h, json.loads(b)) for h, b in srv.requests if h.startswith("POST /v1/chat")]
        assert len(posts) == 2 and posts[0][1] == posts[1][1]  # the same request, twice
        assert posts[0][1]["session_id"] == "prog-r" and posts[0][1]["stream"] is True
        assert all("x-session-id: prog-r" in h.lower() for h, _ in posts)
    finally:
        srv.close()


def test_a_second_drop_fails_the_turn():
    srv = DroppingServer(drops=2)
    try:
        s = AgentSession(srv.url, model="m")
        with pytest.raises(SessionError, match="RemoteProtocolError|ended before"):
            s.chat([{"role": "user", "content": "hi"}])
        assert s.retries == 1 and s.turns == 0
        assert sum(h.startswith("POST /v1/chat") for h, _ in srv.requests) == 2
    finally:
        srv.close()


def test_async_session_retries_too():
    srv = DroppingServer(drops=1)

    async def go() -> AsyncAgentSession:
        async with AsyncAgentSession(srv.url, model="m") as s:
            await s.chat([{"role": "user", "content": "hi"}])
        return s

    try:
        s = asyncio.run(go())
        assert s.retries == 1 and s.turns == 1 and s.turn_stats[0].output_text == "Let me "
    finally:
        srv.close()
