"""Settings: every knob is a ``PAYCENTER_*`` environment variable (or a line in ``.env``)."""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal
from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from paycenter import versions


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAYCENTER_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./paycenter.db"
    # Base of the links we hand out (payment_url). Empty: taken from the request's own host.
    public_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8000

    # Largest amount a payment may ask for, in major units of its currency: a whole number, so
    # the API's document can state it exactly for every currency (paycenter.docs.contract).
    max_amount: Decimal = Decimal("100000000")
    default_expires_in: int = Field(default=3600, ge=10, le=30 * 24 * 3600)
    # Bodies of merchant API requests above this are refused with 413 before they are parsed.
    max_body_bytes: int = 64 * 1024
    # How long a stored Idempotency-Key answer is replayed.
    idempotency_ttl_seconds: int = 24 * 3600
    # Providers a merchant may pick per payment; `sandbox` pays without a bank.
    enabled_providers: str = "sandbox"
    # The payment page's language when neither the link (?lang=), the payer's choice (cookie) nor
    # the payment (`language` at init) names one.
    default_language: Literal["ru", "kk", "en"] = "ru"
    # SQLite: how long a writer waits for the write lock before "database is locked".
    sqlite_busy_timeout_ms: int = 30_000
    # Database connections each process keeps open. Past them, up to max_overflow more are opened
    # for one checkout and closed after it when the pool is full again: on PostgreSQL a new server
    # process each time, which costs more than the request itself, so size the pool to the
    # requests one process has in flight; beyond pool + overflow they wait for a free connection.
    # The server must allow (API processes + workers) x (pool + overflow) connections. The default
    # keeps all 30 open and opens none per request: under load 20 + 10 opened and closed hundreds of
    # PostgreSQL connections a second (bench/api.py, docs/benchmarks.md) for the same maximum.
    database_pool_size: int = Field(default=30, ge=1)
    database_max_overflow: int = Field(default=0, ge=0)
    log_level: str = "info"
    # "json": one JSON object per line (request and transaction ids included); "text": one readable
    # line for humans; "auto": text when stderr is a terminal (`make run`), JSON otherwise (systemd,
    # Docker, a file: production).
    log_format: Literal["auto", "json", "text"] = "auto"

    # Fernet keys (comma-separated; the first encrypts) for secrets stored in the database.
    # `paycenter secrets generate-key` makes one. Empty: secrets are stored as they are.
    secret_keys: str = ""

    # --- webhooks ---
    # Waits before each retry after a failed try ("1m,5m,30m": three retries, four tries in all).
    webhook_retry_schedule: str = "1m,5m,30m"
    # CIDRs webhooks may reach despite the SSRF guard (local development and tests only).
    webhook_allowed_networks: str = ""
    webhook_connect_timeout: float = 5.0
    webhook_timeout: float = 15.0
    webhook_max_in_flight: int = 256
    webhook_per_endpoint: int = 8
    # A worker's claim on a delivery; another worker takes it over once this lapses.
    webhook_lease_seconds: float = 30.0
    # Longest Retry-After we honour.
    webhook_max_retry_after: float = 3600.0
    # Grace period of the previous signing secret after a rotation.
    webhook_secret_grace_seconds: int = 24 * 3600
    # Fallback poll when no wake-up arrives (in-process signal or PostgreSQL NOTIFY).
    worker_poll_interval: float = 0.5
    # `paycenter run` runs the worker loops inside the web process.
    run_worker: bool = True

    # --- Kaspi Pay partner API (provider kaspi_qr); see docs and `paycenter kaspi-qr` ---
    kaspi_qr_base_url: str = ""  # scheme://host:port, e.g. https://mtokentest.kaspi.kz:8545
    kaspi_qr_scheme: Literal["r1", "r2", "r3"] = "r1"  # r1: Api-Key; r2/r3: client certificate
    kaspi_qr_api_key: str = ""
    kaspi_qr_organization_bin: str = ""  # r3: sent in every body
    kaspi_qr_cert_file: str = ""  # r2/r3: client certificate (PEM) ...
    kaspi_qr_key_file: str = ""  # ... its key
    kaspi_qr_ca_file: str = ""  # trust anchor for Kaspi's server certificate, if not the system's
    kaspi_qr_device_token: str = ""  # from `paycenter kaspi-qr register-device`
    # "link": a pay link (a QR of it for desktops, a button on phones); "qr": a QR token.
    kaspi_qr_mode: Literal["link", "qr"] = "link"
    # Seconds between two status calls for a QR whose creation answered no StatusPollingInterval.
    # Each QR is polled at its own, from Kaspi (5 in every example, "not faster"; kaspi-qr-api.md
    # §4), which this neither lowers nor raises.
    kaspi_qr_status_interval: float = Field(default=5.0, gt=0, le=60)
    # Above 0: every QR is polled at this many seconds whatever Kaspi answered, faster at the
    # operator's own risk (Kaspi may throttle or block a partner that polls faster than asked).
    kaspi_qr_status_interval_override: float = Field(default=0.0, ge=0, le=60)
    kaspi_timeout: float = 10.0
    # Of which connecting may take at most this long (to Kaspi's API and to the terminals): a host
    # that does not answer is given up early, within the total above.
    kaspi_connect_timeout: float = Field(default=5.0, gt=0)

    # --- Kaspi Smart POS terminals (provider kaspi_pos); the pool is `paycenter terminal ...` ---
    # Terminals serve HTTPS with self-signed certificates on the shop network.
    kaspi_pos_verify_tls: bool = False
    kaspi_pos_refund_method: Literal["qr", "card"] = "qr"

    # --- Kaspi biller (provider kaspi_biller): Kaspi calls us with check / pay; docs/kaspi.md ---
    kaspi_biller_path: str = "/kaspi/biller"  # the URL path given to Kaspi
    kaspi_biller_format: Literal["json", "xml"] = "json"  # the replies' format, as agreed with Kaspi
    # Addresses Kaspi calls from (CIDRs, comma-separated), after FORWARDED_ALLOW_IPS has given the
    # real client address behind the reverse proxy. Empty: nobody may call.
    kaspi_biller_allowed_networks: str = ""
    kaspi_biller_secret: str = ""  # optional value Kaspi sends as data1
    kaspi_biller_service_name: str = ""  # the service's name in Kaspi's payments section
    kaspi_biller_account_digits: int = Field(default=10, ge=6, le=20)  # of our accounts, check digit included

    # --- poller ---
    poller_interval: float = 1.0
    # A live attempt whose provider keeps failing or answering "unknown" this long is closed as
    # failed, so the payer can try again (money that arrives later is still counted).
    poller_give_up_after: float = 300.0
    poller_max_backoff: float = 30.0
    # Tries we closed (expired, cancelled, given up) are still watched this long, every few
    # seconds: a QR can be paid until Kaspi's own deadline, and that money must not be missed.
    poller_late_window: float = 900.0
    poller_late_every: float = 5.0

    # A refund the provider answers "not done, try again" (Kaspi -99000006, -999) is sent again,
    # with a growing pause, for this long after it was requested; then it fails and the merchant
    # gets `refund_failed`. One whose answer never came is never sent again blindly: the provider
    # is asked first what became of it.
    refund_retry_for: str = "30m"

    # Requests a minute, shared by all processes through the database (0: no limit):
    # - per API token, for everything it does but read one payment;
    # - per API token, for reads of one payment (GET /api/payment/{id}[/status] with the token,
    #   GET /api/transaction/{id}): the old docs tell merchants to poll each live payment every
    #   second, so 30000 (500 a second) lets one merchant poll 500 live payments, 2.5 times the 200
    #   tests/api/test_ratelimit.py::test_200_live_payments_polled_every_second_with_one_token checks;
    # - per client address, on the public endpoints (the payment page, the public reads) for
    #   requests without a valid token: a made-up or revoked token counts as none.
    rate_limit_token_per_minute: int = 6000
    rate_limit_token_reads_per_minute: int = 30_000
    rate_limit_ip_per_minute: int = 600

    # Origins (scheme://host[:port], comma-separated) whose web pages may call the token endpoints
    # (CORS). Empty: none, those endpoints answer no CORS headers. "*": any page, as the old system
    # answered. The public endpoints (a payment's status, payment methods, ...) answer any origin.
    cors_origins: str = ""

    # API version of merchants created from now on (`merchant create`, the admin, the demo
    # merchant) when none is named (paycenter.versions, docs/migrating.md): the current one, or
    # "legacy" on a deployment that replaces the old PHP system and onboards more of its shops.
    # Merchants made by `import-legacy` are always "legacy"; existing merchants keep theirs.
    default_api_version: str = versions.CURRENT

    # /readyz answers 503 when more webhook deliveries than this are overdue.
    ready_max_backlog: int = 10_000

    # --- admin panel ---
    # How long a one-time password (printed for a new operator or by reset-password) lets its
    # operator log in to choose their own; after that only `paycenter admin reset-password` helps.
    admin_one_time_password_ttl_seconds: int = Field(default=72 * 3600, ge=60, le=30 * 24 * 3600)

    # --- daily cleanup of unpaid expired and cancelled payments ---
    cleanup_schedule: str = "0 3 * * *"  # cron, in cleanup_timezone
    cleanup_timezone: str = "Asia/Almaty"
    cleanup_retention: str = "24h"  # how long a closed unpaid payment is kept

    @property
    def providers(self) -> list[str]:
        return [p.strip() for p in self.enabled_providers.split(",") if p.strip()]

    @property
    def retry_schedule(self) -> list[float]:
        return [parse_duration(part) for part in self.webhook_retry_schedule.split(",") if part.strip()]

    @field_validator("max_amount")
    @classmethod
    def _whole_max_amount(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or value < 1 or value != value.to_integral_value() or value > 10**15:
            raise ValueError("PAYCENTER_MAX_AMOUNT must be a whole number from 1 to 10**15")
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _check_schedule(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                parse_duration(part)
        return value

    @property
    def cleanup_retention_seconds(self) -> float:
        return parse_duration(self.cleanup_retention)

    @property
    def refund_retry_for_seconds(self) -> float:
        return parse_duration(self.refund_retry_for)

    @field_validator("refund_retry_for")
    @classmethod
    def _check_duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("cleanup_schedule")
    @classmethod
    def _check_cron(cls, value: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"not a cron expression: {value!r} (e.g. '0 3 * * *')")
        return value

    @property
    def cors_origin_list(self) -> list[str]:
        return [part.strip() for part in self.cors_origins.split(",") if part.strip()]

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: str) -> str:
        for part in value.split(","):
            origin = part.strip()
            if origin and origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"not an origin: {origin!r} (scheme://host[:port] in lower case, as a browser sends it, "
                    "without path or trailing slash, e.g. https://shop.example.kz; or *)"
                )
        return value

    @field_validator("default_api_version")
    @classmethod
    def _check_api_version(cls, value: str) -> str:
        return versions.check(value)

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _check_networks(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)
        return value


# What a browser sends in Origin: lower-case scheme and host, a port only if not the default.
_ORIGIN = re.compile(r"https?://[a-z0-9.-]+(?::[0-9]{1,5})?|https?://\[[0-9a-f:.]+\](?::[0-9]{1,5})?")

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """ "1m" -> 60.0, "1.5s" -> 1.5, "30" -> 30.0 (seconds)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 1m, 2h)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


@lru_cache
def get_settings() -> Settings:
    return Settings()
