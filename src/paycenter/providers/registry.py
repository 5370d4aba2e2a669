from __future__ import annotations

from paycenter.providers.base import Provider
from paycenter.providers.sandbox import SandboxProvider

KNOWN: dict[str, type[Provider]] = {SandboxProvider.name: SandboxProvider}


class Providers:
    """The providers this process may use, by name (from ``PAYCENTER_ENABLED_PROVIDERS``)."""

    def __init__(self, enabled: list[str]) -> None:
        unknown = [name for name in enabled if name not in KNOWN]
        if unknown:
            raise ValueError(f"unknown providers in PAYCENTER_ENABLED_PROVIDERS: {', '.join(unknown)}")
        self._providers: dict[str, Provider] = {name: KNOWN[name]() for name in enabled}

    def names(self) -> list[str]:
        return list(self._providers)

    def get(self, name: str) -> Provider:
        return self._providers[name]

    def __contains__(self, name: object) -> bool:
        return name in self._providers
