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

X(N) grows with the programs in service, ever more slowly. One more program is worth admitting while it raises
the turn rate by at least ``marginal`` of the rate per program, d ln X / d ln N >= marginal. At 1/2 (the default)
this is the maximum of Kleinrock's power X / (N / X), throughput over time in service: the relative throughput
gain of one more program equals the relative slowdown it brings to every program in service, and past it each
program admitted slows the others by more than it adds. Solving d ln X / d ln N = m for n (a quadratic):

    m K beta^2 n^2 + (2m - 1) a K beta n - (1 - m) a (K a + T) = 0,   at m = 1/2:  n* = (a / beta) sqrt(1 + T/(K a))

and the limit is N(n*). With T = 0 it is the engine's own knee, n* = a / beta, where a step's variable cost equals
its fixed cost; tool calls raise it, since a program in a tool call costs the engine nothing.
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
        self.samples = 0
        self.last_t: float | None = None

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
        self.last_t = now if self.last_t is None else max(self.last_t, now)

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

    def knee(self, marginal: float) -> Knee | None:
        """The program limit for ``marginal`` (see the module), or None while there is too little to go on."""
        coef = self.fit()
        if coef is None or self.new_requests <= 0 or self.request_steps <= 0:
            return None
        a, b_req, b_tok = coef
        a = max(0.0, a)
        beta = b_req + b_tok * self.tokens / self.request_steps
        k = max(1.0, self.request_steps / self.new_requests)
        t = self.outside_sum / self.outside_n if self.outside_n > 0 else 0.0
        if beta <= 0:  # no step grows with its batch: nothing to limit
            return Knee(math.inf, math.inf, a, beta, k, t, 1.0)
        n = knee_batch(a, beta, k, t, marginal)
        latency = k * (a + beta * n)
        programs = n + t * n / latency if latency > 0 else n
        return Knee(programs, n, a, beta, k, t, latency / (latency + t) if latency + t > 0 else 1.0)


def knee_batch(a: float, beta: float, k: float, t: float, marginal: float) -> float:
    """The batch n where d ln X / d ln N = ``marginal`` for step time a + beta n, K request-steps a turn and T
    seconds outside the engine per turn (the positive root of the module's quadratic)."""
    m = min(max(marginal, 1e-6), 1.0)
    qa = m * k * beta * beta
    qb = (2 * m - 1) * a * k * beta
    qc = -(1 - m) * a * (k * a + t)
    return (-qb + math.sqrt(max(0.0, qb * qb - 4 * qa * qc))) / (2 * qa)
