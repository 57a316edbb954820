"""The ``continuum_*`` Prometheus series: a `prometheus_client` collector on vLLM's registry.

vLLM's ``/metrics`` renders its registry; this collector adds Continuum's aggregates to it (no session ids, no
tenants: ``/metrics`` is as open as vLLM leaves it). The scheduler lives in the engine process, so the HTTP
layer fetches its stats over the control channel just before vLLM renders ``/metrics`` and hands them to
`ContinuumCollector.update`; rendering itself never waits on the engine.
"""

from __future__ import annotations

import threading
import weakref
from typing import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

# name -> (kind, help, where in the stats: (section, key) or a top-level key)
SERIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "continuum_programs": ("gauge", "Agent programs (sessions) the scheduler tracks.", ("num_programs",)),
    "continuum_pins_active": ("gauge", "Programs whose finished turn's KV blocks are pinned now.", ("pins", "active")),
    "continuum_pinned_blocks": ("gauge", "Distinct KV blocks held by pins now.", ("pins", "pinned_blocks")),
    "continuum_pins_created": ("counter", "Pins taken when a turn finished.", ("pins", "created")),
    "continuum_pin_hits": ("counter", "Pins released because the program's next turn was admitted.", ("pins", "hit")),
    "continuum_pins_expired": ("counter", "Pins released when their time-to-live ran out.", ("pins", "expired")),
    "continuum_pins_released_pressure": ("counter", "Pins released to make room for an allocation.",
                                         ("pins", "released_pressure")),
    "continuum_pins_released_end": ("counter", "Pins released because their program ended.",
                                    ("pins", "released_end")),
    "continuum_pins_released_abort": ("counter", "Pins released because a turn was aborted or its client left.",
                                      ("pins", "released_abort")),
    "continuum_kv_free_blocks": ("gauge", "Free KV blocks in vLLM's block pool.", ("kv", "free_blocks")),
    # Admission (memory and cap admission; 0 with open admission): a router scores replicas on these
    # (deploy/k8s: llm-d's endpoint picker) so a new program goes where it is admitted soonest.
    "continuum_admission_waiting": ("gauge", "Programs whose first turn waits at the admission door.",
                                    ("admission", "at_door")),
    "continuum_admission_active": ("gauge", "Programs admitted and not yet ended.", ("admission", "active")),
}


def _value(stats: dict, path: tuple[str, ...]) -> float:
    node = stats
    for key in path:
        node = node.get(key, {}) if isinstance(node, dict) else {}
    return float(node) if isinstance(node, (int, float)) else 0.0


class ContinuumCollector(Collector):
    """Yields the series above from the latest stats it was given (zeros before the first)."""

    def __init__(self) -> None:
        self._stats: dict = {}
        self._lock = threading.Lock()  # scrapes may render from another thread

    def update(self, stats: dict) -> None:
        with self._lock:
            self._stats = stats

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            stats = self._stats
        for name, (kind, text, path) in SERIES.items():
            family = GaugeMetricFamily if kind == "gauge" else CounterMetricFamily
            yield family(name, text, value=_value(stats, path))


_registered: "weakref.WeakKeyDictionary[CollectorRegistry, ContinuumCollector]" = weakref.WeakKeyDictionary()


def collector_on(registry: CollectorRegistry) -> ContinuumCollector:
    """The collector registered on ``registry`` (registered once per registry and process)."""
    if registry not in _registered:
        collector = ContinuumCollector()
        registry.register(collector)
        _registered[registry] = collector
    return _registered[registry]


def vllm_collector() -> ContinuumCollector:
    """The collector on the registry vLLM's ``/metrics`` renders."""
    from vllm.v1.metrics.prometheus import get_prometheus_registry

    return collector_on(get_prometheus_registry())
