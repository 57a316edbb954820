"""Agent workloads: the trace format, generators (SWE-bench, BFCL), importers, arrivals and transforms.

Pure Python + numpy + pydantic; imports neither vLLM nor the other Continuum packages.
"""

from continuum_workloads.arrivals import assign_arrivals, poisson_arrival_times
from continuum_workloads.bfcl import generate_bfcl, iter_bfcl
from continuum_workloads.importers import import_mooncake, import_trace
from continuum_workloads.stats import TraceStats, format_stats, trace_stats
from continuum_workloads.swebench import generate_swebench, iter_swebench
from continuum_workloads.tokens import approx_counter, tokenizer_counter
from continuum_workloads.trace import (
                                       Message,
                                       Program,
                                       TraceError,
                                       Turn,
                                       iter_trace,
                                       load_programs,
                                       parse_program,
                                       read_trace,
                                       write_trace,
)
from continuum_workloads.transforms import fit_program, scale_program, shape_programs

__all__ = [
    "Message",
    "Program",
    "Turn",
    "TraceError",
    "parse_program",
    "iter_trace",
    "read_trace",
    "load_programs",
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
    "scale_program",
    "fit_program",
    "shape_programs",
]
