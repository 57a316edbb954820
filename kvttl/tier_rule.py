"""The tier rule: pin a finished turn's KV in GPU memory, park it in host memory, or drop it.

With a host-memory KV tier (vLLM's ``--kv-offloading-size``: every computed block is
written through to host memory, host copies are evicted LRU, and a prefix that left the
GPU is reloaded over the host link while its request waits) keeping a turn's KV has two
prices. Each option is valued by what it saves over dropping, less what holding costs,
over ``tau`` in ``{0} U S`` as in :mod:`kvttl.ttl_rule` (same vectorised pass):

    pin   (P(tau) - P(0)) * B        - gpu_price * tau        B = T * eta + R
    park  (P(tau) - P(0)) * (B - L)  - cpu_price * tau
    drop  0

- ``S``, ``P``: the tool's recorded durations and their empirical CDF. ``P(0)``, the share
  of zero-duration samples, is a hit of every option (the KV is still in the GPU at that
  instant), so it cancels; with no zero samples each line is ``P(tau) * saving - price * tau``.
- ``R`` (``reload_s``): re-prefill seconds of a miss (:mod:`kvttl.reload_cost`); ``T``
  (``queue_delay_s``) and ``eta``: queueing delay per missed turn and the turns paying it
  (:mod:`kvttl.estimators`). Parking saves ``T * eta`` too: the scheduler must give a
  returning parked program the place a pinned one gets, only its KV load is waited for.
- ``L`` (``load_s``): seconds the returning turn waits for its parked KV,
  :meth:`kvttl.host_link.HostLink.exposed_load_seconds` (the load with its latency, 0.0
  when the caller prefetches it before the return). ``L >= B``: parking never pays.
  ``load_s=None``: no host tier, the rule is pin or drop.
- ``gpu_price``: seconds of saving a second of this KV in GPU memory is worth; 1.0 is the
  TTL rule's price and gives exactly :func:`kvttl.ttl_rule.solve_ttl`.
- ``cpu_price``: the same for host memory, in the same unit. Pass ``gpu_price *
  gpu_pool_bytes / cpu_pool_bytes``: the same bytes take that much smaller a share of
  the (larger) host pool, so they displace proportionally less. Raise it while the host
  tier is evicting (a parked copy then pushes out someone else's); a tier with room to
  spare may pass less, down to 0.0 (then a park lasts until the longest sample).

Operationally a pin keeps the GPU blocks for ``ttl_s``; a park frees them now and keeps
the host copy out of LRU eviction for ``ttl_s``. Ties favour the cheaper hold: drop over
park over pin. Dropping counts no host hit, although the write-through copy may survive.

``hybrid=True`` adds "pin ``t1``, then park until ``t2 >= t1``":
``gain = (P(t1) - P(0)) * L - (gpu_price - cpu_price) * t1 + (P(t2) - P(0)) * (B - L) - cpu_price * t2``
is separable, so the best ``t1 <= t2`` for every ``t2`` is a running maximum: one O(n)
pass. It pays when quick returns are common (pinning them saves ``L`` each) and the tail
is long (cheap to park) and ``L`` is not hidden by a prefetch (``L = 0`` makes it a park).
It is off by default because the caller must then move the KV at ``t1`` (re-storing the
host copy if LRU evicted it meanwhile, off the returning turn's path). Its ties go to
the shorter total hold, then the shorter pin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .ttl_rule import best_hold, check_nonnegative, hold_values, sorted_samples

__all__ = ["TIERS", "TierDecision", "choose_tier"]

#: Where a finished turn's KV can stay: GPU memory, host memory, nowhere.
TIERS = ("gpu", "cpu", "drop")


@dataclass(frozen=True, slots=True)
class TierDecision:
    """Where a finished turn's KV stays, for how long, and what that is expected to save."""

    tier: str  # "gpu": pin, "cpu": park in host memory, "drop"
    ttl_s: float  # seconds held in ``tier`` (0.0 for drop; math.inf: until released)
    p_hit: float  # chance the program is back while its KV is still held (either tier)
    benefit_s: float  # expected seconds saved by the hold (before its price)
    park_s: float = 0.0  # hybrid only: seconds parked in host memory after a pin of ttl_s

    @property
    def hold_s(self) -> float:
        """Total seconds the KV is kept, in either tier."""
        return self.ttl_s + self.park_s


