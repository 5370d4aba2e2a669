"""API versions: how answers are rendered for a merchant, never what the domain does.

Each merchant is pinned to a version (``merchants.api_version``): merchants imported from the old
PHP system to ``legacy`` (its shapes, codes and formats, ``shared/reference/legacy-api.md``), new
merchants to ``CURRENT``. A request may name another with the ``Paycenter-Version`` header, the way
Stripe's ``Stripe-Version`` works. One service layer serves both; only the renderers differ:
response shapes, the status of validation errors and conflicts (400 for ``legacy``), time formats,
null versus empty text, and which event types are sent as webhooks.

The version a request is answered in is kept in the request's state (``use``), set by the token's
merchant or the payment's merchant, so the error handlers render refusals in it too.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

LEGACY = "legacy"
CURRENT = "2026-12-01"
VERSIONS = (CURRENT, LEGACY)
HEADER = "Paycenter-Version"
_STATE_KEY = "api_version"


class UnknownVersion(ValueError):
    pass


def check(value: str) -> str:
    """A version named by an operator or a header; ``UnknownVersion`` for anything else."""
    value = value.strip()
    if value not in VERSIONS:
        raise UnknownVersion(f"Unknown API version {value[:40]!r}: one of {', '.join(VERSIONS)}")
    return value


def requested(scope: MutableMapping[str, Any]) -> str | None:
    """The version the request's ``Paycenter-Version`` header names, None without one."""
    for name, value in scope.get("headers", ()):
        if name == b"paycenter-version":
            return check(value.decode("latin-1"))
    return None


def use(scope: MutableMapping[str, Any], merchant_version: str | None) -> str:
    """Settle the request's version: its header, else the merchant's, else the current one."""
    version = requested(scope) or merchant_version or CURRENT
    scope.setdefault("state", {})[_STATE_KEY] = version
    return version


def of(scope: MutableMapping[str, Any]) -> str:
    """The version settled for this request (``use``), else its header's, else the current one."""
    state = scope.get("state") or {}
    found = state.get(_STATE_KEY)
    if found:
        return str(found)
    try:
        return requested(scope) or CURRENT
    except UnknownVersion:
        return CURRENT


def is_legacy(scope: MutableMapping[str, Any]) -> bool:
    return of(scope) == LEGACY
