"""The continuum_* series come from a prometheus_client collector (HELP and TYPE lines, aggregates only)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from continuum.http.metrics import SERIES, collector_on


def test_the_collector_renders_the_latest_stats_with_help_lines():
    registry = CollectorRegistry()
    collector = collector_on(registry)
    assert collector_on(registry) is collector  # registered once
    collector.update({"num_programs": 3, "pins": {"active": 2, "pinned_blocks": 17, "created": 9, "hit": 4},
                      "kv": {"free_blocks": 100}, "programs": [{"id": "secret-session"}]})
    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert set(families) == {name.removesuffix("_total") for name in SERIES}
    assert all(f.documentation for f in families.values())
    assert "# HELP continuum_pinned_blocks " in text and "# TYPE continuum_pins_created_total counter" in text
    values = {s.name: s.value for f in families.values() for s in f.samples}
    assert values["continuum_pinned_blocks"] == 17 and values["continuum_pins_created_total"] == 9
    assert values["continuum_pins_expired_total"] == 0  # absent from the stats: zero, not an error
    assert "secret-session" not in text  # aggregates only


def test_before_any_stats_every_series_is_zero():
    registry = CollectorRegistry()
    collector_on(registry)
    samples = [s for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples]
    assert len(samples) == len(SERIES) and all(s.value == 0 for s in samples)
