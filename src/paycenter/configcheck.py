"""``paycenter config check`` and ``config show``: validate a configuration before it serves money.

``check`` loads the settings exactly as the other commands do (environment, then ``.env``, or
``--env-file``), connects to the database, and prints one line per finding: ``error`` (paycenter
would fail or be unsafe: exit 1), ``warning`` (works, but not as production should), ``note``
(worth knowing) and ``ok``. Only the database is contacted (Kaspi and terminals are not), and
never longer than ``--timeout``.
``show`` prints the effective settings with secrets masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import re
import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from pydantic import SecretStr, ValidationError
from sqlalchemy.engine import make_url

from paycenter.config import Settings

Level = Literal["error", "warning", "note", "ok"]
LEVELS: tuple[Level, ...] = ("error", "warning", "note", "ok")
ENV_PREFIX = "PAYCENTER_"
UVICORN_LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
# Setting names that hold credentials: never printed. Paths (``*_file``) and numbers are not secrets.
_SECRET_NAME = re.compile(r"(key|token|secret|password|credential)", re.IGNORECASE)
_MASK = "********"
_MISSING = object()


@dataclass
class Finding:
    level: Level
    setting: str  # PAYCENTER_* name, or "" for a finding about the whole installation
    message: str


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)

    def add(self, level: Level, setting: str, message: str) -> None:
        self.findings.append(Finding(level, env_name(setting) if setting else "", message))

    def error(self, setting: str, message: str) -> None:
        self.add("error", setting, message)

    def warning(self, setting: str, message: str) -> None:
        self.add("warning", setting, message)

    def note(self, setting: str, message: str) -> None:
        self.add("note", setting, message)

    def ok(self, setting: str, message: str) -> None:
        self.add("ok", setting, message)

    def count(self, level: Level) -> int:
        return sum(1 for f in self.findings if f.level == level)


def env_name(setting: str) -> str:
    return setting if setting.startswith(ENV_PREFIX) else ENV_PREFIX + setting.upper()


def is_secret(name: str, value: Any) -> bool:
    if isinstance(value, SecretStr):
        return True
    return bool(_SECRET_NAME.search(name)) and not name.endswith("_file") and isinstance(value, str | list | tuple)


def safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable URL>"


# --- loading ----------------------------------------------------------------------------------


def load_settings(env_file: Path | None) -> tuple[Settings | None, list[Finding]]:
    """The settings, or the reasons they cannot be loaded (one finding per bad setting)."""
    if env_file is not None and not env_file.is_file():
        return None, [Finding("error", "", f"--env-file {env_file}: no such file")]
    try:
        settings = Settings(_env_file=env_file) if env_file is not None else Settings()
    except ValidationError as exc:
        return None, [_validation_finding(err) for err in exc.errors()]
    except ValueError as exc:  # pydantic_settings.SettingsError: e.g. a list setting that is not JSON
        return None, [Finding("error", "", str(exc))]
    return settings, []


def _validation_finding(err: Any) -> Finding:
    name = ".".join(str(part) for part in err.get("loc", ())) or "?"
    message = str(err.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    if "input" in err and not isinstance(err["input"], dict) and repr(err["input"]) not in message:
        shown = _MASK if is_secret(name, str(err["input"])) else repr(err["input"])
        message = f"{message} (got {shown})"
    return Finding("error", env_name(name), message)


# --- checks without the database ----------------------------------------------------------------


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_public_url(settings: Settings, report: Report) -> None:
    value = settings.public_url.strip()
    if not value:
        report.error(
            "public_url",
            "not set: payment links would be built from each request's Host header. Set it to the address "
            "payers open, e.g. https://pay.example.kz",
        )
        return
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        report.error("public_url", f"{value!r} is not an http(s) URL such as https://pay.example.kz")
        return
    if parts.query or parts.fragment:
        report.error("public_url", f"{value!r} must not have a query or fragment: payment links are appended to it")
        return
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        report.warning(
            "public_url",
            f"{value} is plain http: payers and merchants need https in production (see docs/deploy.md, certbot)",
        )
        return
    report.ok("public_url", f"payment links start with {value.rstrip('/')}/pay/")


def check_providers(settings: Settings, report: Report) -> None:
    from paycenter.providers.registry import KNOWN

    names = settings.providers
    if not names:
        report.error("enabled_providers", "empty: merchants could not create any payment")
        return
    unknown = [n for n in names if n not in KNOWN]
    if unknown:
        report.error("enabled_providers", f"unknown provider(s) {', '.join(unknown)} (known: {', '.join(KNOWN)})")
    if "sandbox" in names:
        report.warning(
            "enabled_providers",
            "sandbox is enabled: its payments become paid without any money moving. Remove it in production",
        )
    if "kaspi_qr" in names:
        check_kaspi_qr(settings, report)
    if "kaspi_biller" in names:
        check_kaspi_biller(settings, report)
    known = [n for n in names if n in KNOWN]
    if known:
        report.ok("enabled_providers", f"providers: {', '.join(known)}")


def _readable(path: str) -> str | None:
    """Why ``path`` cannot be read by this user, or None."""
    p = Path(path)
    if not p.exists():
        return "does not exist"
    if not p.is_file():
        return "is not a file"
    if not os.access(p, os.R_OK):
        return "is not readable by this user"
    return None


def check_kaspi_qr(settings: Settings, report: Report) -> None:
    problems = report.count("error")
    base = settings.kaspi_qr_base_url.strip()
    if not base:
        report.error("kaspi_qr_base_url", "not set (kaspi_qr is enabled), e.g. https://mtokentest.kaspi.kz:8545")
    else:
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            report.error("kaspi_qr_base_url", f"{base!r} is not an http(s) URL")
        elif parts.scheme == "http" and not _is_loopback(parts.hostname):
            report.warning("kaspi_qr_base_url", f"{base} is plain http: Kaspi's API is https")
    scheme = settings.kaspi_qr_scheme
    if scheme == "r1":
        if not settings.kaspi_qr_api_key:
            report.error("kaspi_qr_api_key", "not set: scheme r1 authenticates with the Api-Key Kaspi issued")
    else:
        certificate_ok = True
        for name in ("kaspi_qr_cert_file", "kaspi_qr_key_file"):
            path = getattr(settings, name)
            if not path:
                report.error(name, f"not set: scheme {scheme} authenticates with a client certificate and its key")
                certificate_ok = False
            elif why := _readable(path):
                report.error(name, f"{path} {why}")
                certificate_ok = False
        if certificate_ok:
            # A callback, so that OpenSSL never prompts on the terminal for a key's passphrase.
            asked: list[bool] = []

            def no_passphrase() -> bytes:
                asked.append(True)
                return b""

            try:
                ssl.create_default_context().load_cert_chain(
                    settings.kaspi_qr_cert_file, settings.kaspi_qr_key_file, password=no_passphrase
                )
            except (ssl.SSLError, OSError) as exc:
                if asked:
                    report.error(
                        "kaspi_qr_key_file",
                        f"{settings.kaspi_qr_key_file} is encrypted with a passphrase, which paycenter cannot give: "
                        "store it without one (openssl pkey -in KEY -out KEY.plain), readable by paycenter only",
                    )
                else:
                    report.error(
                        "kaspi_qr_cert_file",
                        f"{settings.kaspi_qr_cert_file} with {settings.kaspi_qr_key_file}: not a PEM certificate and "
                        f"its key ({exc.__class__.__name__}: {exc})",
                    )
        if scheme == "r3" and not re.fullmatch(r"\d{12}", settings.kaspi_qr_organization_bin.strip()):
            report.error(
                "kaspi_qr_organization_bin",
                f"{settings.kaspi_qr_organization_bin!r} is not a BIN: scheme r3 needs the organization's 12 digits",
            )
    if settings.kaspi_qr_ca_file and (why := _readable(settings.kaspi_qr_ca_file)):
        report.error("kaspi_qr_ca_file", f"{settings.kaspi_qr_ca_file} {why}")
    if not settings.kaspi_qr_device_token:
        report.error(
            "kaspi_qr_device_token",
            "not set: run `paycenter kaspi-qr trade-points`, then `paycenter kaspi-qr register-device "
            "--trade-point ID`, and put the printed token here",
        )
    if report.count("error") == problems:
        report.ok("kaspi_qr_base_url", f"kaspi_qr: {base}, scheme {scheme}, device token set")


# The first path segments paycenter's own routes take (tests/cli/test_configcheck.py holds this
# to the app's routes): the biller's path must start with none of them.
RESERVED_SEGMENTS = (
    "api",
    "pay",
    "admin",
    "docs",
    "static",
    "metrics",
    "healthz",
    "l",  # payment links' public page, /l/{id}
    "readyz",
    "openapi.json",
    "openapi-legacy.json",
)
_URL_PATH = re.compile(r"(/[A-Za-z0-9._~-]+)+")


def check_kaspi_biller(settings: Settings, report: Report) -> None:
    """The Kaspi biller (Kaspi calls us): a path of its own, the networks Kaspi calls from, the
    shared data1 value, the service's name, and the public URL the endpoint is given to Kaspi by."""
    problems = report.count("error")
    path = settings.kaspi_biller_path
    if not _URL_PATH.fullmatch(path):
        report.error(
            "kaspi_biller_path",
            f"{path!r} is not a plain URL path such as /kaspi/biller: it must start with /, with no query, "
            "no empty segment, no trailing / and no character a URL would have to escape",
        )
    elif path.split("/")[1].lower() in RESERVED_SEGMENTS:
        report.error(
            "kaspi_biller_path",
            f"{path} collides with paycenter's own routes under /{path.split('/')[1]}: choose another, "
            "such as /kaspi/biller",
        )
    networks = [part.strip() for part in settings.kaspi_biller_allowed_networks.split(",") if part.strip()]
    if not networks:
        report.error(
            "kaspi_biller_allowed_networks",
            "empty: nobody may call the biller endpoint, so Kaspi's check and pay are all refused. Set the "
            "addresses Kaspi calls from (CIDRs, comma-separated), as Kaspi gives them",
        )
    for part in networks:
        try:
            network = ipaddress.ip_network(part, strict=False)
        except ValueError:
            report.error("kaspi_biller_allowed_networks", f"{part!r} is not an IP network such as 192.0.2.0/24")
            continue
        if network.prefixlen == 0:
            report.warning(
                "kaspi_biller_allowed_networks",
                f"{part} lets any address call the biller endpoint: anyone who finds an account could "
                "record payments. Allow only Kaspi's addresses",
            )
    if not settings.kaspi_biller_secret:
        report.warning(
            "kaspi_biller_secret",
            "not set: the biller endpoint trusts the source address alone. Agree a data1 value with Kaspi "
            "and set it here",
        )
    digits = settings.kaspi_biller_account_digits
    if not 6 <= digits <= 20:  # the setting's own bounds; payments.account holds 20
        report.error("kaspi_biller_account_digits", f"{digits} is out of range: 6 to 20 digits")
    if not settings.kaspi_biller_service_name.strip():
        report.warning(
            "kaspi_biller_service_name",
            "not set: the payment page tells payers to find the merchant's name in Kaspi's payments section. "
            "Set the service's name as Kaspi lists it",
        )
    public = settings.public_url.strip()
    if not public:
        report.error(
            "public_url",
            "not set, and the biller endpoint's address given to Kaspi is built from it: set it to the "
            "address Kaspi reaches, e.g. https://pay.example.kz",
        )
    if report.count("error") == problems:
        shown = ", ".join(networks)
        report.ok(
            "kaspi_biller_path",
            f"kaspi_biller: give Kaspi {public.rstrip('/')}{path} ({settings.kaspi_biller_format.upper()} replies, "
            f"called from {shown})",
        )


