"""Refunds: reserved under the payment's lock, sent per operation (a leg each), settled once.

Money goes back the way it came: a provider refunds one original transaction at a time (one QR
payment, one terminal transaction), so a refund of a payment paid in parts becomes several legs.
Pending and succeeded legs count against what each operation can still give back, which is what
keeps concurrent refunds from ever returning more than was paid.

A leg is marked ``sent_at`` in its own transaction before the provider is called. A leg that was
sent but whose answer never came (a crash, a timeout) may have moved money, so it is never sent
again blindly: the poller asks the provider what happened (``resync``).

A leg the provider answers "not done, try again" (``NotSent``: Kaspi's -99000006, a busy
terminal), or that ``resync`` finds was never done, is sent again with a growing pause, for
``retry_for`` after the refund was requested; then it fails. A refund that ends with money not
returned (all of it, or some legs) tells the merchant with a ``refund_failed`` event, in the
transaction that settles it.

A leg whose handling raises anything else (a bug, a row no key decrypts) is quarantined: the
other legs and refunds go on, and an operator retries it once the cause is fixed.

Some refunds need the payer first (Kaspi QR r2): sending the leg only gets a return QR, which the
leg keeps to show them (``return_qr``) until its deadline; the poller then asks the provider
whether they scanned it. Once they have (``payer_ready``), the return itself is marked
``return_sent_at`` in its own transaction and sent, with the same care as ``sent_at``: without an
answer it is looked up, not sent again. An expired or wrongly scanned QR fails the leg.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from paycenter import quarantine
from paycenter.db import Database, new_id
from paycenter.errors import Conflict, NotFound, Unprocessable
from paycenter.money import MoneyError, to_major_number, to_major_str, to_minor
from paycenter.payments import events, service
from paycenter.payments.models import (
    Attempt,
    EventType,
    Operation,
    Payment,
    PaymentStatus,
    Refund,
    RefundLeg,
    RefundStatus,
)
from paycenter.providers import terminals
from paycenter.providers.base import NotSent, Provider, ProviderError, RefundLegRef, RefundOutcome, ReportsReturns
from paycenter.providers.models import Terminal
from paycenter.quarantine import Loop

if TYPE_CHECKING:
    from paycenter.providers.registry import Providers

log = logging.getLogger("paycenter.refunds")
LIVE_LEG = (RefundStatus.PENDING, RefundStatus.SUCCEEDED)
DEFAULT_RETRY_FOR = timedelta(minutes=30)  # settings.refund_retry_for
_REFUND_ID = re.compile(r"rfd_[0-9a-z_]{1,36}")  # new_id("rfd"), and the legacy import's rfd_legacy_N


async def _available_by_operation(session: AsyncSession, payment_id: str) -> list[tuple[Operation, int]]:
    """Each operation of the payment, newest first, with what it can still give back."""
    operations = list(
        await session.scalars(
            select(Operation).where(Operation.payment_id == payment_id).order_by(Operation.created_at.desc())
        )
    )
    reserved = dict(
        (
            await session.execute(
                select(RefundLeg.operation_id, func.sum(RefundLeg.amount))
                .join(Operation, Operation.id == RefundLeg.operation_id)
                .where(Operation.payment_id == payment_id, RefundLeg.status.in_(LIVE_LEG))
                .group_by(RefundLeg.operation_id)
            )
        ).all()
    )
    return [(op, op.amount - int(reserved.get(op.id) or 0)) for op in operations]


def _split(by_operation: list[tuple[Operation, int]], amount: int) -> list[tuple[Operation, int]]:
    """The part of ``amount`` each operation gives back, in the order given (newest first), none
    more than it can still give."""
    parts = []
    left = amount
    for operation, can in by_operation:
        if left <= 0:
            break
        take = min(can, left)
        if take > 0:
            parts.append((operation, take))
            left -= take
    return parts


def _exceeds(available: int, currency: str) -> Conflict:
    message = f"Refund amount exceeds the refundable sum of {to_major_str(available, currency)} {currency}"
    return Conflict(message, code="amount_exceeds_refundable", fields=[{"field": "amount", "message": message}])


async def request(
    session: AsyncSession,
    *,
    merchant_id: str,
    payment_id: str,
    amount: Any | None,
    reason: str,
    now: datetime,
    providers: Providers,
) -> Refund:
    """Reserve a refund and its legs under the payment's lock. The provider is called later."""
    payment = await service.lock(session, payment_id, merchant_id=merchant_id)
    if payment.paid_amount == 0:
        raise Conflict(f"Payment is {payment.status} and has received no money to refund")
    if payment.status == PaymentStatus.REFUNDED:
        raise Conflict("Payment has already been refunded in full")
    refused = providers.get(payment.provider).refunds_refused if payment.provider in providers else None
    if refused:
        # Before anything is written: a refund that can never be sent is not reserved either.
        raise Conflict(refused, code="refunds_not_supported")
    by_operation = await _available_by_operation(session, payment.id)
    available = sum(max(left, 0) for _, left in by_operation)
    if available <= 0:
        raise Conflict("Nothing left to refund: earlier refunds cover everything paid")
    if amount is None:
        minor = available
    else:
        # The body was checked against the document already; what is left depends on this
        # payment (its currency, what is still refundable): a conflict with it, not bad input.
        try:
            minor = to_minor(amount, payment.currency)
        except MoneyError as exc:
            raise Conflict(
                str(exc), code="amount_not_in_currency", fields=[{"field": "amount", "message": str(exc)}]
            ) from None
        if minor > available:
            raise _exceeds(available, payment.currency)
    refund = Refund(
        id=new_id("rfd"),
        payment_id=payment.id,
        amount=minor,
        refunded_amount=0,
        reason=reason,
        status=RefundStatus.PENDING,
        created_at=now,
    )
    session.add(refund)
    for operation, take in _split(by_operation, minor):
        session.add(
            RefundLeg(
                id=new_id("rfl"),
                refund_id=refund.id,
                operation_id=operation.id,
                amount=take,
                status=RefundStatus.PENDING,
                terminal_id=operation.terminal_id,
                created_at=now,
                # The request sends it at once; the poller only steps in if that never happened.
                next_poll_at=now + timedelta(seconds=10),
            )
        )
    payment.updated_at = now
    await session.flush()
    return refund


