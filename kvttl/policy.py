"""Retention policy: the one object the scheduler asks "pin this turn, and for how long?".

Modes:

``model``
    the TTL rule of :mod:`kvttl.ttl_rule` over the predictor's samples for the tool,
    with R from the reload-cost model, T and eta from :mod:`kvttl.estimators`; before the
    predictor has enough samples (its "default" stage) there is no distribution to weigh,
    so the turn is pinned for the predictor's default duration, as the public code does for
    a tool it has not seen (an uninformed hit chance of 1/2 sets the pin's benefit);
``fixed``
    the behaviour of the public Continuum code: pin for ``fixed_ttl_s`` (2 s) when the
    tool's average duration so far (its whole history, no window) is at most
    ``fixed_ttl_s``, or when the tool has no history yet; do not pin slower tools, nor
    turns with no tool call (``tool is None``);
``preserve``
    pin until the program returns (``math.inf``), released only by a hit, the
    program's end or abort, or memory pressure;
``off``
    never pin (plain vLLM).

Every decision also carries the pin's expected benefit (expected seconds saved: the
chance of a hit times what a miss would cost), which the pin table uses to choose
victims under memory pressure.

:meth:`TTLPolicy.decide_tier` is the three-way form for an engine with a host-memory KV
tier: pin, park in host memory, or drop (:mod:`kvttl.tier_rule`), from the same inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .estimators import QueueDelayEstimator, RemainingWorkEstimator
from .host_link import HostLink
from .predictor import ToolDurationPredictor
from .reload_cost import ReloadCostModel
from .tier_rule import TierDecision, choose_tier
from .ttl_rule import check_nonnegative, hit_probability, solve_ttl

__all__ = ["MODES", "Decision", "TTLPolicy"]

#: Retention modes, as spelled on the command line (``--ttl-mode``).
MODES = ("model", "fixed", "preserve", "off")


@dataclass(frozen=True, slots=True)
class Decision:
    """One retention decision: how long to pin and what the pin is expected to save."""

    ttl_s: float  # 0.0: do not pin; math.inf: until released
    benefit_s: float  # p_hit * miss_cost_s, expected seconds saved by the pin
    p_hit: float  # chance the program is back within ttl_s (empirical)
    miss_cost_s: float  # queue_delay_s * eta + reload_s
    reload_s: float
    queue_delay_s: float
    eta: float
    stage: str  # predictor stage that answered: "default", "global", "tool" ("" when unused)
    mode: str

    @property
    def pin(self) -> bool:
        """Whether the turn should be pinned at all."""
        return self.ttl_s > 0.0


class TTLPolicy:
    """Chooses the TTL of a finished turn's KV cache according to ``mode``."""

    def __init__(
        self,
        mode: str = "model",
        fixed_ttl_s: float = 2.0,
        predictor: ToolDurationPredictor | None = None,
        reload_model: ReloadCostModel | None = None,
        queue_delay: QueueDelayEstimator | None = None,
        remaining: RemainingWorkEstimator | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown TTL mode {mode!r}; expected one of {', '.join(MODES)}")
        fixed_ttl_s = float(fixed_ttl_s)
        if not math.isfinite(fixed_ttl_s) or fixed_ttl_s < 0:
            raise ValueError("fixed_ttl_s must be a finite number >= 0")
        self.mode = mode
        self.fixed_ttl_s = fixed_ttl_s
        self.predictor = predictor if predictor is not None else ToolDurationPredictor()
        self.reload_model = reload_model if reload_model is not None else ReloadCostModel()
        self.queue_delay = queue_delay if queue_delay is not None else QueueDelayEstimator()
        self.remaining = remaining if remaining is not None else RemainingWorkEstimator()

    # -- observations (thin pass-throughs so the scheduler holds one object) -----------

    def observe_tool(self, tool: str | None, seconds: float) -> None:
        """A program came back ``seconds`` after its turn finished, having run ``tool``."""
        self.predictor.record(tool, seconds)

    def observe_miss_delay(self, seconds: float) -> None:
        """A returning turn whose KV had not been kept waited ``seconds`` in the queue."""
        self.queue_delay.record(seconds)

    def observe_program_end(self, turns: int) -> None:
        """A program ended after ``turns`` turns."""
        self.remaining.record_program(turns)

    # -- decisions ---------------------------------------------------------------

    def decide(
        self,
        tool: str | None,
        context_tokens: int,
        turns_done: int = 1,
        last_step: bool = False,
    ) -> Decision:
        """Retention decision for a turn that just finished.

        ``tool``: the tool the program runs next (None if unknown); ``context_tokens``:
        the KV the pin would keep (prompt + output); ``turns_done``: turns the program
        has finished, this one included; ``last_step``: the program ends now (never pin).
        """
        mode = self.mode
        if mode == "off" or last_step:
            return Decision(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, "", mode)
        reload_s = self.reload_model.seconds(context_tokens)
        delay = self.queue_delay.value()
        eta = self.remaining.eta(turns_done)
        miss_cost = delay * eta + reload_s
        predictor = self.predictor
        stage = predictor.stage_for(tool)
        samples = predictor.samples_for(tool)
        if mode == "model" and stage == "default":
            ttl, p_hit = predictor.default_s, 0.5
        elif mode == "model":
            ttl, p_hit = solve_ttl(samples, reload_s, delay, eta, presorted=True)
        elif mode == "preserve":
            ttl, p_hit = math.inf, 1.0
        else:  # fixed
            ttl = self._fixed_ttl(tool)
            p_hit = hit_probability(samples, ttl) if ttl > 0 else 0.0
        return Decision(ttl, p_hit * miss_cost, p_hit, miss_cost, reload_s, delay, eta, stage, mode)

    def decide_tier(
        self,
        tool: str | None,
        context_tokens: int,
        bytes_per_token: float = 0.0,
        turns_done: int = 1,
        last_step: bool = False,
        link: HostLink | None = None,
        cpu_price: float | None = None,
        prefetch: bool = False,
        *,
        gpu_price: float = 1.0,
        hybrid: bool = False,
    ) -> TierDecision:
        """Pin, park in host memory, or drop a finished turn's KV (:func:`kvttl.tier_rule.choose_tier`).

        Arguments as :meth:`decide`, plus: ``bytes_per_token`` (KV bytes per context
        token), ``link`` (None: no host tier), ``cpu_price`` (required with a link; see
        :mod:`kvttl.tier_rule`), ``prefetch`` (the caller reloads the KV before the return,
        so L = 0). Only the ``model`` mode past the ``default`` stage weighs the tiers;
        every other case, and any case without a link at ``gpu_price = 1``, is :meth:`decide`
        (``gpu`` for a pin, ``drop`` otherwise).
        """
        bpt = check_nonnegative("bytes_per_token", bytes_per_token)
        if self.mode != "model" or last_step or self.predictor.stage_for(tool) == "default":
            d = self.decide(tool, context_tokens, turns_done, last_step)
            return TierDecision("gpu" if d.pin else "drop", d.ttl_s, d.p_hit, d.benefit_s)
        load_s = None if link is None else link.exposed_load_seconds(max(0, int(context_tokens)) * bpt, prefetch)
        return choose_tier(
            self.predictor.samples_for(tool), self.reload_model.seconds(context_tokens), self.queue_delay.value(),
            self.remaining.eta(turns_done), load_s=load_s, cpu_price=cpu_price, gpu_price=gpu_price,
            hybrid=hybrid, presorted=True,
        )

    def _fixed_ttl(self, tool: str | None) -> float:
        if not tool:
            return 0.0
        mean = self.predictor.lifetime_mean(tool)
        if mean is not None and mean > self.fixed_ttl_s:
            return 0.0
        return self.fixed_ttl_s

    def ttl_for(self, tool: str | None, context_tokens: int, turns_done: int = 1) -> float:
        """TTL in seconds for a finished turn: 0.0 = do not pin, ``math.inf`` = until released."""
        return self.decide(tool, context_tokens, turns_done).ttl_s

    def expected_benefit(self, tool: str | None, context_tokens: int, turns_done: int = 1) -> float:
        """Expected seconds saved by pinning with the TTL :meth:`ttl_for` would choose."""
        return self.decide(tool, context_tokens, turns_done).benefit_s

    def state(self) -> dict[str, Any]:
        """JSON-able summary for a stats endpoint."""
        return {
            "mode": self.mode,
            "fixed_ttl_s": self.fixed_ttl_s,
            "reload_model": self.reload_model.to_dict(),
            "queue_delay": self.queue_delay.state(),
            "remaining_work": self.remaining.state(),
            "predictor": self.predictor.state(),
        }
