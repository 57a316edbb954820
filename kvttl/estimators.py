"""The two load-dependent inputs of the TTL rule: T (queueing delay) and eta (remaining work).

A miss costs a returning turn two things: the prefill it has to redo (``R``, paid once,
by this turn, see :mod:`kvttl.reload_cost`) and the time it waits in the queue behind
work that arrived while it was away. The rule prices the second as ``T * eta``.

T — :class:`QueueDelayEstimator`
    The mean queueing delay (arrival to first scheduling) of the last ``window``
    returning turns whose KV had *not* been kept. Only those turns are sampled: the
    delay of a turn that hit its pin is the delay pinning already avoided, so mixing it
    in would pull T down exactly when pinning works. The mean, not a median, because
    the rule weighs an *expected* cost and queueing delays are heavy-tailed (a median
    would hide the bursts that make misses expensive). A count-based window (default
    64 misses), not a time-based one or an exponential average, so the estimator is
    identical under the live clock and the simulator's virtual clock, forgets a burst
    after a known number of misses, and costs O(1) to read. Before any miss it is 0.0:
    with no evidence of queueing the rule falls back to the reload cost alone, the
    conservative choice (it never pins longer than the prefill saving justifies).

eta — :class:`RemainingWorkEstimator`
    The expected number of turns the program still has to run once it returns, from
    the turn counts ``N`` of recently completed programs (last ``window`` = 1000):
    the mean residual life ``E[N - k | N > k]`` for a program that has finished
    ``k`` turns and is not at its last step (so it will return: ``N > k`` and the
    answer is at least 1). It multiplies T and not R because the reload is paid once,
    by the returning turn, while losing the program's KV and its place puts it behind
    newer work turn after turn until it finishes (the per-turn queueing delay the
    Continuum paper describes as accumulating over the remaining turns): a program
    early in a long run loses more by being evicted than one about to finish.
    With few data the conditional mean is noisy, so it is shrunk toward the default
    ``eta = 1`` (only the returning turn pays) with a prior weight of ``prior_weight``
    (default 5) pseudo-programs: ``(sum(N_i - k for N_i > k) + w * 1) / (m + w)``,
    ``m`` the number of programs longer than ``k``. With no completed programs, or for
    a program already longer than every one seen, eta is exactly 1.0.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from .window import SortedWindow

__all__ = ["QueueDelayEstimator", "RemainingWorkEstimator"]


class QueueDelayEstimator:
    """T: sliding-window mean queueing delay of returning turns that missed their KV."""

    def __init__(self, window: int = 64, initial_s: float = 0.0) -> None:
        if int(window) < 1:
            raise ValueError("window must be >= 1")
        initial_s = float(initial_s)
        if not math.isfinite(initial_s) or initial_s < 0:
            raise ValueError("initial_s must be a finite number >= 0")
        self.window = int(window)
        self.initial_s = initial_s
        self._values: deque[float] = deque(maxlen=self.window)
        self._value = initial_s
        self._count = 0

    def record(self, seconds: float) -> None:
        """Add the queueing delay one missed returning turn suffered."""
        x = float(seconds)
        if not math.isfinite(x) or x < 0:
            raise ValueError(f"delay must be a finite number >= 0, got {seconds!r}")
        self._values.append(x)
        self._count += 1
        self._value = math.fsum(self._values) / len(self._values)

    def value(self) -> float:
        """Current estimate of T in seconds (``initial_s`` before any sample)."""
        return self._value

    def __len__(self) -> int:
        return len(self._values)

    def state(self) -> dict[str, float | int]:
        """JSON-able summary."""
        return {"window": self.window, "samples": len(self._values), "recorded": self._count, "value_s": self._value}


class RemainingWorkEstimator:
    """eta: expected remaining turns of a program, from completed programs' turn counts."""

    def __init__(self, window: int = 1000, prior_weight: float = 5.0, default_eta: float = 1.0) -> None:
        if int(window) < 1:
            raise ValueError("window must be >= 1")
        prior_weight = float(prior_weight)
        default_eta = float(default_eta)
        if not math.isfinite(prior_weight) or prior_weight < 0:
            raise ValueError("prior_weight must be a finite number >= 0")
        if not math.isfinite(default_eta) or default_eta < 0:
            raise ValueError("default_eta must be a finite number >= 0")
        self.window = int(window)
        self.prior_weight = prior_weight
        self.default_eta = default_eta
        self._turns = SortedWindow(self.window)
        self._count = 0
        self._cumsum: np.ndarray | None = None  # prefix sums of the sorted turn counts

    def record_program(self, turns: int) -> None:
        """Add the turn count of a program that has ended."""
        n = int(turns)
        if n < 1:
            raise ValueError(f"a completed program has at least one turn, got {turns!r}")
        self._turns.add(float(n))
        self._count += 1
        self._cumsum = None

    def eta(self, turns_done: int) -> float:
        """Expected turns still to run for a program that has finished ``turns_done`` turns."""
        k = max(0, int(turns_done))
        lengths = self._turns.sorted()
        n = len(lengths)
        if n == 0:
            return self.default_eta
        cs = self._cumsum
        if cs is None:
            cs = np.concatenate(([0.0], np.cumsum(lengths)))
            self._cumsum = cs
        idx = int(np.searchsorted(lengths, k, side="right"))
        m = n - idx
        w = self.prior_weight
        if m == 0 and w == 0:
            return self.default_eta
        remaining = float(cs[n] - cs[idx]) - k * m
        return (remaining + w * self.default_eta) / (m + w)

    def __len__(self) -> int:
        return len(self._turns)

    def state(self) -> dict[str, float | int]:
        """JSON-able summary."""
        return {
            "window": self.window,
            "programs": len(self._turns),
            "recorded": self._count,
            "mean_turns": self._turns.mean(),
            "prior_weight": self.prior_weight,
            "default_eta": self.default_eta,
        }
