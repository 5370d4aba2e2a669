"""Payments' service: with ``attempts.py`` (an attempt's life), ``refunds.py`` (a refund's),
``accounts.py`` and ``biller.py`` (Kaspi biller accounts and pays) and ``links.py`` (payment
links), the only code that changes payments, attempts, operations, refunds and links
(tests/project/test_writes.py checks it); routers, jobs, the CLI and the admin call these.

Every function runs inside the caller's transaction and never commits. A change to a payment is
made while holding its row lock (``SELECT ... FOR UPDATE``; on SQLite the write transaction's
``BEGIN IMMEDIATE`` lock), and the events it causes are written before the caller commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, bindparam, delete, inspect, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from paycenter.db import insert_values, is_payment_id, new_id, new_payment_id, rowcount
from paycenter.errors import Conflict, NotFound, Unprocessable
from paycenter.merchants.models import Merchant
from paycenter.money import MoneyError, api_minor
from paycenter.payments import accounts, events, views
from paycenter.payments.models import (
    PAYABLE,
    Attempt,
    AttemptStatus,
    BillerAccount,
    EventType,
    Operation,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Refund,
    RefundLeg,
)
from paycenter.payments.schemas import PaymentInit
from paycenter.providers.kaspi_biller import CURRENCY as KASPI_BILLER_CURRENCY
from paycenter.providers.kaspi_biller import NAME as KASPI_BILLER
from paycenter.webhooks import service as webhooks
from paycenter.webhooks import ssrf


@dataclass(frozen=True)
class InitPolicy:
    """What the deployment allows a payment to ask for."""

    max_amount: Any
    default_expires_in: int
    providers: list[str]
    # Private networks a webhook URL may name (PAYCENTER_WEBHOOK_ALLOWED_NETWORKS); none by default.
    webhook_networks: list[ssrf.Network] = field(default_factory=list)
    # Digits of the accounts generated for Kaspi biller payments (PAYCENTER_KASPI_BILLER_ACCOUNT_DIGITS).
    account_digits: int = 10


def _metadata_key(metadata: dict[str, Any] | None, key: str) -> str | None:
    """A metadata value as searchable text (order_id, user_id)."""
    if not metadata or metadata.get(key) is None:
        return None
    value = metadata[key]
    return (value if isinstance(value, str) else str(value))[:500]


async def create_payment(
    session: AsyncSession,
    *,
    merchant: Merchant,
    data: PaymentInit,
    policy: InitPolicy,
    now: datetime,
    link_id: str | None = None,
) -> Payment:
    try:
        amount = api_minor(data.amount, data.currency or "KZT", max_major=policy.max_amount)
    except MoneyError as exc:
        raise Unprocessable(str(exc), fields=[{"field": "amount", "message": str(exc)}]) from None
    try:
        ssrf.check_webhook_url(data.webhook_url, policy.webhook_networks)
    except ValueError as exc:
        raise Unprocessable(str(exc), fields=[{"field": "webhook_url", "message": str(exc)}]) from None
    method = await preferred_method(session, data.payment_method_id)
    provider = provider_for(data.provider, merchant, policy)
    account = _account_for(data, provider, policy)
    # PaymentInit's metadata validator turns the old API's empty list into None: an object or None here.
    metadata = cast(dict[str, Any] | None, data.metadata)
    values: dict[str, Any] = dict(
        id=new_payment_id(),
        merchant_id=merchant.id,
        amount=amount,
        currency=data.currency,
        description=data.description,
        metadata_=data.metadata or {},
        order_id=_metadata_key(metadata, "order_id"),
        metadata_user_id=_metadata_key(metadata, "user_id"),
        customer_phone=data.customer_phone,
        customer_email=data.customer_email,
        customer_name=data.customer_name,
        # The merchant's text, not yarl's normal form: the merchant reads back what it sent (an IDN
        # host stays readable, a default port stays written), and storing the normal form would
        # add no safety, since the sender parses the text with the same yarl and the connector
        # judges the address of every connection anyway.
        webhook_url=data.webhook_url,
        webhook_secret=data.webhook_secret,
        success_url=data.success_url,
        fail_url=data.fail_url,
        language=data.language,
        payment_method=method,
        provider=provider,
        account=account,
        link_id=link_id,
        status=PaymentStatus.PENDING,
        paid_amount=0,
        fee_amount=0,
        received_amount=0,
        credited_amount=0,
        paid_late=False,
        refunded_amount=0,
        last_sequence=0,
        expires_at=now + timedelta(seconds=data.expires_in or policy.default_expires_in),
        created_at=now,
        updated_at=now,
    )
    # One INSERT, without the unit of work's overhead or the mapped constructor's.
    payment = await insert_values(session, Payment, values)
    set_committed_value(payment, "has_webhook_secret", payment.__dict__.get("webhook_secret") is not None)
    if account is not None:
        # The row that makes Kaspi's check and pay find this payment, in the same transaction.
        if data.account is not None:
            await accounts.claim_own(session, payment, account=account, now=now)
        else:
            await accounts.claim_generated(session, payment, digits=policy.account_digits, now=now)
    return payment


def provider_for(requested: str | None, merchant: Merchant, policy: InitPolicy) -> str:
    """The provider a payment asking for ``requested`` gets: it, else the merchant's default, else
    the sandbox; ``Unprocessable`` when this deployment does not offer it."""
    provider = requested or merchant.default_provider or "sandbox"
    if provider not in policy.providers:
        message = f"provider {provider!r} is not available; use one of: {', '.join(policy.providers)}"
        raise Unprocessable(message, fields=[{"field": "provider", "message": message}])
    return provider


def _account_for(data: PaymentInit, provider: str, policy: InitPolicy) -> str | None:
    """The account a Kaspi biller payment is paid by: the merchant's own, or a generated candidate
    (``accounts.claim_generated`` draws another on a clash); None for other providers."""
    if provider != KASPI_BILLER:
        if data.account is not None:
            message = f"account is for provider {KASPI_BILLER} only, not {provider}"
            raise Unprocessable(message, fields=[{"field": "account", "message": message}])
        return None
    if data.currency != KASPI_BILLER_CURRENCY:
        message = f"provider {KASPI_BILLER} takes {KASPI_BILLER_CURRENCY} only"
        raise Unprocessable(message, fields=[{"field": "currency", "message": message}])
    return data.account if data.account is not None else accounts.generate(policy.account_digits)


async def preferred_method(session: AsyncSession, ref: int | str | None) -> str | None:
    """The code of the active method ``payment_method_id`` names (its old numeric id or its code).

    The old system added the method's fee to the amount at init, and again when the payer paid
    (1000 → 1010 → 1020.10). Here the payment keeps its amount and only remembers the method:
    the attempt grosses the fee up once, and only where the payer covers it."""
    if ref is None:
        return None
    by = PaymentMethod.legacy_id == ref if isinstance(ref, int) else PaymentMethod.code == ref
    code = await session.scalar(select(PaymentMethod.code).where(by, PaymentMethod.is_active.is_(True)))
    if code is None:
        message = f"Unknown payment method {ref!r}: see GET /api/payment-methods"
        raise Unprocessable(message, fields=[{"field": "payment_method_id", "message": message}])
    return code


async def set_method(
    session: AsyncSession,
    *,
    code: str,
    fee_bp: int | None = None,
    payer_covers_fee: bool | None = None,
    active: bool | None = None,
) -> dict[str, object]:
    """Change a payment method's fee, who carries it, or whether payers see it; returns what changed
    as {field: [before, after]}. Attempts keep the fee they were made with."""
    found = await session.get(PaymentMethod, code, with_for_update=True)
    if found is None:
        raise NotFound(f"Unknown payment method {code!r}", code="unknown_payment_method")
    changes: dict[str, object] = {}
    for name, value in (("fee_bp", fee_bp), ("payer_covers_fee", payer_covers_fee), ("is_active", active)):
        if value is not None and getattr(found, name) != value:
            changes[name] = [getattr(found, name), value]
            setattr(found, name, value)
    return changes


def _check_id(payment_id: str) -> None:
    # A malformed id names no payment. Not sending it to the database also keeps text PostgreSQL
    # refuses (a NUL character) from turning a 404 into a 500.
    if not is_payment_id(payment_id):
        raise NotFound("Payment not found")


async def get(session: AsyncSession, payment_id: str) -> Payment:
    """The payment, without its webhook secret (never loaded with it: see the model)."""
    _check_id(payment_id)
    payment = await session.get(Payment, payment_id)
    if payment is None:
        raise NotFound("Payment not found")
    return payment


async def get_with_api_version(session: AsyncSession, payment_id: str) -> tuple[Payment, str]:
    """The payment (as ``get``) and its merchant's API version, in one query: public reads render
    a payment the way its merchant's integration expects (``paycenter.versions``)."""
    _check_id(payment_id)
    row = (
        await session.execute(
            select(Payment, Merchant.api_version)
            .join(Merchant, Merchant.id == Payment.merchant_id)
            .where(Payment.id == payment_id)
        )
    ).first()
    if row is None:
        raise NotFound("Payment not found")
    return row[0], row[1]