def choose_tier(
    samples: Sequence[float] | np.ndarray,
    reload_s: float,
    queue_delay_s: float = 0.0,
    eta: float = 1.0,
    *,
    load_s: float | None = None,
    cpu_price: float | None = None,
    gpu_price: float = 1.0,
    hybrid: bool = False,
    presorted: bool = False,
) -> TierDecision:
    """Pin, park or drop a finished turn's KV (see the module docstring for the rule).

    ``load_s`` is L (None: no host tier); ``cpu_price`` is required with it. No samples:
    drop. Negative, NaN or infinite numbers raise ValueError naming the argument.
    """
    r = check_nonnegative("reload_s", reload_s)
    t = check_nonnegative("queue_delay_s", queue_delay_s)
    e = check_nonnegative("eta", eta)
    gp = check_nonnegative("gpu_price", gpu_price)
    cp = None if cpu_price is None else check_nonnegative("cpu_price", cpu_price)
    load = None if load_s is None else check_nonnegative("load_s", load_s)
    if load is not None and cp is None:
        raise ValueError("cpu_price is required with load_s (the price of holding host memory)")
    s = sorted_samples(samples, presorted)
    n = s.size
    if n == 0:
        return TierDecision("drop", 0.0, 0.0, 0.0)
    b = t * e + r
    ttl, p_hit, gain = best_hold(s, b, gp)
    z = int(np.searchsorted(s, 0.0, side="right")) / n
    best, best_gain = TierDecision("drop", 0.0, z, z * b), 0.0
    if load is not None and cp is not None and b - load > 0.0:
        if hybrid:
            mixed = _hybrid(s, b, load, gp, cp)
            return best if mixed is None else mixed
        park_ttl, park_p, park_gain = best_hold(s, b - load, cp)
        if park_gain > best_gain:
            best = TierDecision("cpu", park_ttl, park_p, park_p * (b - load) + z * load)
            best_gain = park_gain
    if gain > best_gain:
        best = TierDecision("gpu", ttl, p_hit, p_hit * b)
    return best


def _hybrid(s: np.ndarray, b: float, load: float, gp: float, cp: float) -> TierDecision | None:
    """Best "pin t1, then park until t2" (t1 = 0: park, t1 = t2: pin); None when dropping wins."""
    n = s.size
    zeros = int(np.searchsorted(s, 0.0, side="right"))
    f0, g0 = zeros * (load / n), zeros * ((b - load) / n)  # both phases' objectives at tau = 0
    f = hold_values(s, load, gp - cp)  # the pin phase: saves L more per hit, costs the price gap
    run = np.maximum.accumulate(np.maximum(f, f0))  # best t1 <= s_j, for every j
    total = run + hold_values(s, b - load, cp) - (f0 + g0)
    j = int(np.argmax(total))
    if not (total[j] > 0.0 and s[j] > 0.0):
        return None
    t2, p2 = float(s[j]), (j + 1) / n
    t1 = 0.0 if f0 >= run[j] else float(s[int(np.argmax(f[: j + 1] >= run[j]))])
    if t1 == 0.0:
        return TierDecision("cpu", t2, p2, p2 * (b - load) + zeros / n * load)
    if t1 >= t2:
        return TierDecision("gpu", t2, p2, p2 * b)
    p1 = int(np.searchsorted(s, t1, side="right")) / n
    return TierDecision("gpu", t1, p2, p1 * load + p2 * (b - load), park_s=t2 - t1)