def check_webhooks(settings: Settings, report: Report) -> None:
    if settings.webhook_allowed_networks.strip():
        report.warning(
            "webhook_allowed_networks",
            f"{settings.webhook_allowed_networks}: the SSRF guard lets webhooks reach these private networks. "
            "Leave it empty in production unless a merchant's receiver really lives there",
        )
    if not settings.retry_schedule:
        report.warning("webhook_retry_schedule", "empty: a failed webhook is never retried")


def check_cleanup(settings: Settings, report: Report) -> None:
    from croniter import croniter

    try:
        zone = ZoneInfo(settings.cleanup_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        report.error("cleanup_timezone", f"{settings.cleanup_timezone!r} is not a time zone (e.g. Asia/Almaty)")
        return
    try:
        retention = settings.cleanup_retention_seconds
    except ValueError as exc:
        report.error("cleanup_retention", str(exc))
        return
    nxt = croniter(settings.cleanup_schedule, datetime.now(zone)).get_next(datetime)
    report.ok(
        "cleanup_schedule",
        f"cleanup runs at '{settings.cleanup_schedule}' {settings.cleanup_timezone} (next {nxt:%Y-%m-%d %H:%M}), "
        f"keeping closed unpaid payments {retention / 3600:g} h",
    )


def check_misc(settings: Settings, report: Report) -> None:
    if settings.log_level.lower() not in UVICORN_LOG_LEVELS:
        report.error("log_level", f"{settings.log_level!r} is not one of {', '.join(UVICORN_LOG_LEVELS)}")
    check_secret_keys(settings, report)


def _keyring(settings: Settings) -> Any:
    """The keyring PAYCENTER_SECRET_KEYS makes, None when this paycenter has no such setting; raises
    the keyring's error for a bad key."""
    keys: Any = getattr(settings, "secret_keys", _MISSING)  # whatever the settings object holds
    if keys is _MISSING:
        return None
    if isinstance(keys, SecretStr):
        keys = keys.get_secret_value()
    from paycenter.crypto import Keyring

    return Keyring(keys.split(",") if isinstance(keys, str) else list(keys or ()))


def check_secret_keys(settings: Settings, report: Report) -> None:
    try:
        keyring = _keyring(settings)
    except Exception as exc:
        report.error("secret_keys", f"{exc}. `paycenter secrets generate-key` makes a valid one")
        return
    if keyring is None:
        return
    if keyring.enabled:
        report.ok("secret_keys", f"secrets are encrypted at rest ({len(keyring.fernets)} key(s))")
    else:
        report.warning(
            "secret_keys",
            "empty: webhook secrets, signing secrets and terminal tokens are stored in plain text in the "
            "database. `paycenter secrets generate-key` makes a key",
        )
    from paycenter.crypto import PREFIX

    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, str) and value.startswith(PREFIX):
            try:
                keyring.open(value)
            except Exception as exc:
                report.error(name, f"given encrypted, but {exc}")


