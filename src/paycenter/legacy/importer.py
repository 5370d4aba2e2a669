"""Moving the old PHP system's MySQL data into paycenter (``paycenter import-legacy``).

The old database is only read, inside one REPEATABLE READ transaction, so every table is seen at
the same moment even if the old system still runs. What maps to what (docs/legacy-import.md has
the operator's version):

- ``sources`` -> merchants ``mer_legacy_<id>``. The plain ``api_token`` becomes an API token
  ``tok_legacy_<id>`` holding its SHA-256, so merchants keep sending the same header.
- ``kaspi_terminals`` -> the terminal pool, ``trm_legacy_<id>``.
- ``transactions`` -> payments under the same ``transaction_id``; ``partial_payments`` ->
  operations ``op_legacy_<id>`` (and, when refunded, a succeeded refund ``rfd_legacy_<id>`` with
  its leg); ``webhook_logs`` -> the webhook log: one historical event and delivery per webhook
  the old system sent (``evt_legacy_<first log id>``), one attempt row per log row, every
  delivery final so the dispatcher never sends history again.

Ids are derived from the old ids, so a second run finds what the first wrote and skips it: a
payment already present is left as it is, children and all. Rows that cannot be carried over
faithfully (a transaction whose source is gone, an amount that is not money) are skipped and
reported, never guessed at. Money is read as text (``CAST(... AS CHAR)``) and parsed as Decimal:
no float ever holds an amount.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, SupportsInt
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.pool import NullPool

from paycenter import storable, versions
from paycenter.db import Base, Database, create_engine, is_payment_id, normalize_payment_id, utcnow
from paycenter.merchants.models import ApiToken, Merchant
from paycenter.merchants.service import hash_token, new_signing_secret
from paycenter.money import exponent, to_major_str
from paycenter.payments.models import (
    PAYABLE,
    Event,
    Operation,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Refund,
    RefundLeg,
    RefundStatus,
)
from paycenter.providers.models import Terminal
from paycenter.webhooks.models import Delivery, DeliveryAttempt, DeliveryStatus, ErrorClass
from paycenter.webhooks.wire import php_json

# The old system took every payment on its Kaspi Smart POS terminals.
PROVIDER = "kaspi_pos"
CURRENCY = "KZT"  # the old `currency` column was a label: everything was charged in tenge
DEFAULT_EXPIRY = timedelta(hours=1)  # the old rule, for rows without expires_at

# Old status -> ours. `processing` meant a terminal operation was running; no attempt is carried
# over (its terminal operation belongs to the old system), so the payment is payable again.
STATUSES: dict[str, PaymentStatus] = {
    "pending": PaymentStatus.PENDING,
    "processing": PaymentStatus.PENDING,
    "partially_paid": PaymentStatus.PARTIALLY_PAID,
    "paid": PaymentStatus.PAID,
    "cancelled": PaymentStatus.CANCELLED,
    "failed": PaymentStatus.FAILED,
    "refunded": PaymentStatus.REFUNDED,
    "expired": PaymentStatus.EXPIRED,  # not an old status, but ours: accepted if a row has it
}
# Partial payment statuses that mean no money moved (every other value, or none, is money).
NO_MONEY = {"failed", "error", "cancelled", "canceled", "declined", "pending"}

# Columns compared to tell whether a payment already in paycenter still matches its old row.
COMPARED = ("merchant_id", "amount", "status", "paid_amount", "fee_amount", "received_amount", "refunded_amount")

# How a column is selected: raw and text as stored; money and time as text (CAST ... AS CHAR).
Kind = Literal["raw", "money", "time", "text"]


class LegacyImportError(Exception):
    """The import cannot start (unreachable source, missing tables); nothing was written."""


class BadRow(Exception):
    """A row that cannot be carried over faithfully: skipped and reported."""


# --- identifiers ----------------------------------------------------------------------------


# legacy-system.md: "paid meant net received ≥ original − 10 KZT" (minor units).
LEGACY_UNDERPAYMENT_TOLERANCE = 1000


def merchant_id(source_id: int) -> str:
    return f"mer_legacy_{source_id}"


def token_id(source_id: int) -> str:
    return f"tok_legacy_{source_id}"


def terminal_id(terminal: int) -> str:
    return f"trm_legacy_{terminal}"


def operation_id(pp_id: int) -> str:
    return f"op_legacy_{pp_id}"


# --- the report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Skipped:
    table: str
    legacy_id: str
    reason: str


@dataclass
class ImportReport:
    dry_run: bool
    merchants: int = 0
    merchants_present: int = 0
    tokens: int = 0
    tokens_present: int = 0
    terminals: int = 0
    terminals_present: int = 0
    payments: Counter[str] = field(default_factory=Counter)  # new ones, by status
    payments_present: int = 0
    # Present already, but no longer equal to the old row (changed in either system since).
    payments_differing: list[str] = field(default_factory=list)
    operations: int = 0
    refunds: int = 0
    webhook_events: int = 0
    webhook_deliveries: int = 0
    webhook_logs: int = 0  # old log rows, imported as delivery attempts
    # Payable payments whose expires_at has passed: the worker expires them (sending `expired`).
    overdue_payable: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # merchant id -> the old sources.allowed_ips, which paycenter does not enforce.
    allowed_ips: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, table: str, legacy_id: object, reason: str) -> None:
        self.skipped.append(Skipped(table, str(legacy_id), reason))

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "merchants": {"imported": self.merchants, "already_present": self.merchants_present},
            "tokens": {"imported": self.tokens, "already_present": self.tokens_present},
            "terminals": {"imported": self.terminals, "already_present": self.terminals_present},
            "payments": {
                "imported": sum(self.payments.values()),
                "by_status": dict(sorted(self.payments.items())),
                "already_present": self.payments_present,
                "differing_from_old_row": self.payments_differing,
            },
            "operations": self.operations,
            "refunds": self.refunds,
            "webhook_events": self.webhook_events,
            "webhook_deliveries": self.webhook_deliveries,
            "webhook_logs": self.webhook_logs,
            "overdue_payable": self.overdue_payable,
            "skipped": [{"table": s.table, "id": s.legacy_id, "reason": s.reason} for s in self.skipped],
            "warnings": self.warnings,
            "allowed_ips_not_enforced": self.allowed_ips,
        }

    def lines(self, limit: int = 100) -> list[str]:
        """The summary for people; at most ``limit`` skipped rows and warnings each (--json has all)."""
        verb = "would import" if self.dry_run else "imported"
        out = [
            f"{'DRY RUN: nothing written. ' if self.dry_run else ''}Legacy import summary ({verb} / already present):",
            f"  merchants:        {self.merchants} / {self.merchants_present}",
            f"  API tokens:       {self.tokens} / {self.tokens_present}",
            f"  terminals:        {self.terminals} / {self.terminals_present}",
            f"  payments:         {sum(self.payments.values())} / {self.payments_present}",
        ]
        for status, count in sorted(self.payments.items()):
            out.append(f"    {status:<16}{count}")
        out += [
            f"  operations:       {self.operations}",
            f"  refunds:          {self.refunds}",
            f"  webhook log:      {self.webhook_logs} old log rows as {self.webhook_deliveries} deliveries"
            f" of {self.webhook_events} events",
        ]
        if self.overdue_payable:
            out.append(
                f"  {self.overdue_payable} payable payments are past expires_at: the paycenter worker will mark "
                "them expired and send their `expired` webhooks"
            )
        if self.payments_differing:
            shown = ", ".join(self.payments_differing[:10])
            more = f" and {len(self.payments_differing) - 10} more" if len(self.payments_differing) > 10 else ""
            out.append(
                f"  {len(self.payments_differing)} payments already in paycenter differ from their old row "
                f"and were left as they are: {shown}{more}"
            )
        if self.allowed_ips:
            out.append("  allowed_ips of the old sources are NOT enforced by paycenter (restrict at the proxy):")
            for mid, ips in sorted(self.allowed_ips.items()):
                out.append(f"    {mid}: {', '.join(ips)}")
        if self.skipped:
            out.append(f"  skipped rows: {len(self.skipped)}")
            out.extend(f"    {s.table} {s.legacy_id}: {s.reason}" for s in self.skipped[:limit])
            if len(self.skipped) > limit:
                out.append(f"    ... and {len(self.skipped) - limit} more (--json lists them all)")
        if self.warnings:
            out.append(f"  warnings: {len(self.warnings)}")
            out.extend(f"    {w}" for w in self.warnings[:limit])
            if len(self.warnings) > limit:
                out.append(f"    ... and {len(self.warnings) - limit} more (--json lists them all)")
        return out


@dataclass(frozen=True)
class Options:
    # The old system wrote naive local times in this zone.
    source_timezone: str = "Asia/Almaty"
    # Provider of the merchants' new payments (paycenter's fallback is the sandbox, which takes no money).
    default_provider: str | None = PROVIDER
    # sources.webhook_url was never used by the old system; set it as the merchants' default only on request.
    merchant_webhook_urls: bool = False
    batch_size: int = 500
    dry_run: bool = False


# --- parsing old values ---------------------------------------------------------------------


def parse_money(value: object, what: str, *, allow_none: bool = False) -> int | None:
    """An old DECIMAL(12,2), read as text, in tenge minor units (tiyn). Floats are refused."""
    if value is None:
        if allow_none:
            return None
        raise BadRow(f"{what} is empty")
    if isinstance(value, float):  # never: money is selected as text
        raise TypeError(f"{what} arrived as a float")
    if isinstance(value, bytes):
        value = value.decode()
    raw = str(value).strip()
    try:
        dec = Decimal(raw)
    except InvalidOperation:
        raise BadRow(f"{what} {raw!r} is not a number") from None
    if not dec.is_finite():
        raise BadRow(f"{what} {raw!r} is not a number")
    scaled = dec.scaleb(exponent(CURRENCY))
    if scaled != scaled.to_integral_value():
        raise BadRow(f"{what} {raw!r} has more than {exponent(CURRENCY)} decimal places")
    return int(scaled)


def parse_time(value: object, tz: ZoneInfo) -> datetime | None:
    """An old naive local time ("YYYY-MM-DD HH:MM:SS") as an aware UTC datetime; None if empty.

    Kazakhstan moved from UTC+6 to UTC+5 on 2024-03-01: the tz database knows, so old rows get the
    offset of their own date. A local time that occurred twice that night is read as the first.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, datetime):
        naive = value
    else:
        raw = str(value).strip()
        if not raw or raw.startswith("0000-00-00"):
            return None
        try:
            naive = datetime.fromisoformat(raw)
        except ValueError:
            raise BadRow(f"time {raw!r} is not YYYY-MM-DD HH:MM:SS") from None
    if naive.tzinfo is not None:
        return naive.astimezone(UTC)
    return naive.replace(tzinfo=tz).astimezone(UTC)


