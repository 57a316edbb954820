"""The TTL rule: how long a finished turn's KV cache is worth pinning.

    tau* = argmax over tau in {0} U S  of  P(tau) * (T * eta + R) - tau

- ``S``: recorded durations of the tool the program is running; ``P`` its empirical
  CDF (the chance that the program is back within ``tau``);
- ``R``: seconds of prefill a miss costs (re-computing the context), see
  :mod:`kvttl.reload_cost`;
- ``T``: the queueing delay a returning turn suffers when its KV was not kept, and
  ``eta`` how many of the program's remaining turns pay it, see
  :mod:`kvttl.estimators`;
- ``tau`` itself is the price: seconds of GPU memory held for this program.

Only ``tau`` in ``{0} U S`` needs checking: between two samples ``P`` is flat while the
cost grows, so the maximum sits on a sample (or at not pinning at all).

With ``S`` sorted ascending and ``n`` samples, ``P(s_i) >= (i+1)/n``, with equality at the
last sample of each run of equal values, which is exactly where the objective peaks
within the run; so one vectorised pass over ``(i+1)/n * B - s_i`` finds the optimum.
Ties go to the smaller TTL (``np.argmax`` returns the first maximum, and not pinning
wins a tie with pinning), which also makes the answer non-decreasing in ``B``
(``P`` grows with ``tau``, so a larger ``B`` can only favour longer TTLs).

The pass itself (:func:`best_hold`, with a price per second other than 1) is shared
with the tier rule of :mod:`kvttl.tier_rule`, which weighs GPU and host memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "best_hold", "check_nonnegative", "choose_ttl", "hit_probability", "hold_values", "solve_ttl", "sorted_samples",
]


def check_nonnegative(name: str, value: float) -> float:
    """``value`` as a float; ValueError naming ``name`` when it is negative, NaN or infinite."""
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def sorted_samples(samples: Sequence[float] | np.ndarray, presorted: bool = False) -> np.ndarray:
    """Duration samples as an ascending float array; ValueError if one is negative, NaN or infinite."""
    s = np.asarray(samples, dtype=np.float64)
    if s.ndim != 1:
        s = s.reshape(-1)
    if not presorted:
        s = np.sort(s)  # NaN sorts last, so the checks below see it
    if s.size and (s[0] < 0 or not math.isfinite(s[-1])):
        raise ValueError("samples must be finite numbers >= 0")
    return s


def hold_values(s: np.ndarray, benefit: float, price: float = 1.0) -> np.ndarray:
    """``(i+1)/n * benefit - price * s_i`` over ascending ``s``: the objective at each sample.

    Exact at the last sample of each run of equal values (where it peaks within the run
    when ``benefit > 0``), an underestimate before it. Shared by the TTL and tier rules.
    """
    values = np.arange(1, s.size + 1, dtype=np.float64)
    values *= benefit / s.size
    values -= s if price == 1.0 else price * s
    return values


def best_hold(s: np.ndarray, benefit: float, price: float = 1.0) -> tuple[float, float, float]:
    """``argmax over tau in {0} U S of P(tau) * benefit - price * tau`` over ascending ``s``.

    Returns ``(ttl_s, p_hit, gain)``: ``gain`` is how much the objective at ``ttl_s`` beats
    not holding (tau = 0, where zero-duration samples already hit), 0.0 when not holding
    wins or ties. Inputs as :func:`sorted_samples` and :func:`check_nonnegative` give them.
    """
    n = s.size
    if n == 0:
        return 0.0, 0.0, 0.0
    zeros = int(np.searchsorted(s, 0.0, side="right"))
    if benefit <= 0.0:
        return 0.0, zeros / n, 0.0
    best_zero = zeros * (benefit / n)  # objective of not holding
    values = hold_values(s, benefit, price)
    i = int(np.argmax(values))
    if values[i] > best_zero and s[i] > 0.0:
        return float(s[i]), (i + 1) / n, float(values[i] - best_zero)
    return 0.0, zeros / n, 0.0


def solve_ttl(
    samples: Sequence[float] | np.ndarray,
    reload_s: float,
    queue_delay_s: float = 0.0,
    eta: float = 1.0,
    *,
    presorted: bool = False,
) -> tuple[float, float]:
    """The TTL rule, returning ``(ttl_s, p_hit)``: the TTL and the chance of a hit with it.

    ``p_hit * (queue_delay_s * eta + reload_s)`` is the expected saving of the pin.
    Pass ``presorted=True`` when ``samples`` is already ascending (the predictor's
    arrays are) to skip the sort.
    """
    r = check_nonnegative("reload_s", reload_s)
    t = check_nonnegative("queue_delay_s", queue_delay_s)
    e = check_nonnegative("eta", eta)
    ttl, p_hit, _ = best_hold(sorted_samples(samples, presorted), t * e + r)
    return ttl, p_hit


def choose_ttl(
    samples: Sequence[float] | np.ndarray,
    reload_s: float,
    queue_delay_s: float = 0.0,
    eta: float = 1.0,
    *,
    presorted: bool = False,
) -> float:
    """TTL in seconds for a finished turn (0.0: do not pin).

    ``samples``: duration samples of the tool (any order unless ``presorted``);
    ``reload_s``: prefill seconds a miss costs; ``queue_delay_s``: queueing delay per
    missed turn; ``eta``: how many turns pay that delay. No samples: 0.0.
    """
    return solve_ttl(samples, reload_s, queue_delay_s, eta, presorted=presorted)[0]


def hit_probability(sorted_samples: np.ndarray, ttl_s: float) -> float:
    """Empirical P(duration <= ttl_s) over ascending samples (0.0 when empty)."""
    n = len(sorted_samples)
    if n == 0:
        return 0.0
    if math.isinf(ttl_s) and ttl_s > 0:
        return 1.0
    return float(np.searchsorted(sorted_samples, ttl_s, side="right")) / n
