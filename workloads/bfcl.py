"""BFCL multi-turn agent programs, built from the real Berkeley Function Calling Leaderboard data.

Source: the multi-turn categories (base, long_context, miss_func, miss_param) of
the PyPI package ``bfcl-eval`` (gorilla-llm/gorilla, Apache-2.0; data and the
system prompt below are theirs). The package pins old versions of many
libraries, so it is installed without its dependencies and never imported:
its data files are read from the installed package folder.

What is real and what is injected:

* Real: the user turns, the function documents offered to the model (minus the
  entry's excluded functions; in miss_func the missing function is offered
  at the turn where BFCL adds it), and the ground-truth function calls of each
  user turn. Token counts come from a caller-supplied tokenizer (the embedded
  model's) over the ChatML rendering of the messages, which are kept in the
  trace so a live agent can replay them.
* Turn structure: each LLM turn emits function calls and is followed by a tool
  call; the next turn's input is the tool results plus the next user message
  when the user turn is done. Consecutive ground-truth calls of one user turn
  are emitted in one response (BFCL's format allows several calls per answer)
  with a per-program probability p ~ Beta(0.5, 0.6) (``MERGE_BETA``: some
  episodes batch calls, some issue them one by one), calibrated so that programs
  have 6.3 +- 2.3 turns.
  A user turn whose ground truth is empty (the function or a parameter is
  missing) is one LLM turn that answers in text with no tool call. A final turn
  reads the last tool results and answers; it calls no tool.
* Injected: tool results are synthesized from each function's documented
  response schema (argument values echoed where names match; in long_context,
  list-valued results are padded with ``LONG_CONTEXT_ITEMS`` extra entries,
  standing in for the large state that category loads). Tool durations: BFCL's
  backends run in microseconds, so each call gets a duration from a
  per-function log-normal: median = the median of its service class (``CLASSES``)
  times a fixed per-function factor exp(0.25 z), z a standard normal drawn from
  the function name's hash; sigma from the class. A turn's ``tool_s`` is the sum
  over its calls. The class medians are calibrated to 1.9 +- 2.1 s per tool call.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from continuum_workloads.tokens import END_OF_TURN, GENERATION_PROMPT, TokenCounter, render_message
from continuum_workloads.trace import Program, Turn

__all__ = [
    "CATEGORIES",
    "CLASSES",
    "BfclUnavailable",
    "BfclEntry",
    "bfcl_data_dir",
    "load_bfcl_entries",
    "function_class",
    "function_duration_params",
    "bfcl_program",
    "iter_bfcl",
    "generate_bfcl",
]

WORKLOAD = "bfcl"
PACKAGE = "bfcl_eval"
DISTRIBUTION = "bfcl-eval"
CATEGORIES = ("base", "long_context", "miss_func", "miss_param")
MERGE_BETA = (0.5, 0.6)  # per-program batching propensity ~ Beta(a, b), mean 0.45
FUNCTION_JITTER_SIGMA = 0.25
LONG_CONTEXT_ITEMS = 60
CREDIT = "Berkeley Function Calling Leaderboard multi-turn data, PyPI bfcl-eval (gorilla-llm/gorilla), Apache-2.0"

# BFCL's mapping from API class to its function-document file.
FUNC_DOC_FILES = {
    "GorillaFileSystem": "gorilla_file_system.json",
    "MathAPI": "math_api.json",
    "MessageAPI": "message_api.json",
    "TwitterAPI": "posting_api.json",
    "TicketAPI": "ticket_api.json",
    "TradingBot": "trading_bot.json",
    "TravelAPI": "travel_booking.json",
    "VehicleControlAPI": "vehicle_control.json",
    "WebSearchAPI": "web_search.json",
    "MemoryAPI_kv": "memory_kv.json",
    "MemoryAPI_vector": "memory_vector.json",
    "MemoryAPI_rec_sum": "memory_rec_sum.json",
}

# Service classes: what the function would cost against a real backend.
# name -> (median seconds, log-normal sigma)
CLASSES: dict[str, tuple[float, float]] = {
    "local": (0.28, 0.45),       # file system, math, memory: a sandboxed local call
    "service_read": (1.00, 0.50),  # query a remote service (prices, messages, tickets, distances)
    "service_write": (1.90, 0.50),  # a transaction (order, booking, post, ticket, payment)
    "vehicle": (2.35, 0.55),     # a physical actuator (engine, brakes, doors, fuel pump)
    "web": (3.20, 0.60),         # web search or page fetch
}
LOCAL_APIS = {"GorillaFileSystem", "MathAPI", "MemoryAPI_kv", "MemoryAPI_vector", "MemoryAPI_rec_sum"}
LOCAL_FUNCTIONS = {"gallon_to_liter", "liter_to_gallon", "display_log", "estimate_drive_feasibility_by_mileage"}
READ_PREFIXES = ("get", "list", "view", "check", "estimate", "display", "retrieve", "compute", "search",
                 "find", "verify", "filter", "message_get", "posting_get", "ticket_get", "trading_get",
                 "travel_get", "notify")
VEHICLE_ACTUATORS = {"startEngine", "pressBrakePedal", "releaseBrakePedal", "lockDoors", "fillFuelTank",
                     "activateParkingBrake", "setHeadlights", "setCruiseControl", "adjustClimateControl",
                     "set_navigation"}

SYSTEM_PROMPT = (
    "You are an expert in composing functions. You are given a question and a set of possible functions. "
    "Based on the question, you will need to make one or more function/tool calls to achieve the purpose. "
    "If none of the functions can be used, point it out. If the given question lacks the parameters required "
    "by the function, also point it out.\n\nYou should only return the function calls in your response.\n\n"
    "If you decide to invoke any of the function(s), you MUST put it in the format of "
    "[func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)]. "
    "You SHOULD NOT include any other text in the response.\n\n"
    "At each turn, you should try your best to complete the tasks requested by the user within the current "
    "turn. Continue to output functions to call until you have fulfilled the user's request to the best of "
    "your ability. Once you have no more functions to call, the system will consider the current turn "
    "complete and proceed to the next turn or task.\n\n"
    "Here is a list of functions in JSON format that you can invoke.\n{functions}\n"
)
ADDED_FUNCTIONS_PROMPT = "{functions}\nI have updated some more functions you can choose from. What about now?"
REPLY_MISSING = {
    "miss_func": "None of the available functions can do this; the function it needs is not in the list.",
    "miss_param": "I cannot do this yet: the request lacks a parameter the function requires. "
                  "Please provide it.",
}
REPLY_CANNOT = "I cannot do this with the available functions."
REPLY_FINAL = "All requested operations are complete."


class BfclUnavailable(RuntimeError):
    """The bfcl-eval data files are not installed."""


@dataclass
class BfclEntry:
    """One BFCL multi-turn test case joined with its ground truth and function documents."""

    id: str
    category: str
    questions: list[list[dict[str, Any]]]
    ground_truth: list[list[str]]
    docs: list[dict[str, Any]]                      # offered from the start
    added_docs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # turn -> docs added then
    doc_class: dict[str, str] = field(default_factory=dict)                   # function -> API class


def bfcl_data_dir() -> Path:
    """The ``data`` folder of the installed bfcl-eval package, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        d = Path(loc) / "data"
        if (d / "multi_turn_func_doc").is_dir():
            return d
    raise BfclUnavailable("the BFCL data is not installed: run "
                          "`pip install --no-deps bfcl-eval==2026.3.23` in this environment")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@lru_cache(maxsize=4)
