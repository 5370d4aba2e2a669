"""Text compares exactly on every backend: byte for byte, as SQLite and PostgreSQL compare it.

MariaDB's default collation (utf8mb4_general_ci) took "Key-1" and "key-1", "é" and "e", "a" and
"a " for one value: an Idempotency-Key differing only in case replayed another request's answer
there, and nowhere else. Migration 0021 gives every text column a binary, no-pad collation.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from paycenter.db import Database, utcnow
from paycenter.idempotency.models import IdempotencyKey

# Pairs MariaDB's case- and accent-insensitive, pad-space collation took for one value.
CONFLATED = [("Order-1", "order-1"), ("café", "cafe"), ("Ключ", "ключ"), ("a", "a "), ("straße", "strasse")]


@pytest.mark.parametrize(("one", "other"), CONFLATED)
async def test_keys_that_differ_only_in_case_accent_or_spaces_are_two_keys(db: Database, merchant, one, other):
    now = utcnow()
    async with db.transaction() as session:
        for key in (one, other):  # the unique (merchant, key) takes both
            session.add(
                IdempotencyKey(
                    merchant_id=merchant.merchant_id,
                    key=key,
                    fingerprint="0" * 64,
                    response_status=201,
                    response_body="{}",
                    created_at=now,
                )
            )
    async with db.reading() as session:
        for key in (one, other):
            found = await session.scalars(select(IdempotencyKey.key).where(IdempotencyKey.key == key))
            assert list(found) == [key]


async def test_an_idempotency_key_in_other_capitals_is_another_request(client, merchant):
    made = []
    for key, amount in (("Order-1", 500), ("order-1", 700)):
        r = await client.post(
            "/api/payment/init", json={"amount": amount}, headers={**merchant.headers, "Idempotency-Key": key}
        )
        assert r.status_code == 201, r.text  # not 409 "already used with a different request"
        made.append(r.json()["data"])
    assert made[0]["transaction_id"] != made[1]["transaction_id"]
    assert [m["amount"] for m in made] == ["500.00", "700.00"]


async def test_every_text_column_on_mariadb_compares_bytes(db: Database):
    if db.backend not in ("mysql", "mariadb"):
        pytest.skip("collations are MariaDB's (SQLite and PostgreSQL compare bytes already)")
    async with db.reading() as session:
        rows = await session.execute(
            text(
                "SELECT TABLE_NAME, COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND COLLATION_NAME IS NOT NULL "
                "AND COLLATION_NAME <> 'utf8mb4_nopad_bin' AND TABLE_NAME <> 'alembic_version'"
            )
        )
        assert rows.all() == []
        # And the database's default, for the tables later migrations create.
        default = await session.scalar(text("SELECT @@collation_database"))
    assert default == "utf8mb4_nopad_bin"


async def test_mariadb_sessions_refuse_what_they_cannot_store_as_given(db: Database):
    """Whatever the server's sql_mode (old installs run with ''), paycenter's sessions are strict:
    a text too long is an error, never cut short, as on PostgreSQL."""
    if db.backend not in ("mysql", "mariadb"):
        pytest.skip("sql_mode is MariaDB's")
    async with db.reading() as session:
        mode = set(str(await session.scalar(text("SELECT @@SESSION.sql_mode"))).split(","))
    assert {"STRICT_ALL_TABLES", "NO_ZERO_DATE", "NO_ZERO_IN_DATE", "ERROR_FOR_DIVISION_BY_ZERO"} <= mode
