"""Kaspi's check and pay (shared/reference/kaspi.md §C), answered from the payments domain.

Part of the payments service: each function runs in the caller's one transaction and never
commits. The protocol's shapes (requests, replies, result codes) are ``providers.kaspi_biller``'s;
what happens to the money is decided here with the same machinery as every other provider's
(``service.record_operation``): under- or over-payment is partially paid or a mismatch, money for
an expired or cancelled payment is late money, and a pay is never refused once the account names a
payment, since Kaspi has already taken the money.

A pay is stored with its first reply (``BillerTransaction``): a retry of the same ``txn_id``, also
one that runs at the same moment, gets those bytes again and never counts twice. Retries for a
known account take turns on the payment's row lock and find the stored reply once they hold it;
for an unknown account (or a ``txn_id`` reused across accounts) the unique key on ``txn_id`` lets
one through, and the caller answers the others with the winner's reply (``stored``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paycenter.errors import NotFound
from paycenter.merchants.models import Merchant
from paycenter.payments import service
from paycenter.payments.models import PAYABLE, BillerAccount, BillerTransaction, Payment, PaymentStatus
from paycenter.providers.kaspi_biller import (
    FIELD_DESCRIPTION,
    FIELD_MERCHANT,
    NAME,
    BillerRequest,
    Format,
    Reply,
    Result,
    render,
)

log = logging.getLogger("paycenter.biller")

# What a check answers for a payment that can no longer be paid (kaspi.md §C's result codes).
_CLOSED: dict[str, Result] = {
    PaymentStatus.PAID: Result.ALREADY_PAID,
    PaymentStatus.REFUNDED: Result.ALREADY_PAID,
    PaymentStatus.EXPIRED: Result.CANCELLED,
    PaymentStatus.CANCELLED: Result.CANCELLED,
    PaymentStatus.FAILED: Result.CANCELLED,
}


@dataclass(frozen=True)
class StoredReply:
    body: bytes
    content_type: str


async def _payment_of(session: AsyncSession, account: str) -> str | None:
    return await session.scalar(select(BillerAccount.payment_id).where(BillerAccount.account == account))


async def _locked(session: AsyncSession, account: str) -> Payment | None:
    """The payment the account names, locked; None if it names none. Read again once the lock is
    held: a merchant's init may have taken the account over for its new payment meanwhile, or the
    cleanup deleted the payment (and freed the account) while we waited."""
    payment_id = await _payment_of(session, account)
    while payment_id is not None:
        try:
            payment = await service.lock(session, payment_id)
        except NotFound:
            payment = None
        now_names = await _payment_of(session, account)
        if now_names == payment_id and payment is not None:
            return payment
        payment_id = now_names
    return None


async def check(session: AsyncSession, request: BillerRequest, *, now: datetime) -> Reply:
    """Is the account payable, and for how much: 0 with what remains to pay (and who is paid, for
    what, in ``fields``), 1 unknown, 2 expired or cancelled (expiring a payment whose time is up on
    the way, as any other look at it does), 3 already paid."""
    payment = await _locked(session, request.account)
    if payment is None:
        return Reply(Result.NOT_FOUND, txn_id=request.txn_id, amount=0)
    await service.expire_if_due(session, payment, now=now)
    if payment.status not in PAYABLE:
        return Reply(_CLOSED.get(payment.status, Result.CANCELLED), txn_id=request.txn_id, amount=0)
    merchant = await session.scalar(select(Merchant.name).where(Merchant.id == payment.merchant_id))
    fields = [(FIELD_MERCHANT, merchant or ""), (FIELD_DESCRIPTION, payment.description or "")]
    return Reply(
        Result.OK,
        txn_id=request.txn_id,
        amount=payment.remaining_amount,
        fields=tuple((name, value) for name, value in fields if value),
    )


async def stored(session: AsyncSession, txn_id: str) -> StoredReply | None:
    """The first reply given to this ``txn_id``, if a pay with it was stored."""
    row = (
        await session.execute(
            select(BillerTransaction.reply, BillerTransaction.reply_type).where(BillerTransaction.txn_id == txn_id)
        )
    ).first()
    return StoredReply(bytes(row.reply), row.reply_type) if row is not None else None


async def pay(session: AsyncSession, request: BillerRequest, *, now: datetime, fmt: Format) -> StoredReply:
    """Record a pay and store its reply; a ``txn_id`` already stored gets its first reply back.

    The caller runs this in one transaction and, should the insert of the ``txn_id`` hit the unique
    key (a concurrent pay with it committed first), rolls back and answers ``stored``."""
    assert request.amount is not None  # providers.kaspi_biller.parse: a pay has a sum
    found = await stored(session, request.txn_id)
    if found is not None:
        return _replayed(found, request)
    payment = await _locked(session, request.account)
    if payment is None:
        # Kaspi is told no such account (and returns the money to the payer); stored all the same,
        # so that a retry gets these very bytes.
        log.warning("kaspi biller pay %s for unknown account %s refused (result 1)", request.txn_id, request.account)
        return await _store(session, request, None, Result.NOT_FOUND, now=now, fmt=fmt)
    # Again under the lock: a concurrent retry of this pay may have committed while we waited for it.
    found = await stored(session, request.txn_id)
    if found is not None:
        return _replayed(found, request)
    await service.expire_if_due(session, payment, now=now)
    # An open payment's try asks for what remains (what check said), so a pay of another sum is a
    # mismatch; money for a closed payment is late money, with no try, as a late poll's would be.
    attempt = (
        await service.open_attempt(
            session, payment, amount=payment.remaining_amount, now=now, provider_ref=request.txn_id
        )
        if payment.status in PAYABLE
        else None
    )
    await service.record_operation(
        session,
        payment,
        provider_txn_id=request.txn_id,
        amount=request.amount,
        now=now,
        attempt=attempt,
        payment_method=NAME,
    )
    log.info(
        "kaspi biller pay %s: %d tiyn recorded on payment %s (now %s)",
        request.txn_id,
        request.amount,
        payment.id,
        payment.status,
    )
    return await _store(session, request, payment, Result.OK, now=now, fmt=fmt)


def _replayed(found: StoredReply, request: BillerRequest) -> StoredReply:
    log.info("kaspi biller pay %s repeated: its first reply is sent again", request.txn_id)
    return found


async def _store(
    session: AsyncSession,
    request: BillerRequest,
    payment: Payment | None,
    result: Result,
    *,
    now: datetime,
    fmt: Format,
) -> StoredReply:
    """Insert the pay (its id is our ``prv_txn``), then its reply, which names that id."""
    assert request.amount is not None
    row = BillerTransaction(
        txn_id=request.txn_id,
        account=request.account,
        payment_id=payment.id if payment is not None else None,
        amount=request.amount,
        txn_date=request.txn_date,
        result=int(result),
        reply=b"",
        reply_type="",
        created_at=now,
    )
    session.add(row)
    await session.flush()
    body, content_type = render(
        Reply(result, txn_id=request.txn_id, prv_txn=row.id, amount=request.amount),
        fmt,
    )
    row.reply = body
    row.reply_type = content_type
    await session.flush()
    return StoredReply(body, content_type)
