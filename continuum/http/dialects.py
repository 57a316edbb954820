"""The agent-hint dialects other serving stacks speak, mapped onto Continuum's one program model: an agent written
for Dynamo, llm-d or vLLM's KV hints gets program tracking, pins and hints without changing a line. The middleware
rewrites what `read` finds into Continuum's own fields (body ``session_id``, ``vllm_xargs``) before tenants are
applied, so a program a dialect names is qualified with the caller's tenant like any other.

Sources: Dynamo's ``nvext`` and ``x-dynamo-session-id`` (ai-dynamo/dynamo, lib/llm/src/protocols/openai/nvext.rs);
the headers llm-d's ``agent-identity`` plugin reads, in its order (llm-d/llm-d-router, formerly
llm-d-inference-scheduler: pkg/epp/framework/plugins/requestcontrol/requestheader/agentidentity/agent_identity.go);
vLLM's ``KvHintsEnvelope`` (vllm/v1/kv_hints/protocol.py; the ``vllm.set_priority`` and ``kv.retain`` payloads as
vLLM's main branch defines them in vllm/v1/kv_hints/actions.py and retain.py; ``kv.release``, ``kv.demote``,
``kv.prefetch`` and Dynamo's ``kv.fetch`` are the RFC's verbs). Like vLLM's dispatcher, an action of another
type, major version or protocol version is skipped, not refused.

Pre-warms (``kv.prefetch``, ``kv.fetch``, ``speculative_prefill``) are counted, and that is all: they arrive with a
turn, and that turn loads its own prefix, from GPU or host memory, as it is admitted. A client that wants a
program's KV back ahead of its turn asks for it while the tool runs, with ``POST /v1/sessions/{id}/prefetch``
(`continuum.http.routes`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, model_validator
from starlette.datastructures import Headers

from continuum.http.validation import MAX_RETAIN_S, BadRequest, SessionId, bad_request, check_session_id

DYNAMO_HEADER = "x-dynamo-session-id"
AGENT_HEADERS = ("x-claude-code-session-id", "x-session-affinity", "session-id", "session_id")  # llm-d's order
Seconds = Annotated[float, Field(ge=0, le=MAX_RETAIN_S, allow_inf_nan=False, strict=True)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")  # fields Continuum does not read stay the other stack's business


class AgentHints(_Open):
    priority: Annotated[StrictInt, Field(ge=-(2**31), lt=2**31)] | None = None
    osl: Annotated[StrictInt, Field(ge=0, lt=2**32)] | None = None
    speculative_prefill: StrictBool | None = None


class SessionControl(_Open):
    session_id: SessionId
    action: Literal["open", "close"] | None = None


class NvExt(_Open):
    agent_hints: AgentHints | None = None
    session_control: SessionControl | None = None


class KvHintAction(BaseModel):
    action_id: StrictStr
    action_type: StrictStr
    action_version: StrictStr
    payload: dict[str, Any]


class KvHintsEnvelope(BaseModel):
    protocol_version: StrictStr
    message_id: StrictStr
    actions: list[KvHintAction]


class SetPriority(_Open):
    value: StrictInt | None
    ttl_seconds: Seconds | None = None

    @model_validator(mode="after")
    def _ttl_with_value(self) -> "SetPriority":  # vLLM's own rule (vllm/v1/kv_hints/actions.py)
        if (self.value is None) != (not self.ttl_seconds):
            raise ValueError("a value needs a positive ttl_seconds, and clearing (value null) takes none")
        return self


class RetainDirective(_Open):
    priority: Annotated[StrictInt, Field(ge=0, le=100)]
    duration: Seconds | None = None  # None: until the engine drops it (here: until the program returns or ends)


class Retain(_Open):
    directives: list[RetainDirective]


@dataclass
class Dialects:
    """What the dialects of one request say, in Continuum's terms."""

    program: str | None = None  # the program they name (first in precedence), or None
    hints: dict[str, Any] = field(default_factory=dict)  # Continuum's own ``vllm_xargs`` hints they map to
    counts: Counter = field(default_factory=Counter)  # the dialects it speaks (1 each), pre-warms it asks for


def _parse(model: type[BaseModel], value: Any, param: str) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise bad_request(exc, param) from None