# A public read (GET /api/payment/{id}, the hot path merchants and payment pages poll) as plain
# columns: exactly what views.public and views_legacy.public show, and the merchant's API version.
# Built once, and no ORM object per poll: loading all 33 columns into a Payment cost more CPU than
# the rest of the request's database work (issue 15, docs/benchmarks.md).
_PUBLIC_READ = (
    select(
        Payment.id,
        Payment.amount,
        Payment.currency,
        Payment.status,
        Payment.description,
        Payment.paid_amount,
        Payment.remaining_amount.label("remaining_amount"),
        Payment.refunded_amount,
        Payment.created_at,
        Payment.paid_at,
        Payment.expires_at,
        Payment.paid_late,
        Payment.account,
        Merchant.api_version,
    )
    .join(Merchant, Merchant.id == Payment.merchant_id)
    .where(Payment.id == bindparam("payment_id"))
)


async def get_public(conn: AsyncConnection, payment_id: str) -> tuple[views.Shown, str]:
    """What anyone may read of a payment (``views.Shown``), and its merchant's API version
    (on ``Database.read_row``'s connection)."""
    _check_id(payment_id)
    row = (await conn.execute(_PUBLIC_READ, {"payment_id": payment_id})).first()
    if row is None:
        raise NotFound("Payment not found")
    return cast(views.Shown, row), row.api_version


