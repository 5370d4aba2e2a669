"""The providers this process may use, built from settings (``PAYCENTER_ENABLED_PROVIDERS``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from paycenter.config import Settings
from paycenter.db import Database
from paycenter.providers import terminals
from paycenter.providers.base import Provider, RemembersTerminals
from paycenter.providers.kaspi_biller import KaspiBillerProvider
from paycenter.providers.kaspi_pos import KaspiPosProvider
from paycenter.providers.kaspi_qr import KaspiQrProvider
from paycenter.providers.sandbox import SandboxProvider

KNOWN = (SandboxProvider.name, KaspiQrProvider.name, KaspiPosProvider.name, KaspiBillerProvider.name)


def build(name: str, settings: Settings, clock: Callable[[], datetime] | None) -> Provider:
    if name == SandboxProvider.name:
        return SandboxProvider()
    if name == KaspiQrProvider.name:
        return KaspiQrProvider(settings, clock=clock)
    if name == KaspiPosProvider.name:
        return KaspiPosProvider(settings, clock=clock)
    if name == KaspiBillerProvider.name:
        return KaspiBillerProvider(settings)
    raise ValueError(f"unknown provider {name!r} in PAYCENTER_ENABLED_PROVIDERS (known: {', '.join(KNOWN)})")


def _pool(db: Database, clock: Callable[[], datetime] | None) -> terminals.TokenStore:
    return terminals.TokenStore(db, clock) if clock else terminals.TokenStore(db)


def terminal_provider(
    settings: Settings, db: Database, clock: Callable[[], datetime] | None = None
) -> KaspiPosProvider:
    """The terminal pool's provider, keeping what it learns in the pool, for registering and
    checking terminals. Built whether or not kaspi_pos is enabled: terminals are set up first."""
    provider = KaspiPosProvider(settings, clock=clock)
    provider.store = _pool(db, clock)
    return provider


class Providers:
    def __init__(self, settings: Settings, clock: Callable[[], datetime] | None = None) -> None:
        self._providers: dict[str, Provider] = {name: build(name, settings, clock) for name in settings.providers}

    def attach(self, db: Database, clock: Callable[[], datetime] | None = None) -> None:
        """Give terminal providers the pool to keep what they learn (renewed tokens, features)."""
        for provider in self._providers.values():
            if isinstance(provider, RemembersTerminals):
                provider.store = _pool(db, clock)

    def names(self) -> list[str]:
        return list(self._providers)

    def get(self, name: str) -> Provider:
        return self._providers[name]

    def pull(self) -> list[Provider]:
        return [p for p in self._providers.values() if p.pull]

    def __contains__(self, name: object) -> bool:
        return name in self._providers

    async def close(self) -> None:
        for provider in self._providers.values():
            await provider.close()
