"""The cluster's `/continuum/stats`: every replica's stats merged into one view, with the replicas that gave none.

The shape is a replica's own, so a client of one replica reads the cluster the same way: ``programs`` (each with the
``replica`` that holds it), ``num_programs``, ``pins``, ``kv`` and ``preempted_for_waiting`` over the whole
cluster, ``config`` of the first replica that answered. Besides: ``replicas`` has each answering replica's own
view (without its programs), ``missing`` each replica that did not answer and why, ``num_replicas`` how many were
asked, ``quota`` the tenant pin quota of the cluster (`continuum.cluster.quota`). A replica that is down costs
its part of the view, never the view: the answer is 200 whatever the replicas did, except when every one that
answered refused the caller's key (then that refusal, 401 or 403).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from continuum.cluster.fanout import Answer
from continuum.cluster.quota import cluster_quota
from continuum.control.dp import sum_numbers

Stats = dict[str, Any]
REFUSALS = (401, 403)
# Always in the view; the other aggregates only where some replica gave them (a tenant's stats have fewer).
ALWAYS = ("programs", "num_programs", "num_replicas", "replicas", "missing")


def parsed(answer: Answer) -> Stats | None:
    if not answer.ok:
        return None
    try:
        body = json.loads(answer.text)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def kv_of(views: Sequence[Stats]) -> dict:
    kv = [v.get("kv") or {} for v in views]
    out = sum_numbers(kv)
    blocks = sum(k.get("num_blocks", 0) for k in kv)
    # Usage of the cluster's pool: each replica's usage weighs as much as its pool is large.
    out["usage"] = (sum(k.get("usage", 0.0) * k.get("num_blocks", 0) for k in kv) / blocks if blocks
                    else sum(k.get("usage", 0.0) for k in kv) / max(1, len(kv)))
    return out


def merge(answers: Sequence[Answer]) -> tuple[int, Stats]:
    """(HTTP status, body) of the cluster's view from each replica's answer to `/continuum/stats`."""
    views = [(a.replica, parsed(a)) for a in answers]
    answered = [(r, v) for r, v in views if v is not None]
    missing = [{"replica": a.replica, "reason": a.reason() if not a.ok else "not a stats object"}
               for a, (_, v) in zip(answers, views) if v is None]
    statuses = {a.status for a in answers if a.status is not None}
    if not answered and statuses and statuses <= set(REFUSALS):
        status = min(statuses)
        return status, {"error": "Unauthorized" if status == 401 else "Forbidden", "missing": missing}
    stats = [v for _, v in answered]
    steps = [v.get("sched_step_ms") or {} for v in stats]
    merged: Stats = {
        "config": stats[0].get("config") if stats else None,
        "programs": [{**p, "replica": r} for r, v in answered for p in v.get("programs", [])],
        "num_programs": sum(v.get("num_programs", len(v.get("programs", []))) for v in stats),
        "pins": sum_numbers([v.get("pins") or {} for v in stats]),
        "kv": kv_of(stats),
        "preempted_for_waiting": sum(v.get("preempted_for_waiting", 0) for v in stats),
        "sched_step_ms": {"mean": sum(s.get("mean", 0.0) for s in steps) / max(1, len(steps)),
                          "p99": max((s.get("p99", 0.0) for s in steps), default=0.0)},
        "num_replicas": len(answers),
        "replicas": [{"replica": r, **{k: x for k, x in v.items() if k != "programs"}} for r, v in answered],
        "missing": missing,
    }
    out = {k: v for k, v in merged.items() if k in ALWAYS or any(k in s for s in stats)}
    quota = cluster_quota(stats)
    return 200, {**out, "quota": quota} if quota is not None else out
