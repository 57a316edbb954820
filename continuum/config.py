"""Continuum's serve-time settings, carried from `continuum serve` to the engine process in one env var.

vLLM builds the scheduler itself (in the engine-core process) with a fixed signature, so our own settings
cannot be passed as arguments; the environment is inherited by that process.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

ENV_VAR = "CONTINUUM_CONFIG"
TTL_MODES = ("model", "fixed", "preserve", "off")
# "oracle" is for the simulator: the client tells the true tool duration in the `tool_s` hint.
ALL_TTL_MODES = TTL_MODES + ("oracle",)
ORDERINGS = ("program-fcfs", "fcfs", "plas")


@dataclass
class ContinuumConfig:
    ttl_mode: str = "model"
    fixed_ttl_s: float = 2.0
    # Pinned blocks may use at most this fraction of the KV pool, so pins never starve new work outright.
    pin_cap: float = 0.5
    ordering: str = "program-fcfs"
    # A program with no turn for this long (and no end call) is ended: its pin released, its state dropped.
    idle_end_s: float = 600.0
    # Address of the engine-side control channel (stats, session end); empty disables it.
    control_addr: str = ""
    # Prefill cost model coefficients (seconds = a + b*tokens + c*tokens^2); None keeps kvttl's defaults.
    reload_cost: list[float] | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ttl_mode not in ALL_TTL_MODES:
            raise ValueError(f"ttl_mode must be one of {', '.join(ALL_TTL_MODES)}, not {self.ttl_mode!r}")
        if self.ordering not in ORDERINGS:
            raise ValueError(f"ordering must be one of {', '.join(ORDERINGS)}, not {self.ordering!r}")
        if not 0.0 <= self.pin_cap <= 1.0:
            raise ValueError(f"pin_cap must be a fraction in [0, 1], not {self.pin_cap}")
        if self.idle_end_s <= 0:
            raise ValueError(f"idle_end_s must be > 0, not {self.idle_end_s}")
        if self.fixed_ttl_s < 0:
            raise ValueError(f"fixed_ttl_s must be >= 0, not {self.fixed_ttl_s}")

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> "ContinuumConfig":
        raw = os.environ.get(ENV_VAR)
        return cls(**json.loads(raw)) if raw else cls()
