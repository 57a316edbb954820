"""The engine's step time against its batch, learnt online, and the number of programs in service past which one
more program adds no throughput (the limit of compute-aware admission).

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

X grows with n, ever more slowly, up to the largest batch the engine runs: ``max_num_seqs`` requests, or as
many as fill the step's token budget at ``tau`` tokens each (with no fixed cost, a = 0, it does not grow at all:
one request saturates the engine). Past the N of that batch one more program in service adds nothing: it waits
in the engine's queue instead of at the door, holding KV.

Which N is best while programs wait at the door? Every program in the system counts, those in service as much as
those at the door: M of them, and admitting one moves it from the door into service, so M does not change with
N. Programs the door cannot tell apart (a new program's predicted remaining work is the population's, P turns)
end one after another at the rate X(N) / P whatever the order, the k-th after about k P / X(N), so their mean
completion, about (M + 1) P / (2 X(N)), is least where X(N) is largest: the door admits up to the N where the
batch stops growing, and memory is the other limit. (Counting only the programs at the door, (Q/2 + N) / X(N)
with the queue Q held fixed, charges each admission the service time it adds to the waiting programs without
crediting the programs it takes off the door: it stops at a fraction of the engine's throughput and, as the queue
drains, sinks to a handful of programs in service while a backlog is still waiting.) Nothing in the limit
depends on the queue or the arrival rate, so it holds while a backlog drains.

The throughput knee, N at the batch n_k = (a / beta) sqrt(1 + T / (K a)) where throughput over time in service
(Kleinrock's power) peaks and one more program adds half the average throughput, is reported beside it: with a
backlog the limit never falls below it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Knee:
    """The program limit, the throughput knee, and the fit they came from (for the stats)."""

    programs: float  # the limit N(n_sat) (infinite while the fit says no step grows with its batch)
    batch: float  # n_sat, requests in a step at the limit: the largest batch the engine runs
    knee_programs: float  # N(n_k), the throughput knee
    knee_batch: float  # n_k
    fixed_s: float  # a
    per_request_s: float  # beta
    tokens_per_request: float  # tau
    request_steps_per_turn: float  # K
    outside_s: float  # T
    engine_fraction: float  # L / (L + T) at the knee: the share of a program's time it spends in the engine
    turns_s: float  # X(n_sat), the turn rate at the limit
    max_turns_s: float  # 1 / (K beta), the turn rate of an unbounded batch


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

    def knee(self, max_requests: float, max_tokens: float) -> Knee | None:
        """The program limit of an engine that runs at most ``max_requests`` requests and ``max_tokens`` tokens a
        step (see the module), or None while there is too little to go on."""
        coef = self.fit()
        if coef is None or self.new_requests <= 0 or self.request_steps <= 0:
            return None
        a, b_req, b_tok = coef
        a = max(0.0, a)
        tau = self.tokens / self.request_steps
        beta = b_req + b_tok * tau
        k = max(1.0, self.request_steps / self.new_requests)
        t = self.outside_sum / self.outside_n if self.outside_n > 0 else 0.0
        if beta <= 0:  # no step grows with its batch: nothing to limit
            return Knee(math.inf, math.inf, math.inf, math.inf, a, beta, tau, k, t, 1.0, math.inf, math.inf)
        # With no fixed cost (under a nanosecond: below any clock's resolution of a step) the turn rate is
        # 1 / (K beta) whatever the batch: one request already saturates the engine.
        n_sat = max(1.0, min(max_requests, max_tokens / tau if tau > 0 else math.inf)) if a > 1e-9 else 1.0
        n_k = min(n_sat, knee_batch(a, beta, k, t))
        latency = k * (a + beta * n_k)
        return Knee(programs_at(a, beta, k, t, n_sat), n_sat, programs_at(a, beta, k, t, n_k), n_k, a, beta, tau, k,
                    t, latency / (latency + t) if latency + t > 0 else 1.0, turn_rate(a, beta, k, n_sat),
                    1 / (k * beta))


def turn_rate(a: float, beta: float, k: float, n: float) -> float:
    """X(n): turns finished per second with ``n`` requests in each step."""
    latency = k * (a + beta * n)
    return n / latency if latency > 0 else math.inf


def programs_at(a: float, beta: float, k: float, t: float, n: float) -> float:
    """N(n): programs in service when ``n`` requests are in each step."""
    latency = k * (a + beta * n)
    return n + t * n / latency if latency > 0 else n


def knee_batch(a: float, beta: float, k: float, t: float) -> float:
    """n_k, the batch where X(N) / N (Kleinrock's power: turns per second over time in service) peaks:
    (a / beta) sqrt(1 + T / (K a)); there one more program adds half the average throughput."""
    if a <= 0:
        return 0.0
    return a / beta * math.sqrt(1 + t / (k * a))