# --- database ---------------------------------------------------------------------------------


async def check_database(settings: Settings, report: Report, *, wait_seconds: float) -> None:
    """Everything this check asks the database, within ``wait_seconds`` in all: an unreachable
    server, a lock another session holds (a migration running, a backup), or SQLite locked by
    another process ends the check with one error instead of hanging it."""
    from paycenter.db import Database, async_url

    url = settings.database_url
    try:
        async_url(url)
        parsed = make_url(url)
    except Exception as exc:
        report.error("database_url", f"{safe_url(url)}: {exc}")
        return
    backend = parsed.get_backend_name()
    if backend == "sqlite" and not _check_sqlite_file(parsed.database, report):
        return

    # SQLite waits for another process's lock in its busy handler, on a thread asyncio cannot
    # interrupt: it must give up by itself, before our deadline.
    busy_ms = max(1, min(settings.sqlite_busy_timeout_ms, int(wait_seconds * 500)))
    db = Database(url, busy_timeout_ms=busy_ms)
    connected = False
    try:
        async with asyncio.timeout(wait_seconds):
            async with db.reading() as session:
                conn = await session.connection()
                current = await conn.run_sync(_current_revisions)
                version = await _server_version(conn, backend)
            connected = True
            migrated = _check_revision(current, report)
            _check_server_version(backend, version, report)
            if migrated:
                await _check_rows(db, settings, report, backend)
                report.ok("database_url", f"{safe_url(url)} reachable, schema at the newest revision")
    except TimeoutError:
        if connected:
            report.error(
                "database_url",
                f"{safe_url(url)}: reading it got no answer within {wait_seconds:g} s: is a table locked by "
                "another session (a migration or a backup running)?",
            )
        else:
            report.error("database_url", f"{safe_url(url)}: no answer within {wait_seconds:g} s")
    except Exception as exc:
        if backend == "sqlite" and "locked" in _first_line(exc):
            report.error(
                "database_url",
                f"{safe_url(url)}: locked by another process for more than {busy_ms / 1000:g} s ({_first_line(exc)})",
            )
        elif connected:  # the database went away, or rows this version cannot read
            report.error("database_url", f"{safe_url(url)}: reading it failed: {_first_line(exc)}")
        else:
            report.error("database_url", f"{safe_url(url)}: cannot connect: {_first_line(exc)}")
    finally:
        # Closing a connection whose query was cancelled can wait on the server too.
        with contextlib.suppress(Exception, TimeoutError):
            async with asyncio.timeout(wait_seconds):
                await db.dispose()