async def record_manual(
    session: AsyncSession,
    *,
    payment_id: str,
    amount: Any,
    note: str,
    recorded_by: str,
    submission_id: str,
    now: datetime,
    providers: Providers,
) -> tuple[Refund, bool]:
    """Record money an operator returned outside paycenter (the bank's own cabinet), for a payment
    whose provider cannot refund through paycenter (``refunds_refused``). Nothing is sent: the
    refund and its legs are written succeeded, and it settles at once, emitting ``refunded`` as a
    provider's refund does, in this transaction. ``(refund, False)`` when this submission was
    recorded already: a form posted twice records one refund."""
    payment = await service.lock(session, payment_id)
    # Under the payment's lock: a second post of the same form waits for the first, then finds it.
    earlier = await session.scalar(select(Refund).where(Refund.submission_id == submission_id))
    if earlier is not None:
        if earlier.payment_id != payment.id:
            raise Conflict("This form was already used for another payment", code="submission_reused")
        return earlier, False
    refused = providers.get(payment.provider).refunds_refused if payment.provider in providers else None
    if not refused:
        raise Conflict(
            f"Payments of {payment.provider} are refunded through paycenter: use the refund, not a manual record",
            code="manual_refund_not_allowed",
        )
    note = note.strip()
    if not note:
        message = "A note is required: how and where the money was returned"
        raise Unprocessable(message, fields=[{"field": "note", "message": message}])
    if payment.paid_amount == 0:
        raise Conflict(f"Payment is {payment.status} and has received no money to refund")
    try:
        if amount is None:
            raise MoneyError("amount is required: the sum that went back")
        minor = to_minor(amount, payment.currency)  # above zero, in the currency's digits
    except MoneyError as exc:
        raise Unprocessable(str(exc), fields=[{"field": "amount", "message": str(exc)}]) from None
    by_operation = await _available_by_operation(session, payment.id)
    available = min(sum(max(left, 0) for _, left in by_operation), payment.refundable_amount)
    if minor > available:
        raise _exceeds(max(available, 0), payment.currency)
    refund = Refund(
        id=new_id("rfd"),
        payment_id=payment.id,
        amount=minor,
        refunded_amount=0,
        reason=note[:500],
        status=RefundStatus.PENDING,  # settled below, with the payment's sums and the event
        created_at=now,
        manual=True,
        recorded_by=recorded_by[:100],
        submission_id=submission_id,
    )
    session.add(refund)
    for operation, take in _split(by_operation, minor):  # as a provider refund takes them
        session.add(
            RefundLeg(
                id=new_id("rfl"),
                refund_id=refund.id,
                operation_id=operation.id,
                amount=take,
                status=RefundStatus.SUCCEEDED,
                created_at=now,
                completed_at=now,
            )
        )
    await session.flush()
    await _settle(session, payment, refund.id, now=now)
    return refund, True