def _docs_by_class(data_dir: str) -> dict[str, list[dict[str, Any]]]:
    base = Path(data_dir) / "multi_turn_func_doc"
    return {cls: _read_jsonl(base / fname) for cls, fname in FUNC_DOC_FILES.items() if (base / fname).exists()}


def _make_entry(row: dict[str, Any], answer: dict[str, Any], category: str,
                docs_by_class: dict[str, list[dict[str, Any]]]) -> BfclEntry:
    excluded = set(row.get("excluded_function", []))
    missed = {int(k): set(v) for k, v in (row.get("missed_function") or {}).items()}
    held_back = set().union(*missed.values()) if missed else set()
    docs, doc_class, by_name = [], {}, {}
    for cls in row["involved_classes"]:
        for d in docs_by_class.get(cls, []):
            doc_class[d["name"]], by_name[d["name"]] = cls, d
            if d["name"] not in excluded and d["name"] not in held_back:
                docs.append(d)
    added = {turn: [by_name[n] for n in sorted(names) if n in by_name] for turn, names in missed.items()}
    return BfclEntry(id=row["id"], category=category, questions=row["question"],
                     ground_truth=answer["ground_truth"], docs=docs, added_docs=added, doc_class=doc_class)


def load_bfcl_entries(categories: Sequence[str] = CATEGORIES, data_dir: Path | None = None) -> list[BfclEntry]:
    """All test cases of the given multi-turn categories, in file order."""
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        raise ValueError(f"unknown BFCL categories {unknown}; choose from {list(CATEGORIES)}")
    d = data_dir or bfcl_data_dir()
    docs_by_class = _docs_by_class(str(d))
    entries = []
    for cat in categories:
        rows = _read_jsonl(d / f"BFCL_v4_multi_turn_{cat}.json")
        answers = {a["id"]: a for a in _read_jsonl(d / "possible_answer" / f"BFCL_v4_multi_turn_{cat}.json")}
        entries += [_make_entry(r, answers[r["id"]], cat, docs_by_class) for r in rows if r["id"] in answers]
    return entries