def _first_line(exc: BaseException) -> str:
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _check_sqlite_file(path: str | None, report: Report) -> bool:
    if not path or path == ":memory:" or path.startswith("file::memory:"):
        report.error(
            "database_url", "an in-memory SQLite database: nothing is kept, and each process sees its own database"
        )
        return False
    file = Path(path)
    if not file.exists():
        report.error("database_url", f"SQLite file {file.resolve()} does not exist: run `paycenter migrate`")
        return False
    if not os.access(file, os.R_OK | os.W_OK):
        report.error("database_url", f"SQLite file {file.resolve()} is not readable and writable by this user")
        return False
    if not os.access(file.resolve().parent, os.W_OK | os.X_OK):
        report.error(
            "database_url",
            f"{file.resolve().parent} is not writable by this user: SQLite keeps its -wal and -shm files beside "
            "the database",
        )
        return False
    return True


def _current_revisions(connection: Any) -> tuple[str, ...]:
    from alembic.runtime.migration import MigrationContext

    return tuple(MigrationContext.configure(connection).get_current_heads())


async def _server_version(conn: Any, backend: str) -> str:
    from sqlalchemy import text

    if backend == "mysql":
        return str(await conn.scalar(text("SELECT VERSION()")))
    return ""


def _check_revision(current: tuple[str, ...], report: Report) -> bool:
    from alembic.script import ScriptDirectory

    from paycenter.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    heads = set(script.get_heads())
    known = {rev.revision for rev in script.walk_revisions()}
    newest = ", ".join(sorted(heads))
    if not current:
        report.error("database_url", f"the database has no schema yet (newest is {newest}): run `paycenter migrate`")
        return False
    unknown = [rev for rev in current if rev not in known]
    if unknown:
        report.error(
            "database_url",
            f"the schema is at revision {', '.join(unknown)}, which this paycenter does not know (newest here is "
            f"{newest}): it was migrated by a newer paycenter. Install that version",
        )
        return False
    if set(current) != heads:
        report.error(
            "database_url",
            f"the schema is at revision {', '.join(current)}, the newest is {newest}: run `paycenter migrate`",
        )
        return False
    return True