async def get(session: AsyncSession, refund_id: str) -> Refund:
    refund = await session.get(Refund, refund_id)
    if refund is None:
        raise NotFound("Refund not found")
    return refund


async def _leg_ref(session: AsyncSession, leg: RefundLeg, currency: str, terminal: Terminal | None) -> RefundLegRef:
    operation = await session.get(Operation, leg.operation_id)
    assert operation is not None
    attempt_ref = None
    if operation.attempt_id:
        attempt_ref = await session.scalar(select(Attempt.provider_ref).where(Attempt.id == operation.attempt_id))
    return RefundLegRef(
        leg_id=leg.id,
        amount=leg.amount,
        currency=currency,
        provider_txn_id=operation.provider_txn_id,
        paid_by=operation.paid_by,
        attempt_ref=attempt_ref,
        terminal=terminals.ref(terminal) if terminal else None,
        provider_ref=leg.provider_ref,
        return_qr_ref=leg.return_qr_id,
        return_qr_expires_at=leg.return_qr_expires_at,
    )


async def with_return_qrs(session: AsyncSession, *, payment_id: str, refund_id: str) -> tuple[Refund, list[RefundLeg]]:
    """A payment's refund, with those of its legs that asked the payer to scan a return QR."""
    if not _REFUND_ID.fullmatch(refund_id):  # from a URL: only what an id can look like is looked up
        raise NotFound("Refund not found")
    refund = await session.get(Refund, refund_id)
    if refund is None or refund.payment_id != payment_id:
        raise NotFound("Refund not found")
    legs = await session.scalars(
        select(RefundLeg)
        .where(RefundLeg.refund_id == refund.id, RefundLeg.return_qr_id.is_not(None))
        .order_by(RefundLeg.created_at, RefundLeg.id)
    )
    return refund, list(legs)


async def awaiting_payer(session: AsyncSession, *, payment_id: str) -> list[str]:
    """The payment's refunds that wait for the payer to scan a return QR, oldest first."""
    rows = await session.execute(
        select(Refund.id)
        .join(RefundLeg, RefundLeg.refund_id == Refund.id)
        .where(
            Refund.payment_id == payment_id,
            RefundLeg.status == RefundStatus.PENDING,
            RefundLeg.return_qr_id.is_not(None),
            RefundLeg.return_sent_at.is_(None),
        )
        .order_by(Refund.created_at)
    )
    return list(dict.fromkeys(rows.scalars()))


async def _lock_leg(session: AsyncSession, leg_id: str) -> RefundLeg | None:
    """A refund leg to change, locked and read afresh (a copy loaded earlier in the session may
    predate a change committed while this waited). The lock order is ``service.lock_attempt``'s:
    a caller that needs the payment too locks it first (``record_leg``), never after the leg."""
    return await session.get(RefundLeg, leg_id, with_for_update=True, populate_existing=True)


async def begin_leg(session: AsyncSession, *, leg_id: str, now: datetime) -> tuple[str, RefundLegRef] | None:
    """Mark an unsent leg as being sent (and hold its terminal); None if it can't go now."""
    leg = await _lock_leg(session, leg_id)
    if leg is None or leg.status != RefundStatus.PENDING or leg.sent_at is not None:
        return None
    payment = await _payment_of(session, leg)
    terminal = None
    if leg.terminal_id:
        terminal = await terminals.take(session, terminal_id=leg.terminal_id, holder=leg.id, now=now)
        if terminal is None:
            return None  # the terminal is serving someone: the poller sends it when it frees
    leg.sent_at = now
    return payment.provider, await _leg_ref(session, leg, payment.currency, terminal)


async def begin_return(session: AsyncSession, *, leg_id: str, now: datetime) -> tuple[str, RefundLegRef] | None:
    """Mark the return of a leg whose payer scanned its return QR as being sent; None if it
    cannot go now (settled meanwhile, or already sent)."""
    leg = await _lock_leg(session, leg_id)
    if (
        leg is None
        or leg.status != RefundStatus.PENDING
        or leg.return_qr_id is None
        or leg.return_sent_at is not None
        or leg.provider_ref is not None
    ):
        return None
    payment = await _payment_of(session, leg)
    leg.return_sent_at = now
    return payment.provider, await _leg_ref(session, leg, payment.currency, None)


