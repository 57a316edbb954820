"""The tenant pin quota of a whole cluster, read from what each replica reports: the share, and the blocks it is.

A tenant's ``tenant_pin_cap`` is a share of the cluster's pinnable blocks, enforced by each replica on its own pin
budget (`continuum.tenancy.quota_blocks` gives the rule and why). The merged `/continuum/stats` shows the result as
``quota``: ``tenant_pin_cap`` (None where replicas disagree), ``pin_budget_blocks`` (the cluster's pinnable
blocks), ``tenant_quota_blocks`` (the most one tenant may hold, the sum of the replicas' quotas) and ``agree``:
False when a replica serves with another share than the rest, which is what a replica started from an old copy
of the tenancy file looks like (its ``replicas`` entry in the view says which).
"""

from __future__ import annotations

from typing import Any, Sequence

from continuum.tenancy import quota_blocks

Stats = dict[str, Any]


def replica_quota(stats: Stats) -> tuple[float, int] | None:
    """(share, pin budget in blocks) of one replica's stats; None when it does not say (e.g. ``--policy vllm``)."""
    config = stats.get("config") or {}
    share, budget = config.get("tenant_pin_cap"), config.get("pin_cap_blocks")
    if not isinstance(share, (int, float)) or not isinstance(budget, int):
        return None
    return float(share), budget


def cluster_quota(views: Sequence[Stats]) -> Stats | None:
    """The cluster's quota from the replicas that answered; None when none reports one."""
    known = [q for q in map(replica_quota, views) if q is not None]
    if not known:
        return None
    shares = {share for share, _ in known}
    # A replica with no quota (a share of 1) lets a tenant hold its whole budget.
    limits = [quota_blocks(share, budget) for share, budget in known]
    return {"tenant_pin_cap": next(iter(shares)) if len(shares) == 1 else None, "agree": len(shares) == 1,
            "pin_budget_blocks": sum(budget for _, budget in known),
            "tenant_quota_blocks": sum(budget if q is None else q for q, (_, budget) in zip(limits, known))}
