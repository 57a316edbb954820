"""Tool-call awareness: the tool name read from an answer, and the scheduler re-deciding a pin's TTL."""

from __future__ import annotations

import json

from continuum.http.tool_names import ResponseToolReader, tool_from_text
from continuum.policy.config import ContinuumConfig
from continuum.sched.scheduler import ContinuumScheduler
from continuum_eval.sim.engine.vllm_offline import build_scheduler, make_request, run_step


def test_single_bash_block_names_its_command():
    assert tool_from_text("Let me search.\n```bash\n\n  grep -rn foo src/\n```\n") == "grep"
    # mini-swe-agent 2's text-based format
    assert tool_from_text("THOUGHT: look\n\n```mswea_bash_command\ncat setup.py\n```") == "cat"
    assert tool_from_text("```\npytest -x tests\n```") == "pytest"


def test_no_or_several_blocks_name_nothing():
    assert tool_from_text("no code here") is None
    assert tool_from_text("```bash\nls\n```\nthen\n```bash\ncat x\n```") is None
    assert tool_from_text(None) is None


def test_reader_handles_json_tool_calls_and_streamed_text():
    reader = ResponseToolReader()
    body = {"choices": [{"message": {"content": None, "tool_calls": [
        {"type": "function", "function": {"name": "get_stock_info", "arguments": "{}"}}]}}]}
    raw = json.dumps(body).encode()
    reader.feed(raw[:10])
    reader.feed(raw[10:])
    assert reader.tool() == "get_stock_info"

    stream = ResponseToolReader()
    for piece in ["Running it:\n```bash\n", "find . -name", " '*.py'\n```"]:
        event = {"choices": [{"delta": {"content": piece}}]}
        stream.feed(f"data: {json.dumps(event)}\n\n".encode())
    stream.feed(b"data: [DONE]\n\n")
    assert stream.tool() == "find"


def test_set_tool_redecides_the_pin_with_that_tools_history():
    s = build_scheduler(ContinuumScheduler, num_blocks=64, block_size=32,
                        continuum_config=ContinuumConfig(ttl_mode="fixed", fixed_ttl_s=2.0))
    now = [0.0]
    s.clock = lambda: now[0]
    for _ in range(3):  # a slow tool on record: fixed mode does not pin tools slower than 2 s on average
        s.retention.observe_tool("pytest", 30.0)
    s.add_request(make_request("a1", list(range(100, 300)), 4, session_id="A", tool="ls"))
    while s.has_requests():
        run_step(s)
    assert s.pins.table.get("A").ttl_s == 2.0  # unknown tool "ls": pinned for the fixed TTL
    s.set_tool("A", "pytest")
    assert "A" not in s.pins  # the answer actually runs pytest: not worth holding
    assert s.programs.get("A").last_tool == "pytest"
