"""``trace gen | stats | import`` and the Mooncake importer."""

from __future__ import annotations

import argparse
import json

import pytest

from continuum_workloads.cli import add_trace_parser, main, run_trace
from continuum_workloads.importers import import_mooncake
from continuum_workloads.trace import TraceError, read_trace

MOONCAKE = [
    {"session_id": "s1", "timestamp": 1000, "input_length": 1000, "output_length": 50, "hash_ids": [1, 2]},
    {"session_id": "s2", "timestamp": 1500, "input_length": 700, "output_length": 20},
    {"session_id": "s1", "delay": 2500, "input_length": 1300, "output_length": 40, "tool": "pytest"},
    {"timestamp": 4000, "input_length": 300, "output_length": 10},
    {"session_id": "s1", "delay": 100, "input_length": 1200, "output_length": 5},
    {"session_id": "s2", "timestamp": 3500, "input_length": 900, "output_length": 30},
]


def _jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


def test_mooncake_sessions_delays_and_arrivals(tmp_path):
    progs = {p.id: p for p in import_mooncake(_jsonl(tmp_path / "mc.jsonl", MOONCAKE))}
    assert list(progs) == ["mc-s1", "mc-s2", "mc-req-4"]
    s1 = progs["mc-s1"]
    assert [t.new_input_tokens for t in s1.turns] == [1000, 250, 0]
    assert [t.tool for t in s1.turns] == ["unknown", "pytest", None]
    assert [t.tool_s for t in s1.turns] == [2.5, 0.1, 0.0]
    assert s1.meta["clamped_turns"] == 1 and s1.meta["tool_s_from"] == "delay"
    s2 = progs["mc-s2"]
    assert s2.turns[0].tool_s == 2.0 and s2.meta["tool_s_from"] == "timestamp gaps"
    assert (s1.arrival_s, s2.arrival_s, progs["mc-req-4"].arrival_s) == (0.0, 0.5, 3.0)
    delta = {p.id: p for p in import_mooncake(str(tmp_path / "mc.jsonl"), input_lengths="delta")}
    assert [t.new_input_tokens for t in delta["mc-s1"].turns] == [1000, 1300, 1200]


def test_mooncake_bad_row_names_line_and_field(tmp_path):
    rows = MOONCAKE[:2] + [{"session_id": "s3", "input_length": 10, "output_length": -4}]
    with pytest.raises(TraceError) as exc:
        import_mooncake(_jsonl(tmp_path / "bad.jsonl", rows))
    assert exc.value.line == 3 and exc.value.field == "output_length"
    assert ":3: field output_length" in str(exc.value)


def test_gen_stats_and_arrivals_through_cli(tmp_path, capsys):
    out = tmp_path / "swe.jsonl"
    assert main(["trace", "gen", "--workload", "swebench", "--programs", "40", "--seed", "1",
                 "--out", str(out), "--arrival-jps", "0.2", "--quiet"]) == 0
    progs = read_trace(out)
    assert len(progs) == 40 and progs[0].arrival_s == 0.0 and progs[-1].arrival_s > 0
    assert main(["trace", "stats", str(out)]) == 0
    text = capsys.readouterr().out
    assert "programs               40" in text and "slowest 10%" in text and "programs/s" in text
    assert main(["trace", "stats", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["programs"] == 40


def test_import_through_cli(tmp_path, capsys):
    src = _jsonl(tmp_path / "mc.jsonl", MOONCAKE)
    out = tmp_path / "imported.jsonl"
    assert main(["trace", "import", "--format", "mooncake", src, "--out", str(out), "--workload", "prod"]) == 0
    assert {p.workload for p in read_trace(out)} == {"prod"}


@pytest.mark.parametrize("argv, message", [
    (["trace", "gen", "--workload", "nope", "--out", "X"], "unknown workload 'nope'"),
    (["trace", "gen", "--workload", "swebench", "--programs", "-2", "--out", "X"], "--programs must be >= 0"),
    (["trace", "gen", "--workload", "swebench", "--arrival-jps", "0", "--out", "X"], "--arrival-jps"),
    (["trace", "gen", "--workload", "bfcl", "--tokenizer", "/no/such/tokenizer.json", "--out", "X"],
     "tokenizer"),
    (["trace", "gen", "--workload", "bfcl", "--categories", "base,weird", "--out", "X"], "categories"),
    (["trace", "stats", "/no/such/file.jsonl"], "no such trace file"),
    (["trace", "import", "--format", "sharegpt", "IN", "--out", "X"], "unknown format"),
    (["trace", "import", "--format", "mooncake", "/no/such/in.jsonl", "--out", "X"], "no such input file"),
])
def test_bad_input_exits_2_with_message(tmp_path, capsys, argv, message):
    argv = [str(tmp_path / a) if a == "X" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "error:" in err


def test_malformed_trace_exits_2_with_line_number(tmp_path, capsys):
    good = {"id": "a", "workload": "w", "turns": [{"new_input_tokens": 5, "output_tokens": 3}]}
    bad = {"id": "b", "workload": "w", "turns": [{"new_input_tokens": 5, "output_tokens": 3, "tool_s": -1}]}
    path = _jsonl(tmp_path / "bad.jsonl", [good, good | {"id": "c"}, bad])
    assert main(["trace", "stats", path]) == 2
    assert f"{path}:3: field turns.0.tool_s" in capsys.readouterr().err


def test_bfcl_without_tokenizer_is_a_usage_error(tmp_path, capsys):
    args = argparse.Namespace(trace_cmd="gen", workload="bfcl", programs=3, seed=0, out=str(tmp_path / "b.jsonl"),
                              arrival_jps=None, arrival_seed=None, tokenizer=None, categories="base", quiet=True)
    assert run_trace(args, default_tokenizer=None) == 2
    assert "--tokenizer" in capsys.readouterr().err


def test_parser_plugs_into_an_outer_cli(tmp_path):
    parser = argparse.ArgumentParser(prog="continuum")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve")
    add_trace_parser(sub)
    args = parser.parse_args(["trace", "gen", "--workload", "swebench", "--programs", "3",
                              "--out", str(tmp_path / "t.jsonl"), "--quiet"])
    assert args.command == "trace" and run_trace(args, default_tokenizer=None) == 0
    assert len(read_trace(tmp_path / "t.jsonl")) == 3
