"""``continuum trace gen | stats | import``: build, inspect and convert workload traces.

`TraceVerb` is the ``continuum trace`` verb (the project's `continuum.verbs` entry points name it; it has the shape of
`continuum.serve.verbs.Verb` without importing it, as this package imports nothing of Continuum's);
``python -m continuum_workloads.cli trace ...`` runs the same code without the entry point. Bad input (unknown
workload, negative counts, a missing or malformed file) prints one clear line on stderr and returns 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from continuum_workloads.arrivals import assign_arrivals
from continuum_workloads.bfcl import CATEGORIES, BfclUnavailable, iter_bfcl
from continuum_workloads.importers import FORMATS, import_trace
from continuum_workloads.stats import format_stats, trace_stats
from continuum_workloads.swebench import iter_swebench
from continuum_workloads.tokens import tokenizer_counter
from continuum_workloads.trace import Program, TraceError, load_programs, write_trace

__all__ = ["WORKLOADS", "TraceVerb", "add_trace_parser", "run_trace", "main"]

WORKLOADS = ("swebench", "bfcl")
EXIT_BAD_INPUT = 2


class UsageError(ValueError):
    """Input the user can fix; reported as one line, exit code 2."""


def _add_gen(sub: Any) -> None:
    p = sub.add_parser("gen", help="generate a workload trace (JSONL)")
    p.add_argument("--workload", required=True, help=f"one of: {', '.join(WORKLOADS)}")
    p.add_argument("--programs", type=int, default=100, help="number of programs (default 100)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", required=True, help="output JSONL file")
    p.add_argument("--arrival-jps", type=float, default=None,
                   help="assign Poisson arrivals at this rate (programs per second); default: leave null")
    p.add_argument("--arrival-seed", type=int, default=None, help="seed of the arrivals (default: --seed)")
    p.add_argument("--tokenizer", default=None,
                   help="tokenizer.json for token counts (bfcl; default: the embedded model's)")
    p.add_argument("--categories", default=",".join(CATEGORIES),
                   help=f"bfcl multi-turn categories, comma-separated (default: {','.join(CATEGORIES)})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_stats(sub: Any) -> None:
    p = sub.add_parser("stats", help="summary statistics of a trace")
    p.add_argument("file", help="trace JSONL file")
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")


def _add_import(sub: Any) -> None:
    p = sub.add_parser("import", help="convert a public trace format into a Continuum trace")
    p.add_argument("input", help="input file")
    p.add_argument("--format", required=True, help=f"one of: {', '.join(FORMATS)}")
    p.add_argument("--out", required=True, help="output JSONL file")
    p.add_argument("--workload", default=None, help="workload name to record (default: the format name)")
    p.add_argument("--input-lengths", choices=("full", "delta"), default="full",
                   help="mooncake: input_length is the whole prompt (full, default) or only the new tokens")


def add_trace_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``trace`` command (gen / stats / import) to an argparse subparsers object."""
    p = subparsers.add_parser("trace", help="workload traces: gen, stats, import",
                              description="Build, inspect and convert agent workload traces.")
    sub = p.add_subparsers(dest="trace_cmd", metavar="{gen,stats,import}")
    sub.required = True
    _add_gen(sub)
    _add_stats(sub)
    _add_import(sub)
    return p


def _counter(args: argparse.Namespace, default_tokenizer: str | None) -> Callable[[str], int]:
    path = args.tokenizer or default_tokenizer
    if not path:
        raise UsageError("bfcl counts tokens with a tokenizer: pass --tokenizer PATH/tokenizer.json "
                         "(or build the embedded model: continuum models build)")
    try:
        return tokenizer_counter(path)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    except Exception as e:  # a file that is not a tokenizer
        raise UsageError(f"cannot load tokenizer {path}: {e}") from None


def _programs_for(args: argparse.Namespace, default_tokenizer: str | None) -> Iterable[Program]:
    progress = not args.quiet
    if args.workload == "swebench":
        return iter_swebench(args.programs, args.seed, progress)
    cats = [c.strip() for c in args.categories.split(",") if c.strip()]
    bad = [c for c in cats if c not in CATEGORIES]
    if bad or not cats:
        raise UsageError(f"unknown bfcl categories {bad}; choose from {', '.join(CATEGORIES)}")
    return iter_bfcl(args.programs, args.seed, _counter(args, default_tokenizer), cats, progress)


def _gen(args: argparse.Namespace, default_tokenizer: str | None) -> int:
    if args.workload not in WORKLOADS:
        raise UsageError(f"unknown workload {args.workload!r}; choose from {', '.join(WORKLOADS)}")
    if args.programs < 0:
        raise UsageError(f"--programs must be >= 0, got {args.programs}")
    if args.arrival_jps is not None and not (0 < args.arrival_jps < float("inf")):
        raise UsageError(f"--arrival-jps must be a positive rate, got {args.arrival_jps}")
    programs: Iterable[Program] = _programs_for(args, default_tokenizer)
    if args.arrival_jps is not None:
        seed = args.seed if args.arrival_seed is None else args.arrival_seed
        programs = assign_arrivals(list(programs), args.arrival_jps, seed)
    n = write_trace(args.out, programs)
    print(f"wrote {n} {args.workload} programs to {args.out}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    s = trace_stats(load_programs(args.file, allow_empty=True))
    print(json.dumps(s.model_dump(), indent=2) if args.json else format_stats(s))
    return 0


def _import(args: argparse.Namespace) -> int:
    if args.format not in FORMATS:
        raise UsageError(f"unknown format {args.format!r}; choose from {', '.join(FORMATS)}")
    if not Path(args.input).is_file():
        raise UsageError(f"no such input file: {args.input}")
    programs = import_trace(args.format, args.input, workload=args.workload or args.format,
                           input_lengths=args.input_lengths)
    n = write_trace(args.out, programs)
    print(f"imported {n} programs from {args.input} into {args.out}")
    return 0


def run_trace(args: argparse.Namespace, default_tokenizer: str | None) -> int:
    """Execute a parsed ``trace`` command; returns the exit code (2 on bad input)."""
    try:
        if args.trace_cmd == "gen":
            return _gen(args, default_tokenizer)
        if args.trace_cmd == "stats":
            return _stats(args)
        if args.trace_cmd == "import":
            return _import(args)
        raise UsageError(f"unknown trace command {args.trace_cmd!r}")
    except (UsageError, TraceError, BfclUnavailable, ValueError, OSError) as e:
        print(f"continuum trace {args.trace_cmd}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _default_tokenizer() -> str | None:
    env = os.environ.get("CONTINUUM_TOKENIZER")
    if env:
        return env
    models = os.environ.get("CONTINUUM_MODELS_DIR") or Path(__file__).resolve().parent.parent / ".models"
    local = Path(models) / "smollm2-135m" / "tokenizer.json"  # the embedded default model's tokenizer
    return str(local) if local.is_file() else None


class TraceVerb:
    name, passthrough = "trace", False

    def add_to(self, subparsers: Any) -> argparse.ArgumentParser:
        return add_trace_parser(subparsers)

    def run(self, args: argparse.Namespace, extra: list[str]) -> int:
        return run_trace(args, _default_tokenizer())


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry: ``python -m continuum_workloads.cli trace gen|stats|import ...``."""
    parser = argparse.ArgumentParser(prog="continuum")
    sub = parser.add_subparsers(dest="command", metavar="{trace}")
    sub.required = True
    add_trace_parser(sub)
    args = parser.parse_args(argv)
    return run_trace(args, _default_tokenizer())


if __name__ == "__main__":
    sys.exit(main())
