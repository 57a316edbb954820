"""Reload-cost model: seconds of prefill a context costs when its KV cache is gone.

    seconds(tokens) = a + b * tokens + c * tokens**2

The linear term is the weights' work per token (the MLPs and projections), the
quadratic term is attention over the context (each new token attends to all the
earlier ones), and ``a`` is the fixed cost of a step. This is the ``R`` of the TTL
rule (:mod:`kvttl.ttl_rule`).

The defaults are CPU-ish, for the embedded 135M-parameter model on a many-core CPU:
``a = 0.02`` s, ``b = 2.5e-4`` s/token (about 4,000 prefill tokens/s), ``c = 2e-9``
s/token^2 (attention adds about 0.13 s at 8k tokens). They are placeholders: fit the
model from measured prefills with :meth:`ReloadCostModel.fit` (or from a simulator's
GPU profile) before trusting the TTLs it produces.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ReloadCostModel"]


@dataclass(frozen=True)
class ReloadCostModel:
    """Quadratic prefill time in context tokens, with non-negative coefficients."""

    a: float = 0.02
    b: float = 2.5e-4
    c: float = 2e-9

    def __post_init__(self) -> None:
        for name in ("a", "b", "c"):
            v = float(getattr(self, name))
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"coefficient {name} must be a finite number >= 0, got {v!r}")
            object.__setattr__(self, name, v)

    def seconds(self, tokens: int, cached_tokens: int = 0) -> float:
        """Prefill seconds to rebuild ``tokens`` of context, ``cached_tokens`` of it still cached.

        Nothing to rebuild (``tokens <= cached_tokens``) costs 0.0.
        """
        t = max(0, int(tokens))
        h = min(max(0, int(cached_tokens)), t)
        if t <= h:
            return 0.0
        if h == 0:
            return self.a + self.b * t + self.c * t * t
        # Prefill of the uncached tail: its own linear work plus attention over the whole context.
        return self.a + self.b * (t - h) + self.c * (t * t - h * h)

    @classmethod
    def fit(cls, pairs: Iterable[tuple[float, float]]) -> ReloadCostModel:
        """Least-squares fit of measured ``(tokens, seconds)`` prefills.

        Coefficients are kept non-negative (a negative one would predict negative or
        shrinking costs somewhere): every subset of the three terms is fitted and the
        best fit with no negative coefficient wins. One pair gives a pure linear model
        through the origin, two pairs a line.
        """
        data = np.asarray([(float(t), float(s)) for t, s in pairs], dtype=np.float64)
        if data.size == 0:
            raise ValueError("fit needs at least one (tokens, seconds) pair")
        if not np.all(np.isfinite(data)) or np.any(data < 0):
            raise ValueError("tokens and seconds must be finite numbers >= 0")
        tokens, secs = data[:, 0], data[:, 1]
        scale = float(tokens.max()) or 1.0  # condition the t^2 column
        x = tokens / scale
        columns = np.stack([np.ones_like(x), x, x * x], axis=1)
        distinct = len(np.unique(tokens))
        best: tuple[float, np.ndarray] | None = None
        tie = 1e-12 * float(secs @ secs)  # residuals closer than this are a tie
        # Candidate term sets; on equal residuals the earlier one wins (a line before
        # a constant or a pure quadratic when the data cannot tell them apart).
        for subset in ((0, 1, 2), (0, 1), (1, 2), (0, 2), (1,), (0,), (2,)):
            if len(subset) > distinct:
                continue
            coef, *_ = np.linalg.lstsq(columns[:, subset], secs, rcond=None)
            if np.any(coef < 0):
                continue
            full = np.zeros(3)
            full[list(subset)] = coef
            resid = float(np.sum((columns @ full - secs) ** 2))
            if best is None or resid < best[0] - tie:
                best = (resid, full)
        if best is None:  # cannot happen (b alone on x >= 0 is >= 0), kept for safety
            return cls(0.0, 0.0, 0.0)
        a, b, c = best[1]
        return cls(a=float(a), b=float(b) / scale, c=float(c) / (scale * scale))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able coefficients."""
        return {"a": self.a, "b": self.b, "c": self.c}