async def _payment_of(session: AsyncSession, leg: RefundLeg) -> Payment:
    refund = await session.get(Refund, leg.refund_id)
    assert refund is not None
    payment = await session.get(Payment, refund.payment_id)
    assert payment is not None
    return payment


async def record_leg(session: AsyncSession, *, leg_id: str, outcome: RefundOutcome, now: datetime) -> None:
    """The provider's answer for a leg; once no leg of the refund is pending, settle it."""
    payment_id = await session.scalar(
        select(Refund.payment_id).join(RefundLeg, RefundLeg.refund_id == Refund.id).where(RefundLeg.id == leg_id)
    )
    if payment_id is None:
        raise NotFound("Refund leg not found")
    payment = await service.lock(session, payment_id)  # payment first: the lock order everywhere
    leg = await _lock_leg(session, leg_id)
    assert leg is not None
    if leg.status != RefundStatus.PENDING:
        return
    leg.provider_ref = outcome.provider_ref or leg.provider_ref
    if outcome.return_qr is not None:  # to show the payer until they scan it
        leg.return_qr = outcome.return_qr.payload
        leg.return_qr_id = outcome.return_qr.ref
        leg.return_qr_expires_at = outcome.return_qr.expires_at
    if outcome.succeeded is None:
        leg.next_poll_at = now + (outcome.poll_in or timedelta(seconds=2))
        return
    leg.status = RefundStatus.SUCCEEDED if outcome.succeeded else RefundStatus.FAILED
    leg.error = None if outcome.succeeded else (outcome.error or "refused by the provider")[:500]
    leg.completed_at = now
    if leg.terminal_id:
        await terminals.free(session, terminal_id=leg.terminal_id, holder=leg.id)
    await _settle(session, payment, leg.refund_id, now=now)


async def _settle(session: AsyncSession, payment: Payment, refund_id: str, *, now: datetime) -> None:
    refund = await session.get(Refund, refund_id, with_for_update=True, populate_existing=True)
    assert refund is not None
    if refund.status != RefundStatus.PENDING:
        return
    legs = list(await session.scalars(select(RefundLeg).where(RefundLeg.refund_id == refund.id)))
    if any(leg.status == RefundStatus.PENDING for leg in legs):
        return
    refunded = sum(leg.amount for leg in legs if leg.status == RefundStatus.SUCCEEDED)
    refund.refunded_amount = refunded
    refund.completed_at = now
    if refunded == refund.amount:
        refund.status = RefundStatus.SUCCEEDED
    elif refunded == 0:
        refund.status = RefundStatus.FAILED
    else:
        refund.status = RefundStatus.PARTIALLY_SUCCEEDED
    errors = [leg.error for leg in legs if leg.error and leg.status == RefundStatus.FAILED]
    refund.error = "; ".join(errors)[:500] if errors else None
    cur = payment.currency
    if refunded:
        payment.refunded_amount += refunded
        payment.updated_at = now
        previous = payment.status
        if payment.refunded_amount >= payment.paid_amount:
            service.touch(payment, PaymentStatus.REFUNDED, now)
        await events.emit(
            session,
            payment,
            EventType.REFUNDED,
            previous_status=previous,
            now=now,
            extras={
                "refund_id": refund.id,
                "refund_amount": to_major_number(refunded, cur),
                "refunded_amount": to_major_number(payment.refunded_amount, cur),
                "reason": refund.reason,
                "full_refund": payment.refunded_amount >= payment.paid_amount,
            },
        )
    if refunded < refund.amount:
        # What did not go back, in an event of its own (after `refunded` for the part that did):
        # the merchant must not be left believing money went back that did not.
        await events.emit(
            session,
            payment,
            EventType.REFUND_FAILED,
            previous_status=payment.status,
            now=now,
            extras={
                "refund_id": refund.id,
                "refund_amount": to_major_number(refund.amount, cur),
                "failed_amount": to_major_number(refund.amount - refunded, cur),
                "refunded_amount": to_major_number(payment.refunded_amount, cur),
                "reason": refund.reason,
                "error": refund.error or "refused by the provider",
                "partial": refunded > 0,
            },
        )


