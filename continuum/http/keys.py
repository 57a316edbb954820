"""Who is calling: the API keys vLLM checks (``--api-key`` / ``VLLM_API_KEY``) and Continuum's admin keys.

vLLM's own `AuthenticationMiddleware` decides whether a bearer token is valid (the same comparison for Continuum's
endpoints as for ``/v1``); this module turns a valid token into a `continuum.tenancy.Caller`. Admin keys reach
the API process as SHA-256 digests in ``CONTINUUM_ADMIN_KEYS`` (set by `continuum serve --admin-api-key`, which
also adds them to vLLM's keys).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from continuum.tenancy import Caller, key_digest, tenant_of_key

ADMIN_ENV = "CONTINUUM_ADMIN_KEYS"


def configured_keys(args: Any) -> list[str]:
    """The keys vLLM enforces for these parsed serve args: ``--api-key`` wins over ``VLLM_API_KEY``."""
    from vllm import envs

    return [k for k in (getattr(args, "api_key", None) or [envs.VLLM_API_KEY]) if k]


def bearer(headers: Mapping[str, str]) -> str | None:
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    return token if scheme.lower() == "bearer" else None


class Keys:
    """The keys of one server. ``caller(headers)``: None when keys are configured and none valid was sent."""

    def __init__(self, tokens: list[str], admin_digests: set[str] = frozenset()) -> None:
        from vllm.entrypoints.serve.middleware.authenticate import AuthenticationMiddleware

        self.enabled = bool(tokens)
        self._auth = AuthenticationMiddleware(app=None, tokens=tokens) if tokens else None
        self._admin = set(admin_digests)

    @classmethod
    def of_app(cls, app: Any) -> "Keys":
        args = getattr(getattr(app, "state", None), "args", None)
        admin = {d for d in os.environ.get(ADMIN_ENV, "").split(",") if d}
        return cls(configured_keys(args), admin)

    def caller(self, headers: Any) -> Caller | None:
        """``headers``: a Starlette ``Headers`` (case-insensitive)."""
        if not self.enabled:
            return Caller(None)
        if not self._auth.verify_token(headers):
            return None
        key = bearer(headers)
        return Caller(tenant_of_key(key), admin=key_digest(key) in self._admin)
