"""The engine's step time against its batch, learnt online, and the number of programs in service past which one
more program adds less throughput than it costs the others (the limit of compute-aware admission).

Samples are what a scheduler sees, nothing more: the time between two consecutive ``schedule()`` calls on its
clock is how long the first step took (the model's forward pass plus the engine's own work), and that step's
tokens and requests are known when it is scheduled. Fitted by exponentially weighted least squares (half-life in
clock seconds, so that the fit follows the context mix as programs grow):

    step = a + b_req * requests + b_tok * tokens

Each request in a step adds ``tau`` tokens on average (tokens over requests), so one more request in the batch
costs ``beta = b_req + b_tok * tau`` seconds of every step; ``a`` is what a step costs whatever its size (weights
read once, launches). A turn takes ``K`` request-steps (steps with one of its requests in them: measured as
request-steps per new request) and its program then spends ``T`` seconds outside the engine (tool call, client)
before the next turn arrives. With ``n`` requests in the batch:

    turn latency  L(n) = K (a + beta n)
    turn rate     X(n) = n / L(n)                  (turns finished per second)
    in service    N(n) = n + T X(n)                (Little: programs in the engine plus those in tool calls)

X(N) grows with the programs in service, ever more slowly, and each program admitted slows every program in
service. Which N is best depends on who waits: a program at the door in position j is admitted when j programs
have ended (at rate X per turn, whatever the order) and then spends N / X in service (Little), so the programs
waiting at the door (Q of them, in position Q/2 on average) are done on average after

    R(N) = (Q/2 + N) / X(N)                        (in turns, times turns per program: the same minimum)

Minimising it: dR/dN = 0 where d ln X / d ln N = N / (N + Q/2). One more program is admitted while the throughput
it adds, relative to the average per program, is at least N / (N + Q/2): with a long queue at the door nearly any
gain in throughput is worth it, with a short one only an engine far from saturated is. (At Q = 2N this is the
maximum of Kleinrock's power, X over time in service.) The elasticity of X(N) at batch n, with u = a + beta n:

    d ln X / d ln N = (a/u) / (a/u + K beta n / (K u + T))

which falls from 1 (idle engine) towards 0 (saturated); N / (N + Q/2) rises with n, so the crossing is unique
(found by bisection). The limit never holds back what arrives: programs arrive at rate lambda and each takes P
turns, and the door's queue only drains while X(N) > lambda P, so the limit is at least the N where
X = lambda P (infinite when even a saturated engine cannot keep up: then memory alone limits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Knee:
    """Where one more program stops paying for itself, and the fit it came from (for the stats)."""

    programs: float  # the limit N(n*) (infinite while the fit says no step grows with its batch)
    batch: float  # n*, requests in a step at the limit
    fixed_s: float  # a
    per_request_s: float  # beta
    request_steps_per_turn: float  # K
    outside_s: float  # T
    engine_fraction: float  # L / (L + T) at the limit: the share of a program's time it spends in the engine
    demand_turns_s: float  # lambda P, the turn rate arrivals ask for (0 while unknown)
    max_turns_s: float  # 1 / (K beta), the turn rate of a saturated engine


class StepModel:
    """Step time against the batch, and turn statistics, exponentially weighted over clock time."""

    def __init__(self, half_life_s: float) -> None:
        self.half_life_s = max(1e-9, half_life_s)
        self.xx = np.zeros((3, 3))  # weighted sums of x x^T, x = (1, requests, tokens)
        self.xy = np.zeros(3)  # weighted sums of x * step seconds
        self.request_steps = 0.0
        self.tokens = 0.0
        self.new_requests = 0.0
        self.outside_sum = 0.0
        self.outside_n = 0.0
        self.arrivals = 0.0  # new programs, decayed; over the decayed time since the first sample: their rate
        self.ended_turns = 0.0
        self.ended = 0.0
        self.samples = 0
        self.last_t: float | None = None
        self.first_t: float | None = None  # the first sample: the weights of a young model span less time

    def _decay(self, now: float) -> None:
        if self.last_t is not None and now > self.last_t:
            f = 0.5 ** ((now - self.last_t) / self.half_life_s)
            self.xx *= f
            self.xy *= f
            self.request_steps *= f
            self.tokens *= f
            self.new_requests *= f
            self.outside_sum *= f
            self.outside_n *= f
            self.arrivals *= f
            self.ended_turns *= f
            self.ended *= f
        self.last_t = now if self.last_t is None else max(self.last_t, now)
        self.first_t = now if self.first_t is None else self.first_t

    def observe_step(self, now: float, seconds: float, tokens: int, requests: int, new_requests: int) -> None:
        """A step of ``requests`` requests (``new_requests`` of them new turns) and ``tokens`` tokens lasted
        ``seconds``."""
        self._decay(now)
        x = np.array([1.0, float(requests), float(tokens)])
        self.xx += np.outer(x, x)
        self.xy += x * seconds
        self.request_steps += requests
        self.tokens += tokens
        self.new_requests += new_requests
        self.samples += 1

    def observe_outside(self, now: float, seconds: float) -> None:
        """A program's turn arrived ``seconds`` after its previous one finished (a tool call)."""
        self._decay(now)
        self.outside_sum += max(0.0, seconds)
        self.outside_n += 1

    def fit(self) -> tuple[float, float, float] | None:
        """(a, b_req, b_tok) in seconds, or None before the samples tell them apart."""
        if self.samples < 3 or np.linalg.cond(self.xx) > 1e12:
            return None
        a, b_req, b_tok = np.linalg.solve(self.xx, self.xy)
        return float(a), float(b_req), float(b_tok)

    def observe_arrival(self, now: float) -> None:
        """A new program arrived."""
        self._decay(now)
        self.arrivals += 1

    def observe_end(self, now: float, turns: int) -> None:
        """A program ended after ``turns`` turns."""
        self._decay(now)
        self.ended_turns += turns
        self.ended += 1

    def demand(self) -> float:
        """Turns per second that arriving programs ask for (lambda P); 0 before a program has ended."""
        if self.ended <= 0:
            return 0.0
        span = self.half_life_s / math.log(2) * (1 - 0.5 ** ((self.last_t - self.first_t) / self.half_life_s))
        return self.arrivals / span * self.ended_turns / self.ended if span > 0 else 0.0

    def knee(self, queue: float) -> Knee | None:
        """The program limit with ``queue`` programs waiting at the door (see the module), or None while there is
        too little to go on."""
        coef = self.fit()
        if coef is None or self.new_requests <= 0 or self.request_steps <= 0:
            return None
        a, b_req, b_tok = coef
        a = max(0.0, a)
        beta = b_req + b_tok * self.tokens / self.request_steps
        k = max(1.0, self.request_steps / self.new_requests)
        t = self.outside_sum / self.outside_n if self.outside_n > 0 else 0.0
        demand = self.demand()
        if beta <= 0:  # no step grows with its batch: nothing to limit
            return Knee(math.inf, math.inf, a, beta, k, t, 1.0, demand, math.inf)
        n = max(knee_batch(a, beta, k, t, queue), stable_batch(a, beta, k, demand))
        if math.isinf(n):
            return Knee(math.inf, math.inf, a, beta, k, t, 1.0, demand, 1 / (k * beta))
        latency = k * (a + beta * n)
        return Knee(programs_at(a, beta, k, t, n), n, a, beta, k, t,
                    latency / (latency + t) if latency + t > 0 else 1.0, demand, 1 / (k * beta))