def _check_server_version(backend: str, version: str, report: Report) -> None:
    """MariaDB before 10.6 and MySQL before 8.0 lack SKIP LOCKED, which the workers claim work with."""
    if backend != "mysql" or not version:
        return
    match = re.match(r"(\d+)\.(\d+)", version)
    if not match:
        return
    major_minor = (int(match.group(1)), int(match.group(2)))
    if "mariadb" in version.lower():
        if major_minor < (10, 6):
            report.error("database_url", f"MariaDB {version}: 10.6 or newer is needed (SELECT ... SKIP LOCKED)")
    elif major_minor < (8, 0):
        report.error("database_url", f"MySQL {version}: 8.0 or newer is needed (SELECT ... SKIP LOCKED)")


async def _check_rows(db: Any, settings: Settings, report: Report, backend: str) -> None:
    from sqlalchemy import func, select

    from paycenter import models  # noqa: F401 - every table on the metadata
    from paycenter.db import utcnow
    from paycenter.jobs.heartbeats import ALIVE_WITHIN
    from paycenter.jobs.models import WorkerHeartbeat
    from paycenter.merchants.models import Merchant
    from paycenter.providers.models import Terminal

    async with db.reading() as session:
        defaults = (
            await session.execute(
                select(Merchant.default_provider, func.count())
                .where(Merchant.is_active.is_(True))
                .group_by(Merchant.default_provider)
            )
        ).all()
        terminals = int(
            await session.scalar(select(func.count()).select_from(Terminal).where(Terminal.is_active.is_(True))) or 0
        )
        alive = list(
            (
                await session.execute(
                    select(WorkerHeartbeat.host, WorkerHeartbeat.pid).where(
                        WorkerHeartbeat.last_seen_at >= utcnow() - ALIVE_WITHIN
                    )
                )
            ).all()
        )
    await _check_encrypted_rows(db, settings, report)
    # A payment that names no provider gets the merchant's default, else the sandbox.
    stranded = sum(int(n) for provider, n in defaults if (provider or "sandbox") not in settings.providers)
    if stranded:
        report.warning(
            "enabled_providers",
            f"{stranded} active merchant(s) have no default provider among those enabled "
            f'({", ".join(settings.providers) or "none"}): their payments that name no "provider" are refused',
        )
    if "kaspi_pos" in settings.providers:
        if terminals:
            report.ok("enabled_providers", f"kaspi_pos: {terminals} active terminal(s)")
        else:
            report.warning(
                "enabled_providers",
                "kaspi_pos is enabled but no terminal is active: add one with `paycenter terminal add NAME --url "
                "https://IP:PORT --token TOKEN`",
            )
    if backend == "sqlite":
        _check_sqlite_processes(settings, alive, report)


