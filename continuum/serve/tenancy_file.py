"""One tenancy for a whole cluster: the API keys, admin keys and tenant pin share, in one file every replica reads.

    # tenancy.toml
    api_keys = ["sk-team-a", "sk-team-b"]     # each key is a tenant
    admin_api_keys = ["sk-ops"]               # sees and ends every tenant's sessions
    tenant_pin_cap = 0.25                     # one tenant: at most this share of the cluster's pinnable blocks

`continuum serve --tenancy FILE` serves with it (the keys stay off the command line, where any local user's
``ps`` would read them); `continuum cluster --tenancy FILE` checks it before anything starts and hands every local
replica the same path; a replica on another host is started with a copy of the same file. A tenant is a hash of
its key (`continuum.tenancy`), so one file makes the same tenants, the same admins and the same quota everywhere,
and a session stays its tenant's on whichever replica serves it. How the share becomes a per-replica quota:
`continuum.tenancy.quota_blocks`.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same reader, before it joined the standard library
    import tomli as tomllib

FIELDS = ("api_keys", "admin_api_keys", "tenant_pin_cap")


class TenancyError(ValueError):
    """The file cannot be read or says something invalid; the message names the file and the field."""


@dataclass(frozen=True)
class Tenancy:
    path: Path
    api_keys: tuple[str, ...] = ()
    admin_keys: tuple[str, ...] = ()
    tenant_pin_cap: float | None = None

    def merged(self, api_keys: Sequence[str], admin_keys: Sequence[str],
               tenant_pin_cap: float | None) -> tuple[list[str], list[str], float | None]:
        """The file's settings with a command line's: keys add up (a flag may add a key for this replica only,
        e.g. while rotating one); the share is set in one place, so both setting it is an error."""
        if tenant_pin_cap is not None and self.tenant_pin_cap is not None and tenant_pin_cap != self.tenant_pin_cap:
            raise TenancyError(f"{self.path}: tenant_pin_cap is {self.tenant_pin_cap} here and "
                               f"{tenant_pin_cap} on the command line; set it in one place")
        return ([*api_keys, *(k for k in self.api_keys if k not in api_keys)],
                [*admin_keys, *(k for k in self.admin_keys if k not in admin_keys)],
                tenant_pin_cap if tenant_pin_cap is not None else self.tenant_pin_cap)


def _keys(raw: dict[str, Any], field: str, path: Path) -> tuple[str, ...]:
    keys = raw.get(field, [])
    if not isinstance(keys, list) or not all(isinstance(k, str) and k.strip() for k in keys):
        raise TenancyError(f"{path}: {field} must be a list of non-empty strings")
    return tuple(keys)


def load(path: str | Path) -> Tenancy:
    path = Path(path).resolve()  # absolute: replicas started elsewhere (another cwd) read the same file
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TenancyError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TenancyError(f"{path} is not TOML: {exc}") from None
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise TenancyError(f"{path}: unknown setting {unknown[0]!r} (known: {', '.join(FIELDS)})")
    share = raw.get("tenant_pin_cap")
    if share is not None and (isinstance(share, bool) or not isinstance(share, (int, float))
                              or not math.isfinite(share) or not 0 <= share <= 1):
        raise TenancyError(f"{path}: tenant_pin_cap must be a number from 0 to 1, not {share!r}")
    # A share without keys in the file is not an error here: the keys may come as flags or VLLM_API_KEY
    # (`continuum serve` checks the merged whole).
    return Tenancy(path, _keys(raw, "api_keys", path), _keys(raw, "admin_api_keys", path),
                   None if share is None else float(share))


def tenancy_arg(text: str) -> Tenancy:
    """argparse type of ``--tenancy``: a bad file is exit 2 naming the flag, before anything starts."""
    try:
        return load(text)
    except TenancyError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
