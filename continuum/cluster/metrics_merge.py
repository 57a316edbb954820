"""The cluster's Prometheus `/metrics`: every replica's series in one text exposition, each with a ``replica`` label.

Series are not summed: a counter summed over replicas goes backwards when a replica restarts or leaves, and
Prometheus sums by label at query time anyway (``sum without (replica) (...)``). The exposition format wants each
metric family once, so families of the same name from different replicas are joined under one HELP/TYPE.
``continuum_cluster_replica_up`` is 1 for each replica that answered and 0 for each that did not, so a missing
replica shows in the series rather than failing the scrape.
"""

from __future__ import annotations

from typing import Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from continuum.cluster.fanout import Answer

LABEL = "replica"
UP = "continuum_cluster_replica_up"


def labelled(sample: Sample, replica: str) -> Sample:
    labels = dict(sample.labels)
    if LABEL in labels:  # the replica's own label of that name is kept, as Prometheus keeps a target's
        labels[f"exported_{LABEL}"] = labels.pop(LABEL)
    labels[LABEL] = replica
    return sample._replace(labels=labels)


def families(answer: Answer) -> list[Metric] | None:
    """The replica's metric families, or None when it gave no exposition that parses."""
    if not answer.ok:
        return None
    try:
        return list(text_string_to_metric_families(answer.text))
    except ValueError:
        return None


class _Merged:
    """A collector over already-merged families (what `generate_latest` renders)."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self.metrics)


def merge(answers: Sequence[Answer]) -> str:
    """The text exposition of every replica's families, joined by name, plus ``continuum_cluster_replica_up``."""
    merged: dict[str, Metric] = {}
    up = GaugeMetricFamily(UP, "1 if the replica answered the cluster's scrape, 0 if not", labels=[LABEL])
    for answer in answers:
        found = families(answer)
        up.add_metric([answer.replica], 0.0 if found is None else 1.0)
        for family in found or []:
            into = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type,
                                                         family.unit))
            into.samples.extend(labelled(s, answer.replica) for s in family.samples)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged([*merged.values(), up]))
    return generate_latest(registry).decode()
