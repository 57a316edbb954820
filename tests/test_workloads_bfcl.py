"""BFCL workload built from the real multi-turn data of the bfcl-eval package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from continuum_workloads.bfcl import (
    CATEGORIES,
    BfclUnavailable,
    bfcl_data_dir,
    bfcl_program,
    function_class,
    generate_bfcl,
    load_bfcl_entries,
    openai_tool,
    parse_call,
)
from continuum_workloads.stats import trace_stats
from continuum_workloads.tokens import GENERATION_PROMPT, approx_counter, render_message, tokenizer_counter

REPO = Path(__file__).resolve().parent.parent


def _tokenizer_file() -> Path | None:
    for cand in (os.environ.get("CONTINUUM_TOKENIZER"), REPO / ".models" / "smollm2-135m" / "tokenizer.json"):
        if cand and Path(cand).is_file():
            return Path(cand)
    return None


@pytest.fixture(scope="module")
def tokenizer_path() -> Path:
    """The embedded model's tokenizer.json (CONTINUUM_TOKENIZER or .models/); skips when absent."""
    path = _tokenizer_file()
    if path is None:
        pytest.skip("no tokenizer.json: set CONTINUUM_TOKENIZER or build the embedded model")
    return path


@pytest.fixture(scope="module")
def count_tokens():
    """The real tokenizer when available, else a character-count approximation."""
    path = _tokenizer_file()
    return tokenizer_counter(path) if path else approx_counter


@pytest.fixture(scope="module")
def entries():
    try:
        return load_bfcl_entries()
    except BfclUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def programs(entries, count_tokens):
    return generate_bfcl(len(entries), seed=0, count_tokens=count_tokens)


def test_real_data_loaded_from_installed_package_without_importing_it(entries):
    # In a fresh interpreter: the BFCL agent bench's tests import bfcl_eval into this one.
    code = ("import sys; from continuum_workloads.bfcl import load_bfcl_entries; load_bfcl_entries(); "
            "assert 'bfcl_eval' not in sys.modules, 'continuum_workloads.bfcl imported bfcl_eval'")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (bfcl_data_dir() / "multi_turn_func_doc").is_dir()
    assert {e.category for e in entries} == set(CATEGORIES)
    assert len(entries) == 800
    assert all(len(e.questions) == len(e.ground_truth) and e.docs for e in entries)


def test_built_programs_match_calibration(programs):
    s = trace_stats(programs)
    assert s.programs == 800 and s.workloads == {"bfcl": 800}
    assert 6.0 <= s.turns.mean <= 6.7 and 1.8 <= s.turns.sd <= 2.8, s.turns
    assert 1.7 <= s.tool_s.mean <= 2.1 and 1.7 <= s.tool_s.sd <= 2.6, s.tool_s


def test_programs_keep_real_text_and_calls(programs, entries):
    by_id = {e.id: e for e in entries}
    p = next(p for p in programs if p.meta["bfcl_id"] == "multi_turn_base_0")
    e = by_id["multi_turn_base_0"]
    first = p.turns[0].messages
    assert first[0].role == "system" and "mkdir" in first[0].content
    assert first[1].role == "user" and first[1].content == e.questions[0][0]["content"]
    replies = " ".join(t.reply.content for t in p.turns[:-1])
    for call in (c for turn in e.ground_truth for c in turn):
        assert call in replies
    n_calls = sum(len(t.reply.model_dump()["tool_calls"]) for t in p.turns if t.tool)
    assert n_calls == sum(len(t) for t in e.ground_truth)
    assert all(m.role == "tool" for m in p.turns[1].messages[:1])
    assert "Apache-2.0" in p.meta["source"] and p.meta["category"] == "base"


def test_miss_func_adds_the_missing_function_at_its_turn(programs):
    p = next(p for p in programs if p.meta["bfcl_id"] == "multi_turn_miss_func_0")
    assert "\"name\": \"sort\"" not in p.turns[0].messages[0].content
    textual = [i for i, t in enumerate(p.turns[:-1]) if t.tool is None]
    assert len(textual) == 1
    nxt = p.turns[textual[0] + 1]
    assert nxt.tool == "sort" and "I have updated some more functions" in nxt.messages[-1].content


def test_long_context_results_are_longer(programs):
    def mean_result(cat):
        sizes = [len(m.content) for p in programs if p.meta["category"] == cat
                 for t in p.turns for m in (t.messages or []) if m.role == "tool"]
        return sum(sizes) / len(sizes)
    assert mean_result("long_context") > 3 * mean_result("base")


def test_token_counts_use_the_tokenizer(tokenizer_path, entries):
    count = tokenizer_counter(tokenizer_path)
    p = bfcl_program(entries[0], count, np.random.default_rng(0))
    t0 = p.turns[0]
    expect = sum(count(render_message(m.model_dump())) for m in t0.messages) + count(GENERATION_PROMPT)
    assert t0.new_input_tokens == expect
    assert 1000 < t0.new_input_tokens < 20000
    assert p.turns[0].output_tokens == count(t0.reply.content + "<|im_end|>")


def test_sampling_is_seeded_and_repeats_past_the_pool(entries, count_tokens):
    few = generate_bfcl(5, seed=1, count_tokens=approx_counter, categories=["base"])
    assert few == generate_bfcl(5, seed=1, count_tokens=approx_counter, categories=["base"])
    assert [p.id for p in few] != [p.id for p in generate_bfcl(5, seed=2, count_tokens=approx_counter,
                                                                 categories=["base"])]
    many = generate_bfcl(205, seed=0, count_tokens=approx_counter, categories=["base"])
    assert len({p.id for p in many}) == 205 and any(p.id.endswith("-r1") for p in many)


def test_parse_call_names_positional_args():
    docs = {"sort": {"parameters": {"properties": {"file_name": {}}}}}
    c = parse_call("sort('final_report.pdf')", docs)
    assert c.name == "sort" and c.args == {"file_name": "final_report.pdf"}
    c = parse_call("mv(source='a', destination=\"b\")", {})
    assert c.args == {"source": "a", "destination": "b"}
    assert parse_call("not a call(", {}).name == "not a call"


def test_function_classes_and_openai_schema():
    assert function_class("cd", "GorillaFileSystem") == "local"
    assert function_class("get_stock_info", "TradingBot") == "service_read"
    assert function_class("place_order", "TradingBot") == "service_write"
    assert function_class("startEngine", "VehicleControlAPI") == "vehicle"
    assert function_class("fetch_url_content", "WebSearchAPI") == "web"
    tool = openai_tool({"name": "f", "description": "d", "parameters": {
        "type": "dict", "properties": {"x": {"type": "float"}, "y": {"type": "any"}}}})
    params = tool["function"]["parameters"]
    assert params["type"] == "object" and params["properties"]["x"]["type"] == "number"
    assert "type" not in params["properties"]["y"]