def programs_at(a: float, beta: float, k: float, t: float, n: float) -> float:
    """N(n): programs in service when ``n`` requests are in each step."""
    latency = k * (a + beta * n)
    return n + t * n / latency if latency > 0 else n


def elasticity(a: float, beta: float, k: float, t: float, n: float) -> float:
    """d ln X / d ln N at batch ``n``: the throughput one more program adds, relative to the average."""
    u = a + beta * n
    if u <= 0:
        return 1.0
    fixed = a / u
    return fixed / (fixed + k * beta * n / (k * u + t)) if fixed > 0 else 0.0


def knee_batch(a: float, beta: float, k: float, t: float, queue: float) -> float:
    """The batch n where d ln X / d ln N = N / (N + queue/2), by bisection (the left side falls with n, the
    right rises)."""

    def gap(n: float) -> float:
        big_n = programs_at(a, beta, k, t, n)
        return elasticity(a, beta, k, t, n) - big_n / (big_n + queue / 2)

    if queue <= 0 or gap(0.0) <= 0:
        return 0.0
    lo, hi = 0.0, 1.0
    while gap(hi) > 0 and hi < 1e9:
        lo, hi = hi, 2 * hi
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if gap(mid) > 0 else (lo, mid)
    return lo


def stable_batch(a: float, beta: float, k: float, demand: float) -> float:
    """The batch n whose turn rate X(n) = n / (K (a + beta n)) is ``demand``; infinite past the saturated rate."""
    if demand <= 0:
        return 0.0
    if demand * k * beta >= 1:
        return math.inf
    return demand * k * a / (1 - demand * k * beta)
