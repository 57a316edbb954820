"""The host link: how long a context's KV takes to cross between GPU and host memory.

    load_seconds(bytes)  = latency_s + bytes / h2d_bytes_per_s    (host to device)
    store_seconds(bytes) = latency_s + bytes / d2h_bytes_per_s    (device to host)

With a host-memory KV tier (vLLM's ``--kv-offloading-size``) a prefix that left the GPU
is reloaded over this link while the returning request waits, so :meth:`HostLink.load_seconds`
is the ``L`` of the tier rule (:mod:`kvttl.tier_rule`), unless a prefetch lands before
the program returns (:meth:`HostLink.exposed_load_seconds` with ``prefetch=True``: 0).
Stores are written through as blocks are computed, off every request's path, so the
rule does not price them; :meth:`HostLink.store_seconds` tells a caller (or a simulator)
when a copy is complete, e.g. before the GPU blocks it came from may be reused.

Example, measured on an H200: about 55.3e9 B/s host to device. Llama-3.1-8B keeps
131,072 bytes of KV per token (32 layers x 8 KV heads x 128 dims x 2 tensors x 2 bytes),
so a 10,000-token context is 1.31 GB: about 24 ms to load, against about 320 ms to
re-prefill. Measure the link on the target machine (pinned host buffers, the engine's
transfer sizes) rather than trusting a datasheet figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["HostLink"]


@dataclass(frozen=True)
class HostLink:
    """Bandwidths (bytes/s, > 0) of the GPU-host link each way and a fixed cost per transfer (s, >= 0)."""

    h2d_bytes_per_s: float
    d2h_bytes_per_s: float
    latency_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("h2d_bytes_per_s", "d2h_bytes_per_s"):
            v = float(getattr(self, name))
            if not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
            object.__setattr__(self, name, v)
        latency = float(self.latency_s)
        if not math.isfinite(latency) or latency < 0:
            raise ValueError(f"latency_s must be a finite number >= 0, got {latency!r}")
        object.__setattr__(self, "latency_s", latency)

    @staticmethod
    def _bytes(num_bytes: float) -> float:
        b = float(num_bytes)
        if not math.isfinite(b) or b < 0:
            raise ValueError(f"num_bytes must be a finite number >= 0, got {num_bytes!r}")
        return b

    def load_seconds(self, num_bytes: float) -> float:
        """Seconds to bring ``num_bytes`` of KV from host memory to the GPU (0.0 for nothing)."""
        b = self._bytes(num_bytes)
        return self.latency_s + b / self.h2d_bytes_per_s if b > 0 else 0.0

    def store_seconds(self, num_bytes: float) -> float:
        """Seconds to copy ``num_bytes`` of KV from the GPU to host memory (0.0 for nothing)."""
        b = self._bytes(num_bytes)
        return self.latency_s + b / self.d2h_bytes_per_s if b > 0 else 0.0

    def exposed_load_seconds(self, num_bytes: float, prefetch: bool = False) -> float:
        """Seconds a returning turn waits for its parked KV: the load, or 0.0 when the caller
        prefetches it so that it lands before the program is back (the caller's promise)."""
        load = self.load_seconds(num_bytes)
        return 0.0 if prefetch else load

    def to_dict(self) -> dict[str, Any]:
        """JSON-able parameters."""
        return {"h2d_bytes_per_s": self.h2d_bytes_per_s, "d2h_bytes_per_s": self.d2h_bytes_per_s,
                "latency_s": self.latency_s}
