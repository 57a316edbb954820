"""Agent workloads: the trace format, generators (SWE-bench, BFCL), importers and arrivals.

Pure Python + numpy + pydantic; imports neither vLLM nor the other Continuum packages.
"""

from workloads.arrivals import assign_arrivals, poisson_arrival_times
from workloads.bfcl import generate_bfcl, iter_bfcl
from workloads.importers import import_mooncake, import_trace
from workloads.stats import TraceStats, format_stats, trace_stats
from workloads.swebench import generate_swebench, iter_swebench
from workloads.tokens import approx_counter, tokenizer_counter
from workloads.trace import Message, Program, TraceError, Turn, iter_trace, parse_program, read_trace, write_trace

__all__ = [
    "Message",
    "Program",
    "Turn",
    "TraceError",
    "parse_program",
    "iter_trace",
    "read_trace",
    "write_trace",
    "assign_arrivals",
    "poisson_arrival_times",
    "generate_swebench",
    "iter_swebench",
    "generate_bfcl",
    "iter_bfcl",
    "import_mooncake",
    "import_trace",
    "trace_stats",
    "format_stats",
    "TraceStats",
    "tokenizer_counter",
    "approx_counter",
]
