"""``paycenter import-legacy``: the old system's MySQL tables (tests/fixtures/legacy) into paycenter.

The source is a fresh MariaDB database loaded with the fixture (PAYCENTER_TEST_MARIADB_URL; without
it these tests skip, unless PAYCENTER_TEST_REQUIRE names mariadb). The target is the per-backend
``db`` fixture, so the import is exercised into SQLite, PostgreSQL and MariaDB in turn.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import undefer

from kit.db import REQUIRED, SERVER_URLS, row_counts
from kit.legacy import FIXTURES, NOW, sql_statements
from kit.served import paycenter_cli
from paycenter import crypto, versions
from paycenter.db import Database, create_engine
from paycenter.jobs.expirer import expire_due
from paycenter.legacy.importer import (
    BadRow,
    ImportReport,
    LegacyImportError,
    Options,
    import_legacy,
    parse_metadata,
    parse_money,
    parse_time,
)
from paycenter.merchants.models import ApiToken, Merchant
from paycenter.merchants.service import hash_token
from paycenter.operators.models import AuditEntry
from paycenter.payments.models import Event, Operation, Payment, Refund, RefundLeg
from paycenter.providers.models import Terminal
from paycenter.webhooks import service as webhooks
from paycenter.webhooks.models import Delivery, DeliveryAttempt

ALMATY = ZoneInfo("Asia/Almaty")

TOKEN_ONE = "74a9602724ea065f9deba158b93d01203cfcde19d04f89be05e414bcf5d3af3d"
TOKEN_TWO = "f5f6f63b413a36d481fdf583ab95abb8d75e7516c0c87f20b2068ccaf0782e34"
TOKEN_CLOSED = "a8b0ee4dd4fdc8dc7e6b3e30a49b04dbe29b0a67033384e14c0d861d8f08461d"
T1 = "38EA5326312F016EF395D819548F27FA"  # paid, Kaspi Gold, 00:30 local
T2 = "7164D46542E41819A1346250AF07FB23"  # partially paid on credit, 23:59:30 local
T3 = "483DF14E6F92567DC294DE857AD6356D"  # two parts, one refunded
T4 = "B2E4B1409C54CF195F10B5FF601020C2"  # refunded
T5 = "62B6AFDC2AA7E5E5D48B4ED221A3E44F"  # pending
T6 = "BBA5731716FAE3F637089561A6660012"  # processing
T7 = "B1A379971A64CDB4E1F5EFD364F1E54D"  # cancelled
T8 = "B27BA52FFE183548182A3DC201A40819"  # failed (shop two)
T9 = "ACD2BFACBF00CF88FE12CF1FA208C625"  # paid before 2024-03-01, no partial payments (shop two)
T10 = "B6FAE4B45D662677451F2C0C63C9BFE7"  # paid, inactive merchant
T11 = "7B4D003015AFA016747D786BDF99CD69"  # repeats terminal transaction 700001 (shop two)
SKIPPED_IDS = {
    "56596C3BC486E1346073AF062123DA57",
    "2E08507226B4C966167A9DA808A4F2C3",
    "2ECBB6980C11A89B87562D7E931E6310",
    "05F70E8258319A7DB89A73AF8DD5EC02",
}


# --- the source database ------------------------------------------------------------------


async def _load(url: str, *files: Path) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for path in files:
                for statement in sql_statements(path.read_text(encoding="utf-8")):
                    # As written (no :name binds); asyncmy %-formats even without parameters, hence %%.
                    await conn.exec_driver_sql(statement.replace("%", "%%"))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
async def legacy_server() -> str:
    url = SERVER_URLS["mariadb"]
    if not url:
        if "mariadb" in REQUIRED:
            pytest.fail("mariadb is required (PAYCENTER_TEST_REQUIRE) but PAYCENTER_TEST_MARIADB_URL is not set")
        pytest.skip("the old system's database is MySQL: set PAYCENTER_TEST_MARIADB_URL to run the legacy import")
    return url


@pytest.fixture(scope="session")
async def legacy_url(legacy_server: str) -> AsyncIterator[str]:
    """A fresh MariaDB database holding the fixture in the old schema (only ever read)."""
    name = f"legacy_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(legacy_server, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    except Exception as exc:
        pytest.fail(f"mariadb at {legacy_server} is not reachable: {exc}")
    finally:
        await admin.dispose()
    url = make_url(legacy_server).set(database=name).render_as_string(hide_password=False)
    await _load(url, FIXTURES / "schema.sql", FIXTURES / "data.sql")
    yield url
    admin = create_engine(legacy_server, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
    finally:
        await admin.dispose()


async def run_import(legacy_url: str, db: Database, **options: Any) -> ImportReport:
    return await import_legacy(legacy_url, db, options=Options(**options), now=NOW)


async def _payment(db: Database, payment_id: str) -> Payment:
    async with db.reading() as session:
        # The secret is deferred (only the dispatcher reads it): asked for here, to check it.
        payment = await session.get(Payment, payment_id, options=[undefer(Payment.webhook_secret)])
    assert payment is not None, payment_id
    return payment


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- parsing, no database -------------------------------------------------------------------


def test_money_is_parsed_exactly_and_never_as_a_float() -> None:
    assert parse_money("505.00", "amount") == 50500
    assert parse_money("499.95", "amount") == 49995
    assert parse_money("0.05", "amount") == 5
    assert parse_money("9999999999.99", "amount") == 999999999999
    assert parse_money("12", "amount") == 1200
    assert parse_money(None, "amount", allow_none=True) is None
    for bad in ("abc", "12.345", "NaN", "Infinity", ""):
        with pytest.raises(BadRow):
            parse_money(bad, "amount")
    with pytest.raises(BadRow):
        parse_money(None, "amount")
    with pytest.raises(TypeError):
        parse_money(0.1, "amount")


def test_almaty_local_times_become_utc() -> None:
    assert parse_time("2025-03-10 00:30:00", ALMATY) == _utc(2025, 3, 9, 19, 30)  # UTC+5
    assert parse_time("2024-02-15 00:30:00", ALMATY) == _utc(2024, 2, 14, 18, 30)  # UTC+6 before 2024-03-01
    assert parse_time("2025-03-10 23:59:30", ALMATY) == _utc(2025, 3, 10, 18, 59, 30)
    assert parse_time("0000-00-00 00:00:00", ALMATY) is None
    assert parse_time(None, ALMATY) is None
    assert parse_time(datetime(2025, 1, 1, 5, 0), ALMATY) == _utc(2025, 1, 1, 0, 0)
    with pytest.raises(BadRow):
        parse_time("yesterday", ALMATY)


def test_metadata_text() -> None:
    assert parse_metadata(None) == ({}, None)
    assert parse_metadata("") == ({}, None)
    assert parse_metadata("[]") == ({}, None)
    assert parse_metadata("null") == ({}, None)
    assert parse_metadata('{"order_id": 5}') == ({"order_id": 5}, None)
    value, warning = parse_metadata("{broken")
    assert value == {"legacy_metadata": "{broken"} and warning
    value, warning = parse_metadata("[1, 2]")
    assert value == {"legacy_metadata": [1, 2]} and warning


def test_sql_splitter_keeps_quoted_semicolons() -> None:
    script = "-- c; x\nINSERT INTO t VALUES ('a;b', 'it''s', 'x\\';y');\nSELECT 1;"
    assert sql_statements(script) == ["INSERT INTO t VALUES ('a;b', 'it''s', 'x\\';y')", "SELECT 1"]


# --- the import -----------------------------------------------------------------------------


async def test_counts_statuses_and_skipped_rows(legacy_url: str, db: Database) -> None:
    report = await run_import(legacy_url, db)

    assert report.merchants == 3 and report.tokens == 3 and report.terminals == 2
    assert dict(report.payments) == {
        "paid": 4,  # 1, 9, 10, 11
        "partially_paid": 2,  # 2, 3
        "refunded": 1,  # 4
        "pending": 2,  # 5, and 6 (processing)
        "cancelled": 1,  # 7
        "failed": 1,  # 8
    }
    assert (report.operations, report.refunds) == (8, 2)
    assert (report.webhook_logs, report.webhook_deliveries, report.webhook_events) == (6, 5, 5)
    assert report.overdue_payable == 4  # 2, 3, 5, 6
    reasons = {(s.table, s.legacy_id): s.reason for s in report.skipped}
    assert set(reasons) == {
        ("transactions", "12"),
        ("transactions", "13"),
        ("transactions", "14"),
        ("transactions", "15"),
        ("transactions", "16"),
        ("webhook_logs", "7"),
    }
    assert "source 99 does not exist" in reasons[("transactions", "12")]
    assert "greater than zero" in reasons[("transactions", "13")]
    assert "32 hex" in reasons[("transactions", "14")]
    assert "unknown status 'on_hold'" in reasons[("transactions", "15")]
    assert "commission 900.00 is outside 0..800.00" in reasons[("transactions", "16")]
    assert "transaction does not exist" in reasons[("webhook_logs", "7")]
    assert report.allowed_ips == {"mer_legacy_1": ["127.0.0.1", "10.0.0.5"]}
    assert any("was processing" in w and T6 in w for w in report.warnings)
    assert any("700001" in w and "legacy-pp-8" in w for w in report.warnings)
    # The old system added the fee on top; paycenter's seeded methods do not: the operator is told how to keep it.
    assert any("paycenter payment-method set kaspi_credit --payer-covers-fee" in w for w in report.warnings)

    counts = await row_counts(db)
    assert counts["merchants"] == 3 and counts["api_tokens"] == 3 and counts["terminals"] == 2
    assert counts["payments"] == 11 and counts["operations"] == 8
    assert counts["refunds"] == 2 and counts["refund_legs"] == 2
    assert counts["events"] == 5 and counts["webhook_deliveries"] == 5 and counts["webhook_attempts"] == 6
    assert counts["attempts"] == 0
    async with db.reading() as session:
        ids = set(await session.scalars(select(Payment.id)))
    assert not ids & SKIPPED_IDS


async def test_merchants_tokens_and_terminals(legacy_url: str, db: Database) -> None:
    await run_import(legacy_url, db)
    async with db.reading() as session:
        merchants = {m.id: m for m in await session.scalars(select(Merchant))}
        tokens = {t.id: t for t in await session.scalars(select(ApiToken))}
        terminals = {t.id: t for t in await session.scalars(select(Terminal))}
    one = merchants["mer_legacy_1"]
    assert (one.name, one.is_active, one.default_provider) == ("Shop One", True, "kaspi_pos")
    assert one.webhook_url is None  # the old system never used sources.webhook_url
    assert one.signing_secret.startswith("whsec_")
    assert one.created_at == _utc(2024, 1, 10, 3, 0)  # 09:00 at UTC+6
    assert merchants["mer_legacy_3"].is_active is False
    # Their integrations keep working unchanged: the old API's shapes, and "paid within 10 KZT".
    assert {(m.api_version, m.underpayment_tolerance) for m in merchants.values()} == {("legacy", 1000)}
    token = tokens["tok_legacy_1"]
    assert token.merchant_id == "mer_legacy_1" and token.prefix == TOKEN_ONE[:8]
    assert token.token_hash == hash_token(TOKEN_ONE) and token.revoked_at is None
    assert TOKEN_ONE not in {t.token_hash for t in tokens.values()}  # never stored in plain text
    first, second = terminals["trm_legacy_1"], terminals["trm_legacy_2"]
    assert (first.name, first.base_url, first.access_token, first.is_active) == (
        "Касса 1",
        "https://192.168.1.50:8080",
        "term-token-1",
        True,
    )
    assert (second.base_url, second.is_active, second.busy_with) == ("https://192.168.1.51:8443", False, None)


async def test_payments_amounts_times_and_metadata(legacy_url: str, db: Database) -> None:
    await run_import(legacy_url, db)

    p1 = await _payment(db, T1)
    assert (p1.merchant_id, p1.status, p1.provider, p1.currency) == ("mer_legacy_1", "paid", "kaspi_pos", "KZT")
    # original_amount is what the merchant asked; the 1% was added on top at the terminal.
    assert (p1.amount, p1.paid_amount, p1.fee_amount, p1.received_amount) == (50000, 50500, 505, 49995)
    assert (p1.credited_amount, p1.remaining_amount, p1.refunded_amount) == (49995, 5, 0)
    assert p1.created_at == _utc(2025, 3, 9, 19, 30)  # 00:30 in Almaty is 19:30 UTC the day before
    assert p1.paid_at == _utc(2025, 3, 9, 19, 31, 15)
    assert p1.expires_at == _utc(2025, 3, 9, 20, 30)
    assert p1.metadata_ == {"user_id": 12345, "order_id": "ORD-1"}
    assert (p1.order_id, p1.metadata_user_id) == ("ORD-1", "12345")
    assert (p1.customer_phone, p1.customer_email, p1.customer_name) == ("+77011234567", "a@example.kz", "Айгерим")
    assert (p1.description, p1.webhook_url, p1.webhook_secret) == (
        "Заказ №1",
        "https://shop-one.example/webhook",
        "secret-one",
    )
    assert p1.last_sequence == 1

    p2 = await _payment(db, T2)
    assert p2.status == "partially_paid"
    assert (p2.amount, p2.paid_amount, p2.fee_amount, p2.received_amount) == (1000000, 1140000, 159600, 980400)
    assert p2.remaining_amount == 19600  # the old p² shortfall: the payer can now pay the rest
    assert p2.created_at == _utc(2025, 3, 10, 18, 59, 30)
    assert p2.metadata_ == {"order_id": "ORD-2", "user_id": "u-2", "note": "кириллица / slash"}
    assert (p2.order_id, p2.metadata_user_id) == ("ORD-2", "u-2")

    p3 = await _payment(db, T3)
    assert (p3.status, p3.paid_amount, p3.received_amount, p3.refunded_amount) == (
        "partially_paid",
        150000,
        148500,
        50000,
    )
    assert p3.metadata_ == {} and p3.order_id is None

    p4 = await _payment(db, T4)
    assert (p4.status, p4.paid_amount, p4.refunded_amount, p4.refundable_amount) == ("refunded", 200000, 200000, 0)

    p5 = await _payment(db, T5)
    assert (p5.status, p5.amount, p5.paid_amount, p5.metadata_) == ("pending", 75000, 0, {})
    assert p5.created_at == _utc(2025, 4, 30, 19, 10)
    assert p5.webhook_url is None and p5.paid_at is None

    p6 = await _payment(db, T6)
    assert (p6.status, p6.amount, p6.metadata_) == ("pending", 120000, {})

    p7 = await _payment(db, T7)
    assert (p7.status, p7.cancelled_at) == ("cancelled", _utc(2025, 5, 2, 10, 20))

    p9 = await _payment(db, T9)
    assert (p9.merchant_id, p9.status, p9.amount, p9.paid_amount, p9.received_amount) == (
        "mer_legacy_2",
        "paid",
        500000,
        500000,
        500000,
    )
    assert p9.created_at == _utc(2024, 2, 14, 18, 30)  # UTC+6 then
    assert (p9.order_id, p9.metadata_user_id) == ("98765", None)

    p10 = await _payment(db, T10)
    assert (p10.merchant_id, p10.amount, p10.paid_amount, p10.received_amount) == (
        "mer_legacy_3",
        40000,
        40400,
        39996,
    )
    assert (await _payment(db, T8)).status == "failed"


async def test_operations_and_refunds(legacy_url: str, db: Database) -> None:
    await run_import(legacy_url, db)
    async with db.reading() as session:
        ops = {o.id: o for o in await session.scalars(select(Operation))}
        refunds = {r.id: r for r in await session.scalars(select(Refund))}
        legs = {leg.id: leg for leg in await session.scalars(select(RefundLeg))}
        payments = {p.id: p for p in await session.scalars(select(Payment))}

    op1 = ops["op_legacy_1"]
    assert (op1.payment_id, op1.provider, op1.provider_txn_id) == (T1, "kaspi_pos", "700001")
    assert (op1.amount, op1.fee, op1.net, op1.credited) == (50500, 505, 49995, 49995)
    assert (op1.payment_method, op1.terminal_id) == ("kaspi_gold", "trm_legacy_1")
    assert op1.created_at == _utc(2025, 3, 9, 19, 31, 15)
    assert (ops["op_legacy_2"].fee, ops["op_legacy_2"].payment_method) == (159600, "kaspi_credit")
    assert ops["op_legacy_4"].terminal_id == "trm_legacy_2"
    # A terminal transaction the old system recorded twice keeps the unique key: the repeat is renamed.
    assert (ops["op_legacy_8"].payment_id, ops["op_legacy_8"].provider_txn_id) == (T11, "legacy-pp-8")
    # Paid without a partial_payments row: one operation for what arrived.
    synthetic = ops["op_legacy_t9"]
    assert (synthetic.payment_id, synthetic.provider_txn_id, synthetic.amount, synthetic.fee) == (
        T9,
        "legacy-txn-9",
        500000,
        0,
    )
    # paid = sum of operations, for every payment
    for payment in payments.values():
        mine = [o for o in ops.values() if o.payment_id == payment.id]
        assert payment.paid_amount == sum(o.amount for o in mine)
        assert payment.received_amount == sum(o.net for o in mine)

    r3 = refunds["rfd_legacy_4"]
    assert (r3.payment_id, r3.amount, r3.refunded_amount, r3.status, r3.provider_ref) == (
        T3,
        50000,
        50000,
        "succeeded",
        "R-900",
    )
    assert r3.completed_at == _utc(2025, 4, 2, 5, 0)
    leg = legs["rfl_legacy_4"]
    assert (leg.refund_id, leg.operation_id, leg.amount, leg.status) == (
        "rfd_legacy_4",
        "op_legacy_4",
        50000,
        "succeeded",
    )
    assert leg.sent_at is not None and leg.next_poll_at is None
    assert (refunds["rfd_legacy_5"].payment_id, refunds["rfd_legacy_5"].amount) == (T4, 200000)


async def test_webhook_log_is_history_never_resent(legacy_url: str, db: Database) -> None:
    await run_import(legacy_url, db)
    async with db.reading() as session:
        deliveries = {d.id: d for d in await session.scalars(select(Delivery))}
        events = {e.id: e for e in await session.scalars(select(Event))}
        attempts = list(await session.scalars(select(DeliveryAttempt).order_by(DeliveryAttempt.delivery_id)))

    assert {d.status for d in deliveries.values()} <= {"succeeded", "failed"}
    assert all(d.next_attempt_at is None and d.lease_owner is None for d in deliveries.values())
    retried = deliveries["whd_legacy_2"]  # failed with 500, then succeeded on the 2nd try
    assert (retried.payment_id, retried.status, retried.attempt_count, retried.last_status_code) == (
        T2,
        "succeeded",
        2,
        200,
    )
    assert retried.delivered_at == _utc(2025, 3, 10, 19, 6, 1)
    # T3 sent partially_paid twice, once per partial payment: two events, the second never arrived.
    assert (events["evt_legacy_4"].sequence, events["evt_legacy_5"].sequence) == (1, 2)
    timed_out = deliveries["whd_legacy_5"]
    assert (timed_out.status, timed_out.last_status_code, timed_out.last_error) == (
        "failed",
        None,
        "Connection timed out after 10000 milliseconds",
    )
    assert (await _payment(db, T3)).last_sequence == 2
    first = events["evt_legacy_1"]
    assert (first.payment_id, first.type, first.merchant_id) == (T1, "paid", "mer_legacy_1")
    assert json.loads(first.body)["actual_amount_received"] == 499.95
    # No payload was logged for T7's webhook: the body says so, and stays a JSON object.
    assert json.loads(events["evt_legacy_6"].body) == {
        "event": "cancelled",
        "transaction_id": T7,
        "legacy_request_payload": "",
    }
    by_delivery = [(a.delivery_id, a.number, a.response_status) for a in attempts]
    assert ("whd_legacy_2", 1, 500) in by_delivery and ("whd_legacy_2", 2, 200) in by_delivery

    # The dispatcher claims nothing: history is not sent again.
    async with db.transaction() as session:
        jobs = await webhooks.claim(
            session,
            owner="test",
            limit=100,
            now=datetime.now(UTC) + timedelta(days=3650),
            lease_until=datetime.now(UTC) + timedelta(days=3651),
            skip_urls=set(),
            default_max_attempts=4,
        )
    assert jobs == []


async def test_old_token_works_against_the_api(legacy_url: str, db: Database, client: httpx.AsyncClient) -> None:
    await run_import(legacy_url, db)
    # The imported merchant is pinned to the old shapes; the current ones a header away.
    old = (await client.get(f"/api/transaction/{T1}", headers={"X-API-Token": TOKEN_ONE})).json()["data"]
    assert (old["transaction"]["transaction_id"], old["transaction"]["created_at"]) == (T1, "2025-03-10 00:30:00")
    one = {"X-API-Token": TOKEN_ONE, "Paycenter-Version": versions.CURRENT}
    # The old system matched its hex tokens case-insensitively: so does the import.
    upper = await client.get(f"/api/transaction/{T1}", headers={"X-API-Token": TOKEN_ONE.upper()})
    assert upper.status_code == 200, upper.text

    response = await client.get(f"/api/transaction/{T1}", headers=one)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["transaction_id"], data["status"], data["amount"], data["paid_amount"]) == (
        T1,
        "paid",
        "500.00",
        "505.00",
    )
    assert (data["actual_amount_received"], data["fee_amount"], data["remaining_amount"]) == ("499.95", "5.05", "0.05")
    assert data["created_at"] == "2025-03-09T19:30:00Z"
    assert data["metadata"] == {"user_id": 12345, "order_id": "ORD-1"}
    assert data["has_webhook_secret"] is True and "webhook_secret" not in data
    assert [o["provider_transaction_id"] for o in data["operations"]] == ["700001"]
    # Lower case, as a merchant may have stored it: the API takes it too.
    assert (await client.get(f"/api/transaction/{T1.lower()}", headers=one)).status_code == 200

    refunded = (await client.get(f"/api/transaction/{T3}", headers=one)).json()["data"]
    assert (refunded["refunded_amount"], refunded["remaining_amount"]) == ("500.00", "1515.00")
    assert [r["amount"] for r in refunded["refunds"]] == ["500.00"]

    listed = await client.get("/api/transactions", params={"order_id": "ORD-2"}, headers=one)
    assert [p["transaction_id"] for p in listed.json()["data"]["items"]] == [T2]

    log = await client.get(f"/api/payment/{T2}/webhooks", headers=one)
    assert log.status_code == 200, log.text
    [delivery] = log.json()["data"]
    assert (delivery["event_type"], delivery["status"], delivery["url"]) == (
        "partially_paid",
        "succeeded",
        "https://shop-one.example/webhook",
    )
    assert [(a["number"], a["response_status"]) for a in delivery["attempts"]] == [(1, 500), (2, 200)]
    assert delivery["attempts"][0]["response_body"] == "Internal Server Error"

    # The public payment page data, with no token at all.
    public = await client.get(f"/api/payment/{T2}")
    assert (public.status_code, public.json()["data"]["paid_amount"]) == (200, "11400.00")

    # Tenancy holds: another merchant's old token does not see shop one's payment ...
    two = {"X-API-Token": TOKEN_TWO}
    assert (await client.get(f"/api/transaction/{T1}", headers=two)).status_code == 404
    assert (await client.get(f"/api/payment/{T2}/webhooks", headers=two)).status_code == 404
    assert (await client.get(f"/api/transaction/{T9}", headers=two)).status_code == 200
    # ... an inactive source's token is refused, and so is a made-up one.
    assert (await client.get(f"/api/transaction/{T10}", headers={"X-API-Token": TOKEN_CLOSED})).status_code == 401
    assert (await client.get(f"/api/transaction/{T1}", headers={"X-API-Token": "0" * 64})).status_code == 401


async def test_secrets_are_stored_encrypted_when_keys_are_set(
    legacy_url: str, db: Database, client: httpx.AsyncClient
) -> None:
    crypto.configure(crypto.new_key())
    try:
        await run_import(legacy_url, db)
        async with db.reading() as session:
            stored = (
                await session.execute(
                    text(
                        "SELECT (SELECT webhook_secret FROM payments WHERE id = :p),"
                        " (SELECT signing_secret FROM merchants WHERE id = 'mer_legacy_1'),"
                        " (SELECT access_token FROM terminals WHERE id = 'trm_legacy_1')"
                    ),
                    {"p": T1},
                )
            ).one()
            payment = await session.get(Payment, T1, options=[undefer(Payment.webhook_secret)])
        assert all(value.startswith("fernet:") for value in stored), stored
        assert "secret-one" not in stored[0] and "term-token-1" not in stored[2]
        assert payment is not None and payment.webhook_secret == "secret-one"  # read back through the keyring
        response = await client.get(
            f"/api/transaction/{T1}", headers={"X-API-Token": TOKEN_ONE, "Paycenter-Version": versions.CURRENT}
        )
        assert response.status_code == 200 and response.json()["data"]["has_webhook_secret"] is True
        assert (await run_import(legacy_url, db)).payments_present == 11  # a re-run reads no secret
    finally:
        crypto.configure("")


async def test_second_run_changes_nothing(legacy_url: str, db: Database) -> None:
    await run_import(legacy_url, db)
    before = await row_counts(db)
    async with db.reading() as session:
        payments = {
            p.id: (p.status, p.paid_amount, p.updated_at, p.last_sequence)
            for p in await session.scalars(select(Payment))
        }
        secrets = dict((await session.execute(select(Merchant.id, Merchant.signing_secret))).all())

    again = await run_import(legacy_url, db)

    assert await row_counts(db) == before
    assert (again.merchants, again.tokens, again.terminals, sum(again.payments.values())) == (0, 0, 0, 0)
    assert (again.operations, again.refunds, again.webhook_logs) == (0, 0, 0)
    assert (again.merchants_present, again.tokens_present, again.terminals_present) == (3, 3, 2)
    assert again.payments_present == 11 and again.payments_differing == []
    assert len(again.skipped) == 6  # the bad rows are still reported
    async with db.reading() as session:
        assert {
            p.id: (p.status, p.paid_amount, p.updated_at, p.last_sequence)
            for p in await session.scalars(select(Payment))
        } == payments
        assert dict((await session.execute(select(Merchant.id, Merchant.signing_secret))).all()) == secrets


async def test_a_payment_changed_since_is_reported_not_overwritten(legacy_url: str, db: Database) -> None:
    """After the first import paycenter owns the payments: a re-run never rolls its changes back."""
    await run_import(legacy_url, db)
    assert await expire_due(db, now=NOW) == 4  # the overdue payable payments: 2, 3, 5, 6
    expired = await _payment(db, T2)
    # Their new events follow the imported ones: the sequence went on from the history.
    assert (expired.status, expired.last_sequence) == ("expired", 2)
    async with db.reading() as session:
        seqs = list(
            await session.scalars(select(Event.sequence).where(Event.payment_id == T2).order_by(Event.sequence))
        )
        pending = await session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "pending"))
    assert seqs == [1, 2]
    assert pending == 2  # T2 and T3 have webhook URLs: their `expired` goes out; history stays as it was

    again = await run_import(legacy_url, db)
    assert sorted(again.payments_differing) == sorted([T2, T3, T5, T6])
    assert (await _payment(db, T2)).status == "expired"


async def test_dry_run_writes_nothing(legacy_url: str, db: Database) -> None:
    before = await row_counts(db)
    report = await run_import(legacy_url, db, dry_run=True)
    assert await row_counts(db) == before
    assert report.dry_run and report.merchants == 3 and sum(report.payments.values()) == 11
    assert (report.operations, report.refunds, report.webhook_logs) == (8, 2, 6)
    assert "DRY RUN" in report.lines()[0]

    # And after a real import, a dry run finds everything present.
    await run_import(legacy_url, db)
    after = await row_counts(db)
    report = await run_import(legacy_url, db, dry_run=True)
    assert await row_counts(db) == after
    assert (report.merchants, sum(report.payments.values()), report.payments_present) == (0, 0, 11)


async def test_options_merchant_webhook_urls_and_provider(legacy_url: str, db: Database) -> None:
    await run_import(legacy_url, db, merchant_webhook_urls=True, default_provider=None, batch_size=2)
    async with db.reading() as session:
        one = await session.get(Merchant, "mer_legacy_1")
        count = await session.scalar(select(func.count()).select_from(Payment))
    assert one is not None
    assert (one.webhook_url, one.default_provider) == ("https://shop-one.example/unused-hook", None)
    assert count == 11  # small batches page through every transaction


async def test_source_errors_are_reported(legacy_server: str, db: Database) -> None:
    with pytest.raises(LegacyImportError, match="MySQL"):
        await import_legacy("sqlite:///old.db", db)
    empty = f"legacy_empty_{uuid.uuid4().hex[:8]}"
    admin = create_engine(legacy_server, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f"CREATE DATABASE {empty}"))
        url = make_url(legacy_server).set(database=empty).render_as_string(hide_password=False)
        with pytest.raises(LegacyImportError, match="no sources or transactions table"):
            await import_legacy(url, db)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS {empty}"))
        await admin.dispose()
    counts = await row_counts(db)
    assert {table: n for table, n in counts.items() if n and table != "payment_methods"} == {}


# --- the command, end to end ----------------------------------------------------------------


OS_USER = "ops-legacy"


async def _cli(database_url: str, cwd: Path, *args: str, **env_extra: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYCENTER_")}
    env.update(PAYCENTER_DATABASE_URL=database_url, NO_COLOR="1", COLUMNS="200", **env_extra)
    env.update(LOGNAME=OS_USER, SUDO_USER="")  # who the audit log names
    return await paycenter_cli(*args, cwd=cwd, env=env)


@pytest.mark.slow  # `paycenter import-legacy` as a process
async def test_cli_end_to_end(legacy_url: str, tmp_path: Path) -> None:
    """The console script against a fresh SQLite file: dry run, import (migrating first), re-run."""
    target = f"sqlite:///{tmp_path / 'paycenter.db'}"

    rc, out, err = await _cli(target, tmp_path, "import-legacy", legacy_url, "--dry-run")
    assert rc == 1 and "paycenter migrate" in err  # a dry run does not create the schema

    key = crypto.new_key()
    rc, out, err = await _cli(target, tmp_path, "import-legacy", legacy_url, "--json", PAYCENTER_SECRET_KEYS=key)
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["merchants"] == {"imported": 3, "already_present": 0}
    assert summary["payments"]["imported"] == 11
    assert summary["payments"]["by_status"]["paid"] == 4
    assert (summary["operations"], summary["refunds"], summary["webhook_logs"]) == (8, 2, 6)
    assert len(summary["skipped"]) == 6
    # The test settings enable only the sandbox: the operator is told the merchants' provider is off.
    assert any("kaspi_pos" in w and "PAYCENTER_ENABLED_PROVIDERS" in w for w in summary["warnings"])

    rc, out, err = await _cli(target, tmp_path, "import-legacy", legacy_url)
    assert rc == 0, err
    assert "merchants:        0 / 3" in out and "payments:         0 / 11" in out
    assert "transactions 12: its source 99 does not exist" in out
    assert "mer_legacy_1: 127.0.0.1, 10.0.0.5" in out
    assert "password" not in out

    db = Database(target)
    try:
        async with db.reading() as session:
            owner = await session.scalar(
                select(ApiToken.merchant_id).where(ApiToken.token_hash == hash_token(TOKEN_ONE))
            )
            assert owner == "mer_legacy_1"
            assert await session.scalar(select(func.count()).select_from(Payment)) == 11
            # The command used PAYCENTER_SECRET_KEYS: the webhook secret went in encrypted.
            stored = await session.scalar(text("SELECT webhook_secret FROM payments WHERE id = :p"), {"p": T1})
            assert stored.startswith("fernet:") and crypto.Keyring([key]).open(stored) == "secret-one"
            # Each real import (not the dry run) is recorded once, by the OS user who ran it.
            log = list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
    finally:
        await db.dispose()
    assert [(a.actor, a.action) for a in log] == [(f"cli:{OS_USER}", "legacy_import")] * 2
    first, again = (a.details for a in log)
    assert log[0].target == make_url(legacy_url).render_as_string(hide_password=True)
    assert (first["merchants"], first["payments"]["imported"], first["skipped"]) == (
        {"imported": 3, "already_present": 0},
        11,
        6,
    )
    assert (again["merchants"]["imported"], again["payments"]["already_present"]) == (0, 11)

    rc, out, err = await _cli(target, tmp_path, "import-legacy", "mysql://nobody@127.0.0.1:1/none")
    assert rc == 1 and "cannot connect" in err