async def get_for_merchant(session: AsyncSession, *, merchant_id: str, payment_id: str) -> Payment:
    """A merchant sees only its own payments; another's is simply not found."""
    _check_id(payment_id)
    payment = await session.get(Payment, payment_id)
    if payment is None or payment.merchant_id != merchant_id:
        raise NotFound("Payment not found")
    return payment


async def lock(session: AsyncSession, payment_id: str, *, merchant_id: str | None = None) -> Payment:
    _check_id(payment_id)
    stmt = select(Payment).where(Payment.id == payment_id).with_for_update().execution_options(populate_existing=True)
    payment = (await session.execute(stmt)).scalar_one_or_none()
    if payment is None or (merchant_id is not None and payment.merchant_id != merchant_id):
        raise NotFound("Payment not found")
    return payment


async def lock_attempt(session: AsyncSession, attempt_id: str) -> tuple[Payment, Attempt] | None:
    """An attempt to change, by id, with its payment locked; None if there is no such attempt.

    The lock order, everywhere: the payment's row first (``lock``), then what hangs off it (its
    attempts, refund legs and refunds) and the terminal they hold; never the payment after a row
    below it (docs/architecture.md, "Locks"). The payment row is the one lock that serialises
    every change to its attempts, so the attempt is not locked itself but read again once the
    lock is held (``populate_existing``): a copy loaded earlier in the session may predate a
    change committed while this one waited."""
    payment_id = await session.scalar(select(Attempt.payment_id).where(Attempt.id == attempt_id))
    if payment_id is None:
        return None
    payment = await lock(session, payment_id)
    attempt = await session.get(Attempt, attempt_id, populate_existing=True)
    assert attempt is not None  # attempts are never deleted apart from their payment, locked now
    return payment, attempt


