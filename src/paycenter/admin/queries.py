"""Read-only queries behind the admin pages."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from paycenter import pagination, storable
from paycenter.db import is_payment_id
from paycenter.errors import Unprocessable
from paycenter.money import MoneyError, to_minor, typed
from paycenter.operators.models import AuditEntry
from paycenter.payments.models import BillerTransaction, Event, Payment, PaymentStatus
from paycenter.webhooks.models import Delivery, DeliveryStatus

ALMATY = ZoneInfo("Asia/Almaty")
SUCCESS = (PaymentStatus.PAID, PaymentStatus.REFUNDED)
# The days the transaction filters take.
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(9998, 12, 31)


@dataclass
class Period:
    count: int = 0
    by_status: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    volume: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # currency -> paid minor units

    @property
    def conversion(self) -> float:
        done = sum(self.by_status.get(s, 0) for s in SUCCESS)
        return done / self.count if self.count else 0.0


@dataclass
class Dashboard:
    today: Period
    month: Period
    daily: list[tuple[date, dict[str, int]]]  # oldest first: day -> currency -> volume
    webhooks_succeeded: int
    webhooks_failed: int
    webhooks_pending: int

    @property
    def webhook_success_rate(self) -> float | None:
        done = self.webhooks_succeeded + self.webhooks_failed
        return self.webhooks_succeeded / done if done else None


async def dashboard(session: AsyncSession, *, now: datetime) -> Dashboard:
    """Today (Almaty) and the last 30 days: counts by status, paid volume, webhook health.

    Rows of the last 30 days are folded here rather than grouped by day in SQL, where every
    backend spells "the day in Almaty" differently.
    """
    local_today = now.astimezone(ALMATY).date()
    start_day = local_today - timedelta(days=29)
    since = datetime.combine(start_day, datetime.min.time(), ALMATY)
    rows = await session.execute(
        select(Payment.created_at, Payment.status, Payment.currency, Payment.paid_amount).where(
            Payment.created_at >= since
        )
    )
    today, month = Period(), Period()
    per_day: dict[date, dict[str, int]] = {start_day + timedelta(days=i): defaultdict(int) for i in range(30)}
    for created_at, status, currency, paid in rows:
        day = created_at.astimezone(ALMATY).date()
        for period, include in ((month, True), (today, day == local_today)):
            if include:
                period.count += 1
                period.by_status[status] += 1
                period.volume[currency] += paid
        if day in per_day:
            per_day[day][currency] += paid
    counts = dict(
        (
            await session.execute(
                select(Delivery.status, func.count()).where(Delivery.created_at >= since).group_by(Delivery.status)
            )
        ).all()
    )
    return Dashboard(
        today=today,
        month=month,
        daily=sorted(per_day.items()),
        webhooks_succeeded=int(counts.get(DeliveryStatus.SUCCEEDED, 0)),
        webhooks_failed=int(counts.get(DeliveryStatus.FAILED, 0)),
        webhooks_pending=int(counts.get(DeliveryStatus.PENDING, 0)),
    )


@dataclass
class Filters:
    status: str = ""
    merchant: str = ""
    provider: str = ""
    date_from: str = ""
    date_to: str = ""
    min_amount: str = ""
    max_amount: str = ""
    q: str = ""

    @classmethod
    def of(cls, params: Any) -> Filters:
        return cls(**{name: str(params.get(name) or "").strip()[:200] for name in cls.__dataclass_fields__})

    def query(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v}

    def statement(self) -> Select[Payment]:
        """The filtered query. Every filter is checked here, before any query runs: a bad one is
        an Unprocessable with the reason to show, never an error from the database."""
        for name, value in self.__dict__.items():
            found = storable.text_problem(value)
            if found:
                raise Unprocessable(f"{name} {found}")
        stmt = select(Payment)
        if self.status:
            if self.status not in set(PaymentStatus):
                raise Unprocessable(f"status {self.status!r} is not one of {', '.join(PaymentStatus)}")
            stmt = stmt.where(Payment.status == self.status)
        if self.merchant:
            stmt = stmt.where(Payment.merchant_id == self.merchant)
        if self.provider:
            stmt = stmt.where(Payment.provider == self.provider)
        for value, op in ((self.date_from, "from"), (self.date_to, "to")):
            if value:
                try:
                    day = date.fromisoformat(value)
                except ValueError:
                    raise Unprocessable(f"date {value!r} must be YYYY-MM-DD") from None
                if not FIRST_DAY <= day <= LAST_DAY:
                    # Beyond these the day's edge in UTC leaves Python's range or the database's.
                    raise Unprocessable(f"date {value!r} must be between {FIRST_DAY} and {LAST_DAY}")
                edge = datetime.combine(day + timedelta(days=1 if op == "to" else 0), datetime.min.time(), ALMATY)
                stmt = stmt.where(Payment.created_at >= edge if op == "from" else Payment.created_at < edge)
        for value, op in ((self.min_amount, "min"), (self.max_amount, "max")):
            if value:
                try:
                    # Compared in KZT minor units: amounts are per currency, and KZT is the norm here.
                    minor = to_minor(typed(value), "KZT")
                except MoneyError as exc:
                    raise Unprocessable(f"amount {value!r}: {exc}") from None
                stmt = stmt.where(Payment.amount >= minor if op == "min" else Payment.amount <= minor)
        if self.q:
            text = self.q
            conds = [Payment.order_id == text, Payment.metadata_user_id == text]
            if is_payment_id(text.upper()):
                conds.append(Payment.id == text.upper())
            escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            # ilike: PostgreSQL's LIKE alone minds the case, where SQLite and MariaDB do not.
            conds.append(Payment.description.ilike(f"%{escaped}%", escape="\\"))
            stmt = stmt.where(or_(*conds))
        return stmt


async def transactions(
    session: AsyncSession, filters: Filters, *, cursor: str | None, limit: int = 50
) -> tuple[list[Payment], str | None]:
    rows, next_cursor = await pagination.page(
        session,
        filters.statement(),
        created_col=Payment.created_at,
        id_col=Payment.id,
        limit=limit,
        cursor=cursor,
    )
    return list(rows), next_cursor


async def deliveries(
    session: AsyncSession, *, status: str | None, merchant: str | None, cursor: str | None, limit: int = 50
) -> tuple[list[Delivery], str | None]:
    stmt = select(Delivery)
    if status:
        if status not in set(DeliveryStatus):
            raise Unprocessable(f"status {status!r} is not one of {', '.join(DeliveryStatus)}")
        stmt = stmt.where(Delivery.status == status)
    if merchant:
        found = storable.text_problem(merchant)
        if found:
            raise Unprocessable(f"merchant {found}")
        stmt = stmt.where(Delivery.merchant_id == merchant)
    rows, next_cursor = await pagination.page(
        session,
        stmt,
        created_col=Delivery.created_at,
        id_col=Delivery.id,
        limit=limit,
        cursor=cursor,
    )
    return list(rows), next_cursor


async def event_types(session: AsyncSession, event_ids: list[str]) -> dict[str, str]:
    """The type of each of these events, by event id."""
    return dict((await session.execute(select(Event.id, Event.type).where(Event.id.in_(event_ids)))).all())


async def delivery(session: AsyncSession, delivery_id: str) -> Delivery | None:
    return await session.get(Delivery, delivery_id)


@dataclass(frozen=True)
class BillerPay:
    """One ``pay`` Kaspi sent for a payment (provider kaspi_biller); ``prv_txn`` is our number for
    it, the one Kaspi was answered with."""

    prv_txn: int
    txn_id: str
    account: str
    amount: int
    txn_date: datetime | None
    result: int
    created_at: datetime


async def biller_pays(session: AsyncSession, payment_id: str) -> list[BillerPay]:
    """The ``pay`` requests Kaspi sent for this payment, oldest first (not their stored replies)."""
    t = BillerTransaction
    rows = await session.execute(
        select(t.id, t.txn_id, t.account, t.amount, t.txn_date, t.result, t.created_at)
        .where(t.payment_id == payment_id)
        .order_by(t.created_at, t.id)
    )
    return [BillerPay(*row) for row in rows]


async def audit_entries(session: AsyncSession, *, limit: int = 500) -> list[AuditEntry]:
    """The newest entries of the audit log, newest first."""
    return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.at.desc()).limit(limit)))