def _text(value: object) -> str | None:
    # NUL becomes U+FFFD: PostgreSQL refuses it in text, and the API refuses it in new payments.
    if value is None:
        return None
    if isinstance(value, bytes):
        return storable.clean_text(value.decode("utf-8", "replace"))
    return storable.clean_text(str(value))


def _clip(value: object, length: int) -> str | None:
    raw = _text(value)
    if raw is None:
        return None
    raw = raw.strip()
    return raw[:length] if raw else None


def _flag(value: str | bytes | SupportsInt | None, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bytes):  # BIT(1)
        return value != b"\x00"
    return bool(int(value)) if not isinstance(value, str) else value.strip().lower() in ("1", "true", "yes")


def parse_metadata(value: object) -> tuple[dict[str, Any], str | None]:
    """The old metadata JSON text as an object, with a warning when it was not one.

    Empty text, ``null`` and PHP's empty array ``[]`` are "no metadata": ``{}``. What the API
    would refuse today (NaN, lone surrogates, NUL, nesting past ``storable.MAX_DEPTH``) is
    sanitized as ``storable.sanitized`` does, with a warning: every backend must store it and every
    page show it.
    """
    raw = (_text(value) or "").strip()
    if not raw:
        return {}, None
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):
        return {"legacy_metadata": raw}, "metadata is not JSON; kept as text under legacy_metadata"
    if parsed is None or parsed == []:
        return {}, None
    metadata, warning = (
        (parsed, None)
        if isinstance(parsed, dict)
        else ({"legacy_metadata": parsed}, "metadata is not a JSON object; kept under legacy_metadata")
    )
    found = storable.problem(metadata)
    if found is None:
        return metadata, warning
    fixed = f"metadata {found}: sanitized (U+FFFD for bad text, null for NaN, deeper levels as JSON text)"
    return storable.sanitized(metadata), "; ".join(filter(None, [warning, fixed]))


