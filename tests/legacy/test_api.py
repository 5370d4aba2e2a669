"""The ``legacy`` API version renders answers as the old PHP system did (shared/reference/
legacy-api.md): its shapes, key order and JSON types, naive Asia/Almaty times, its messages, and
its ``/api/transactions`` filters with offset paging. The same domain answers both versions; a
current-version merchant keeps the current shapes. Also: the old filters in the current version
(validated, unknown parameters refused) and ``/api/...`` paths with a trailing slash."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from kit.api import SEED_BODY, MerchantCreds, create_payment, make_merchant, sandbox
from kit.clock import Clock
from paycenter import versions
from paycenter.db import Database
from paycenter.timefmt import ALMATY, almaty
from paycenter.webhooks.models import Delivery, DeliveryAttempt

ALMATY_TIME = re.compile(r"\A\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\Z")
AMOUNT = re.compile(r"\A\d+\.\d{2}\Z")

PUBLIC_KEYS = [
    "transaction_id",
    "amount",
    "currency",
    "status",
    "description",
    "payment_url",
    "qr_code",
    "paid_amount",
    "remaining_amount",
    "created_at",
    "paid_at",
]
ITEM_KEYS = [
    "transaction_id",
    "amount",
    "original_amount",
    "paid_amount",
    "actual_amount_received",
    "remaining_amount",
    "currency",
    "status",
    "description",
    "metadata",
    "created_at",
    "paid_at",
    "expires_at",
]
SUMMARY_KEYS = [
    "total_transactions",
    "paid_count",
    "partially_paid_count",
    "cancelled_count",
    "total_paid_amount",
    "total_received_amount",
    "total_commission",
    "refund_count",
    "refunded_amount",
]


@pytest.fixture
async def legacy(db: Database) -> MerchantCreds:
    return await make_merchant(db, name="Old shop", api_version=versions.LEGACY)


def at(clock: Clock, instant: datetime) -> None:
    """Freeze the app's clock at an instant."""
    clock.offset = timedelta()
    clock.frozen = instant


def data(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is True
    return body["data"]


# --- times ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instant", "shown"),
    [
        (datetime(2024, 6, 1, 7, 8, 9, 999999, tzinfo=UTC), "2024-06-01 12:08:09"),  # UTC+5 since 2024-03
        (datetime(2024, 1, 15, 20, 0, 0, tzinfo=UTC), "2024-01-16 02:00:00"),  # UTC+6 before
        # Midnight of 2024-03-01 at +6 became 23:00 of 2024-02-29 at +5: that hour came twice.
        (datetime(2024, 2, 29, 17, 30, tzinfo=UTC), "2024-02-29 23:30:00"),
        (datetime(2024, 2, 29, 18, 30, tzinfo=UTC), "2024-02-29 23:30:00"),
        (datetime(2024, 2, 29, 19, 0, tzinfo=UTC), "2024-03-01 00:00:00"),
    ],
)
def test_almaty_format(instant: datetime, shown: str) -> None:
    assert almaty(instant) == shown
    assert almaty(instant.replace(tzinfo=None)) == shown  # stored naive means UTC
    assert almaty(None) is None


# --- init, read, status --------------------------------------------------------------------------


