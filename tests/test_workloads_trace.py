"""Trace format, stats and arrivals."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from continuum_workloads.arrivals import assign_arrivals, poisson_arrival_times
from continuum_workloads.stats import dist, format_stats, tail_share, trace_stats
from continuum_workloads.trace import TraceError, Turn, load_programs, parse_program, read_trace, write_trace

EXAMPLE = {"id": "swe-00012", "workload": "swebench", "arrival_s": None,
           "turns": [{"new_input_tokens": 1234, "output_tokens": 180, "tool": "grep", "tool_s": 0.42},
                     {"new_input_tokens": 310, "output_tokens": 95, "tool": None, "tool_s": 0.0}]}


def _line(**changes) -> str:
    d = json.loads(json.dumps(EXAMPLE))
    d.update(changes)
    return json.dumps(d)


def _write_lines(tmp_path, lines) -> str:
    p = tmp_path / "t.jsonl"
    p.write_text("\n".join(lines) + "\n")
    return str(p)


def test_design_example_parses_and_counts_tokens():
    p = parse_program(json.dumps(EXAMPLE))
    assert p.prompt_tokens() == [1234, 1234 + 180 + 310]
    assert p.total_tokens() == (1234 + 180) + (1724 + 95)
    assert p.final_context() == 1724 + 95
    assert [t.tool for t in p.tool_calls()] == ["grep"]


def test_roundtrip_keeps_nulls_and_drops_absent_optionals(tmp_path):
    p = parse_program(json.dumps(EXAMPLE))
    path = tmp_path / "rt.jsonl"
    assert write_trace(path, [p, p.model_copy(update={"id": "b", "arrival_s": 1.5})]) == 2
    raw = [json.loads(x) for x in path.read_text().splitlines()]
    assert raw[0]["arrival_s"] is None and raw[0]["turns"][1]["tool"] is None
    assert "messages" not in raw[0]["turns"][0] and "meta" not in raw[0]
    assert read_trace(path) == [p, p.model_copy(update={"id": "b", "arrival_s": 1.5})]


def test_messages_round_trip_with_extra_keys(tmp_path):
    d = json.loads(json.dumps(EXAMPLE))
    d["turns"][0]["messages"] = [{"role": "user", "content": "hi"}]
    d["turns"][0]["reply"] = {"role": "assistant", "content": "[ls()]",
                              "tool_calls": [{"id": "c0", "type": "function"}]}
    p = parse_program(json.dumps(d))
    write_trace(tmp_path / "m.jsonl", [p])
    back = read_trace(tmp_path / "m.jsonl")[0]
    assert back.turns[0].reply.model_dump()["tool_calls"][0]["id"] == "c0"


@pytest.mark.parametrize("bad, line_field", [
    ('{"id": "x", "workload": "swebench", "turns": [', (None, None)),
    (_line(turns=[{"new_input_tokens": 5, "output_tokens": 0, "tool": None, "tool_s": 0}]),
     "turns.0.output_tokens"),
    (_line(turns=[{"new_input_tokens": -1, "output_tokens": 3}]), "turns.0.new_input_tokens"),
    (_line(turns=[{"new_input_tokens": 5, "output_tokens": 3, "tool": "ls", "tool_s": 1.0}]), "turns.0"),
    (_line(turns=[{"new_input_tokens": 5, "output_tokens": 3, "tool": None, "tool_s": 2.0},
                  {"new_input_tokens": 5, "output_tokens": 3}]), "turns.0.tool_s"),
    (_line(turns=[{"new_input_tokens": 0, "output_tokens": 3}]), "turns.0.new_input_tokens"),
    (_line(turns=[]), "turns"),
    (_line(arrival_s=-1), "arrival_s"),
    (_line(id=""), "id"),
    (_line(turns=[{"new_input_tokens": "5", "output_tokens": 3}]), "turns.0.new_input_tokens"),
    (_line(colour="red"), "colour"),
    ('[1, 2]', (None, None)),
])
def test_malformed_line_names_line_and_field(tmp_path, bad, line_field):
    path = _write_lines(tmp_path, [_line(id="a"), "", bad])
    with pytest.raises(TraceError) as exc:
        read_trace(path)
    assert exc.value.line == 3
    assert f"{path}:3:" in str(exc.value)
    if isinstance(line_field, str):
        assert exc.value.field == line_field
        assert f"field {line_field}:" in str(exc.value)


def test_duplicate_ids_rejected(tmp_path):
    with pytest.raises(TraceError, match="duplicate program id 'a' .first on line 1"):
        read_trace(_write_lines(tmp_path, [_line(id="a"), _line(id="a")]))


def test_missing_file_is_a_trace_error(tmp_path):
    with pytest.raises(TraceError, match="cannot read trace"):
        read_trace(tmp_path / "nope.jsonl")


def test_load_programs_is_what_every_trace_flag_reads(tmp_path):
    with pytest.raises(TraceError, match="nope.jsonl: cannot read trace: no such trace file"):
        load_programs(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(TraceError, match="empty.jsonl: the trace has no programs"):
        load_programs(empty)
    assert load_programs(empty, allow_empty=True) == []
    path = _write_lines(tmp_path, [_line(id=f"p{i}") for i in range(3)])
    assert [p.id for p in load_programs(path)] == ["p0", "p1", "p2"]
    assert [p.id for p in load_programs(path, 2)] == ["p0", "p1"]


def test_turn_model_rejects_nan_duration():
    with pytest.raises(ValueError):
        Turn(new_input_tokens=1, output_tokens=1, tool="ls", tool_s=float("nan"))


def test_dist_and_tail_share():
    d = dist([1, 2, 3, 4])
    assert d.n == 4 and d.mean == 2.5 and d.min == 1 and d.max == 4
    assert dist([]).n == 0
    assert tail_share([1] * 9 + [91]) == pytest.approx(0.91)
    assert tail_share([1] * 20, 0.1) == pytest.approx(0.1)
    assert tail_share([]) == 0.0


def test_trace_stats_of_small_trace():
    progs = [parse_program(_line(id=str(i))) for i in range(3)]
    s = trace_stats(progs)
    assert s.programs == 3 and s.turns.mean == 2 and s.tool_calls == 3
    assert s.tool_s.mean == pytest.approx(0.42) and s.slowest10_share == pytest.approx(1 / 3)
    assert s.tokens_per_program.mean == 1234 + 180 + 1724 + 95
    assert s.final_context.mean == 1819 and s.arrivals is None
    text = format_stats(s)
    for word in ("turns per program", "tool time", "slowest 10%", "tokens per program", "final context", "grep"):
        assert word in text


def test_poisson_arrivals_seeded_and_at_rate():
    a = poisson_arrival_times(20001, 2.0, seed=7)
    assert a[0] == 0.0 and a == poisson_arrival_times(20001, 2.0, seed=7)
    assert a != poisson_arrival_times(20001, 2.0, seed=8)
    assert all(x < y for x, y in zip(a, a[1:]))
    assert a[-1] / 20000 == pytest.approx(0.5, rel=0.03)
    assert poisson_arrival_times(0, 1.0, 0) == []
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            poisson_arrival_times(3, bad, 0)


def test_assign_arrivals_copies():
    progs = [parse_program(_line(id=str(i))) for i in range(5)]
    out = assign_arrivals(progs, 0.5, seed=1)
    assert [p.id for p in out] == [p.id for p in progs]
    assert all(p.arrival_s is None for p in progs)
    assert out[0].arrival_s == 0.0 and all(p.arrival_s is not None for p in out)
    assert trace_stats(out).arrivals["jps"] > 0


def test_workloads_imports_no_engine_or_sibling_packages():
    code = ("import sys, workloads, continuum_workloads.cli; "
            "bad = [m for m in ('vllm', 'kvttl', 'continuum', 'bfcl_eval', 'torch') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_failed_write_leaves_no_partial_file(tmp_path):
    def programs():
        yield parse_program(json.dumps(EXAMPLE))
        raise RuntimeError("generator failed")

    with pytest.raises(RuntimeError):
        write_trace(tmp_path / "out.jsonl", programs())
    assert list(tmp_path.iterdir()) == []
