"""Keep each program on one data-parallel rank: an ASGI middleware that picks the rank of every turn.

vLLM's API server balances requests over data-parallel ranks by load, so a program's turns would scatter and its
pinned KV would sit on a rank its next turn never reaches. vLLM accepts a rank per request in the
``X-data-parallel-rank`` header (meant for routers); this middleware sets it for every completion request that
names a program (``session_id`` body field, ``X-Session-ID`` header or ``vllm_xargs.session_id``, else a hint
dialect's name for it, `continuum.http.dialects`): the program's
rank, by `continuum.cluster.affinity.SessionAffinity` (a hash of the session id; the least loaded rank only when that
one is overloaded, and the program stays where it went). Load is what this API server has in flight on each rank.
A request that already carries the header (a router's choice) is left alone. Ending a session forgets its rank.

`continuum serve` adds it (``--middleware``) when ``--data-parallel-size`` is above 1.
"""

from __future__ import annotations

import re
from typing import Any, Callable
from urllib.parse import unquote

from starlette.datastructures import Headers

from continuum.cluster.affinity import SessionAffinity
from continuum.http.dialects import program_named
from continuum.http.middleware import PROGRAM_PATHS, parse_json, program_id_of, read_body, replaying
from continuum.policy.config import ContinuumConfig

RANK_HEADER = b"x-data-parallel-rank"
_END_PATH = re.compile(r"^/v1/sessions/(?P<id>[^/]+)/end/?$")


class DPAffinityMiddleware:
    def __init__(self, app: Callable, size: int | None = None) -> None:
        self.app = app
        self.size = size or ContinuumConfig.from_env().dp_size
        self.affinity = SessionAffinity(self.size)
        self.in_flight = [0] * self.size

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or self.size <= 1:
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        if method == "POST" and (m := _END_PATH.match(path)):
            self.affinity.forget(unquote(m.group("id")))
            return await self.app(scope, receive, send)
        headers = scope.get("headers", [])
        if method != "POST" or path not in PROGRAM_PATHS or any(k.lower() == RANK_HEADER for k, _ in headers):
            return await self.app(scope, receive, send)
        raw, more = await read_body(receive)
        body = parse_json(raw)
        rank = self.affinity.pick(program_id_of(scope, body) or program_named(Headers(scope=scope), body),
                                  self.in_flight)
        scope = {**scope, "headers": [*headers, (RANK_HEADER, str(rank).encode())]}
        self.in_flight[rank] += 1
        done = False

        async def _send(message: dict[str, Any]) -> None:
            nonlocal done
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body") and not done:
                done = True
                self.in_flight[rank] -= 1

        try:
            await self.app(scope, replaying(raw, more, receive), _send)
        finally:
            if not done:  # the client went away or the app failed: the request no longer counts
                self.in_flight[rank] -= 1