async def test_init_and_read_in_the_old_shapes(client: httpx.AsyncClient, legacy: MerchantCreds, clock: Clock) -> None:
    at(clock, datetime(2024, 6, 1, 7, 8, 9, tzinfo=UTC))
    r = await client.post("/api/payment/init", json=SEED_BODY | {"description": ""}, headers=legacy.headers)
    assert r.json()["message"] == "Платеж создан"
    created = data(r, 201)
    assert list(created) == ["transaction_id", "amount", "currency", "status", "expires_at", "payment_url"]
    assert created["amount"] == "500.00" and created["status"] == "pending"
    assert ALMATY_TIME.match(created["expires_at"])
    pid = created["transaction_id"]
    assert re.fullmatch(r"[0-9A-F]{32}", pid)

    for path in (f"/api/payment/{pid}", f"/api/payment/{pid}/status", f"/api/payment/{pid.lower()}/"):
        shown = data(await client.get(path))
        assert list(shown) == PUBLIC_KEYS, path
        assert shown["created_at"] == "2024-06-01 12:08:09"
        assert shown["description"] is None  # empty text is null in the old API
        assert shown["paid_amount"] == "0.00" and shown["remaining_amount"] == "500.00"
        assert shown["paid_at"] is None and shown["qr_code"] is None
        assert shown["payment_url"] == f"http://pay.test/pay/{pid}"

    at(clock, datetime(2024, 6, 1, 8, 0, 0, tzinfo=UTC))
    await sandbox(client, pid)
    paid = data(await client.get(f"/api/payment/{pid}/status"))
    assert paid["status"] == "paid" and paid["paid_amount"] == "500.00"
    assert paid["paid_at"] == "2024-06-01 13:00:00"


