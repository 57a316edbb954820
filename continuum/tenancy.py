"""Tenants: with API keys configured, a session belongs to the key that created it.

The HTTP layer qualifies every session id a client sends with its tenant before vLLM sees it, so the scheduler
keeps one namespace per tenant without knowing about keys: ``"<tenant>:<session id>"``. A tenant is a short
hash of the API key (never the key itself). A request that reaches vLLM without a valid key (paths vLLM does
not guard, such as ``/invocations``) lands in an anonymous tenant of its own, so it cannot reach a keyed
tenant's sessions either. Without keys there are no tenants and ids pass through unchanged.

This module is pure Python: the HTTP layer, the pin quota (`continuum.sched.pins`) and the tests share it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

TENANT_CHARS = 16
_QUALIFIED = re.compile(rf"^(?P<tenant>[0-9a-f]{{{TENANT_CHARS}}}):(?P<id>.*)$", re.DOTALL)


def tenant_of_key(key: str) -> str:
    """The tenant of an API key: a short, stable hash (the same in every API process and replica)."""
    return hashlib.sha256(b"continuum-tenant:" + key.encode("utf-8", "surrogatepass")).hexdigest()[:TENANT_CHARS]


ANONYMOUS = tenant_of_key("")  # requests without a valid key, where vLLM lets them through


def key_digest(key: str) -> str:
    """How admin keys travel to the API process: their SHA-256, never the key."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def quota_blocks(share: float, pin_budget_blocks: int) -> int | None:
    """The most distinct blocks one tenant's pins may hold on this replica (None: no quota).

    ``share`` (``tenant_pin_cap``) is a share of the *cluster's* pinnable blocks, and every replica enforces it on
    its own budget: ``floor(share x this replica's pin budget)``. Summed over replicas that is the share of the
    cluster's budget, whatever each replica's size, and no tenant can exceed it anywhere. Why this rule and not one
    that follows where the tenant's programs are: it needs no coordination (a replica decides alone, so a partition
    or a replica that is down never loosens or tightens anyone's quota, and a pin is never waiting on another
    host), and the router spreads each tenant's new programs over the replicas like everyone else's, so a
    tenant with many programs reaches its share on every replica at about the same time. Its limit: a tenant whose
    pinned demand sits on a few replicas (few programs, or programs that spilled together) is held to its share
    *of those replicas* and leaves its entitlement elsewhere unused; it can get less than its cluster share, never
    more. A replica whose budget is smaller gives every tenant proportionally less there, as the hash sends it as
    many programs as any other.
    """
    return None if share >= 1 else int(share * pin_budget_blocks)


def qualify(tenant: str | None, session_id: str) -> str:
    return session_id if tenant is None else f"{tenant}:{session_id}"


def split(program_id: str) -> tuple[str | None, str]:
    """(tenant, the client's session id) of a program id; (None, id) for an id nobody qualified."""
    m = _QUALIFIED.match(program_id)
    return (m.group("tenant"), m.group("id")) if m else (None, program_id)


def tenant_of_program(program_id: str) -> str | None:
    return split(program_id)[0]


@dataclass(frozen=True)
class Caller:
    """Who sent a request: their tenant (None when no keys are configured) and whether they hold an admin key."""

    tenant: str | None
    admin: bool = False

    def qualify(self, session_id: str) -> str:
        return qualify(self.tenant, session_id)

    def program_for(self, session_id: str) -> str:
        """The program id a GET or end of ``session_id`` names. An admin may name any tenant's program by its
        qualified id (as admin stats list it); anyone else only ever reaches their own."""
        if self.admin and split(session_id)[0] is not None:
            return session_id
        return self.qualify(session_id)

    def owns(self, program_id: str) -> bool:
        return self.tenant is None or self.admin or split(program_id)[0] == self.tenant

    def shown_id(self, program_id: str) -> str:
        """The id to show this caller: their own id back; an admin sees the qualified id."""
        if self.tenant is None or self.admin:
            return program_id
        tenant, session_id = split(program_id)
        return session_id if tenant == self.tenant else program_id
