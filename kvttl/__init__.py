"""kvttl: how long a finished turn's KV cache stays pinned, and which pins give way.

Engine-agnostic (plain Python and numpy, nothing of vLLM): the live scheduler and the
simulator both drive it through opaque block handles and explicit timestamps.

- :mod:`kvttl.predictor`   tool-duration samples, empirical CDFs, three-stage cold start
- :mod:`kvttl.ttl_rule`    the TTL rule ``argmax P(tau) * (T * eta + R) - tau``
- :mod:`kvttl.tier_rule`   pin in GPU, park in host memory, or drop, with a host KV tier
- :mod:`kvttl.host_link`   L: seconds to move KV between host memory and the GPU
- :mod:`kvttl.reload_cost` R: quadratic prefill-time model and its fit
- :mod:`kvttl.estimators`  T (queueing delay of misses) and eta (remaining turns)
- :mod:`kvttl.policy`      retention modes ``model``, ``fixed``, ``preserve``, ``off``
- :mod:`kvttl.pin_table`   pins by program, expiry order, cap, pressure victims, counters
- :mod:`kvttl.program_work` a program's predicted remaining turns, seconds and context growth
- :mod:`kvttl.microbench`  ``python -m kvttl.microbench``: cost of one TTL decision
"""

from .estimators import QueueDelayEstimator, RemainingWorkEstimator
from .host_link import HostLink
from .pin_table import RELEASE_REASONS, PinInfo, PinResult, PinTable
from .policy import MODES, Decision, TTLPolicy
from .predictor import STAGES, ToolDurationPredictor
from .program_work import Prediction, ProgramWork, Progress, oracle_prediction
from .reload_cost import ReloadCostModel
from .tier_rule import TIERS, TierDecision, choose_tier
from .ttl_rule import choose_ttl, hit_probability, solve_ttl
from .window import SortedWindow

__all__ = [
    "MODES",
    "RELEASE_REASONS",
    "STAGES",
    "TIERS",
    "Decision",
    "HostLink",
    "PinInfo",
    "PinResult",
    "PinTable",
    "Prediction",
    "ProgramWork",
    "Progress",
    "QueueDelayEstimator",
    "ReloadCostModel",
    "RemainingWorkEstimator",
    "SortedWindow",
    "TTLPolicy",
    "TierDecision",
    "ToolDurationPredictor",
    "choose_tier",
    "choose_ttl",
    "hit_probability",
    "oracle_prediction",
    "solve_ttl",
]