async def test_unknown_payment_in_the_old_words(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/payment/" + "A" * 32, headers={"Paycenter-Version": "legacy"})
    assert r.status_code == 404 and r.json()["message"] == "Транзакция не найдена"
    r = await client.get("/api/payment/" + "A" * 32)
    assert r.status_code == 404 and r.json()["message"] == "Payment not found"


async def test_the_header_overrides_the_pinned_version(
    client: httpx.AsyncClient, legacy: MerchantCreds, merchant: MerchantCreds
) -> None:
    pid = (await create_payment(client, merchant))["transaction_id"]
    as_legacy = {**merchant.headers, "Paycenter-Version": "legacy"}
    assert list(data(await client.get(f"/api/payment/{pid}", headers=as_legacy))) == PUBLIC_KEYS
    assert "paid_late" in data(await client.get(f"/api/payment/{pid}"))
    assert "transactions" in data(await client.get("/api/transactions", headers=as_legacy))
    old_pid = (await create_payment(client, legacy))["transaction_id"]
    as_current = {**legacy.headers, "Paycenter-Version": versions.CURRENT}
    assert "paid_late" in data(await client.get(f"/api/payment/{old_pid}", headers=as_current))
    assert "items" in data(await client.get("/api/transactions", headers=as_current))
    r = await client.post("/api/payment/init", json=SEED_BODY, headers=as_current)
    assert r.json()["message"] == "Payment created"


# --- cancel --------------------------------------------------------------------------------------


async def test_cancel_in_the_old_way(
    client: httpx.AsyncClient, legacy: MerchantCreds, other_merchant: MerchantCreds
) -> None:
    pid = (await create_payment(client, legacy))["transaction_id"]
    foreign = await client.post(f"/api/payment/{pid}/cancel", headers=other_merchant.headers)
    assert foreign.status_code == 404  # another merchant's payment is still refused
    foreign = await client.post(
        f"/api/payment/{pid}/cancel", headers={**other_merchant.headers, "Paycenter-Version": "legacy"}
    )
    assert foreign.status_code == 400 and foreign.json()["message"] == "Транзакция не найдена"

    first = await client.post(f"/api/payment/{pid}/cancel", headers=legacy.headers)
    assert first.status_code == 200, first.text
    assert first.json() == {"success": True, "message": "Платеж отменен", "data": None}
    again = await client.post(f"/api/payment/{pid}/cancel", headers=legacy.headers)
    assert again.status_code == 200 and again.json() == first.json()
    assert data(await client.get(f"/api/payment/{pid}"))["status"] == "cancelled"

    missing = await client.post("/api/payment/" + "B" * 32 + "/cancel", headers=legacy.headers)
    assert missing.status_code == 400 and missing.json()["message"] == "Транзакция не найдена"

    paid = (await create_payment(client, legacy))["transaction_id"]
    await sandbox(client, paid)
    r = await client.post(f"/api/payment/{paid}/cancel", headers=legacy.headers)
    assert r.status_code == 400 and r.json()["message"] == "Нельзя отменить оплаченную транзакцию"
    assert r.json()["success"] is False


async def test_cancel_for_the_current_version_is_unchanged(client: httpx.AsyncClient, merchant: MerchantCreds) -> None:
    pid = (await create_payment(client, merchant))["transaction_id"]
    first = await client.post(f"/api/payment/{pid}/cancel", headers=merchant.headers)
    assert first.status_code == 200 and first.json()["data"]["status"] == "cancelled"
    again = await client.post(f"/api/payment/{pid}/cancel", headers=merchant.headers)
    assert again.status_code == 409


# --- one transaction, statistics ----------------------------------------------------------------


async def test_transaction_detail_in_the_old_shape(
    client: httpx.AsyncClient, db: Database, legacy: MerchantCreds, other_merchant: MerchantCreds, clock: Clock
) -> None:
    at(clock, datetime(2024, 6, 1, 7, 0, 0, tzinfo=UTC))
    pid = (await create_payment(client, legacy, amount=1000))["transaction_id"]
    at(clock, datetime(2024, 6, 1, 7, 5, 0, tzinfo=UTC))
    await client.post(f"/pay/{pid}/sandbox", data={"action": "pay", "amount": "400"})
    at(clock, datetime(2024, 6, 1, 7, 6, 0, tzinfo=UTC))
    await sandbox(client, pid)
    # Two tries of the first webhook: one refused, one taken (the dispatcher does not run here).
    async with db.transaction() as session:
        first = select(Delivery).where(Delivery.payment_id == pid).order_by(Delivery.created_at)
        delivery = (await session.scalars(first)).first()
        assert delivery is not None
        for number, (code, minute) in enumerate([(500, 10), (200, 11)], start=1):
            session.add(
                DeliveryAttempt(
                    delivery_id=delivery.id,
                    number=number,
                    started_at=datetime(2024, 6, 1, 7, minute, tzinfo=UTC),
                    duration_ms=5,
                    request_headers="{}",
                    request_body="{}",
                    response_status=code,
                )
            )

    got = data(await client.get(f"/api/transaction/{pid}", headers=legacy.headers))
    assert list(got) == ["transaction", "partial_payments", "webhook_logs"]
    txn = got["transaction"]
    assert "webhook_secret" not in txn and "merchant_id" not in txn and "source_id" not in txn
    assert not any("secret" in key for key in txn)
    assert txn["transaction_id"] == pid and txn["status"] == "paid"
    for key in ("amount", "original_amount", "paid_amount", "actual_amount_received", "remaining_amount"):
        assert AMOUNT.match(txn[key]), key
    assert txn["paid_amount"] == "1000.00" and txn["commission_amount"] == "0.00"
    assert txn["metadata"] == SEED_BODY["metadata"]
    assert txn["created_at"] == "2024-06-01 12:00:00" and txn["paid_at"] == "2024-06-01 12:06:00"

    parts = got["partial_payments"]
    assert [p["amount"] for p in parts] == ["400.00", "600.00"]  # oldest first
    for p in parts:
        assert list(p) == [
            "amount",
            "commission_percent",
            "commission_amount",
            "status",
            "is_refunded",
            "paid_at",
            "refunded_at",
        ]
        assert p["is_refunded"] == 0 and p["refunded_at"] is None and p["commission_percent"] == "0.00"
    assert parts[0]["paid_at"] == "2024-06-01 12:05:00"

    logs = got["webhook_logs"]
    assert [(w["response_code"], w["is_success"]) for w in logs] == [(200, 1), (500, 0)]  # newest first
    assert list(logs[0]) == ["event_type", "is_success", "response_code", "created_at"]
    assert logs[0]["event_type"] == "partially_paid" and logs[0]["created_at"] == "2024-06-01 12:11:00"

    as_legacy = {**other_merchant.headers, "Paycenter-Version": "legacy"}
    foreign = await client.get(f"/api/transaction/{pid}", headers=as_legacy)
    assert foreign.status_code == 404 and foreign.json()["message"] == "Transaction not found"


async def test_statistics_in_the_old_shape(client: httpx.AsyncClient, legacy: MerchantCreds, clock: Clock) -> None:
    at(clock, datetime(2024, 6, 10, 6, 0, tzinfo=UTC))
    paid = (await create_payment(client, legacy, amount=1000))["transaction_id"]
    await sandbox(client, paid)
    part = (await create_payment(client, legacy, amount=300))["transaction_id"]
    await client.post(f"/pay/{part}/sandbox", data={"action": "pay", "amount": "100.50"})
    cancelled = (await create_payment(client, legacy, amount=50))["transaction_id"]
    await client.post(f"/api/payment/{cancelled}/cancel", headers=legacy.headers)
    r = await client.post(f"/api/payment/{paid}/refund", json={"amount": 100}, headers=legacy.headers)
    assert r.status_code == 200, r.text

    stats = data(await client.get("/api/statistics", headers=legacy.headers))
    assert list(stats) == ["period", "summary", "by_payment_method", "credit_installment"]
    assert stats["period"] == {"from": "2024-05-11", "to": "2024-06-10"}
    s = stats["summary"]
    assert list(s) == SUMMARY_KEYS
    assert s["total_transactions"] == 3 and s["paid_count"] == 1  # partly refunded, still paid
    assert s["partially_paid_count"] == 1 and s["cancelled_count"] == 1
    assert s["total_paid_amount"] == 1100.5 and s["total_received_amount"] == 1100.5
    assert s["total_commission"] == 0 and isinstance(s["total_commission"], int)
    assert s["refund_count"] == 1 and s["refunded_amount"] == 100
    for m in stats["by_payment_method"]:
        assert list(m) == ["payment_method", "count", "total_amount", "total_commission"]
        assert isinstance(m["count"], int) and AMOUNT.match(m["total_amount"])
    assert sum(m["count"] for m in stats["by_payment_method"]) == 2
    assert list(stats["credit_installment"]) == ["count", "total_amount", "total_commission"]

    earlier = await client.get("/api/statistics?date_from=2024-01-01&date_to=2024-06-09", headers=legacy.headers)
    assert data(earlier)["summary"]["total_transactions"] == 0
    bad = await client.get("/api/statistics?date_from=yesterday", headers=legacy.headers)
    assert bad.status_code == 400 and "date_from" in bad.json()["message"]


# --- the listing and its filters -----------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    pid: str
    amount: Decimal
    status: str
    day: date  # created, in Almaty
    created: datetime


# (UTC instant of creation, amount, what happens next)
PLAN = [
    (datetime(2024, 2, 29, 19, 30, tzinfo=UTC), "100", "pay"),  # 2024-03-01 00:30 in Almaty (+5)
    (datetime(2024, 2, 29, 18, 30, tzinfo=UTC), "100.50", None),  # 2024-02-29 23:30 (+5, the hour again)
    (datetime(2024, 2, 29, 17, 0, tzinfo=UTC), "7", None),  # 2024-02-29 23:00 (+6)
    (datetime(2024, 3, 1, 19, 0, tzinfo=UTC), "250", "cancel"),  # 2024-03-02 00:00 (+5)
    (datetime(2024, 3, 2, 18, 59, 59, tzinfo=UTC), "999.99", None),  # 2024-03-02 23:59:59
    (datetime(2024, 3, 3, 6, 0, tzinfo=UTC), "1000", "pay"),
    (datetime(2024, 3, 3, 6, 0, 1, tzinfo=UTC), "0.01", None),
    (datetime(2024, 3, 5, 12, 0, tzinfo=UTC), "5000", "cancel"),
]


@pytest.fixture
async def rows(client: httpx.AsyncClient, legacy: MerchantCreds, merchant: MerchantCreds, clock: Clock) -> list[Row]:
    out = []
    for instant, amount, then in PLAN:
        at(clock, instant)
        pid = (await create_payment(client, legacy, amount=amount, description=f"p {amount}"))["transaction_id"]
        if then == "pay":
            await sandbox(client, pid)
        elif then == "cancel":
            assert (await client.post(f"/api/payment/{pid}/cancel", headers=legacy.headers)).status_code == 200
        status = {"pay": "paid", "cancel": "cancelled", None: "pending"}[then]
        out.append(Row(pid, Decimal(amount), status, instant.astimezone(ALMATY).date(), instant))
    at(clock, datetime(2024, 3, 3, 6, 0, tzinfo=UTC))
    await create_payment(client, merchant)  # another merchant's: never listed
    return out


def expected(rows: list[Row], q: dict[str, str]) -> list[str]:
    """The old API's listing, in Python: filters, newest first."""

    def keep(r: Row) -> bool:
        def given_(name: str) -> str | None:
            v = q.get(name)
            return None if v in (None, "", "0") else v

        if given_("status") and r.status != q["status"]:
            return False
        if given_("date_from") and r.day < date.fromisoformat(q["date_from"]):
            return False
        if given_("date_to") and r.day > date.fromisoformat(q["date_to"]):
            return False
        if given_("amount_from") and r.amount < Decimal(q["amount_from"]):
            return False
        return not (given_("amount_to") and r.amount > Decimal(q["amount_to"]))

    return [r.pid for r in sorted(rows, key=lambda r: r.created, reverse=True) if keep(r)]


async def listed_as_modelled(
    client: httpx.AsyncClient, legacy: MerchantCreds, rows: list[Row], query: dict[str, str]
) -> None:
    """The page the old API answers for ``query``: the model's rows, sliced by limit and offset."""
    page = data(await client.get("/api/transactions", params=query, headers=legacy.headers))
    want = expected(rows, query)
    limit = min(int(query.get("limit") or 100), 1000)
    offset = int(query.get("offset") or 0)
    assert page["total"] == len(want)
    assert page["limit"] == limit and page["offset"] == offset
    assert [t["transaction_id"] for t in page["transactions"]] == want[offset : offset + limit]


async def test_legacy_listing_shape(client: httpx.AsyncClient, legacy: MerchantCreds, rows: list[Row]) -> None:
    page = data(await client.get("/api/transactions", headers=legacy.headers))
    assert list(page) == ["transactions", "total", "limit", "offset"]
    assert page["total"] == len(rows) and page["limit"] == 100 and page["offset"] == 0
    assert [t["transaction_id"] for t in page["transactions"]] == expected(rows, {})
    for item in page["transactions"]:
        assert list(item) == ITEM_KEYS
        for key in ITEM_KEYS[1:6]:
            assert AMOUNT.match(item[key]), key
        assert item["metadata"] == SEED_BODY["metadata"]
        for key in ("created_at", "expires_at"):
            assert ALMATY_TIME.match(item[key])
    assert [t["created_at"] for t in page["transactions"][-3:]] == [
        "2024-03-01 00:30:00",
        "2024-02-29 23:30:00",
        "2024-02-29 23:00:00",
    ]


@pytest.mark.parametrize(
    "query",
    [
        {"status": "paid"},
        {"status": "cancelled", "limit": "1"},
        {"status": "bogus"},
        {"status": "", "date_from": "0", "amount_to": ""},  # the old "ignored" values
        {"date_from": "2024-03-01", "date_to": "2024-03-01"},  # the first +5 day: 19:00 UTC to 19:00
        {"date_from": "2024-02-29", "date_to": "2024-02-29"},  # 18:00 UTC the day before, +6, to 19:00
        {"date_to": "2024-02-29"},
        {"amount_from": "100.5", "amount_to": "1000"},
        {"amount_from": "100.001"},
        {"amount_to": "0.01"},
        {"limit": "2", "offset": "2"},
        {"limit": "0"},
        {"limit": "5000"},
        {"offset": "6"},
        {"offset": "60"},
    ],
)
async def test_legacy_filters(
    client: httpx.AsyncClient, legacy: MerchantCreds, rows: list[Row], query: dict[str, str]
) -> None:
    await listed_as_modelled(client, legacy, rows, query)


@pytest.mark.parametrize(
    "query",
    [{"limit": "-1"}, {"offset": "-5"}, {"limit": "ten"}, {"date_from": "01.03.2024"}, {"amount_from": "abc"}],
)
async def test_legacy_bad_filters_are_400(
    client: httpx.AsyncClient, legacy: MerchantCreds, query: dict[str, str]
) -> None:
    r = await client.get("/api/transactions", params=query, headers=legacy.headers)
    assert r.status_code == 400 and r.json()["success"] is False
    assert next(iter(query)) in r.json()["message"]


DAYS = st.sampled_from(["", "0", "2024-02-28", "2024-02-29", "2024-03-01", "2024-03-02", "2024-03-03", "2024-03-06"])
AMOUNTS = st.sampled_from(["", "0", "0.01", "50", "100", "100.5", "100.50", "250", "999.99", "1000", "1e3", "6000"])


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    query=st.fixed_dictionaries(
        {},
        optional={
            "status": st.sampled_from(["", "0", "pending", "paid", "cancelled", "expired"]),
            "date_from": DAYS,
            "date_to": DAYS,
            "amount_from": AMOUNTS,
            "amount_to": AMOUNTS,
            "limit": st.integers(0, 8).map(str),
            "offset": st.integers(0, 8).map(str),
        },
    )
)
async def test_legacy_filters_match_a_model_of_the_rows(
    client: httpx.AsyncClient, legacy: MerchantCreds, rows: list[Row], query: dict[str, str]
) -> None:
    await listed_as_modelled(client, legacy, rows, query)


