"""Tool-duration predictor and its sorted sliding window."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvttl import SortedWindow, ToolDurationPredictor


@settings(max_examples=50, deadline=None, derandomize=True)
@given(st.integers(1, 20), st.lists(st.floats(0, 1e6, allow_nan=False), max_size=80))
def test_sorted_window_matches_last_values_sorted(capacity, values):
    w = SortedWindow(capacity)
    for v in values:
        w.add(v)
    tail = values[-capacity:] if values else []
    assert list(w.sorted()) == sorted(tail)
    assert w.values() == tail
    assert len(w) == len(tail)
    if tail:
        assert w.mean() == pytest.approx(sum(tail) / len(tail), rel=1e-9, abs=1e-9)


def test_sorted_window_snapshot_is_stable_and_read_only():
    w = SortedWindow(3)
    for v in (3.0, 1.0, 2.0):
        w.add(v)
    snap = w.sorted()
    assert w.sorted() is snap  # cached until the next add
    assert w.add(0.5) == 3.0  # the oldest value falls out
    assert list(snap) == [1.0, 2.0, 3.0]
    assert list(w.sorted()) == [0.5, 1.0, 2.0]
    with pytest.raises(ValueError):
        snap[0] = 9.0


def test_three_stage_cold_start():
    p = ToolDurationPredictor(window=100, min_global_samples=3, min_tool_samples=4, default_s=1.5)
    assert p.stage_for("grep") == "default"
    assert list(p.samples_for("grep")) == [1.5]
    assert p.mean_for("grep") == 1.5
    p.record("ls", 0.1)
    p.record("ls", 0.2)
    assert p.stage_for("ls") == "default"
    p.record("grep", 5.0)  # three samples in total: global CDF for everyone
    assert p.stage_for("grep") == "global"
    assert p.stage_for("ls") == "global"
    assert list(p.samples_for("grep")) == [0.1, 0.2, 5.0]
    for _ in range(3):
        p.record("grep", 4.0)
    assert p.stage_for("grep") == "tool"  # four of its own
    assert list(p.samples_for("grep")) == [4.0, 4.0, 4.0, 5.0]
    assert p.mean_for("grep") == pytest.approx(4.25)
    assert p.stage_for("ls") == "global"


def test_unknown_and_none_tools_use_the_global_cdf():
    p = ToolDurationPredictor(min_global_samples=2, min_tool_samples=2)
    p.record(None, 1.0)
    p.record("cat", 3.0)
    for tool in (None, "", "never-seen"):
        assert p.stage_for(tool) == "global"
        assert list(p.samples_for(tool)) == [1.0, 3.0]
    assert p.tools() == ["cat"]  # None is not a tool


def test_windows_are_bounded():
    p = ToolDurationPredictor(window=5, global_window=8, min_global_samples=1, min_tool_samples=1)
    for i in range(20):
        p.record("sed", float(i))
    assert list(p.samples_for("sed")) == [15.0, 16.0, 17.0, 18.0, 19.0]
    assert p.global_sample_count == 8
    assert p.lifetime_mean("sed") == pytest.approx(9.5)  # the whole history
    assert p.lifetime_mean("nope") is None


def test_number_of_tools_is_bounded():
    p = ToolDurationPredictor(max_tools=3)
    for name in ("a", "b", "c"):
        p.record(name, 1.0)
    p.record("a", 1.0)  # a is now the most recent
    p.record("d", 1.0)  # drops b, the least recently recorded
    assert p.tools() == ["c", "a", "d"]


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_rejects_bad_durations(bad):
    p = ToolDurationPredictor()
    with pytest.raises(ValueError):
        p.record("ls", bad)
    assert p.global_sample_count == 0


def test_samples_are_sorted_arrays():
    rng = np.random.default_rng(1)
    p = ToolDurationPredictor(window=50, min_global_samples=1, min_tool_samples=1)
    for x in rng.exponential(size=200):
        p.record("pytest", float(x))
    s = p.samples_for("pytest")
    assert isinstance(s, np.ndarray) and len(s) == 50
    assert np.all(np.diff(s) >= 0)


def test_state_is_json():
    p = ToolDurationPredictor(min_global_samples=1, min_tool_samples=2)
    p.record("ls", 0.5)
    p.record("ls", 1.5)
    state = json.loads(json.dumps(p.state()))
    assert state["tools"]["ls"]["samples"] == 2
    assert state["tools"]["ls"]["stage"] == "tool"
    assert state["global"]["mean_s"] == pytest.approx(1.0)