def touch(payment: Payment, status: PaymentStatus | str, now: datetime) -> str:
    """Set a payment's status; returns the previous one (for the event)."""
    previous = payment.status
    payment.status = str(status)
    payment.updated_at = now
    return previous


async def expire_if_due(session: AsyncSession, payment: Payment, *, now: datetime) -> bool:
    """Expire a locked payment whose time is up. Money already received stays with it."""
    if payment.status not in PAYABLE or payment.expires_at > now:
        return False
    await _close_live_attempts(session, payment, AttemptStatus.EXPIRED, now=now)
    previous = touch(payment, PaymentStatus.EXPIRED, now)
    await events.emit(
        session,
        payment,
        EventType.EXPIRED,
        previous_status=previous,
        now=now,
        extras={"expired_at": payment.expires_at, "partially_paid": payment.paid_amount > 0},
    )
    return True


async def _close_live_attempts(
    session: AsyncSession, payment: Payment, status: AttemptStatus, *, now: datetime
) -> None:
    live = await session.scalars(
        select(Attempt).where(Attempt.payment_id == payment.id, Attempt.status == AttemptStatus.LIVE)
    )
    for attempt in live:
        attempt.status = str(status)
        attempt.finished_at = now


async def cancel(session: AsyncSession, *, merchant_id: str, payment_id: str, reason: str, now: datetime) -> Payment:
    payment = await lock(session, payment_id, merchant_id=merchant_id)
    if await expire_if_due(session, payment, now=now):
        raise Conflict("Payment has expired and can no longer be cancelled")
    if payment.status not in PAYABLE:
        raise Conflict(f"Payment is {payment.status} and can no longer be cancelled")
    await _close_live_attempts(session, payment, AttemptStatus.CANCELLED, now=now)
    previous = touch(payment, PaymentStatus.CANCELLED, now)
    payment.cancelled_at = now
    await events.emit(
        session,
        payment,
        EventType.CANCELLED,
        previous_status=previous,
        now=now,
        extras={
            "reason": reason or "cancelled by merchant",
            "partially_paid": payment.paid_amount > 0,
            "payment_cancelled": True,
        },
    )
    return payment


async def track_visit(session: AsyncSession, *, payment_id: str, now: datetime) -> bool:
    """The payer opened the payment: the first visit is kept, later ones change nothing. True if
    this was the first. One guarded UPDATE, so two first visits at once still store one time."""
    _check_id(payment_id)
    result = await session.execute(
        update(Payment)
        .where(Payment.id == payment_id, Payment.first_visited_at.is_(None))
        .values(first_visited_at=now)
        .execution_options(synchronize_session=False)
    )
    if rowcount(result):
        return True
    if await session.scalar(select(Payment.id).where(Payment.id == payment_id)) is None:
        raise NotFound("Payment not found")
    return False


async def check_payable(session: AsyncSession, *, payment_id: str, now: datetime) -> Payment:
    """The payment, locked, if a payer may still pay it; else ``Conflict`` (expiring it first when
    its time is up, as starting an attempt does). Never makes a closed payment payable again."""
    payment = await lock(session, payment_id)
    if await expire_if_due(session, payment, now=now):
        raise Conflict("Payment has expired", code="expired")
    if payment.status not in PAYABLE:
        raise Conflict(f"Payment is {payment.status} and can no longer be paid")
    return payment


# --- attempts and money received ---------------------------------------------------------


async def open_attempt(
    session: AsyncSession, payment: Payment, *, amount: int, now: datetime, provider_ref: str | None = None
) -> Attempt:
    attempt = Attempt(
        id=new_id("att"),
        payment_id=payment.id,
        provider=payment.provider,
        amount=amount,
        status=AttemptStatus.LIVE,
        provider_ref=provider_ref,
        created_at=now,
    )
    session.add(attempt)
    return attempt