def _header(headers: Headers, name: str) -> str | None:
    """The first non-empty value of a dialect header (empty is absent, as llm-d reads them); each one checked."""
    values = [v for v in headers.getlist(name) if v]
    for value in values:
        check_session_id(value, name)
    return values[0] if values else None


def _kv_action(action: KvHintAction, param: str) -> float | str | None:
    """A pin TTL in seconds (0: release), "prefetch", or None for an action Continuum does not act on."""
    kind, major = action.action_type, action.action_version.split(".")[0]
    if major != "1":
        return None
    if kind == "vllm.set_priority":
        claim = _parse(SetPriority, action.payload, param)
        return claim.ttl_seconds if claim.value is not None and claim.value > 0 else 0.0
    if kind == "kv.retain":
        kept = [d for d in _parse(Retain, action.payload, param).directives if d.priority > 0]
        return max(MAX_RETAIN_S if d.duration is None else d.duration for d in kept) if kept else 0.0
    return {"kv.release": 0.0, "kv.demote": 0.0, "kv.prefetch": "prefetch", "kv.fetch": "prefetch"}.get(kind)


def _read_kv_hints(value: Any, found: Dialects) -> None:
    envelope = _parse(KvHintsEnvelope, value, "kv_hints")
    found.counts["kv_hints"] = 1
    if envelope.protocol_version != "0.1":
        return
    for i, action in enumerate(envelope.actions):
        effect = _kv_action(action, f"kv_hints.actions.{i}.payload")
        if effect == "prefetch":
            found.counts["prefetch_requested"] += 1
        elif effect is not None:  # actions apply in order: the last retain or release decides
            found.hints["retain_s"] = effect


def _read_nvext(value: Any, found: Dialects) -> str | None:
    nvext = _parse(NvExt, value, "nvext")
    found.counts["dynamo"] = 1
    hints, control = nvext.agent_hints, nvext.session_control
    if hints is not None and hints.priority:  # Dynamo's higher-is-more-important onto Continuum's two classes
        found.hints["class"] = "ls" if hints.priority > 0 else "be"
    if hints is not None and hints.osl is not None:
        found.hints["osl"] = hints.osl
    if hints is not None and hints.speculative_prefill:
        found.counts["prefetch_requested"] += 1
    if control is not None and control.action == "close":
        found.hints["is_last_step"] = True
    return control.session_id if control is not None else None


def read(headers: Headers, body: Any) -> Dialects:
    """The dialects of a request, checked: a malformed one is a BadRequest naming its field."""
    found, body = Dialects(), body if isinstance(body, dict) else {}
    if (dynamo := _header(headers, DYNAMO_HEADER)) is not None:
        found.counts["dynamo"] = 1
    in_nvext = _read_nvext(body["nvext"], found) if body.get("nvext") is not None else None
    if body.get("kv_hints") is not None:
        _read_kv_hints(body["kv_hints"], found)
    agents = [v for v in (_header(headers, name) for name in AGENT_HEADERS) if v is not None]
    if agents:
        found.counts["llm-d"] = 1
    # Dynamo's names before the headers agent CLIs send unasked: a client or proxy that chose an orchestrator's
    # protocol knows which program it means. (vLLM's own names come first of all: `apply`'s ``named``.)
    found.program = next((p for p in (dynamo, in_nvext, *agents) if p is not None), None)
    return found


def program_named(headers: Headers, body: Any) -> str | None:
    """The program the dialects name, or None (also when one is malformed: the middleware answers that)."""
    try:
        return read(headers, body).program
    except BadRequest:
        return None


def apply(body: Any, found: Dialects, named: bool) -> bool:
    """Write what the dialects say into Continuum's fields of ``body``; whether it changed. ``named``: one of
    vLLM's own fields names the program already, and it wins. A hint the client set natively wins too."""
    if not isinstance(body, dict):
        return False
    changed = False
    if found.program is not None and not named:
        body["session_id"], changed = found.program, True
    if found.hints:
        xargs = body.get("vllm_xargs") or {}
        for key, value in found.hints.items():
            if xargs.get(key) is None:
                xargs[key], changed = value, True
        body["vllm_xargs"] = xargs
    return changed

