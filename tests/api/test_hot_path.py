"""The payment init / read hot path: what the throughput work (bench/api.py) changed stays correct."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select, text

from kit.api import create_payment
from paycenter.db import Database, create_engine, insert_values, utcnow
from paycenter.merchants import service as merchants
from paycenter.merchants.models import Merchant
from paycenter.payments import service, views, views_legacy
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


async def test_insert_values_refuses_to_drop_a_column_default(db, merchant):
    values = {
        "id": "A" * 32,
        "merchant_id": merchant.merchant_id,
        "amount": 1,
        "currency": "KZT",
        "provider": "sandbox",
    }
    async with db.transaction() as session:
        with pytest.raises(ValueError, match="must be set"):
            await insert_values(session, Payment, values)


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


# --- issue 15: rows instead of ORM loads, a pool of its own for lone reads ----------------------


async def test_a_lone_read_on_postgresql_runs_in_autocommit_and_leaves_the_connection_as_it_was(database_url):
    """Database.read_row switches psycopg's autocommit on for the read and off again: no BEGIN and
    no ROLLBACK round trips, and the pooled connection goes back ready for a write transaction."""
    db = Database(database_url, pool_size=1, max_overflow=0)  # one connection: the same one each time
    try:
        if db.backend != "postgresql":
            pytest.skip("PostgreSQL only: MySQL drivers would pay a round trip to switch, SQLite is in-process")
        txid = text("SELECT txid_current()")
        async with db.read_row() as conn:
            # each statement is a transaction of its own: none is left open between them
            first, second = [(await conn.execute(txid)).scalar() for _ in range(2)]
            assert first != second
        async with db.transaction() as session:  # the same connection, back in transactions
            first, second = [(await session.execute(txid)).scalar() for _ in range(2)]
            assert first == second
        async with db.read_once() as session:  # read_once is read_row's connection under a session
            first, second = [(await session.execute(txid)).scalar() for _ in range(2)]
            assert first != second
    finally:
        await db.dispose()


async def test_a_connection_that_refuses_to_leave_autocommit_never_goes_back_to_the_pool(database_url):
    """If switching autocommit off fails (a cancelled or broken read), the connection is dropped:
    a later write transaction on the pool is still one transaction."""
    db = Database(database_url, pool_size=1, max_overflow=0)
    try:
        if db.backend != "postgresql":
            pytest.skip("PostgreSQL only: the switch is psycopg's")
        txid = text("SELECT txid_current()")
        with pytest.raises(RuntimeError, match="refused"):
            async with db.read_row() as conn:
                driver = conn.sync_connection.connection.driver_connection
                switch = driver.set_autocommit

                async def refuse(value: bool) -> None:
                    if not value:
                        raise RuntimeError("refused")
                    await switch(value)

                driver.set_autocommit = refuse
                await conn.execute(txid)
        async with db.transaction() as session:
            first, second = [(await session.execute(txid)).scalar() for _ in range(2)]
            assert first == second
    finally:
        await db.dispose()


async def test_a_lone_read_on_sqlite_opens_no_transaction(tmp_path):
    """On SQLite read_row sends no BEGIN (one hop to aiosqlite's thread fewer); writes still take
    the write lock up front with BEGIN IMMEDIATE."""
    db = Database(f"sqlite:///{tmp_path / 'lone.db'}")
    try:

        def in_transaction(conn: Any) -> bool:
            return bool(conn.sync_connection.connection.driver_connection.in_transaction)

        async with db.read_row() as conn:
            await conn.execute(text("SELECT 1"))
            assert not in_transaction(conn)
        async with db.read_once() as session:
            await session.execute(text("SELECT 1"))
            assert not in_transaction(await session.connection())
        async with db.transaction() as session:
            await session.execute(text("SELECT 1"))
            assert in_transaction(await session.connection())
    finally:
        await db.dispose()


async def test_the_authenticated_merchant_is_the_row_as_the_orm_loads_it(db, merchant):
    """merchants.authenticate builds the Merchant from a Core row (db.detached): every column the
    same as a session's load, and detached with its identity, as a closed session leaves it."""
    async with db.read_row() as conn:
        found = await merchants.authenticate(conn, merchant.token)
    async with db.reading() as session:
        loaded = await session.get(Merchant, merchant.merchant_id)
    assert found is not None and loaded is not None
    columns = [attr.key for attr in sa_inspect(Merchant).column_attrs]
    assert {c: getattr(found, c) for c in columns} == {c: getattr(loaded, c) for c in columns}
    state = sa_inspect(found)
    assert state.detached and state.identity == (merchant.merchant_id,)
    async with db.read_row() as conn:
        assert await merchants.authenticate(conn, merchant.token + "x") is None


async def test_insert_values_refuses_a_name_that_is_no_column(db, merchant):
    async with db.transaction() as session:
        with pytest.raises(ValueError, match="no column amont"):
            await insert_values(session, Payment, {"id": "B" * 32, "amont": 1})


@hypothesis_settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    amount=st.integers(min_value=1, max_value=10**12),
    credited=st.integers(min_value=0, max_value=2 * 10**12),
    paid=st.integers(min_value=0, max_value=2 * 10**12),
    refunded=st.integers(min_value=0, max_value=2 * 10**12),
)
async def test_the_public_read_shows_what_the_loaded_payment_shows(db, merchant, amount, credited, paid, refunded):
    """The public read selects columns (service.get_public) and computes remaining_amount in SQL
    (the hybrid's expression): for any amounts, the view of its row equals the view of the ORM
    payment, which computes it in Python. Overpaid payments (credited > amount) included."""
    now = utcnow()
    data = PaymentInit.model_validate({"amount": 500})
    async with db.transaction() as session:
        owner = await session.get(Merchant, merchant.merchant_id)
        payment = await service.create_payment(session, merchant=owner, data=data, policy=POLICY, now=now)
        payment.amount, payment.credited_amount = amount, credited
        payment.paid_amount, payment.refunded_amount = paid, refunded
    async with db.reading() as session:
        loaded = await service.get(session, payment.id)
    async with db.read_row() as conn:
        row, api_version = await service.get_public(conn, payment.id)
    assert views.public(row, "https://pay.example") == views.public(loaded, "https://pay.example")
    assert views_legacy.public(row, "https://pay.example") == views_legacy.public(loaded, "https://pay.example")
    assert api_version == owner.api_version
