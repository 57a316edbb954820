"""Continuum's request fields, validated by pydantic before vLLM sees them: bad input is a 400 naming the field.

Only Continuum's own fields are checked here (the program id in the body, the ``X-Session-ID`` header or
``vllm_xargs.session_id``, and the hints in ``vllm_xargs``); every other field is vLLM's to validate. The hint
dialects of other stacks are checked, and mapped onto these fields, by `continuum.http.dialects`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictStr, TypeAdapter, ValidationError

MAX_SESSION_ID = 256
MAX_TOOL_NAME = 256
MAX_RETAIN_S = 30 * 24 * 3600.0  # vLLM's own bound on a kv.retain duration (vllm/v1/kv_hints/retain.py)
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class BadRequest(ValueError):
    """A request field is wrong: ``param`` names it (dotted for nested fields, as OpenAI errors do)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def _printable(value: str) -> str:
    if _CONTROL_CHARS.search(value):
        raise ValueError("contains control characters")
    return value


# A session id is a 1..256 character string without control characters (they would break headers and logs).
SessionId = Annotated[StrictStr, Field(min_length=1, max_length=MAX_SESSION_ID), AfterValidator(_printable)]
ToolName = Annotated[StrictStr, Field(max_length=MAX_TOOL_NAME)]


class Hints(BaseModel):
    """Continuum's hints in ``vllm_xargs``; other keys are vLLM's (or the client's) business."""

    model_config = ConfigDict(extra="allow")

    is_last_step: StrictBool | None = None
    tool: ToolName | None = None
    session_id: SessionId | None = None
    # Latency-sensitive or best-effort (the ls-be classes); beam search patience (`continuum.http.beam_patience`).
    class_: Literal["ls", "be"] | None = Field(None, alias="class")
    patience: Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False, strict=True)] | None = None
    # The turn's expected output tokens, and how long to pin its KV once it finishes (0: do not, and end the
    # program's pin): what Dynamo's ``osl`` and a kv_hints retain or release map to (`continuum.sched.turns`).
    osl: Annotated[int, Field(ge=0, strict=True)] | None = None
    retain_s: Annotated[float, Field(ge=0, le=MAX_RETAIN_S, allow_inf_nan=False, strict=True)] | None = None


class ProgramFields(BaseModel):
    """The fields of a completion request that Continuum reads."""

    model_config = ConfigDict(extra="allow")

    session_id: SessionId | None = None
    vllm_xargs: Hints | None = None


_SESSION_ID = TypeAdapter(SessionId)


def bad_request(exc: ValidationError, prefix: str = "") -> BadRequest:
    """A 400 naming the first field pydantic rejected (under ``prefix``, the parameter it came in)."""
    err = exc.errors()[0]
    path = [str(p) for p in err["loc"]]
    param = ".".join([prefix] * bool(prefix) + path) or prefix
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "model_type":
        message = "must be an object"
    return BadRequest(param, f"{param}: {message}")


def check_session_id(value: Any, param: str) -> str:
    """``value`` as a session id, or BadRequest naming ``param``."""
    try:
        return _SESSION_ID.validate_python(value)
    except ValidationError as exc:
        raise bad_request(exc, param) from None


def check_completion_request(headers: dict[str, str], body: Any) -> None:
    """Validate Continuum's fields of a request (``headers`` with lower-case names); vLLM validates the rest."""
    if "x-session-id" in headers:
        check_session_id(headers["x-session-id"], "X-Session-ID")
    if not isinstance(body, dict):
        return  # vLLM answers malformed bodies itself
    try:
        ProgramFields.model_validate(body)
    except ValidationError as exc:
        raise bad_request(exc) from None
