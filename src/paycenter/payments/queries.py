"""Read-only queries over payments: listing (a keyset cursor, or offsets for the ``legacy`` API
version), one payment's history, and statistics."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from paycenter import pagination
from paycenter.errors import Unprocessable
from paycenter.money import ABSOLUTE_MAX_MINOR, currencies_by_exponent
from paycenter.payments.models import (
    Attempt,
    Event,
    Operation,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Refund,
    RefundLeg,
    RefundStatus,
)
from paycenter.timefmt import almaty_day_end, almaty_day_start
from paycenter.webhooks.models import Delivery, DeliveryAttempt

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


def _minor_bound(major: Decimal, exp: int, rounding: str) -> int:
    minor = int(major.scaleb(exp).to_integral_value(rounding=rounding))
    return max(-ABSOLUTE_MAX_MINOR, min(ABSOLUTE_MAX_MINOR, minor))


def _amount_condition(major: Decimal, compare: Callable[[Any, int], Any], rounding: str) -> Any:
    """``amount`` compared with an amount in major units, whatever each payment's currency's minor
    digits (most have 2; the others are listed)."""
    groups = currencies_by_exponent()
    others = [code for exp, codes in groups.items() if exp != 2 for code in codes]
    parts = [and_(Payment.currency.not_in(others), compare(Payment.amount, _minor_bound(major, 2, rounding)))]
    parts += [
        and_(Payment.currency.in_(codes), compare(Payment.amount, _minor_bound(major, exp, rounding)))
        for exp, codes in groups.items()
        if exp != 2
    ]
    return or_(*parts)


@dataclass(frozen=True)
class TransactionFilter:
    """Which of a merchant's payments a listing or the statistics cover. ``date_from``/``date_to``
    are calendar days in Asia/Almaty (the old API's ``DATE(created_at)``), both included;
    ``amount_from``/``amount_to`` are major units compared with ``amount``, both included."""

    merchant_id: str
    statuses: list[str] | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    order_id: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    amount_from: Decimal | None = None
    amount_to: Decimal | None = None

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
        if self.date_from is not None:
            conds.append(Payment.created_at >= almaty_day_start(self.date_from))
        if self.date_to is not None:
            conds.append(Payment.created_at < almaty_day_end(self.date_to))
        if self.amount_from is not None:
            conds.append(_amount_condition(self.amount_from, operator.ge, ROUND_CEILING))
        if self.amount_to is not None:
            conds.append(_amount_condition(self.amount_to, operator.le, ROUND_FLOOR))
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


async def list_payments_offset(
    session: AsyncSession, flt: TransactionFilter, *, limit: int, offset: int
) -> tuple[Sequence[Payment], int]:
    """One page by offset, newest first, and how many match in all (the ``legacy`` listing)."""
    conds = flt.conditions()
    total = int(await session.scalar(select(func.count()).select_from(Payment).where(*conds)) or 0)
    if limit <= 0 or offset >= total:
        return [], total
    stmt = (
        select(Payment).where(*conds).order_by(Payment.created_at.desc(), Payment.id.desc()).limit(limit).offset(offset)
    )
    return list(await session.scalars(stmt)), total


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


# --- the legacy API version's views of the same rows ------------------------------------------


@dataclass(frozen=True)
class PaidPart:
    """Money received (an operation) with how much of it went back, as the old partial payment."""

    operation: Operation
    refunded: int
    refunded_at: datetime | None


@dataclass(frozen=True)
class WebhookTry:
    event_type: str
    response_code: int | None
    succeeded: bool
    created_at: datetime


async def paid_parts(session: AsyncSession, payment_id: str) -> list[PaidPart]:
    """The payment's operations, oldest first, each with what succeeded refund legs returned."""
    operations = list(
        await session.scalars(
            select(Operation).where(Operation.payment_id == payment_id).order_by(Operation.created_at, Operation.id)
        )
    )
    refunded = {
        op_id: (int(total or 0), last)
        for op_id, total, last in await session.execute(
            select(RefundLeg.operation_id, func.sum(RefundLeg.amount), func.max(RefundLeg.completed_at))
            .join(Operation, Operation.id == RefundLeg.operation_id)
            .where(Operation.payment_id == payment_id, RefundLeg.status == RefundStatus.SUCCEEDED)
            .group_by(RefundLeg.operation_id)
        )
    }
    return [PaidPart(op, *refunded.get(op.id, (0, None))) for op in operations]


async def webhook_tries(session: AsyncSession, payment_id: str) -> list[WebhookTry]:
    """Every HTTP try of the payment's webhooks, newest first."""
    rows = await session.execute(
        select(Event.type, DeliveryAttempt.response_status, DeliveryAttempt.started_at)
        .join(Delivery, Delivery.id == DeliveryAttempt.delivery_id)
        .join(Event, Event.id == Delivery.event_id)
        .where(Delivery.payment_id == payment_id)
        .order_by(DeliveryAttempt.started_at.desc(), DeliveryAttempt.id.desc())
    )
    return [
        WebhookTry(event_type, code, code is not None and 200 <= code < 300, started)
        for event_type, code, started in rows
    ]


@dataclass(frozen=True)
class LegacyTotals:
    """Sums in minor units, per currency, for the old ``/api/statistics``."""

    currency: str
    count: int
    paid_count: int
    partially_paid_count: int
    cancelled_count: int
    paid_amount: int
    received_amount: int
    fee_amount: int
    refunded_amount: int


@dataclass(frozen=True)
class MethodTotals:
    code: str | None
    name: str | None
    currency: str
    count: int
    amount: int
    fee: int


async def legacy_statistics(
    session: AsyncSession, flt: TransactionFilter
) -> tuple[list[LegacyTotals], int, list[MethodTotals]]:
    """Per-currency totals of the payments, the number of their refunds that returned money, and
    the money received per payment method."""
    conds = flt.conditions()

    def count_of(status: PaymentStatus) -> Any:
        return func.coalesce(func.sum(case((Payment.status == status.value, 1), else_=0)), 0)

    rows = await session.execute(
        select(
            Payment.currency,
            func.count(),
            count_of(PaymentStatus.PAID),
            count_of(PaymentStatus.PARTIALLY_PAID),
            count_of(PaymentStatus.CANCELLED),
            func.coalesce(func.sum(Payment.paid_amount), 0),
            func.coalesce(func.sum(Payment.received_amount), 0),
            func.coalesce(func.sum(Payment.fee_amount), 0),
            func.coalesce(func.sum(Payment.refunded_amount), 0),
        )
        .where(*conds)
        .group_by(Payment.currency)
        .order_by(Payment.currency)
    )
    totals = [LegacyTotals(row[0], *(int(v) for v in row[1:])) for row in rows]
    refund_count = int(
        await session.scalar(
            select(func.count())
            .select_from(Refund)
            .join(Payment, Payment.id == Refund.payment_id)
            .where(*conds, Refund.refunded_amount > 0)
        )
        or 0
    )
    methods = await session.execute(
        select(
            Operation.payment_method,
            PaymentMethod.name,
            Payment.currency,
            func.count(),
            func.coalesce(func.sum(Operation.amount), 0),
            func.coalesce(func.sum(Operation.fee), 0),
        )
        .join(Payment, Payment.id == Operation.payment_id)
        .outerjoin(PaymentMethod, PaymentMethod.code == Operation.payment_method)
        .where(*conds)
        .group_by(Operation.payment_method, PaymentMethod.name, Payment.currency)
        .order_by(Operation.payment_method, Payment.currency)
    )
    by_method = [MethodTotals(code, name, cur, int(n), int(a), int(f)) for code, name, cur, n, a, f in methods]
    return totals, refund_count, by_method


async def payment_methods(session: AsyncSession) -> list[PaymentMethod]:
    """Every payment method, inactive ones too, in the order payers see them."""
    return list(await session.scalars(select(PaymentMethod).order_by(PaymentMethod.sort_order)))
