"""Settings: every knob is a ``PAYCENTER_*`` environment variable (or a line in ``.env``)."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAYCENTER_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./paycenter.db"
    # Base of the links we hand out (payment_url). Empty: taken from the request's own host.
    public_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8000

    # Largest amount a payment may ask for, in major units of its currency.
    max_amount: Decimal = Decimal("100000000")
    default_expires_in: int = Field(default=3600, ge=10, le=30 * 24 * 3600)
    # Bodies of merchant API requests above this are refused with 413 before they are parsed.
    max_body_bytes: int = 64 * 1024
    # How long a stored Idempotency-Key answer is replayed.
    idempotency_ttl_seconds: int = 24 * 3600
    # Providers a merchant may pick per payment; `sandbox` pays without a bank.
    enabled_providers: str = "sandbox"
    default_language: str = "ru"
    # SQLite: how long a writer waits for the write lock before "database is locked".
    sqlite_busy_timeout_ms: int = 30_000
    log_level: str = "info"

    @property
    def providers(self) -> list[str]:
        return [p.strip() for p in self.enabled_providers.split(",") if p.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()