# ---------------------------------------------------------------- durations


def function_class(name: str, api_class: str | None) -> str:
    """Service class of a function (see ``CLASSES``)."""
    if api_class in LOCAL_APIS or name in LOCAL_FUNCTIONS:
        return "local"
    if api_class == "WebSearchAPI":
        return "web"
    if api_class == "VehicleControlAPI" and name in VEHICLE_ACTUATORS:
        return "vehicle"
    return "service_read" if name.startswith(READ_PREFIXES) else "service_write"


def _name_normal(name: str) -> float:
    """A standard normal fixed by the function name (stable across runs and machines)."""
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    return float(np.random.default_rng(seed).standard_normal())


def function_duration_params(name: str, api_class: str | None) -> tuple[float, float]:
    """(median seconds, sigma) of the log-normal duration of one call of ``name``."""
    median, sigma = CLASSES[function_class(name, api_class)]
    return median * float(np.exp(FUNCTION_JITTER_SIGMA * _name_normal(name))), sigma


def _duration(rng: np.random.Generator, name: str, api_class: str | None) -> float:
    median, sigma = function_duration_params(name, api_class)
    return float(median * np.exp(sigma * rng.standard_normal()))


# ---------------------------------------------------------------- calls and results


@dataclass
class Call:
    text: str
    name: str
    args: dict[str, Any]


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ast.unparse(node)