# Tables too large to test whole: only their newest rows (by this column) are tested, after the others.
_SAMPLED = {"payments": "created_at"}
_PAYMENT_SAMPLE = 100


def _encrypted_columns() -> list[tuple[str, str, str | None]]:
    """(table, column, newest-first column or None for every row) of each encrypted column."""
    from paycenter.models import ENCRYPTED_COLUMNS

    found = [(c.table.name, c.name, _SAMPLED.get(c.table.name)) for c in ENCRYPTED_COLUMNS]
    return sorted(found, key=lambda entry: entry[2] is not None)  # stable: in the models' order otherwise


async def _check_encrypted_rows(db: Any, settings: Settings, report: Report) -> None:
    """Every merchant's and terminal's secret (and the newest payments') must open with the keys
    configured: a key dropped before `paycenter secrets rotate` finished breaks every webhook."""
    from sqlalchemy import ColumnClause, column, select, table

    try:
        keyring = _keyring(settings)
        from paycenter.crypto import PREFIX
    except Exception:
        return  # no such feature, or a bad key (reported with the settings)
    if keyring is None:
        return
    unreadable: dict[str, int] = {}
    plain = 0
    for name, col, newest in _encrypted_columns():
        cols: list[ColumnClause[Any]] = [column(col)] + ([column(newest)] if newest else [])
        t = table(name, *cols)
        query = select(t.c[col]).where(t.c[col].is_not(None))
        if newest:
            query = query.order_by(t.c[newest].desc()).limit(_PAYMENT_SAMPLE)
        try:
            async with db.reading() as session:
                values = list(await session.scalars(query))
        except Exception as exc:
            report.note("secret_keys", f"could not read {name}.{col} to test the keys: {type(exc).__name__}")
            continue
        for value in values:
            if not str(value).startswith(PREFIX):
                plain += 1
                continue
            try:
                keyring.open(str(value))
            except Exception:
                unreadable[f"{name}.{col}"] = unreadable.get(f"{name}.{col}", 0) + 1
    where = ", ".join(f"{k} ({v})" for k, v in unreadable.items())
    if unreadable and not keyring.enabled:
        report.error(
            "secret_keys",
            f"empty, but secrets in the database are encrypted: {where}. Set the keys they were encrypted with",
        )
    elif unreadable:
        report.error(
            "secret_keys",
            f"secrets in the database do not open with these keys: {where}. They were encrypted with a key "
            "that is missing: add it back after the current one, then run `paycenter secrets rotate`",
        )
    elif plain and keyring.enabled:
        report.note(
            "secret_keys",
            f"{plain} secret(s) in the database are still plain text (stored before keys were set): "
            "`paycenter secrets rotate` encrypts them",
        )


def _check_sqlite_processes(settings: Settings, alive: list[Any], report: Report) -> None:
    hosts = {row.host for row in alive}
    processes = {(row.host, row.pid) for row in alive}
    if len(hosts) > 1:
        report.warning(
            "database_url",
            f"SQLite, and workers on {len(hosts)} hosts ({', '.join(sorted(hosts))}) use it: SQLite over a network "
            "file system can lose data. Use PostgreSQL for several hosts",
        )
    elif len(processes) > 1 or not settings.run_worker:
        seen = f"{len(processes)} worker processes are running" if len(processes) > 1 else "workers run apart"
        report.note(
            "database_url",
            f"SQLite, and {seen}: every process queues for SQLite's single write lock. Fine on one host at "
            "modest volume; PostgreSQL serves several processes better",
        )
    else:
        report.note("database_url", "SQLite: good for one host and one process; use PostgreSQL for more")


