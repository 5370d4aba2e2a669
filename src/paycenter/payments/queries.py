"""Read-only queries over payments: listing with a keyset cursor, and statistics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from paycenter import pagination
from paycenter.errors import Unprocessable
from paycenter.payments.models import Attempt, Event, Operation, Payment, PaymentStatus, Refund

_STATUS = "(?:" + "|".join(s.value for s in PaymentStatus) + ")"
# Exactly what parse_statuses takes, for the document (paycenter.contract).
STATUSES_PATTERN = f"^(?:{_STATUS}(?:,{_STATUS})*)?$"


def parse_statuses(value: str | None) -> list[str] | None:
    if not value:
        return None
    statuses = value.split(",")
    known = {s.value for s in PaymentStatus}
    bad = [s for s in statuses if s not in known]
    if bad:
        message = f"unknown status {bad[0]!r}; use {', '.join(sorted(known))}"
        raise Unprocessable(message, fields=[{"field": "status", "message": message}])
    return statuses


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