def parse_call(text: str, docs: dict[str, dict[str, Any]]) -> Call:
    """Parse a ground-truth call such as ``mv(source='a', destination='b')``; positional args are named."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return Call(text, text.split("(", 1)[0].strip(), {})
    if not isinstance(node, ast.Call):
        return Call(text, text.split("(", 1)[0].strip(), {})
    name = node.func.attr if isinstance(node.func, ast.Attribute) else ast.unparse(node.func)
    params = list(docs.get(name, {}).get("parameters", {}).get("properties", {}))
    args = {(params[i] if i < len(params) else f"arg{i}"): _literal(a) for i, a in enumerate(node.args)}
    args.update({kw.arg or "kwargs": _literal(kw.value) for kw in node.keywords})
    return Call(text, name, args)


_PLACEHOLDER = {"boolean": True, "integer": 1, "float": 0.0, "number": 0.0, "array": [], "dict": {}}


def synth_result(call: Call, doc: dict[str, Any] | None, long_context: bool) -> str:
    """A tool result shaped like the function's documented response."""
    props = (doc or {}).get("response", {}).get("properties", {})
    out: dict[str, Any] = {}
    for key, spec in props.items():
        typ = spec.get("type", "string")
        value = call.args.get(key, _PLACEHOLDER.get(typ, f"<{key}>"))
        if typ == "array" and long_context:
            value = list(value if isinstance(value, list) else [value])
            value += [f"{key}_{i:03d}" for i in range(LONG_CONTEXT_ITEMS)]
        out[key] = value
    return json.dumps(out or {"result": "ok"}, ensure_ascii=False, default=str)


# ---------------------------------------------------------------- OpenAI tool definitions

_TYPE_MAP = {"dict": "object", "float": "number", "tuple": "array", "any": None}