# --- the command ------------------------------------------------------------------------------


class _DaemonThreads(ThreadPoolExecutor):
    """The event loop's executor for the database check: one daemon thread per call. The drivers
    resolve host names there (``getaddrinfo``), which asyncio cannot interrupt; a resolver that
    does not answer must not keep the command from ending once it gave up (asyncio.run waits for
    the default executor's threads, and the interpreter joins them at exit)."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

        threading.Thread(target=run, name="paycenter-config-check", daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass


def _run_bounded(coro: Any) -> Any:
    with asyncio.Runner() as runner:
        runner.get_loop().set_default_executor(_DaemonThreads())
        return runner.run(coro)


def run_checks(settings: Settings, *, timeout: float) -> Report:
    report = Report()
    _run_bounded(check_database(settings, report, wait_seconds=timeout))
    check_public_url(settings, report)
    check_providers(settings, report)
    check_webhooks(settings, report)
    check_cleanup(settings, report)
    check_misc(settings, report)
    return report


def _sorted(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: LEVELS.index(f.level))


def _summary(report: Report) -> str:
    def plural(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 else 's'}"

    return f"{plural(report.count('error'), 'error')}, {plural(report.count('warning'), 'warning')}"


def show_items(settings: Settings) -> Iterator[tuple[str, str, bool]]:
    """(PAYCENTER_NAME, printable value, whether it was set rather than defaulted) for every setting."""
    explicit = settings.model_fields_set
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if name == "database_url":
            text = safe_url(value)
        elif is_secret(name, value):
            raw = value.get_secret_value() if isinstance(value, SecretStr) else value
            text = _MASK if raw else ""
        else:
            text = _printable(value)
        yield env_name(name), text, name in explicit


def _printable(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal | int | float | str):
        return str(value)
    if isinstance(value, list | tuple | set):
        return ",".join(_printable(v) for v in value)
    return json.dumps(value, default=str)


config_app = typer.Typer(help="Check and show the configuration (PAYCENTER_* settings).", no_args_is_help=True)
EnvFileOption = Annotated[
    Path | None,
    typer.Option("--env-file", help="Also read settings from this file (KEY=value lines); the environment still wins"),
]


@config_app.command("check")
def check(
    env_file: EnvFileOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the database")] = 10.0,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too (exit 1)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Validate the settings, the database and the providers; exit 1 on any error."""
    settings, load_errors = load_settings(env_file)
    report = Report(load_errors) if settings is None else run_checks(settings, timeout=timeout)
    failed = report.count("error") > 0 or (strict and report.count("warning") > 0)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": not failed,
                    "errors": report.count("error"),
                    "warnings": report.count("warning"),
                    "findings": [asdict(f) for f in _sorted(report.findings)],
                },
                ensure_ascii=False,
            )
        )
    else:
        if settings is None:
            typer.echo("paycenter config check: the settings do not load")
        else:
            typer.echo(f"paycenter config check: database {safe_url(settings.database_url)}")
        for f in _sorted(report.findings):
            where = f"{f.setting}: " if f.setting else ""
            typer.echo(f"{f.level.upper():<8} {where}{f.message}")
        typer.echo(f"{'FAILED' if failed else 'passed'}: {_summary(report)}")
    if failed:
        raise typer.Exit(1)


@config_app.command("show")
def show(
    env_file: EnvFileOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Print the effective settings, secrets masked; `# default` marks those not set."""
    settings, load_errors = load_settings(env_file)
    if settings is None:
        for f in load_errors:
            typer.echo(f"error: {f.setting + ': ' if f.setting else ''}{f.message}", err=True)
        raise typer.Exit(1)
    items = list(show_items(settings))
    if as_json:
        typer.echo(json.dumps({name: value for name, value, _ in items}, ensure_ascii=False))
        return
    for name, value, explicit in items:
        line = f"{name}={_quoted(value)}"
        typer.echo(line if explicit else f"{line:<60} # default")


def _quoted(value: str) -> str:
    """Env-file form: values with spaces or shell characters in double quotes."""
    if value == _MASK or re.fullmatch(r"[A-Za-z0-9_.,:/@%+=\-]+", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