async def send(
    db: Database,
    providers: Providers,
    *,
    refund_id: str,
    clock: Callable[[], datetime],
    retry_for: timedelta = DEFAULT_RETRY_FOR,
) -> None:
    """Send every unsent leg of a refund, each outside any transaction, and record the answers.
    A leg that fails in a way no answer explains is quarantined; the others still go."""
    async with db.reading() as session:
        legs = (
            await session.execute(
                select(RefundLeg.id, Refund.payment_id)
                .join(Refund, Refund.id == RefundLeg.refund_id)
                .where(
                    RefundLeg.refund_id == refund_id,
                    RefundLeg.status == RefundStatus.PENDING,
                    RefundLeg.sent_at.is_(None),
                    quarantine.not_quarantined(Loop.REFUNDS, RefundLeg.id),
                )
            )
        ).all()
    for leg_id, payment_id in legs:
        try:
            await send_leg(db, providers, leg_id=leg_id, clock=clock, retry_for=retry_for)
        except Exception as exc:
            if quarantine.is_transient(exc):
                log.warning("sending refund leg %s failed (%s); the poller sends it later", leg_id, exc)
                continue
            await quarantine.isolate(db, loop=Loop.REFUNDS, row_id=leg_id, exc=exc, now=clock(), payment_id=payment_id)


async def send_leg(
    db: Database,
    providers: Providers,
    *,
    leg_id: str,
    clock: Callable[[], datetime],
    retry_for: timedelta = DEFAULT_RETRY_FOR,
) -> None:
    """Send one leg. Anything but a provider's answer is raised, with the leg left sent: it may
    have gone out, so after a fix it is resynced, not sent again blindly."""
    await _mark_and_send(db, providers, begin_leg, leg_id=leg_id, clock=clock, retry_for=retry_for)


async def _mark_and_send(
    db: Database,
    providers: Providers,
    begin: Callable[..., Awaitable[tuple[str, RefundLegRef] | None]],
    *,
    leg_id: str,
    clock: Callable[[], datetime],
    retry_for: timedelta,
) -> None:
    """Mark the leg's call as sent (``begin_leg``, or ``begin_return`` once the payer scanned its
    return QR) in its own transaction, then ask the provider and record what it answered."""
    async with db.transaction() as session:
        begun = await begin(session, leg_id=leg_id, now=clock())
    if begun is None:
        return
    provider_name, ref = begun
    try:
        outcome = await providers.get(provider_name).refund(ref)
    except NotSent as exc:
        async with db.transaction() as session:
            await unsend_leg(session, leg_id=leg_id, error=exc.message, now=clock(), retry_for=retry_for)
        return
    except ProviderError as exc:
        if exc.retryable:
            # Maybe sent, maybe not: leave it sent and unanswered; the poller finds out.
            async with db.transaction() as session:
                await note_leg_trouble(session, leg_id=leg_id, error=exc.message, now=clock())
            return
        outcome = RefundOutcome(succeeded=False, error=exc.message)
    async with db.transaction() as session:
        await record_leg(session, leg_id=leg_id, outcome=outcome, now=clock())


def _pause(waited: timedelta) -> timedelta:
    """Half the time the leg has waited so far, from 5 s to 5 min: tries thin out geometrically
    (about twenty in half an hour) with no counter to keep."""
    return timedelta(seconds=min(max(5.0, waited.total_seconds() / 2), 300.0))


async def unsend_leg(
    session: AsyncSession, *, leg_id: str, error: str, now: datetime, retry_for: timedelta = DEFAULT_RETRY_FOR
) -> None:
    """The provider did not do it (it said so, or it has no record of it): the leg waits to be
    sent again, unless it has been refused for ``retry_for`` since the refund was asked: then
    it fails.

    A leg the provider already has (its ``provider_ref``: a terminal waiting for the customer) is
    not that case, whoever calls: only a call following it did not get through (the terminal
    unreachable). Nothing is sent again and nothing fails it while its money may still move; it
    says why it waits and is asked again after a pause."""
    found = (
        await session.execute(select(RefundLeg.created_at, RefundLeg.provider_ref).where(RefundLeg.id == leg_id))
    ).first()
    if found is None:
        return
    created, provider_ref = found
    if provider_ref is not None:  # set once, never cleared: safe to read before the leg's lock
        await note_leg_trouble(session, leg_id=leg_id, error=error, now=now)
        return
    if now - created >= retry_for:
        minutes = round(retry_for.total_seconds() / 60)
        outcome = RefundOutcome(succeeded=False, error=f"{error} (still not done after {minutes} min of retries)")
        await record_leg(session, leg_id=leg_id, outcome=outcome, now=now)  # locks the payment first
        return
    leg = await _lock_leg(session, leg_id)
    if leg is not None and leg.status == RefundStatus.PENDING and leg.provider_ref is None:
        if leg.return_sent_at is not None:
            leg.return_sent_at = None  # the payer's scan still stands: the return goes again with it
        else:
            leg.sent_at = None
        leg.error = error[:500]
        leg.next_poll_at = now + _pause(now - created)
        if leg.terminal_id:
            await terminals.free(session, terminal_id=leg.terminal_id, holder=leg.id)