def metadata_key(metadata: dict[str, Any], key: str) -> str | None:
    """metadata.order_id / user_id as searchable text, the way payments.service fills them."""
    value = metadata.get(key)
    if value is None:
        return None
    return (value if isinstance(value, str) else str(value))[:500]


def parse_allowed_ips(value: object) -> list[str]:
    raw = (_text(value) or "").strip()
    if not raw:
        return []
    try:
        parsed = json.loads(raw)
    except ValueError:
        return [part.strip() for part in raw.split(",") if part.strip()]
    if isinstance(parsed, list):
        return [str(ip) for ip in parsed if str(ip).strip()]
    return [str(parsed)] if parsed else []


def terminal_txn_id(payment_details: object) -> str | None:
    """transactionId from a partial payment's terminal JSON (what refunds on the terminal need)."""
    raw = (_text(payment_details) or "").strip()
    if not raw:
        return None
    try:
        details = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(details, dict):
        return None
    txn = details.get("transactionId")
    if txn is None:
        data = details.get("data")
        txn = data.get("transactionId") if isinstance(data, dict) else None
    if txn is None or isinstance(txn, bool | dict | list):
        return None
    txn_text = str(txn).strip()
    return txn_text[:100] or None


# --- reading the old database ---------------------------------------------------------------

MERCHANT_COLUMNS: dict[str, Kind] = {
    "id": "raw",
    "name": "text",
    "api_token": "text",
    "webhook_url": "text",
    "allowed_ips": "text",
    "is_active": "raw",
    "created_at": "time",
}
TERMINAL_COLUMNS: dict[str, Kind] = {
    "id": "raw",
    "name": "text",
    "ip_address": "text",
    "port": "raw",
    "access_token": "text",
    "camera_id": "text",
    "is_active": "raw",
    "last_used": "time",
    "created_at": "time",
}
METHOD_COLUMNS: dict[str, Kind] = {
    "id": "raw",
    "code": "text",
    "commission_percent": "money",  # a DECIMAL: read as text like money
    "add_commission_to_amount": "raw",
}
TRANSACTION_COLUMNS: dict[str, Kind] = {
    "id": "raw",
    "transaction_id": "text",
    "source_id": "raw",
    "amount": "money",
    "original_amount": "money",
    "currency": "text",
    "description": "text",
    "customer_phone": "text",
    "customer_email": "text",
    "customer_name": "text",
    "status": "text",
    "paid_amount": "money",
    "actual_amount_received": "money",
    "remaining_amount": "money",
    "commission_amount": "money",
    "webhook_url": "text",
    "webhook_secret": "text",
    "metadata": "text",
    "kaspi_terminal_id": "raw",
    "expires_at": "time",
    "paid_at": "time",
    "created_at": "time",
    "updated_at": "time",
}
PARTIAL_COLUMNS: dict[str, Kind] = {
    "id": "raw",
    "transaction_id": "raw",
    "payment_method_id": "raw",
    "amount": "money",
    "commission_amount": "money",
    "status": "text",
    "payment_details": "text",
    "paid_at": "time",
    "is_refunded": "raw",
    "refund_amount": "money",
    "refund_transaction_id": "text",
    "refunded_at": "time",
    "created_at": "time",
}
LOG_COLUMNS: dict[str, Kind] = {
    "id": "raw",
    "transaction_id": "raw",
    "event_type": "text",
    "webhook_url": "text",
    "request_payload": "text",
    "response_code": "raw",
    "response_body": "text",
    "is_success": "raw",
    "error_message": "text",
    "attempt_number": "raw",
    "created_at": "time",
}
REQUIRED = {
    "sources": {"id", "api_token"},
    "transactions": {"id", "transaction_id", "source_id", "amount", "status"},
    "partial_payments": {"id", "transaction_id", "amount"},
    "webhook_logs": {"id", "transaction_id", "event_type"},
    "kaspi_terminals": {"id", "name", "ip_address", "access_token"},
    "payment_methods": {"id", "code"},
}


