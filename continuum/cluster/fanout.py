"""One request to every replica at once (a GET, or a POST without a body): each replica's answer, or why it gave none.

The cluster's view (`continuum.cluster.view`) is only as slow as its slowest replica, so each replica gets a hard
deadline for the whole exchange (connect, headers, body): a replica that is down, partitioned or stuck is named in
the answer rather than holding it. Nothing here raises for a replica's failure.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Mapping, Sequence

import httpx

DEFAULT_TIMEOUT_S = 3.0
# The caller's headers a replica needs to answer as it would answer the caller (its API key: tenants see their own).
FORWARDED = ("authorization",)


@dataclass(frozen=True)
class Answer:
    replica: str
    status: int | None = None  # None: no HTTP answer at all
    text: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    def reason(self) -> str:
        """Why this replica is missing from a merged view."""
        return self.error or f"HTTP {self.status}"


def forwarded(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() in FORWARDED}


async def _call(client: httpx.AsyncClient, method: str, replica: str, path: str, headers: Mapping[str, str],
                timeout_s: float) -> Answer:
    try:
        r = await asyncio.wait_for(client.request(method, replica.rstrip("/") + path, headers=dict(headers)),
                                   timeout_s)
    except asyncio.TimeoutError:
        return Answer(replica, error=f"no answer in {timeout_s:g} s")
    except httpx.HTTPError as exc:
        return Answer(replica, error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    return Answer(replica, r.status_code, r.text)


async def fan_out(replicas: Sequence[str], path: str, headers: Mapping[str, str] | None = None,
                  timeout_s: float = DEFAULT_TIMEOUT_S,
                  transport: httpx.AsyncBaseTransport | None = None, method: str = "GET") -> list[Answer]:
    """``method path`` on every replica (in ``replicas`` order); ``transport``: tests answer without a network."""
    async with httpx.AsyncClient(timeout=timeout_s, transport=transport) as client:
        return list(await asyncio.gather(*(_call(client, method, r, path, headers or {}, timeout_s)
                                           for r in replicas)))
