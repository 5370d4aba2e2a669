"""Read-only queries over payments: listing with a keyset cursor, and statistics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from paycenter import pagination
from paycenter.db import is_payment_id
from paycenter.errors import Unprocessable
from paycenter.payments.models import Attempt, Event, Operation, Payment, PaymentStatus, Refund


def parse_statuses(value: str | None) -> list[str] | None:
    if not value:
        return None
    statuses = [s.strip() for s in value.split(",") if s.strip()]
    known = {s.value for s in PaymentStatus}
    bad = [s for s in statuses if s not in known]
    if bad:
        message = f"unknown status {bad[0]!r}; use {', '.join(sorted(known))}"
        raise Unprocessable(message, fields=[{"field": "status", "message": message}])
    return statuses


def as_utc(value: datetime | None, field: str) -> datetime | None:
    """A filter's datetime in UTC (naive means UTC). Near ``datetime.min``/``max`` the shift to
    UTC leaves Python's range (``0001-01-01T00:00+01:00``): bad input, a 422, not a 500."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        message = f"{field} is out of range"
        raise Unprocessable(message, fields=[{"field": field, "message": message}]) from None


def text_filter(value: str | None, field: str) -> str | None:
    """A free-text filter. Stored text never holds NUL (PostgreSQL cannot), so refuse it up front
    rather than let PostgreSQL fail the query while SQLite and MariaDB answer."""
    if value is not None and "\x00" in value:
        message = f"{field} must not contain NUL characters"
        raise Unprocessable(message, fields=[{"field": field, "message": message}])
    return value


@dataclass(frozen=True)
class TransactionFilter:
    merchant_id: str
    statuses: list[str] | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    order_id: str | None = None

    def conditions(self) -> list[Any]:
        conds: list[Any] = [Payment.merchant_id == self.merchant_id]
        if self.statuses:
            conds.append(Payment.status.in_(self.statuses))
        if self.created_from:
            conds.append(Payment.created_at >= self.created_from)
        if self.created_to:
            conds.append(Payment.created_at < self.created_to)
        if self.order_id is not None:
            conds.append(Payment.order_id == self.order_id)
        return conds


async def list_payments(
    session: AsyncSession, flt: TransactionFilter, *, limit: int, cursor: str | None
) -> tuple[Sequence[Payment], str | None]:
    return await pagination.page(
        session,
        select(Payment).where(*flt.conditions()),
        created_col=Payment.created_at,
        id_col=Payment.id,
        limit=limit,
        cursor=cursor,
        valid_id=is_payment_id,
    )


async def history(session: AsyncSession, payment_id: str) -> dict[str, list[Any]]:
    """Attempts, operations, refunds and events of one payment, oldest first."""

    async def rows(model: Any, order: Any) -> list[Any]:
        return list(await session.scalars(select(model).where(model.payment_id == payment_id).order_by(order)))

    return {
        "attempts": await rows(Attempt, Attempt.created_at),
        "operations": await rows(Operation, Operation.created_at),
        "refunds": await rows(Refund, Refund.created_at),
        "events": await rows(Event, Event.sequence),
    }


@dataclass(frozen=True)
class CurrencyStats:
    currency: str
    count: int
    amount: int
    paid_amount: int
    refunded_amount: int


async def statistics(session: AsyncSession, flt: TransactionFilter) -> tuple[dict[str, int], list[CurrencyStats]]:
    conds = flt.conditions()
    by_status_rows = await session.execute(select(Payment.status, func.count()).where(*conds).group_by(Payment.status))
    by_status = {status: int(count) for status, count in by_status_rows}
    currency_rows = await session.execute(
        select(
            Payment.currency,
            func.count(),
            func.coalesce(func.sum(Payment.amount), 0),
            func.coalesce(func.sum(Payment.paid_amount), 0),
            func.coalesce(func.sum(Payment.refunded_amount), 0),
        )
        .where(*conds)
        .group_by(Payment.currency)
        .order_by(Payment.currency)
    )
    currencies = [
        CurrencyStats(cur, int(n), int(amount), int(paid), int(refunded))
        for cur, n, amount, paid, refunded in currency_rows
    ]
    return by_status, currencies