def finish_attempt(attempt: Attempt, status: AttemptStatus, *, now: datetime, error: str | None = None) -> None:
    attempt.status = str(status)
    attempt.finished_at = now
    attempt.error = error


async def find_operation(session: AsyncSession, *, provider: str, provider_txn_id: str) -> Operation | None:
    return await session.scalar(
        select(Operation).where(Operation.provider == provider, Operation.provider_txn_id == provider_txn_id)
    )


@dataclass(frozen=True)
class OperationResult:
    operation: Operation
    counted: bool  # False: this provider transaction was already recorded


async def record_operation(
    session: AsyncSession,
    payment: Payment,
    *,
    provider_txn_id: str,
    amount: int,
    now: datetime,
    fee: int = 0,
    attempt: Attempt | None = None,
    payment_method: str | None = None,
    terminal_id: str | None = None,
    payer_covers_fee: bool = False,
    paid_by: str | None = None,
) -> OperationResult:
    """Count money the provider says arrived, once per provider transaction id.

    The caller holds the payment locked. A repeat of a known provider transaction changes nothing.
    ``amount`` is gross (what the payer paid); ``fee`` is the bank's part of it. Where the payer
    was asked to cover the fee, only the net counts toward the payment's amount.
    """
    existing = await find_operation(session, provider=payment.provider, provider_txn_id=provider_txn_id)
    if existing is not None:
        if existing.payment_id != payment.id:
            # Not "already counted": the money was counted on another payment. Dropping it here
            # would leave this one silently unpaid; the caller's loop quarantines it instead.
            raise Conflict(
                f"{payment.provider} transaction {provider_txn_id!r} is already recorded on another payment",
                code="provider_transaction_clash",
            )
        return OperationResult(existing, counted=False)
    operation = Operation(
        id=new_id("op"),
        payment_id=payment.id,
        attempt_id=attempt.id if attempt else None,
        provider=payment.provider,
        provider_txn_id=provider_txn_id,
        amount=amount,
        fee=fee,
        net=amount - fee,
        credited=amount - fee if payer_covers_fee else amount,
        payment_method=payment_method,
        paid_by=paid_by,
        terminal_id=terminal_id,
        created_at=now,
    )
    session.add(operation)
    if attempt is not None:
        finish_attempt(attempt, AttemptStatus.SUCCEEDED, now=now)
        attempt.payment_method = payment_method
    payment.paid_amount += amount
    payment.fee_amount += fee
    payment.received_amount += amount - fee
    payment.credited_amount += operation.credited
    payment.updated_at = now
    full = is_paid(payment.amount, payment.credited_amount, await underpayment_tolerance(session, payment.merchant_id))
    extras = {
        "payment_method": payment_method or payment.provider,
        # The payer paid another sum than this try asked for (without a try: more than the amount),
        # or the payment counts as paid while short of its amount (the merchant's tolerance).
        "payment_mismatch": (
            amount != attempt.amount if attempt is not None else payment.credited_amount > payment.amount
        )
        or (full and payment.credited_amount < payment.amount),
    }
    if payment.status not in PAYABLE:
        # Money after the payment expired or was cancelled is still money: counted, never
        # dropped, and reported, while the payment keeps its closed status.
        payment.paid_late = True
        if full and payment.paid_at is None:
            payment.paid_at = now
        await events.emit(
            session,
            payment,
            EventType.PAID if full else EventType.PARTIALLY_PAID,
            previous_status=payment.status,
            now=now,
            extras=extras | {"paid_late": True},
        )
        return OperationResult(operation, counted=True)
    if full:
        payment.paid_at = now
        previous = touch(payment, PaymentStatus.PAID, now)
        await events.emit(session, payment, EventType.PAID, previous_status=previous, now=now, extras=extras)
    else:
        previous = touch(payment, PaymentStatus.PARTIALLY_PAID, now)
        await events.emit(session, payment, EventType.PARTIALLY_PAID, previous_status=previous, now=now, extras=extras)
    return OperationResult(operation, counted=True)


