"""The session endpoints of a whole cluster: one session's state, its end or a prefetch, asked of every replica at
once.

Why the cluster answers them itself rather than through the router: vllm-router 0.1.17 forwards the paths it has
no handler of its own for (``/v1/sessions/...``, ``/continuum/stats``) without the client's headers, so with API
keys every such request reaches the replica without its key and is refused (401) for everyone, owner included.
Asking every replica also finds a program wherever it is now (a replica that died sent it elsewhere), and an end
reaches every replica that holds some of it, so no replica keeps a pin for a program that is over.

Each replica applies its own tenancy (`continuum.http.routes`): the caller's key is passed on, a session of
another tenant is a 404 there, so it is a 404 here. The merge: the replicas that know the session (200) give the
answer, the first of them in the cluster's order, with ``replica`` and any other replica that knew it under
``also_on``; else every replica refused the key (that refusal); else a 400 for an id that is not valid (every
replica says the same); else a 404, with ``missing`` naming the replicas that gave no answer (the session may be
on one of them); and a 503 when none answered at all. For a prefetch, the replica that acted on it (its answer
says ``issued`` or ``already``) answers before one that holds only an old part of the program.
"""

from __future__ import annotations

import json
from typing import Any

from continuum.cluster.fanout import Answer
from continuum.cluster.stats_merge import REFUSALS
from continuum.control.messages import PREFETCH_ALREADY, PREFETCH_ISSUED

Body = dict[str, Any]


def _json(answer: Answer) -> Body | None:
    try:
        body = json.loads(answer.text)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _error(status: int, message: str, missing: list[Body]) -> Body:
    kind = {404: "NotFoundError", 503: "ServiceUnavailableError"}[status]
    return {"error": {"message": message, "type": kind, "param": "session_id", "code": status}, "missing": missing}


def merge(session_id: str, answers: list[Answer]) -> tuple[int, Body]:
    """(HTTP status, body) of a session GET or end, from every replica's answer to it."""
    found = [(a.replica, body) for a in answers if a.ok and (body := _json(a)) is not None]
    if found:
        replica, body = found[0]
        others = [r for r, _ in found[1:]]
        return 200, {**body, "replica": replica, **({"also_on": others} if others else {})}
    statuses = [a.status for a in answers if a.status is not None]
    if statuses and all(s in REFUSALS for s in statuses):
        return min(statuses), {"error": "Unauthorized" if min(statuses) == 401 else "Forbidden"}
    bad = next((a for a in answers if a.status == 400 and _json(a) is not None), None)
    if bad is not None:
        return 400, _json(bad)
    missing = [{"replica": a.replica, "reason": a.reason()} for a in answers if a.status != 404]
    if len(missing) == len(answers):
        return 503, _error(503, f"no replica answered for session {session_id!r}", missing)
    return 404, _error(404, f"unknown session {session_id!r}", missing)


def acted_first(answers: list[Answer]) -> list[Answer]:
    """A prefetch's answers with those of the replicas that acted on it first (`merge` answers with the first)."""
    def acted(a: Answer) -> bool:
        body = _json(a) if a.ok else None
        return body is not None and body.get("prefetch") in (PREFETCH_ISSUED, PREFETCH_ALREADY)
    return sorted(answers, key=lambda a: not acted(a))