class LegacySource:
    """Reads the old tables on one connection inside one consistent snapshot."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.columns: dict[str, set[str]] = {}

    async def inspect(self) -> None:
        rows = await self.conn.execute(
            text("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = DATABASE()")
        )
        for table, column in rows:
            self.columns.setdefault(str(table).lower(), set()).add(str(column).lower())
        missing = [t for t in ("sources", "transactions") if t not in self.columns]
        if missing:
            raise LegacyImportError(f"the source database has no {' or '.join(missing)} table: is it the old system's?")
        for table, needed in REQUIRED.items():
            if table in self.columns and (lost := needed - self.columns[table]):
                raise LegacyImportError(f"the old table {table} lacks the columns {', '.join(sorted(lost))}")

    def has(self, table: str) -> bool:
        return table in self.columns

    def _select(self, table: str, spec: dict[str, Kind]) -> str:
        present = self.columns[table]
        parts = []
        for column, kind in spec.items():
            if column not in present:
                parts.append(f"NULL AS `{column}`")
            elif kind in ("money", "time"):
                # As text: a DECIMAL never passes through a float, a DATETIME keeps its zero dates.
                parts.append(f"CAST(`{column}` AS CHAR) AS `{column}`")
            else:
                parts.append(f"`{column}`")
        return f"SELECT {', '.join(parts)} FROM `{table}`"

    async def rows(self, table: str, spec: dict[str, Kind], where: str = "", **params: Any) -> list[dict[str, Any]]:
        if not self.has(table):
            return []
        stmt = text(f"{self._select(table, spec)} {where}")
        for name, value in params.items():
            if isinstance(value, list | tuple | set):
                stmt = stmt.bindparams(bindparam(name, expanding=True))
        result = await self.conn.execute(stmt, params)
        return [dict(row._mapping) for row in result]

    async def transactions_after(self, after: int, limit: int) -> list[dict[str, Any]]:
        return await self.rows(
            "transactions",
            TRANSACTION_COLUMNS,
            "WHERE `id` > :after ORDER BY `id` LIMIT :limit",
            after=after,
            limit=limit,
        )

    async def children(self, table: str, spec: dict[str, Kind], ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        by_parent: dict[int, list[dict[str, Any]]] = defaultdict(list)
        if not ids:
            return by_parent
        for row in await self.rows(table, spec, "WHERE `transaction_id` IN :ids ORDER BY `id`", ids=ids):
            by_parent[int(row["transaction_id"])].append(row)
        return by_parent

    async def orphans(self, table: str) -> list[int]:
        """Rows of a child table whose transaction no longer exists (old cleanups without FKs)."""
        if not self.has(table):
            return []
        result = await self.conn.execute(
            text(
                f"SELECT c.`id` FROM `{table}` c LEFT JOIN `transactions` t ON t.`id` = c.`transaction_id` "
                "WHERE t.`id` IS NULL ORDER BY c.`id`"
            )
        )
        return [int(r[0]) for r in result]


# --- one payment and everything under it ----------------------------------------------------


@dataclass
class PaymentPlan:
    legacy_id: int
    payment: Payment
    operations: list[Operation] = field(default_factory=list)
    refunds: list[Refund] = field(default_factory=list)
    legs: list[RefundLeg] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    attempts: list[DeliveryAttempt] = field(default_factory=list)
    log_rows: int = 0
    warnings: list[str] = field(default_factory=list)
    skipped_logs: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class PlanContext:
    tz: ZoneInfo
    now: datetime
    merchants: dict[int, str]  # old source id -> merchant id (imported now or before)
    terminals: set[int]  # old terminal ids present in paycenter's pool
    methods: dict[int, str]  # old payment_methods.id -> code
    # provider_txn_id -> operation id, for every operation this run plans: a terminal
    # transaction recorded twice by the old system must not break the unique key.
    txn_ids: dict[str, str] = field(default_factory=dict)


def _major(minor: int) -> str:
    return to_major_str(minor, CURRENCY)


def _positive(value: int | None, what: str) -> int:
    if value is None or value <= 0:
        raise BadRow(f"{what} must be greater than zero")
    return value


def plan_payment(
    row: dict[str, Any], partials: list[dict[str, Any]], logs: list[dict[str, Any]], ctx: PlanContext
) -> PaymentPlan:
    """Everything one old transaction becomes. Raises BadRow when it cannot be carried over."""
    legacy_id = int(row["id"])
    payment_id = normalize_payment_id(_text(row["transaction_id"]) or "")
    if not is_payment_id(payment_id):
        raise BadRow(f"transaction_id {row['transaction_id']!r} is not 32 hex characters")
    source = row["source_id"]
    owner = ctx.merchants.get(int(source)) if source is not None else None
    if owner is None:
        raise BadRow(f"its source {source} does not exist (or was not imported)")
    old_status = (_text(row["status"]) or "").strip().lower()
    if old_status not in STATUSES:
        raise BadRow(f"unknown status {row['status']!r}")
    status = STATUSES[old_status]
    warnings: list[str] = []
    if old_status == "processing":
        warnings.append("was processing (a terminal operation was running): imported as pending; check the terminal")
    # What the merchant asked for: original_amount; `amount` could be grossed up with a bank fee.
    charged = _positive(parse_money(row["amount"], "amount"), "amount")
    original = parse_money(row["original_amount"], "original_amount", allow_none=True)
    amount = _positive(original, "original_amount") if original is not None else charged
    webhook_url = (_text(row["webhook_url"]) or "").strip() or None
    if webhook_url and len(webhook_url) > 500:
        raise BadRow("webhook_url is longer than 500 characters")
    secret = _text(row["webhook_secret"])
    if secret and len(secret) > 64:
        raise BadRow("webhook_secret is longer than 64 characters")

    created = parse_time(row["created_at"], ctx.tz)
    updated = parse_time(row["updated_at"], ctx.tz)
    paid_at = parse_time(row["paid_at"], ctx.tz)
    if created is None:
        created = updated or paid_at or ctx.now
        warnings.append("no created_at; used updated_at, paid_at or the import time")
    updated = updated or created
    expires = parse_time(row["expires_at"], ctx.tz) or created + DEFAULT_EXPIRY
    label = (_text(row["currency"]) or CURRENCY).strip().upper()
    if label != CURRENCY:
        warnings.append(f"currency label {label!r}: the old system charged tenge, imported as {CURRENCY}")
    metadata, metadata_warning = parse_metadata(row["metadata"])
    if metadata_warning:
        warnings.append(metadata_warning)

    payment = Payment(
        id=payment_id,
        merchant_id=owner,
        amount=amount,
        currency=CURRENCY,
        description=(_text(row["description"]) or "")[:1000],
        metadata_=metadata,
        order_id=metadata_key(metadata, "order_id"),
        metadata_user_id=metadata_key(metadata, "user_id"),
        customer_phone=_clip(row["customer_phone"], 32),
        customer_email=_clip(row["customer_email"], 254),
        customer_name=_clip(row["customer_name"], 200),
        webhook_url=webhook_url,
        webhook_secret=secret or None,
        success_url=None,
        fail_url=None,
        language=None,
        provider=PROVIDER,
        status=str(status),
        paid_amount=0,
        fee_amount=0,
        received_amount=0,
        credited_amount=0,
        paid_late=False,
        refunded_amount=0,
        last_sequence=0,
        expires_at=expires,
        paid_at=paid_at,
        # The old row keeps no cancel time: its last update is the closest there is.
        cancelled_at=updated if status == PaymentStatus.CANCELLED else None,
        created_at=created,
        updated_at=updated,
    )
    plan = PaymentPlan(legacy_id=legacy_id, payment=payment, warnings=warnings)
    _plan_money(plan, row, partials, ctx)
    _plan_webhook_log(plan, logs, ctx)
    return plan


def _plan_money(plan: PaymentPlan, row: dict[str, Any], partials: list[dict[str, Any]], ctx: PlanContext) -> None:
    payment = plan.payment
    terminal = row["kaspi_terminal_id"]
    # The transaction names the terminal it last used: the best record of where its money was taken.
    op_terminal = terminal_id(int(terminal)) if terminal is not None and int(terminal) in ctx.terminals else None
    fallback_time = payment.paid_at or payment.updated_at
    for pp in partials:
        pp_id = int(pp["id"])
        pp_status = (_text(pp["status"]) or "").strip().lower()
        if pp_status in NO_MONEY:
            plan.warnings.append(f"partial payment {pp_id} has status {pp_status!r}: not counted as money")
            continue
        gross = _positive(parse_money(pp["amount"], f"partial payment {pp_id} amount"), f"partial payment {pp_id}")
        fee = parse_money(pp["commission_amount"], f"partial payment {pp_id} commission", allow_none=True) or 0
        if fee < 0 or fee > gross:
            raise BadRow(f"partial payment {pp_id}: commission {_major(fee)} is outside 0..{_major(gross)}")
        at = parse_time(pp["paid_at"], ctx.tz) or parse_time(pp["created_at"], ctx.tz) or fallback_time
        method = pp["payment_method_id"]
        op = _operation(
            plan,
            ctx,
            op_id=operation_id(pp_id),
            txn=terminal_txn_id(pp["payment_details"]),
            fallback_txn=f"legacy-pp-{pp_id}",
            gross=gross,
            fee=fee,
            method=ctx.methods.get(int(method)) if method is not None else None,
            terminal=op_terminal,
            at=at,
        )
        if _flag(pp["is_refunded"], False):
            refunded = parse_money(pp["refund_amount"], f"partial payment {pp_id} refund_amount", allow_none=True)
            refunded = refunded or gross  # a refund flag without an amount: the whole operation
            if refunded < 0 or refunded > gross:
                raise BadRow(f"partial payment {pp_id}: refund_amount {_major(refunded)} exceeds its amount")
            refunded_at = parse_time(pp["refunded_at"], ctx.tz) or payment.updated_at
            _refund(
                plan,
                refund_id=f"rfd_legacy_{pp_id}",
                legs=[(f"rfl_legacy_{pp_id}", op, refunded)],
                provider_ref=_clip(pp["refund_transaction_id"], 100),
                at=refunded_at,
                reason="refunded in the old system",
            )

    old_paid = parse_money(row["paid_amount"], "paid_amount", allow_none=True) or 0
    old_net = parse_money(row["actual_amount_received"], "actual_amount_received", allow_none=True)
    if not plan.operations and old_paid > 0:
        # Paid without a partial_payments row (rows from before that table, or set by hand): one
        # operation for what the transaction says arrived, so paid stays the sum of operations.
        net = old_net if old_net is not None and 0 <= old_net <= old_paid else old_paid
        _operation(
            plan,
            ctx,
            op_id=f"op_legacy_t{plan.legacy_id}",
            txn=None,
            fallback_txn=f"legacy-txn-{plan.legacy_id}",
            gross=old_paid,
            fee=old_paid - net,
            method=None,
            terminal=op_terminal,
            at=fallback_time,
        )
        plan.warnings.append("paid_amount without partial payments: recorded as one operation")
    elif plan.operations and old_paid != payment.paid_amount:
        plan.warnings.append(
            f"paid_amount {_major(old_paid)} differs from its partial payments ({_major(payment.paid_amount)}); "
            "used the partial payments"
        )
    if old_net is not None and plan.operations and old_net != payment.received_amount:
        plan.warnings.append(
            f"actual_amount_received {_major(old_net)} differs from its partial payments' net "
            f"({_major(payment.received_amount)}); used the partial payments"
        )
    old_remaining = parse_money(row["remaining_amount"], "remaining_amount", allow_none=True)
    if old_remaining is not None and old_remaining != payment.remaining_amount:
        plan.warnings.append(
            f"remaining_amount {_major(old_remaining)} differs from amount - net received "
            f"({_major(payment.remaining_amount)})"
        )
    if payment.status == PaymentStatus.REFUNDED and payment.refunded_amount < payment.paid_amount:
        # Marked refunded, yet not every partial payment says so: the status is the old system's
        # record of the money going back, so the rest is recorded as one more refund.
        legs = []
        for n, op in enumerate(plan.operations, start=1):
            left = op.amount - sum(leg.amount for leg in plan.legs if leg.operation_id == op.id)
            if left > 0:
                legs.append((f"rfl_legacy_t{plan.legacy_id}_{n}", op, left))
        if legs:
            _refund(
                plan,
                refund_id=f"rfd_legacy_t{plan.legacy_id}",
                legs=legs,
                provider_ref=None,
                at=payment.updated_at,
                reason="status refunded in the old system",
            )
            plan.warnings.append("status refunded but not all partial payments say so: recorded a refund of the rest")
    if payment.status in (PaymentStatus.PAID, PaymentStatus.PARTIALLY_PAID) and payment.paid_amount == 0:
        plan.warnings.append(f"status {payment.status} but no money recorded")


def _operation(
    plan: PaymentPlan,
    ctx: PlanContext,
    *,
    op_id: str,
    txn: str | None,
    fallback_txn: str,
    gross: int,
    fee: int,
    method: str | None,
    terminal: str | None,
    at: datetime,
) -> Operation:
    provider_txn = txn or fallback_txn
    if ctx.txn_ids.get(provider_txn, op_id) != op_id:
        plan.warnings.append(
            f"{op_id}: terminal transactionId {provider_txn} was already recorded by {ctx.txn_ids[provider_txn]} "
            f"(counted twice by the old system?); imported as {fallback_txn}"
        )
        provider_txn = fallback_txn
    ctx.txn_ids[provider_txn] = op_id
    net = gross - fee
    op = Operation(
        id=op_id,
        payment_id=plan.payment.id,
        attempt_id=None,
        provider=PROVIDER,
        provider_txn_id=provider_txn,
        amount=gross,
        fee=fee,
        net=net,
        # The old system counted the net toward the amount ("paid" = net >= original - 10 KZT).
        credited=net,
        payment_method=method[:32] if method else None,
        terminal_id=terminal,
        created_at=at,
    )
    plan.operations.append(op)
    payment = plan.payment
    payment.paid_amount += gross
    payment.fee_amount += fee
    payment.received_amount += net
    payment.credited_amount += net
    return op


def _refund(
    plan: PaymentPlan,
    *,
    refund_id: str,
    legs: Sequence[tuple[str, Operation, int]],
    provider_ref: str | None,
    at: datetime,
    reason: str,
) -> None:
    total = sum(amount for _, _, amount in legs)
    if total <= 0:
        return
    plan.refunds.append(
        Refund(
            id=refund_id,
            payment_id=plan.payment.id,
            amount=total,
            refunded_amount=total,
            reason=reason,
            status=RefundStatus.SUCCEEDED,
            provider_ref=provider_ref,
            error=None,
            created_at=at,
            completed_at=at,
        )
    )
    for leg_id, op, amount in legs:
        plan.legs.append(
            RefundLeg(
                id=leg_id,
                refund_id=refund_id,
                operation_id=op.id,
                amount=amount,
                status=RefundStatus.SUCCEEDED,
                sent_at=at,
                provider_ref=provider_ref,
                terminal_id=op.terminal_id,
                error=None,
                next_poll_at=None,
                created_at=at,
                completed_at=at,
            )
        )
    plan.payment.refunded_amount += total


def _log_success(log: dict[str, Any]) -> bool:
    code = log["response_code"]
    if log["is_success"] is not None:
        return _flag(log["is_success"], False)
    return code is not None and 200 <= int(code) < 300


def _group_sends(logs: list[tuple[datetime, dict[str, Any]]]) -> list[list[tuple[datetime, dict[str, Any]]]]:
    """Old log rows of one event type, in order, cut into the webhooks they were tries of.

    A new webhook starts when the try number does not go up, or after a success (each partial
    payment sent its own `partially_paid`, each a first try).
    """
    sends: list[list[tuple[datetime, dict[str, Any]]]] = []
    previous: int | None = None
    for at, log in logs:
        number = log["attempt_number"]
        number = int(number) if number is not None else None
        if (
            not sends
            or _log_success(sends[-1][-1][1])
            or (number is not None and previous is not None and number <= previous)
        ):
            sends.append([])
        sends[-1].append((at, log))
        previous = number
    return sends


def _event_body(payload: str | None, event_type: str, payment_id: str) -> str:
    """The body the old system sent, verbatim when it is a JSON object (the event feed shows
    it as one); anything else is wrapped so the feed stays readable."""
    raw = (payload or "").strip()
    try:
        if isinstance(json.loads(raw), dict):
            return raw
    except (ValueError, RecursionError):
        pass
    return php_json({"event": event_type, "transaction_id": payment_id, "legacy_request_payload": raw})


def _error_class(code: int | None, success: bool) -> str | None:
    if success:
        return None
    return str(ErrorClass.HTTP_STATUS) if code else None


def _plan_webhook_log(plan: PaymentPlan, logs: list[dict[str, Any]], ctx: PlanContext) -> None:
    payment = plan.payment
    by_type: dict[str, list[tuple[datetime, dict[str, Any]]]] = defaultdict(list)
    for log in logs:
        log_id = int(log["id"])
        try:
            at = parse_time(log["created_at"], ctx.tz)
        except BadRow as exc:
            plan.skipped_logs.append((log_id, str(exc)))
            continue
        if at is None:
            plan.skipped_logs.append((log_id, "no created_at"))
            continue
        event_type = (_text(log["event_type"]) or "").strip()[:32]
        if not event_type:
            plan.skipped_logs.append((log_id, "no event_type"))
            continue
        by_type[event_type].append((at, log))
    sends: list[tuple[str, list[tuple[datetime, dict[str, Any]]]]] = []
    for event_type, rows in by_type.items():
        rows.sort(key=lambda item: (item[0], int(item[1]["id"])))
        sends.extend((event_type, send) for send in _group_sends(rows))
    sends.sort(key=lambda item: (item[1][0][0], int(item[1][0][1]["id"])))
    for sequence, (event_type, tries) in enumerate(sends, start=1):
        first_at, first = tries[0]
        key = int(first["id"])
        event_id, delivery_id = f"evt_legacy_{key}", f"whd_legacy_{key}"
        plan.events.append(
            Event(
                id=event_id,
                payment_id=payment.id,
                merchant_id=payment.merchant_id,
                type=event_type,
                sequence=sequence,
                body=_event_body(_text(first["request_payload"]), event_type, payment.id),
                created_at=first_at,
            )
        )
        delivered_at: datetime | None = None
        for number, (at, log) in enumerate(tries, start=1):
            ok = _log_success(log)
            code = int(log["response_code"]) if log["response_code"] else None
            if ok and delivered_at is None:
                delivered_at = at
            plan.attempts.append(
                DeliveryAttempt(
                    delivery_id=delivery_id,
                    number=number,
                    started_at=at,
                    duration_ms=0,  # not recorded by the old system
                    request_headers="{}",  # nor were the headers
                    request_body=_text(log["request_payload"]) or "",
                    response_status=code,
                    response_headers=None,
                    response_body=_text(log["response_body"]),
                    error_class=_error_class(code, ok),
                    error=_clip(log["error_message"], 500),
                    next_attempt_at=None,
                )
            )
        last_at, last = tries[-1]
        last_ok = _log_success(last)
        last_code = int(last["response_code"]) if last["response_code"] else None
        url = _clip(first["webhook_url"], 500) or payment.webhook_url or "(unknown: not in the old log)"
        plan.deliveries.append(
            Delivery(
                id=delivery_id,
                event_id=event_id,
                payment_id=payment.id,
                merchant_id=payment.merchant_id,
                url=url,
                # Final either way: the dispatcher only claims pending rows, so history is never re-sent.
                status=DeliveryStatus.SUCCEEDED if delivered_at else DeliveryStatus.FAILED,
                attempt_count=len(tries),
                max_attempts=len(tries),
                next_attempt_at=None,
                lease_owner=None,
                last_status_code=last_code,
                last_error_class=_error_class(last_code, last_ok),
                last_error=_clip(last["error_message"], 500),
                created_at=first_at,
                updated_at=last_at,
                delivered_at=delivered_at,
            )
        )
        plan.log_rows += len(tries)
    payment.last_sequence = len(sends)


# --- the import -----------------------------------------------------------------------------


def _check_timezone(tz: ZoneInfo, report: ImportReport) -> None:
    if tz.key == "Asia/Almaty" and datetime(2024, 6, 1, tzinfo=tz).utcoffset() != timedelta(hours=5):
        report.warnings.append(
            "this machine's tz database predates 2024a (Almaty is UTC+5 since 2024-03-01): times after that date "
            "come out an hour off; update tzdata and run again into an empty database"
        )


async def _existing(session: AsyncSession, column: Any, values: Iterable[Any]) -> set[Any]:
    values = list(values)
    if not values:
        return set()
    return set(await session.scalars(select(column).where(column.in_(values))))


async def _write(target: Database, stages: Sequence[Sequence[Base]], opts: Options) -> None:
    """Insert parents before children, one flush per stage: without ORM relationships the unit
    of work does not know the foreign keys, and PostgreSQL checks them at once."""
    if opts.dry_run or not any(stages):
        return
    async with target.transaction() as session:
        for rows in stages:
            if rows:
                session.add_all(rows)
                await session.flush()


async def _import_merchants(
    source: LegacySource, target: Database, report: ImportReport, opts: Options
) -> dict[int, str]:
    rows = await source.rows("sources", MERCHANT_COLUMNS, "ORDER BY `id`")
    tokens = {int(r["id"]): (_text(r["api_token"]) or "").strip() for r in rows}
    async with target.reading() as session:
        present = await _existing(session, Merchant.id, (merchant_id(sid) for sid in tokens))
        issued = {
            t.id: t
            for t in await session.scalars(select(ApiToken).where(ApiToken.id.in_([token_id(s) for s in tokens])))
        }
        digests = [hash_token(t) for t in tokens.values() if t]
        by_hash: dict[str, str] = {}
        if digests:
            found = await session.execute(
                select(ApiToken.token_hash, ApiToken.id).where(ApiToken.token_hash.in_(digests))
            )
            by_hash = {digest: tid for digest, tid in found.all()}
    tz = ZoneInfo(opts.source_timezone)
    now = utcnow()
    merchants: dict[int, str] = {}
    new_merchants: list[Base] = []
    new_tokens: list[Base] = []
    unused_urls: list[str] = []
    for row in rows:
        sid = int(row["id"])
        mid = merchants[sid] = merchant_id(sid)
        if ips := parse_allowed_ips(row["allowed_ips"]):
            report.allowed_ips[mid] = ips
        url = _clip(row["webhook_url"], 500)
        if url and not opts.merchant_webhook_urls:
            unused_urls.append(f"{mid} {url}")
        if mid in present:
            report.merchants_present += 1
        else:
            report.merchants += 1
            new_merchants.append(
                Merchant(
                    id=mid,
                    name=_clip(row["name"], 200) or f"Legacy source {sid}",
                    webhook_url=url if opts.merchant_webhook_urls else None,
                    signing_secret=new_signing_secret(),
                    previous_signing_secret=None,
                    previous_secret_expires_at=None,
                    default_provider=opts.default_provider,
                    is_active=_flag(row["is_active"], True),
                    created_at=parse_time(row["created_at"], tz) or now,
                    # Its integration keeps working unchanged: the old shapes, codes and formats,
                    # and the old "paid within 10 KZT" rule (docs/migrating.md).
                    api_version=versions.LEGACY,
                    underpayment_tolerance=LEGACY_UNDERPAYMENT_TOLERANCE,
                )
            )
        token, tid = tokens[sid], token_id(sid)
        if not token:
            report.skip("sources", sid, "no api_token: the merchant is imported without a token")
        elif tid in issued:
            report.tokens_present += 1
            if issued[tid].token_hash != hash_token(token):
                report.warnings.append(f"{tid}: the old api_token changed since the last import; not updated")
        elif hash_token(token) in by_hash:
            report.skip("sources", sid, f"its api_token is already paycenter token {by_hash[hash_token(token)]}")
        else:
            report.tokens += 1
            new_tokens.append(
                ApiToken(
                    id=tid,
                    merchant_id=mid,
                    name="legacy api_token",
                    prefix=token[:8],
                    token_hash=hash_token(token),
                    created_at=now,
                    revoked_at=None,
                )
            )
    if unused_urls:
        report.warnings.append(
            "sources.webhook_url was not made the merchants' default webhook URL (the old system never used it; "
            "--merchant-webhook-urls does): " + "; ".join(unused_urls)
        )
    await _write(target, [new_merchants, new_tokens], opts)
    return merchants


def _terminal_url(ip_address: str, port: object) -> str:
    url = ip_address.strip().rstrip("/")
    if "://" not in url:
        url = "https://" + url  # terminals serve HTTPS
    host = url.split("://", 1)[1].split("/", 1)[0]
    if port not in (None, "", 0) and ":" not in host:
        url = f"{url}:{int(str(port))}"
    return url


async def _import_terminals(source: LegacySource, target: Database, report: ImportReport, opts: Options) -> set[int]:
    if not source.has("kaspi_terminals"):
        return set()
    rows = await source.rows("kaspi_terminals", TERMINAL_COLUMNS, "ORDER BY `id`")
    async with target.reading() as session:
        pool = dict((await session.execute(select(Terminal.id, Terminal.name))).all())
    names = set(pool.values())
    tz = ZoneInfo(opts.source_timezone)
    known: set[int] = set()
    new: list[Base] = []
    cameras: list[str] = []
    for row in rows:
        tid = int(row["id"])
        if terminal_id(tid) in pool:
            report.terminals_present += 1
            known.add(tid)
            continue
        name = _clip(row["name"], 100) or f"legacy-{tid}"
        address = (_text(row["ip_address"]) or "").strip()
        token = (_text(row["access_token"]) or "").strip()
        if not address or not token:
            report.skip("kaspi_terminals", tid, "no ip_address or access_token")
            continue
        if name in names:
            report.skip("kaspi_terminals", tid, f"paycenter already has a terminal named {name!r}")
            continue
        names.add(name)
        if _clip(row["camera_id"], 100):
            cameras.append(name)
        known.add(tid)
        report.terminals += 1
        new.append(
            Terminal(
                id=terminal_id(tid),
                name=name,
                base_url=_terminal_url(address, row["port"]),
                access_token=token[:200],
                camera_url=None,
                is_active=_flag(row["is_active"], True),
                busy_with=None,
                busy_since=None,
                last_used_at=parse_time(row["last_used"], tz),
                health=None,
                last_checked_at=None,
                last_error=None,
                created_at=parse_time(row["created_at"], tz) or utcnow(),
            )
        )
    if cameras:
        report.warnings.append(
            "terminals with an old camera_id got no camera URL (the old camera service is addressed differently; "
            f"add it by hand if it is kept): {', '.join(cameras)}"
        )
    await _write(target, [new], opts)
    return known


async def _compare_methods(source: LegacySource, target: Database, report: ImportReport) -> dict[int, str]:
    """Old payment method ids -> codes; and a warning where paycenter prices a method otherwise.

    The old system added the fee on top for methods with add_commission_to_amount (the payer
    covered it); paycenter's seeded methods have the merchant carry it. The operator decides:
    nothing here changes paycenter's methods.
    """
    rows = await source.rows("payment_methods", METHOD_COLUMNS, "ORDER BY `id`")
    async with target.reading() as session:
        ours = {m.code: m for m in await session.scalars(select(PaymentMethod))}
    codes: dict[int, str] = {}
    for row in rows:
        code = (_text(row["code"]) or "").strip()
        codes[int(row["id"])] = code
        mine = ours.get(code)
        if mine is None:
            if code:
                report.warnings.append(f"old payment method {code!r} has no paycenter counterpart")
            continue
        fixes = []
        try:
            percent = Decimal(str(row["commission_percent"])) if row["commission_percent"] is not None else None
        except InvalidOperation:
            percent = None
        if percent is not None and percent * 100 != mine.fee_bp:
            fixes.append(f"--fee {percent.normalize():f}")
        if row["add_commission_to_amount"] is not None:
            payer = _flag(row["add_commission_to_amount"], False)
            if payer != mine.payer_covers_fee:
                fixes.append("--payer-covers-fee" if payer else "--merchant-covers-fee")
        if fixes:
            report.warnings.append(
                f"payment method {code} is priced differently than in the old system; to keep the old pricing: "
                f"paycenter payment-method set {code} {' '.join(fixes)}"
            )
    return codes


def _differs(existing: dict[str, Any], planned: Payment) -> bool:
    if any(existing[name] != getattr(planned, name) for name in COMPARED):
        return True
    return (existing["metadata_"] or {}) != (planned.metadata_ or {})


async def _import_batch(
    source: LegacySource,
    target: Database,
    rows: list[dict[str, Any]],
    ctx: PlanContext,
    report: ImportReport,
    opts: Options,
) -> None:
    ids = [int(r["id"]) for r in rows]
    partials = await source.children("partial_payments", PARTIAL_COLUMNS, ids)
    logs = await source.children("webhook_logs", LOG_COLUMNS, ids)
    plans: list[PaymentPlan] = []
    for row in rows:
        legacy_id = int(row["id"])
        claimed = dict(ctx.txn_ids)
        try:
            plans.append(plan_payment(row, partials.get(legacy_id, []), logs.get(legacy_id, []), ctx))
        except BadRow as exc:
            ctx.txn_ids = claimed  # a skipped payment holds no terminal transaction ids
            report.skip("transactions", legacy_id, str(exc))
    present: dict[str, dict[str, Any]] = {}
    taken: dict[str, str] = {}
    async with target.reading() as session:
        if plans:
            # Only the compared columns: a re-run never needs to decrypt anybody's webhook secret.
            columns = [getattr(Payment, name) for name in ("id", *COMPARED, "metadata_")]
            found = await session.execute(select(*columns).where(Payment.id.in_([p.payment.id for p in plans])))
            present = {row.id: dict(row._mapping) for row in found}
        txns = [op.provider_txn_id for p in plans if p.payment.id not in present for op in p.operations]
        if txns:
            held = await session.execute(
                select(Operation.provider_txn_id, Operation.id).where(
                    Operation.provider == PROVIDER, Operation.provider_txn_id.in_(txns)
                )
            )
            taken = {txn: op_id for txn, op_id in held.all()}
    stages: list[list[Base]] = [[] for _ in range(7)]
    for plan in plans:
        payment = plan.payment
        if payment.id in present:
            report.payments_present += 1
            if _differs(present[payment.id], payment):
                report.payments_differing.append(payment.id)
            continue
        for op in plan.operations:
            holder = taken.get(op.provider_txn_id)
            if holder is not None and holder != op.id:
                fallback = "legacy-pp-" + op.id.removeprefix("op_legacy_")
                plan.warnings.append(
                    f"{op.id}: terminal transactionId {op.provider_txn_id} is already paycenter operation {holder}; "
                    f"imported as {fallback}"
                )
                op.provider_txn_id = fallback
        report.payments[payment.status] += 1
        report.operations += len(plan.operations)
        report.refunds += len(plan.refunds)
        report.webhook_events += len(plan.events)
        report.webhook_deliveries += len(plan.deliveries)
        report.webhook_logs += plan.log_rows
        for log_id, reason in plan.skipped_logs:
            report.skip("webhook_logs", log_id, reason)
        report.warnings.extend(f"transaction {plan.legacy_id} ({payment.id}): {w}" for w in plan.warnings)
        if payment.status in PAYABLE and payment.expires_at <= ctx.now:
            report.overdue_payable += 1
        groups: tuple[Sequence[Base], ...] = (
            [payment],
            plan.operations,
            plan.refunds,
            plan.legs,
            plan.events,
            plan.deliveries,
            plan.attempts,
        )
        for stage, items in enumerate(groups):
            stages[stage].extend(items)
    await _write(target, stages, opts)


async def import_legacy(
    source_url: str, target: Database, *, options: Options | None = None, now: datetime | None = None
) -> ImportReport:
    """Copy the old system's rows into ``target`` (already migrated). Running it again changes nothing."""
    opts = options or Options()
    report = ImportReport(dry_run=opts.dry_run)
    try:
        tz = ZoneInfo(opts.source_timezone)
    except (ValueError, KeyError):
        raise LegacyImportError(f"unknown time zone {opts.source_timezone!r}") from None
    _check_timezone(tz, report)
    if make_url(source_url).get_backend_name() not in ("mysql", "mariadb"):
        raise LegacyImportError("the source must be the old system's MySQL/MariaDB database (mysql://...)")
    # REPEATABLE READ: every query of the one transaction below reads the same snapshot.
    engine = create_engine(source_url, isolation_level="REPEATABLE READ", poolclass=NullPool)
    try:
        try:
            conn = await engine.connect()
        except DBAPIError as exc:
            raise LegacyImportError(f"cannot connect to the source database: {exc.orig}") from None
        try:
            async with conn.begin():
                source = LegacySource(conn)
                await source.inspect()
                merchants = await _import_merchants(source, target, report, opts)
                terminals = await _import_terminals(source, target, report, opts)
                methods = await _compare_methods(source, target, report)
                ctx = PlanContext(tz=tz, now=now or utcnow(), merchants=merchants, terminals=terminals, methods=methods)
                after = 0
                while rows := await source.transactions_after(after, opts.batch_size):
                    await _import_batch(source, target, rows, ctx, report, opts)
                    after = int(rows[-1]["id"])
                for table in ("partial_payments", "webhook_logs"):
                    for orphan in await source.orphans(table):
                        report.skip(table, orphan, "its transaction does not exist")
        finally:
            await conn.close()
    finally:
        await engine.dispose()
    return report