def is_paid(amount: int, credited: int, tolerance: int) -> bool:
    """Whether money credited settles a payment: some arrived, and what it still lacks is within the
    merchant's underpayment tolerance (the old system's 10 KZT for imported merchants, else none).
    Paid short stays short: ``remaining_amount`` keeps saying what is missing, as the old system's
    did, and the event says ``payment_mismatch``."""
    return credited > 0 and amount - credited <= tolerance


async def underpayment_tolerance(session: AsyncSession, merchant_id: str) -> int:
    """The merchant's tolerance, in minor units: from the session when the merchant is loaded,
    else one column by primary key (once per operation, not per request)."""
    loaded = session.identity_map.get(identity_key(Merchant, merchant_id))
    if loaded is not None and "underpayment_tolerance" not in inspect(loaded).unloaded:
        return loaded.underpayment_tolerance
    found = await session.scalar(select(Merchant.underpayment_tolerance).where(Merchant.id == merchant_id))
    return found or 0


async def end_attempt(
    session: AsyncSession,
    attempt: Attempt,
    payment: Payment,
    status: AttemptStatus,
    *,
    now: datetime,
    error: str | None = None,
) -> None:
    """Close a live attempt that brought no money; the payment is payable again.

    Nothing here sends ``cancelled``: only the payment's own end does (``cancel``). The old system
    sent it when the payer cancelled at the terminal while the payment went back to pending, and
    merchants closed orders that were paid a minute later (issue 13). A payer's cancel is recorded
    as ``attempt_cancelled`` instead, which no merchant is sent as a webhook
    (``events.sent_as_webhook``); a try that failed or ran out of time records no event.
    """
    previous = payment.status
    finish_attempt(attempt, status, now=now, error=error)
    settle_status(payment, now)
    if status == AttemptStatus.CANCELLED:
        await events.emit(
            session,
            payment,
            EventType.ATTEMPT_CANCELLED,
            previous_status=previous,
            now=now,
            extras={"attempt_id": attempt.id, "reason": error or "cancelled by the payer"},
        )


def settle_status(payment: Payment, now: datetime) -> None:
    """After an attempt ends without money, a payment that was processing is payable again."""
    if payment.status == PaymentStatus.PROCESSING:
        touch(payment, PaymentStatus.PARTIALLY_PAID if payment.paid_amount else PaymentStatus.PENDING, now)


async def merchant_name(session: AsyncSession, merchant_id: str) -> str:
    return await session.scalar(select(Merchant.name).where(Merchant.id == merchant_id)) or ""


async def delete_closed(session: AsyncSession, ids: list[str], *, still: Sequence[ColumnElement[bool]]) -> list[str]:
    """Delete payments and everything recorded about them: the daily cleanup's last step.

    ``still`` are the cleanup's rules (closed, unpaid, past retention, webhooks final), checked again
    here under the rows' locks: late money or a resend since the candidates were read keeps a payment.
    Returns the ids deleted."""
    kept = list(await session.scalars(select(Payment.id).where(Payment.id.in_(ids), *still).with_for_update()))
    if not kept:
        return []
    await webhooks.forget(session, kept)
    refund_ids = select(Refund.id).where(Refund.payment_id.in_(kept))
    for stmt in (
        delete(RefundLeg).where(RefundLeg.refund_id.in_(refund_ids)),
        delete(Refund).where(Refund.payment_id.in_(kept)),
        delete(Operation).where(Operation.payment_id.in_(kept)),
        delete(Attempt).where(Attempt.payment_id.in_(kept)),
        # A Kaspi biller account still naming it: the account is free again (a merchant's own may
        # come back with a new payment; a late pay for it now finds no payment, result 1). Its pays
        # (biller_transactions) are money, which no payment deleted here has.
        delete(BillerAccount).where(BillerAccount.payment_id.in_(kept)),
        delete(Payment).where(Payment.id.in_(kept)),
    ):
        await session.execute(stmt.execution_options(synchronize_session=False))
    return kept
