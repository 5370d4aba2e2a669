"""Payments written straight into the database, paid through the payment service: for the pages
and the admin, which only read what the providers' code writes (a Kaspi biller payment's account,
the pays Kaspi sent), without the provider or its endpoint."""

from __future__ import annotations

from datetime import datetime, timedelta

from paycenter.db import Database, new_payment_id
from paycenter.payments import service
from paycenter.payments.models import BillerAccount, BillerTransaction, Payment, PaymentStatus

BILLER = "kaspi_biller"


async def insert_payment(
    db: Database,
    merchant_id: str,
    *,
    now: datetime,
    provider: str = BILLER,
    amount: int = 1_500_000,
    account: str | None = None,
    expires_in: timedelta = timedelta(hours=1),
    language: str | None = None,
    description: str = "Абонемент",
) -> str:
    """A pending payment of ``provider``; with ``account``, also the account naming it (as the
    biller's init writes them)."""
    pid = new_payment_id()
    async with db.transaction() as session:
        session.add(
            Payment(
                id=pid,
                merchant_id=merchant_id,
                amount=amount,
                currency="KZT",
                description=description,
                metadata_={},
                provider=provider,
                status=PaymentStatus.PENDING,
                language=language,
                account=account,
                expires_at=now + expires_in,
                created_at=now,
                updated_at=now,
            )
        )
        await session.flush()
        if account is not None:
            session.add(BillerAccount(account=account, payment_id=pid, created_at=now))
    return pid


async def pay(db: Database, payment_id: str, *, txn: str, amount: int, now: datetime) -> None:
    """Money arrived, counted by the payment service as every provider's is."""
    async with db.transaction() as session:
        payment = await service.lock(session, payment_id)
        await service.record_operation(session, payment, provider_txn_id=txn, amount=amount, now=now)


async def biller_pay(
    db: Database, payment_id: str, *, txn_id: str, account: str, amount: int, txn_date: datetime, now: datetime
) -> int:
    """A ``pay`` Kaspi sent: counted, and stored with its reply; returns our number for it (prv_txn)."""
    await pay(db, payment_id, txn=txn_id, amount=amount, now=now)
    async with db.transaction() as session:
        row = BillerTransaction(
            txn_id=txn_id,
            account=account,
            payment_id=payment_id,
            amount=amount,
            txn_date=txn_date,
            result=0,
            reply=b'{"result": 0}',
            reply_type="application/json; charset=utf-8",
            created_at=now,
        )
        session.add(row)
        await session.flush()
        return row.id
