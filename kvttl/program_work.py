"""Predicted remaining work of an agent program: how long it will still run and how much its context will grow.

The program-level form of learning-to-rank / ALISE: nothing is known of a program's future but its turns so far
and what completed programs did. Remaining work = expected remaining turns x the program's cost per turn:

- remaining turns: ``E[N - k | N > k]`` over recently completed programs (`RemainingWorkEstimator`, shared with
  the TTL rule's eta);
- seconds per turn (a turn's latency plus the tool call after it) and context growth per turn (new input +
  output tokens): the program's own mean so far, shrunk towards the mean over all turns seen with
  ``prior_weight`` pseudo-turns, so a program's first turns lean on the population and later ones on itself.

With no completed program yet every program is predicted one more turn: no information, no reordering.
`Oracle` answers the same questions from the true future (the simulator's clients tell it), as a bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from .estimators import RemainingWorkEstimator

__all__ = ["Progress", "Prediction", "ProgramWork", "oracle_prediction"]


@dataclass
class Progress:
    """What a program has done so far, as the scheduler saw it."""

    turns: int = 0  # turns finished
    seconds: float = 0.0  # first arrival to the latest arrival (turns plus tool calls)
    growth_tokens: int = 0  # context gained over its turns (new input + output)


@dataclass(frozen=True)
class Prediction:
    turns: float  # remaining turns, the next one included
    seconds: float  # remaining time until the program ends
    growth_tokens: float  # context it will still add


class _Mean:
    def __init__(self) -> None:
        self.total = 0.0
        self.n = 0

    def add(self, value: float, n: int = 1) -> None:
        self.total += value
        self.n += n

    def value(self, default: float) -> float:
        return self.total / self.n if self.n else default


class ProgramWork:
    def __init__(self, remaining: RemainingWorkEstimator | None = None, prior_weight: float = 2.0) -> None:
        self.remaining = remaining if remaining is not None else RemainingWorkEstimator()
        self.prior_weight = prior_weight
        self.turn_seconds = _Mean()
        self.turn_growth = _Mean()
        self.turn_latency = _Mean()
        self.turn_output = _Mean()

    def observe_turn(self, latency_s: float, growth_tokens: int | None, output_tokens: int = 0) -> None:
        """A turn of some program finished: its latency (arrival to finish), the context it added (None for
        a first turn, whose context is the task rather than growth) and the tokens it generated."""
        self.turn_latency.add(max(0.0, latency_s))
        self.turn_output.add(max(0, output_tokens))
        if growth_tokens is not None:
            self.turn_growth.add(max(0, growth_tokens))

    def observe_gap(self, seconds: float) -> None:
        """A program's next turn arrived ``seconds`` after its previous one (turn latency plus tool call)."""
        self.turn_seconds.add(max(0.0, seconds))

    def expected_output(self, max_tokens: int) -> int:
        """Tokens a turn allowed ``max_tokens`` will likely generate: the mean over turns seen, at most
        ``max_tokens`` (all of it before any turn is seen). A client that sets no limit gets vLLM's default, the
        rest of the context window, which says nothing about the answer's length."""
        return int(min(max_tokens, self.turn_output.value(max_tokens))) if self.turn_output.n else max_tokens

    def _shrunk(self, own_total: float, own_n: int, population: _Mean) -> float:
        w = self.prior_weight
        return (own_total + w * population.value(0.0)) / (own_n + w) if own_n + w > 0 else 0.0

    def predict(self, p: Progress) -> Prediction:
        turns = self.remaining.eta(p.turns)
        per_s = self._shrunk(p.seconds, max(0, p.turns - 1), self.turn_seconds)
        per_tok = self._shrunk(p.growth_tokens, max(0, p.turns - 1), self.turn_growth)
        return Prediction(turns, turns * per_s, turns * per_tok)

    def state(self) -> dict[str, float]:
        return {"turn_seconds": self.turn_seconds.value(0.0), "turn_latency_s": self.turn_latency.value(0.0),
                "turn_growth_tokens": self.turn_growth.value(0.0), "turn_output_tokens": self.turn_output.value(0.0),
                "turns_seen": self.turn_latency.n}


def oracle_prediction(turns_left: int, tool_s_left: float, growth_left: int, turn_service_s: float) -> Prediction:
    """The true future (turns, tool seconds, context still to come) with the mean turn latency for the rest."""
    return Prediction(turns_left, tool_s_left + turns_left * turn_service_s, growth_left)
