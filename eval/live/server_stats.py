"""What a run reads from the server besides completions: the model, liveness, and Continuum's counters.

- :func:`server_info`: the served model ids, ``max_model_len`` and ``owned_by`` from ``/v1/models``, and the
  ``/continuum/stats`` snapshot when the server has it (plain vLLM does not: None);
- :func:`alive`: ``/health`` or ``/v1/models`` answers (used to tell a dead server from a failed request);
- :class:`StatsSampler`: polls ``/continuum/stats`` during a run for the peak of pinned blocks;
- :func:`pin_delta`: the pin counters of a run = the server's counters after minus before.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from continuum_eval.results.metrics import PIN_KEYS

__all__ = ["ServerInfoError", "server_info", "get_stats", "alive", "StatsSampler", "pin_delta"]


class ServerInfoError(RuntimeError):
    """The server cannot be reached or serves no model."""


async def server_info(client: httpx.AsyncClient, base_url: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """The served model id and its max_model_len (if the server says), and whether /continuum/stats exists."""
    try:
        r = await client.get(base_url + "/v1/models", timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise ServerInfoError(f"cannot reach {base_url}: {type(exc).__name__}: {exc}") from None
    if r.status_code != 200:
        raise ServerInfoError(f"{base_url}/v1/models answered HTTP {r.status_code}")
    try:
        data = r.json().get("data") or []
    except ValueError:
        data = []
    if not data:
        raise ServerInfoError(f"{base_url}/v1/models lists no model")
    info = {"models": [m.get("id") for m in data], "max_model_len": data[0].get("max_model_len"),
            "owned_by": data[0].get("owned_by")}
    info["stats"] = await get_stats(client, base_url)
    return info


async def get_stats(client: httpx.AsyncClient, base_url: str) -> dict[str, Any] | None:
    try:
        r = await client.get(base_url + "/continuum/stats", timeout=10.0)
        if r.status_code == 200:
            body = r.json()
            return body if isinstance(body, dict) else None
    except (httpx.HTTPError, ValueError):
        pass
    return None


async def alive(client: httpx.AsyncClient, base_url: str) -> bool:
    for path in ("/health", "/v1/models"):
        try:
            r = await client.get(base_url + path, timeout=5.0)
            if r.status_code < 500:
                return True
        except httpx.HTTPError:
            continue
    return False


class StatsSampler:
    """Polls /continuum/stats during a run for the peak of pinned blocks."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, interval_s: float) -> None:
        self.client, self.base_url, self.interval_s = client, base_url, interval_s
        self.peak = 0
        self.last: dict[str, Any] | None = None

    async def run(self) -> None:
        while True:
            stats = await get_stats(self.client, self.base_url)
            if stats is not None:
                self.last = stats
                self.peak = max(self.peak, int((stats.get("pins") or {}).get("pinned_blocks", 0) or 0))
            await asyncio.sleep(self.interval_s)


def pin_delta(before: dict[str, Any] | None, after: dict[str, Any] | None, sampled_peak: int) -> dict[str, int]:
    b = (before or {}).get("pins") or {}
    a = (after or {}).get("pins") or {}
    out = {k: max(0, int(a.get(k, 0) or 0) - int(b.get(k, 0) or 0)) for k in PIN_KEYS if k != "peak_blocks"}
    # The server's peak is since its start: it belongs to this run only if it rose during it.
    server_peak_a, server_peak_b = int(a.get("peak_blocks", 0) or 0), int(b.get("peak_blocks", 0) or 0)
    out["peak_blocks"] = max(sampled_peak, server_peak_a if server_peak_a > server_peak_b else 0)
    return out
