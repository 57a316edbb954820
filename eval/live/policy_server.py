"""One policy's server in a live comparison: started with the flags every server shares, or one already up.

:class:`PolicyServer` starts ``continuum serve MODEL --policy P ...`` with ``continuum_eval.live.settings``'s shared
flags and the policy's own (``serve_command``) through ``continuum_eval.live.runs.start_server`` (vLLM's development
endpoints on, so the bench can empty the prefix cache between policies; log in ``OUT/serve-POLICY.log``), and stops it
on exit; given a ``base_url`` it uses that server as is. :class:`PinPeak` samples ``/continuum/stats`` during a run for
the peak of pinned blocks.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx

from continuum_eval.live.runs import start_server
from continuum_eval.live.settings import BenchConfig, serve_command

__all__ = ["PolicyServer", "PinPeak", "continuum_stats", "served_model"]


class PolicyServer:
    def __init__(self, label: str, bench: BenchConfig, base_url: str | None = None) -> None:
        self.label, self.bench = label, bench
        self.base_url = base_url or ""
        self.args: list[str] = []
        self.proc = None

    def __enter__(self) -> "PolicyServer":
        if self.base_url:
            return self
        model, self.args = serve_command(self.label, self.bench)
        self.proc = start_server(self.label, model, self.args, self.bench)
        self.base_url = self.proc.base_url
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.stop()


def continuum_stats(base_url: str) -> dict[str, Any] | None:
    """``/continuum/stats``, or None (plain vLLM, or unreachable)."""
    try:
        r = httpx.get(base_url + "/continuum/stats", timeout=10)
        return r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def served_model(base_url: str) -> tuple[str, int]:
    """(model id, max_model_len) of the server's first model."""
    r = httpx.get(base_url + "/v1/models", timeout=30)
    data = r.json()["data"][0]
    return data["id"], int(data.get("max_model_len") or 0)


class PinPeak(threading.Thread):
    """Samples /continuum/stats every half second until ``stop`` is set; ``peak`` = most pinned blocks seen."""

    def __init__(self, base_url: str) -> None:
        super().__init__(daemon=True)
        self.base_url, self.peak, self.stop = base_url, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            s = continuum_stats(self.base_url) or {}
            self.peak = max(self.peak, int((s.get("pins") or {}).get("pinned_blocks", 0) or 0))
