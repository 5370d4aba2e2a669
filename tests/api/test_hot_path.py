"""The payment init / read hot path: what the throughput work (bench/api.py) changed stays correct."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from kit.api import create_payment
from paycenter.db import Database, create_engine, insert_new, utcnow
from paycenter.merchants import service as merchants
from paycenter.merchants.models import Merchant
from paycenter.payments import service
from paycenter.payments.models import Payment
from paycenter.payments.schemas import PaymentInit

POLICY = service.InitPolicy(max_amount=10**8, default_expires_in=3600, providers=["sandbox"])


async def test_created_payment_is_a_persistent_row_that_flushes_updates(db, merchant):
    now = utcnow()
    data = PaymentInit.model_validate({"amount": 500, "metadata": {"order_id": "O-1"}})
    async with db.transaction() as session:
        owner = await session.get(Merchant, merchant.merchant_id)
        payment = await service.create_payment(session, merchant=owner, data=data, policy=POLICY, now=now)
        # Every column is loaded (no lazy load, which async sessions can't do) ...
        assert payment.paid_at is None and payment.cancelled_at is None and payment.amount == 50000
        assert await session.get(Payment, payment.id) is payment  # ... and it is the session's row
        payment.status = "cancelled"
        payment.cancelled_at = now
    async with db.reading() as session:
        stored = (await session.execute(select(Payment).where(Payment.id == payment.id))).scalar_one()
    assert (stored.status, stored.cancelled_at, stored.order_id, stored.metadata_) == (
        "cancelled",
        now,
        "O-1",
        {"order_id": "O-1"},
    )
    assert stored.expires_at == now + timedelta(seconds=3600)


async def test_insert_new_refuses_to_drop_a_column_default(db, merchant):
    payment = Payment(id="A" * 32, merchant_id=merchant.merchant_id, amount=1, currency="KZT", provider="sandbox")
    async with db.transaction() as session:
        with pytest.raises(ValueError, match="must be set"):
            await insert_new(session, payment)


async def test_read_once_sees_a_revocation_at_once(client, db, merchant):
    await create_payment(client, merchant)
    async with db.transaction() as session:
        await merchants.revoke_token(session, token_id=merchant.token_id, now=utcnow())
    response = await client.get("/api/transactions", headers=merchant.headers)
    assert response.status_code == 401


async def test_pool_settings_reach_the_engine(database_url):
    engine = create_engine(database_url, pool_size=7, max_overflow=0)
    try:
        if engine.url.get_backend_name() != "sqlite" or engine.url.database not in (None, "", ":memory:"):
            assert engine.pool.size() == 7  # type: ignore[attr-defined]
    finally:
        await engine.dispose()
    memory = Database("sqlite:///:memory:", pool_size=7, max_overflow=0)  # no queue pool to size: ignored
    await memory.dispose()
