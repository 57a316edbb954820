"""Continuum's serve-time settings, carried from `continuum serve` to the engine process in one env var.

vLLM builds the scheduler itself (in the engine-core process) with a fixed signature, so our own settings
cannot be passed as arguments; the environment is inherited by that process. Which names are valid for each
component, and each knob's default, is the registry's business (`continuum.policy.registry`); validation fills
every knob's default in, so a component reads plain values.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from continuum.policy.registry import (
    KIND_OF_FIELD,
    ConfigError,
    all_knob_defaults,
    check_component,
    check_knob,
    knobs_of,
)

ENV_VAR = "CONTINUUM_CONFIG"

__all__ = ["ENV_VAR", "ContinuumConfig", "ConfigError"]  # ConfigError is the registry's, re-exported


class ContinuumConfig(BaseModel):
    """One composed policy (see `continuum.policy.presets` for the components) and the scheduler's own limits."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    ttl_mode: str = "model"  # retention component
    fixed_ttl_s: float = Field(2.0, ge=0, allow_inf_nan=False)
    # Pinned blocks may use at most this fraction of the KV pool, so pins never starve new work outright.
    pin_cap: float = Field(0.5, ge=0, le=1)
    # With API keys (tenants), one tenant's pins may hold at most this fraction of the pin budget.
    tenant_pin_cap: float = Field(1.0, ge=0, le=1)
    ordering: str = "program-fcfs"
    terms: list[str] = Field(default_factory=list)  # priority terms added to a waiting request's level
    classes: str = "off"
    phase: str = "off"
    admission: str = "open"
    work: str = "model"  # where a program's predicted remaining work comes from
    balance: str = "off"  # data-parallel ranks in lockstep: hold admissions together
    # "component.knob" -> value: every knob of the registry, its default unless overridden (filled at validation)
    knobs: dict[str, float] = Field(default_factory=dict, validate_default=True)
    # A program with no turn for this long (and no end call) is ended: its pin released, its state dropped.
    idle_end_s: float = Field(600.0, gt=0)
    # Address of the engine-side control channel (stats, session end); empty disables it.
    control_addr: str = ""
    # Data-parallel ranks behind this server (`continuum serve` sets it from --data-parallel-size): the HTTP
    # layer reaches every rank's control channel and keeps each program on one rank.
    dp_size: int = Field(1, ge=1)
    # Prefill cost model coefficients (seconds = a + b*tokens + c*tokens^2); None keeps kvttl's defaults.
    reload_cost: list[float] | None = None

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:  # one plain message naming the field, like the CLI's
            raise ConfigError(_first_error(exc)) from None

    @field_validator(*KIND_OF_FIELD.keys() - {"terms"})
    @classmethod
    def _known_component(cls, value: str, info: Any) -> str:
        return check_component(KIND_OF_FIELD[info.field_name].name, value)

    @field_validator("terms")
    @classmethod
    def _known_terms(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(check_component("term", t) for t in value))

    @field_validator("knobs")
    @classmethod
    def _known_knobs(cls, value: dict[str, float]) -> dict[str, float]:
        for name, v in value.items():
            check_knob(name, v)
        return {**all_knob_defaults(), **value}

    def knob(self, name: str) -> float:
        """A knob's value (``name`` = "component.knob")."""
        return self.knobs[name]

    def knobs_of(self, component: str) -> dict[str, float]:
        """Every knob of ``component`` with its value here, by short name."""
        return {k: self.knobs[f"{component}.{k}"] for k in knobs_of(component)}

    def to_env(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_env(cls) -> "ContinuumConfig":
        raw = os.environ.get(ENV_VAR)
        return cls.model_validate_json(raw) if raw else cls()


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "config"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{where}: {msg}"
