"""Bring your own traces: convert public agentic trace formats into the trace format.

Mooncake-style JSONL (the FAST'25 Mooncake traces and the session extension
that aiperf's ``mooncake_trace`` dataset reads), one request per line::

    {"session_id": "s1", "timestamp": 0, "input_length": 6955, "output_length": 52, "hash_ids": [...]}
    {"session_id": "s1", "delay": 2300, "input_length": 7400, "output_length": 40}

* Rows with the same ``session_id`` are the turns of one program, in file order;
  a row without one is a program of its own.
* ``input_length`` is the request's whole prompt (Mooncake's meaning), so a
  turn's new input is its prompt minus the previous prompt and output (clamped
  at 0: the count of clamped turns is kept in ``meta``). ``--input-lengths delta``
  reads it as the new tokens only.
* ``delay`` (ms) is the gap between the previous turn's end and this request:
  the tool time of the previous turn. Without it, the gap between consecutive
  ``timestamp`` values is used, an upper bound that also includes the previous
  turn's serving time (``meta.tool_s_from`` says which).
* ``timestamp`` (ms) of a program's first row gives ``arrival_s`` relative to the
  earliest program; if any program lacks one, arrivals are left null.
* The tool name is the row's ``tool`` field when present, else ``"unknown"``.
  ``hash_ids`` are not carried: Continuum rebuilds prefixes from token ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from continuum_workloads.trace import Program, TraceError, Turn, iter_lines, parse_json_line

__all__ = ["MooncakeRow", "FORMATS", "read_mooncake_rows", "import_mooncake", "import_trace"]

FORMATS = ("mooncake",)
UNKNOWN_TOOL = "unknown"


class MooncakeRow(BaseModel):
    """One request of a Mooncake-style trace; unknown keys (hash_ids, extra, ...) are ignored."""

    model_config = ConfigDict(extra="ignore")

    session_id: str | int | None = None
    timestamp: float | None = Field(default=None, ge=0)
    delay: float | None = Field(default=None, ge=0)
    input_length: int = Field(ge=0)
    output_length: int = Field(ge=1)
    tool: str | None = Field(default=None, min_length=1)


@dataclass
class _Session:
    key: str
    rows: list[tuple[int, MooncakeRow]] = field(default_factory=list)


def read_mooncake_rows(path: str | Path) -> Iterator[tuple[int, MooncakeRow]]:
    """(line number, row) for each non-blank line; a bad line raises a TraceError naming line and field."""
    p = str(path)
    for lineno, text in iter_lines(p):
        obj = parse_json_line(text, line=lineno, path=p)
        try:
            yield lineno, MooncakeRow.model_validate(obj)
        except ValidationError as e:
            err = e.errors(include_url=False)[0]
            name = ".".join(str(x) for x in err["loc"]) or "<row>"
            raise TraceError(f"field {name}: {err['msg']}", path=p, line=lineno, field=name) from None


def _sessions(rows: Iterator[tuple[int, MooncakeRow]]) -> list[_Session]:
    by_key: dict[str, _Session] = {}
    for lineno, row in rows:
        key = f"req-{lineno}" if row.session_id is None else str(row.session_id)
        by_key.setdefault(key, _Session(key)).rows.append((lineno, row))
    return list(by_key.values())


def _gap_s(prev: MooncakeRow, cur: MooncakeRow) -> tuple[float, str]:
    if cur.delay is not None:
        return cur.delay / 1000.0, "delay"
    if prev.timestamp is not None and cur.timestamp is not None:
        return max(0.0, cur.timestamp - prev.timestamp) / 1000.0, "timestamp gaps"
    return 0.0, "none"


def _program(s: _Session, workload: str, input_lengths: str, prefix: str, path: str) -> Program:
    rows = [r for _, r in s.rows]
    turns, clamped, sources = [], 0, set()
    for k, row in enumerate(rows):
        new_input = row.input_length
        if input_lengths == "full" and k > 0:
            new_input = row.input_length - (rows[k - 1].input_length + rows[k - 1].output_length)
            clamped += new_input < 0
            new_input = max(0, new_input)
        tool, tool_s = None, 0.0
        if k + 1 < len(rows):
            tool_s, src = _gap_s(row, rows[k + 1])
            tool = row.tool or UNKNOWN_TOOL
            sources.add(src)
        turns.append(Turn(new_input_tokens=new_input, output_tokens=row.output_length, tool=tool,
                          tool_s=round(tool_s, 6)))
    if turns[0].new_input_tokens < 1:
        raise TraceError("field input_length: the first request of a program needs at least 1 input token",
                         path=path, line=s.rows[0][0], field="input_length")
    meta = {"source": "mooncake", "first_line": s.rows[0][0], "input_lengths": input_lengths,
            "tool_s_from": ",".join(sorted(sources)) or None, "clamped_turns": clamped}
    return Program(id=f"{prefix}{s.key}", workload=workload, arrival_s=None, turns=turns, meta=meta)


def _set_arrivals(programs: list[Program], sessions: list[_Session]) -> list[Program]:
    firsts = [s.rows[0][1].timestamp for s in sessions]
    if not firsts or any(t is None for t in firsts):
        return programs
    t0 = min(firsts)  # type: ignore[type-var]
    return [p.model_copy(update={"arrival_s": (t - t0) / 1000.0}) for p, t in zip(programs, firsts)]


def import_mooncake(path: str | Path, workload: str = "mooncake",
                    input_lengths: Literal["full", "delta"] = "full", id_prefix: str = "mc-") -> list[Program]:
    """Convert a Mooncake-style JSONL file into programs (see the module docstring)."""
    if input_lengths not in ("full", "delta"):
        raise ValueError(f"input_lengths must be 'full' or 'delta', got {input_lengths!r}")
    sessions = _sessions(read_mooncake_rows(path))
    programs = [_program(s, workload, input_lengths, id_prefix, str(path)) for s in sessions]
    return _set_arrivals(programs, sessions)


def import_trace(fmt: str, path: str | Path, **kwargs: Any) -> list[Program]:
    """Dispatch on the format name (``FORMATS``)."""
    if fmt == "mooncake":
        return import_mooncake(path, **kwargs)
    raise ValueError(f"unknown trace format {fmt!r}; choose from {list(FORMATS)}")