def _openai_schema(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_openai_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for k, v in schema.items():
        if k == "type" and isinstance(v, str):
            mapped = _TYPE_MAP.get(v, v)
            if mapped is not None:
                out[k] = mapped
        else:
            out[k] = _openai_schema(v)
    return out


def openai_tool(doc: dict[str, Any]) -> dict[str, Any]:
    """A BFCL function document as an OpenAI ``tools`` entry."""
    return {"type": "function", "function": {"name": doc["name"], "description": doc.get("description", ""),
                                             "parameters": _openai_schema(doc.get("parameters", {}))}}


# ---------------------------------------------------------------- program assembly


class _Builder:
    """Accumulates turns: pending input messages, then an LLM turn that consumes them."""

    def __init__(self, count_tokens: TokenCounter) -> None:
        self.count = count_tokens
        self.pending: list[dict[str, Any]] = []
        self.turns: list[Turn] = []

    def input_tokens(self, msgs: list[dict[str, Any]]) -> int:
        return sum(self.count(render_message(m)) for m in msgs) + self.count(GENERATION_PROMPT)

    def llm_turn(self, reply: dict[str, Any], tool: str | None, tool_s: float) -> None:
        out = self.count((reply.get("content") or "") + END_OF_TURN)
        self.turns.append(Turn(new_input_tokens=self.input_tokens(self.pending), output_tokens=max(1, out),
                               tool=tool, tool_s=round(tool_s, 4), messages=self.pending, reply=reply))
        self.pending = []


def _group_calls(calls: list[str], merge_p: float, rng: np.random.Generator) -> list[list[str]]:
    """Split a user turn's calls into responses: each next call joins the current one w.p. ``merge_p``."""
    groups: list[list[str]] = []
    for c in calls:
        if groups and rng.random() < merge_p:
            groups[-1].append(c)
        else:
            groups.append([c])
    return groups


def _call_step(b: _Builder, entry: BfclEntry, group: list[str], docs: dict[str, dict[str, Any]],
               rng: np.random.Generator, step: int) -> None:
    calls = [parse_call(c, docs) for c in group]
    ids = [f"call_{step}_{i}" for i in range(len(calls))]
    reply = {"role": "assistant", "content": "[" + ", ".join(c.text for c in calls) + "]",
             "tool_calls": [{"id": i, "type": "function",
                             "function": {"name": c.name, "arguments": json.dumps(c.args, default=str)}}
                            for i, c in zip(ids, calls)]}
    tool_s = sum(_duration(rng, c.name, entry.doc_class.get(c.name)) for c in calls)
    b.llm_turn(reply, tool=calls[0].name, tool_s=tool_s)
    long_ctx = entry.category == "long_context"
    b.pending = [{"role": "tool", "tool_call_id": i, "name": c.name,
                  "content": synth_result(c, docs.get(c.name), long_ctx)} for i, c in zip(ids, calls)]


def bfcl_program(entry: BfclEntry, count_tokens: TokenCounter, rng: np.random.Generator,
                 program_id: str | None = None) -> Program:
    """Turn one BFCL test case into a program (see the module docstring for the rules)."""
    b = _Builder(count_tokens)
    merge_p = float(rng.beta(*MERGE_BETA))
    docs = {d["name"]: d for d in entry.docs}
    b.pending = [{"role": "system", "content": SYSTEM_PROMPT.format(functions=json.dumps(entry.docs))}]
    for u, (question, truth) in enumerate(zip(entry.questions, entry.ground_truth)):
        b.pending += [{"role": m["role"], "content": m["content"]} for m in question]
        if u in entry.added_docs:
            docs.update({d["name"]: d for d in entry.added_docs[u]})
            b.pending.append({"role": "user", "content": ADDED_FUNCTIONS_PROMPT.format(
                functions=json.dumps(entry.added_docs[u]))})
        if not truth:
            b.llm_turn({"role": "assistant", "content": REPLY_MISSING.get(entry.category, REPLY_CANNOT)}, None, 0.0)
            continue
        for group in _group_calls(truth, merge_p, rng):
            _call_step(b, entry, group, docs, rng, len(b.turns))
    if b.pending or not b.turns:
        b.llm_turn({"role": "assistant", "content": REPLY_FINAL}, None, 0.0)
    # The function documents travel in the system message (BFCL's prompting mode), so
    # the token counts match a replay of ``messages`` as they are; ``openai_tool``
    # converts them for agents that prefer native tool calling.
    return Program(id=program_id or f"bfcl-{entry.id}", workload=WORKLOAD, arrival_s=None, turns=b.turns,
                   meta={"source": CREDIT, "bfcl_eval_version": _bfcl_version(), "bfcl_id": entry.id,
                         "category": entry.category})


@lru_cache(maxsize=1)
def _bfcl_version() -> str | None:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def _schedule(n_entries: int, programs: int, seed: int) -> Iterator[tuple[int, int]]:
    """(entry index, repetition) pairs: a seeded shuffle of the entries, reshuffled per pass."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xBFC1]))
    for i in range(programs):
        rep, pos = divmod(i, n_entries)
        if pos == 0:
            order = rng.permutation(n_entries)
        yield int(order[pos]), rep


def iter_bfcl(programs: int, seed: int, count_tokens: TokenCounter, categories: Sequence[str] = CATEGORIES,
              progress: bool = False, data_dir: Path | None = None) -> Iterator[Program]:
    """Stream ``programs`` BFCL programs sampled (seeded, without replacement per pass) from the data."""
    if programs < 0:
        raise ValueError(f"programs must be >= 0, got {programs}")
    entries = load_bfcl_entries(categories, data_dir)
    if not entries:
        raise BfclUnavailable("no BFCL multi-turn entries found")
    sched = _schedule(len(entries), programs, seed)
    for i, (idx, rep) in enumerate(tqdm(sched, total=programs, desc="bfcl", unit="prog", disable=not progress)):
        rng = np.random.default_rng(np.random.SeedSequence([seed, i]))
        pid = f"bfcl-{entries[idx].id}" + (f"-r{rep}" if rep else "")
        yield bfcl_program(entries[idx], count_tokens, rng, pid)


def generate_bfcl(programs: int, seed: int, count_tokens: TokenCounter, categories: Sequence[str] = CATEGORIES,
                  progress: bool = False, data_dir: Path | None = None) -> list[Program]:
    """``programs`` BFCL agent programs, deterministic in ``seed`` and the tokenizer."""
    return list(iter_bfcl(programs, seed, count_tokens, categories, progress, data_dir))
