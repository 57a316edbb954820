"""The trace format: one agent program per JSONL line.

A program is a sequence of LLM turns separated by tool calls::

    {"id": "swe-00012", "workload": "swebench", "arrival_s": null,
     "turns": [{"new_input_tokens": 1234, "output_tokens": 180, "tool": "grep", "tool_s": 0.42},
               {"new_input_tokens": 310, "output_tokens": 95, "tool": null, "tool_s": 0.0}]}

Turn k's prompt is turn k-1's prompt + its output + turn k's ``new_input_tokens``
(the tool result and any new message). ``tool_s`` is the wall time of the tool
call that follows the turn; the last turn calls no tool.

Every consumer (replay, simulator, stats) reads traces through this module, so
the rules live here once and a bad file is rejected with the line and the field
that is wrong instead of failing somewhere deep inside a run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Iterator

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "Message",
    "Turn",
    "Program",
    "TraceError",
    "parse_json_line",
    "parse_program",
    "iter_lines",
    "iter_trace",
    "read_trace",
    "load_programs",
    "write_trace",
    "program_to_json",
]

MAX_ID_LEN = 256
MAX_TOOL_LEN = 128


class Message(BaseModel):
    """An OpenAI-style chat message kept so a live agent can replay real text.

    Extra keys (``tool_calls``, ``tool_call_id``, ``name``) pass through untouched.
    """

    model_config = ConfigDict(extra="allow")

    role: str = Field(min_length=1)
    content: str | None = None


class Turn(BaseModel):
    """One LLM call of a program and the tool call that follows it."""

    model_config = ConfigDict(extra="forbid")

    new_input_tokens: int = Field(ge=0, strict=True)
    output_tokens: int = Field(ge=1, strict=True)
    tool: str | None = Field(default=None, min_length=1, max_length=MAX_TOOL_LEN)
    tool_s: float = Field(default=0.0, ge=0.0, strict=True)
    # Messages appended to the conversation before this turn's LLM call.
    messages: list[Message] | None = None
    # The reference assistant reply of this turn (what the recorded agent said).
    reply: Message | None = None

    @field_validator("tool_s")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number of seconds")
        return v

    @model_validator(mode="after")
    def _no_time_without_tool(self) -> "Turn":
        # A wait with no tool would be invisible to the tool-duration predictor
        # and to the stats; importers name unknown tools explicitly instead.
        if self.tool is None and self.tool_s > 0:
            raise ValueError("tool_s: a tool call of positive duration needs a tool name "
                             "(use \"unknown\" when it is not known)")
        return self


class Program(BaseModel):
    """An agent session: the unit Continuum schedules and pins."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=MAX_ID_LEN)
    workload: str = Field(min_length=1)
    arrival_s: float | None = Field(default=None, ge=0.0, strict=True)
    turns: list[Turn] = Field(min_length=1)
    # OpenAI tool definitions the program's agent offers to the model (live replay).
    tools: list[dict[str, Any]] | None = None
    # Provenance: source dataset, category, license, generator parameters.
    meta: dict[str, Any] | None = None

    @field_validator("arrival_s")
    @classmethod
    def _finite_arrival(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number of seconds")
        return v

    @model_validator(mode="after")
    def _shape(self) -> "Program":
        if self.turns[0].new_input_tokens < 1:
            raise ValueError("turns.0.new_input_tokens: the first turn needs a prompt of at least 1 token")
        last = self.turns[-1]
        if last.tool is not None or last.tool_s != 0:
            raise ValueError(f"turns.{len(self.turns) - 1}: the last turn must not call a tool "
                             "(want tool null, tool_s 0)")
        return self

    def prompt_tokens(self) -> list[int]:
        """Prompt length of each turn (the context the engine prefills or reuses)."""
        out, prompt, prev_out = [], 0, 0
        for t in self.turns:
            prompt = prompt + prev_out + t.new_input_tokens
            out.append(prompt)
            prev_out = t.output_tokens
        return out

    def total_tokens(self) -> int:
        """Sum over turns of prompt + output: the work a cache-less server does."""
        return sum(p + t.output_tokens for p, t in zip(self.prompt_tokens(), self.turns))

    def final_context(self) -> int:
        """Context length at the end of the program (last prompt + last output)."""
        return self.prompt_tokens()[-1] + self.turns[-1].output_tokens

    def tool_calls(self) -> list[Turn]:
        """Turns followed by a tool call."""
        return [t for t in self.turns if t.tool is not None]


class TraceError(ValueError):
    """A trace that does not follow the format; names the file, line and field."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.path, self.line, self.field = path, line, field
        where = ":".join(str(x) for x in (path, line) if x is not None)
        super().__init__(f"{where}: {message}" if where else message)


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _describe(err: ValidationError) -> tuple[str, str]:
    """First error of a pydantic validation, as (field, readable message)."""
    e = err.errors(include_url=False)[0]
    field = _loc(e["loc"])
    msg = e["msg"].removeprefix("Value error, ")
    head, sep, rest = msg.partition(": ")
    if sep and head and " " not in head:
        # Our own validators say which sub-field they mean as "field: message".
        field, msg = ".".join(x for x in (field, head) if x), rest
    got = e.get("input")
    if e["type"] not in ("missing", "model_type") and not isinstance(got, (dict, list)):
        msg = f"{msg} (got {json.dumps(got)})"
    more = len(err.errors()) - 1
    if more:
        msg += f" [and {more} more error{'s' if more > 1 else ''}]"
    return field or "<program>", msg


def parse_json_line(text: str, *, line: int | None = None, path: str | None = None) -> Any:
    """One JSONL line's value, or a TraceError naming the line and the character where the JSON breaks."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise TraceError(f"invalid JSON: {e.msg} (character {e.pos + 1})", path=path, line=line) from None


def parse_program(text: str, *, line: int | None = None, path: str | None = None) -> Program:
    """Parse one JSONL line into a Program or raise a TraceError naming line and field."""
    obj = parse_json_line(text, line=line, path=path)
    if not isinstance(obj, dict):
        raise TraceError("a line must be a JSON object (one program)", path=path, line=line)
    try:
        return Program.model_validate(obj)
    except ValidationError as e:
        field, msg = _describe(e)
        raise TraceError(f"field {field}: {msg}", path=path, line=line, field=field) from None


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-blank line of a JSONL file (a trace, or a format it is imported from); a
    file that cannot be read is a TraceError."""
    p = str(path)
    try:
        fh = open(p, encoding="utf-8")
    except OSError as e:
        raise TraceError(f"cannot read trace: {e.strerror}", path=p) from None
    with fh:
        for lineno, text in enumerate(fh, start=1):
            if text.strip():
                yield lineno, text


def iter_trace(path: str | Path) -> Iterator[Program]:
    """Stream programs from a JSONL trace; blank lines are skipped, ids must be unique."""
    p = str(path)
    seen: dict[str, int] = {}
    for lineno, text in iter_lines(p):
        prog = parse_program(text, line=lineno, path=p)
        if prog.id in seen:
            raise TraceError(f"field id: duplicate program id {prog.id!r} (first on line {seen[prog.id]})",
                             path=p, line=lineno, field="id")
        seen[prog.id] = lineno
        yield prog


def read_trace(path: str | Path) -> list[Program]:
    """Read and validate a whole JSONL trace."""
    return list(iter_trace(path))


def load_programs(path: str | Path, limit: int | None = None, *, allow_empty: bool = False) -> list[Program]:
    """The programs a command runs on: the trace at ``path`` (its first ``limit`` programs). Every command that
    takes ``--trace`` loads it here, so a missing or empty file reads the same everywhere (a TraceError)."""
    if not Path(path).is_file():
        raise TraceError("cannot read trace: no such trace file", path=str(path))
    programs = read_trace(path)
    if not programs and not allow_empty:
        raise TraceError("the trace has no programs", path=str(path))
    return programs[:limit] if limit else programs


def program_to_json(program: Program) -> str:
    """One JSONL line; optional fields are left out, ``arrival_s`` and ``tool`` always written."""
    d = program.model_dump(mode="json", exclude_none=True)
    d = {"id": d["id"], "workload": d["workload"], "arrival_s": program.arrival_s, **d}
    for t in d["turns"]:
        t.setdefault("tool", None)
    return json.dumps(d, ensure_ascii=False, separators=(", ", ": "))


def write_trace(path: str | Path, programs: Iterable[Program]) -> int:
    """Write programs as JSONL (atomically: a temporary file renamed into place); returns the count."""
    dest = Path(path)
    if dest.parent and not dest.parent.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for prog in programs:
                fh.write(program_to_json(prog) + "\n")
                n += 1
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(dest)
    return n