async def follow_now(session: AsyncSession, *, leg_id: str, now: datetime) -> None:
    """A leg let out of quarantine: the poller takes it up on its next cycle."""
    leg = await _lock_leg(session, leg_id)
    if leg is not None and leg.status == RefundStatus.PENDING:
        leg.next_poll_at = now


async def note_leg_trouble(session: AsyncSession, *, leg_id: str, error: str, now: datetime) -> None:
    leg = await _lock_leg(session, leg_id)
    if leg is not None and leg.status == RefundStatus.PENDING:
        leg.error = error[:500]
        leg.next_poll_at = now + timedelta(seconds=5)


async def poll_leg(
    db: Database,
    providers: Providers,
    *,
    leg_id: str,
    clock: Callable[[], datetime],
    answer_grace: timedelta = timedelta(seconds=30),
    retry_for: timedelta = DEFAULT_RETRY_FOR,
) -> None:
    """Follow a leg the provider accepted but has not settled (a terminal refund the customer
    confirms in the app, a return QR the payer has to scan), or find out what became of one whose
    answer never came."""
    async with db.reading() as session:
        leg = await session.get(RefundLeg, leg_id)
        if leg is None or leg.status != RefundStatus.PENDING or leg.sent_at is None:
            return
        # The call whose answer is awaited: the return once sent, else the send (a recorded
        # return QR is that send's answer).
        awaited = leg.return_sent_at or (None if leg.return_qr_id else leg.sent_at)
        if leg.provider_ref is None and awaited is not None and awaited > clock() - answer_grace:
            return  # its sender may still be waiting for the answer
        waiting_for_payer = leg.return_qr_id is not None and leg.return_sent_at is None
        payment = await _payment_of(session, leg)
        terminal = await session.get(Terminal, leg.terminal_id) if leg.terminal_id else None
        ref = await _leg_ref(session, leg, payment.currency, terminal)
    provider = providers.get(payment.provider)
    try:
        if ref.provider_ref or waiting_for_payer:
            outcome = await provider.poll_refund(ref)
        else:
            outcome = await resync(provider, ref, db=db, operation_id=leg.operation_id, leg_id=leg.id)
    except NotSent as exc:
        async with db.transaction() as session:
            await unsend_leg(session, leg_id=leg_id, error=exc.message, now=clock(), retry_for=retry_for)
        return
    except ProviderError as exc:
        async with db.transaction() as session:
            await note_leg_trouble(session, leg_id=leg_id, error=exc.message, now=clock())
        return
    if outcome.payer_ready:  # the payer scanned the return QR: now the money goes
        await _mark_and_send(db, providers, begin_return, leg_id=leg_id, clock=clock, retry_for=retry_for)
        return
    async with db.transaction() as session:
        await record_leg(session, leg_id=leg_id, outcome=outcome, now=clock())


async def resync(
    provider: Provider, ref: RefundLegRef, *, db: Database, operation_id: str, leg_id: str
) -> RefundOutcome:
    """A leg sent without an answer: ask the provider whether the money went back."""
    if not isinstance(provider, ReportsReturns) or not ref.attempt_ref:
        return RefundOutcome(
            succeeded=False,
            error="the provider never answered and cannot be asked again: check with the bank before retrying",
        )
    total, available = await provider.returned(ref.attempt_ref)
    async with db.reading() as session:
        others = await session.scalar(
            select(func.coalesce(func.sum(RefundLeg.amount), 0)).where(
                RefundLeg.operation_id == operation_id,
                RefundLeg.status == RefundStatus.SUCCEEDED,
                RefundLeg.id != leg_id,
            )
        )
    went_back = total - available - int(others or 0)
    if went_back >= ref.amount:
        return RefundOutcome(succeeded=True, provider_ref="resynced")
    # Asked, not guessed: the money did not go back, so sending it again cannot send it twice.
    raise NotSent("the provider has no record of this refund", code="not_found")