async def test_current_version_takes_the_old_filters_with_cursor_paging(
    client: httpx.AsyncClient, legacy: MerchantCreds, rows: list[Row]
) -> None:
    headers = {**legacy.headers, "Paycenter-Version": versions.CURRENT}
    query = {"date_from": "2024-03-01", "date_to": "2024-03-03", "amount_from": "100", "amount_to": "1000"}
    seen, cursor = [], None
    while True:
        params = query | {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = data(await client.get("/api/transactions", params=params, headers=headers))
        seen += [i["transaction_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == expected(rows, query)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"date_form": "2024-03-01"}, "date_form"),  # a misspelt filter never lists everything
        ({"offset": "2"}, "offset"),
        ({"date_from": "2024-02-30"}, "date_from"),
        ({"date_to": "01.03.2024"}, "date_to"),
        ({"amount_from": "abc"}, "amount_from"),
        ({"amount_to": "-5"}, "amount_to"),
    ],
)
async def test_current_version_refuses_unknown_and_bad_filters(
    client: httpx.AsyncClient, merchant: MerchantCreds, query: dict[str, str], field: str
) -> None:
    r = await client.get("/api/transactions", params=query, headers=merchant.headers)
    assert r.status_code == 422, r.text
    assert field in r.json()["message"]
    assert [f["field"] for f in r.json()["error"]["fields"]] == [field]


# --- trailing slashes ----------------------------------------------------------------------------


async def test_api_paths_with_a_trailing_slash_are_served_not_redirected(
    client: httpx.AsyncClient, legacy: MerchantCreds
) -> None:
    r = await client.post("/api/payment/init/", json=SEED_BODY, headers=legacy.headers)
    assert r.status_code == 201, r.text
    pid = r.json()["data"]["transaction_id"]
    assert (await client.get(f"/api/payment/{pid}//")).status_code == 200
    assert (await client.get("/api/transactions/", headers=legacy.headers)).status_code == 200
    r = await client.post(f"/api/payment/{pid}/cancel/", headers=legacy.headers)
    assert r.status_code == 200, r.text
    assert (await client.get("/docs")).status_code == 200
    assert (await client.get(f"/pay/{pid}")).status_code == 200


# --- the answers match the legacy document ------------------------------------------------------


async def test_every_legacy_answer_matches_the_legacy_document(
    client: httpx.AsyncClient, legacy: MerchantCreds, other_merchant: MerchantCreds
) -> None:
    """The renderers and /openapi-legacy.json's models (payments.legacy_schemas) are written apart,
    both from legacy-api.md: each legacy answer is validated strictly (no string taken for a
    number or back) against the model its operation declares."""
    from paycenter.payments import legacy_schemas as ls

    headers = {"X-API-Token": legacy.token}
    created = await client.post("/api/payment/init", json=SEED_BODY, headers=headers)
    pid = created.json()["data"]["transaction_id"]
    await client.post(f"/pay/{pid}/sandbox", data={"action": "pay", "amount": "100"})
    second = (await create_payment(client, legacy))["transaction_id"]
    answers: list[tuple[type[Any], httpx.Response]] = [
        (ls.LegacyInitEnvelope, created),
        (ls.LegacyPaymentEnvelope, await client.get(f"/api/payment/{pid}")),
        (ls.LegacyPaymentEnvelope, await client.get(f"/api/payment/{pid}/status", headers=headers)),
        (ls.LegacyTransactionsEnvelope, await client.get("/api/transactions?limit=5", headers=headers)),
        (ls.LegacyTransactionEnvelope, await client.get(f"/api/transaction/{pid}", headers=headers)),
        (ls.LegacyStatisticsEnvelope, await client.get("/api/statistics", headers=headers)),
        (ls.LegacyPaymentMethodsEnvelope, await client.get("/api/payment-methods", headers=headers)),
        (ls.LegacyPaymentMethodsEnvelope, await client.get("/api/payment-methods/active", headers=headers)),
        (ls.LegacyKaspiEnvelope, await client.post(f"/api/payment/{second}/kaspi", json={})),
        (ls.LegacyEmptyEnvelope, await client.post(f"/api/payment/{second}/track-visit")),
        (ls.LegacyEmptyEnvelope, await client.post(f"/api/payment/{second}/cancel", headers=headers)),
        (ls.LegacyErrorEnvelope, await client.post("/api/payment/init", json={"amount": 0}, headers=headers)),
        (ls.LegacyErrorEnvelope, await client.get("/api/transaction/" + "F" * 32, headers=headers)),
    ]
    for model, response in answers:
        assert response.status_code < 500, response.text
        model.model_validate(response.json(), strict=True)
    assert "webhook_secret" not in answers[4][1].text


@pytest.mark.parametrize("legacy_version", [True, False])
async def test_webhook_times_follow_the_merchants_version(
    client: httpx.AsyncClient,
    db: Database,
    legacy: MerchantCreds,
    merchant: MerchantCreds,
    clock: Clock,
    legacy_version: bool,
) -> None:
    """legacy-api.md §6: the old webhooks carried created_at/paid_at (and expired's expired_at) in
    the old format; a current merchant's keep RFC 3339 UTC."""
    import json

    from paycenter.jobs.expirer import expire_due
    from paycenter.payments.models import Event

    creds = legacy if legacy_version else merchant
    at(clock, datetime(2024, 6, 1, 7, 0, 0, tzinfo=UTC))
    paid = (await create_payment(client, creds))["transaction_id"]
    await sandbox(client, paid)
    expiring = (await create_payment(client, creds))["transaction_id"]
    at(clock, datetime(2024, 6, 1, 9, 0, 0, tzinfo=UTC))  # past the default hour
    await expire_due(db, now=datetime(2024, 6, 1, 9, 0, 0, tzinfo=UTC))
    async with db.reading() as session:
        bodies = {
            (e.payment_id, e.type): json.loads(e.body)
            for e in await session.scalars(select(Event).where(Event.payment_id.in_([paid, expiring])))
        }
    body = bodies[(paid, "paid")]
    if legacy_version:
        assert (body["created_at"], body["paid_at"]) == ("2024-06-01 12:00:00", "2024-06-01 12:00:00")
    else:
        assert (body["created_at"], body["paid_at"]) == ("2024-06-01T07:00:00Z", "2024-06-01T07:00:00Z")
    expired = bodies[(expiring, "expired")]
    assert expired["expired_at"] == ("2024-06-01 13:00:00" if legacy_version else "2024-06-01T08:00:00Z")
