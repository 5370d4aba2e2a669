"""What a running process shares: settings, the database, providers and the clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from paycenter import crypto
from paycenter.config import Settings
from paycenter.db import Database, utcnow
from paycenter.payments.service import InitPolicy
from paycenter.providers.registry import Providers
from paycenter.webhooks.ssrf import Network, parse_networks


@dataclass
class AppContext:
    settings: Settings
    db: Database
    providers: Providers
    # Injectable so tests can move time (expiry, retention) without sleeping.
    clock: Callable[[], datetime] = field(default=utcnow)

    @classmethod
    def from_settings(cls, settings: Settings) -> AppContext:
        crypto.configure(settings.secret_keys)
        db = Database(
            settings.database_url,
            busy_timeout_ms=settings.sqlite_busy_timeout_ms,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
        )
        return cls(settings=settings, db=db, providers=Providers(settings))

    def __post_init__(self) -> None:
        if self.db is not None:
            self.providers.attach(self.db, self.clock)

    def now(self) -> datetime:
        return self.clock()

    @property
    def init_policy(self) -> InitPolicy:
        return InitPolicy(
            max_amount=self.settings.max_amount,
            default_expires_in=self.settings.default_expires_in,
            providers=self.providers.names(),
            webhook_networks=self.webhook_networks,
            account_digits=self.settings.kaspi_biller_account_digits,
        )

    @property
    def webhook_networks(self) -> list[Network]:
        """Private networks webhook URLs may name (the SSRF guard's exceptions)."""
        return parse_networks(self.settings.webhook_allowed_networks)
