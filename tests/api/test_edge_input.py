"""Issue 11, defects 3 and 4 (and the NaN of defect 2): one edge validation for every way in.

Each test reproduces a defect as the issue reported it (they failed before the fix) and checks
the class, not only the example: every way in (API init and refund, the payment page, the admin's
refund form and filters, the legacy importer) refuses the same inputs with a 4xx or the form's
error, writes nothing, and answers alike on SQLite, PostgreSQL and MariaDB; and rows stored before
the fix (or imported) still read, render and act without a 500.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.engine import make_url

from kit.admin import act, flash, new_user, signed_in
from kit.api import INIT, MerchantCreds, assert_error, create_payment, post_json, refused, sandbox, seed, snapshot
from kit.clock import Clock
from kit.db import REQUIRED, SERVER_URLS, row_counts
from kit.legacy import FIXTURES, NOW, sql_statements
from paycenter import storable
from paycenter.db import Database, create_engine, new_id
from paycenter.legacy.importer import Options, import_legacy, parse_metadata
from paycenter.operators.models import Role
from paycenter.payments.models import Event, Operation, Payment, Refund


def nested(depth: int, leaf: Any = 1) -> Any:
    """``depth`` levels of arrays around ``leaf``: [[[1]]] is 3."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


async def paid(client: httpx.AsyncClient, creds: MerchantCreds, **kw: Any) -> str:
    pid = (await create_payment(client, creds, **kw))["transaction_id"]
    await sandbox(client, pid, checkout_id=new_id("co"))
    return pid


async def no_5xx_reads(client: httpx.AsyncClient, creds: MerchantCreds, pid: str) -> None:
    """Every read of a payment a merchant has: 200, and JSON that parses."""
    for url in (
        f"/api/payment/{pid}",
        f"/api/transaction/{pid}",
        "/api/transactions",
        "/api/events",
        f"/api/events?transaction_id={pid}",
        f"/api/payment/{pid}/webhooks",
    ):
        r = await client.get(url, headers=creds.headers)
        assert r.status_code == 200, f"{url}: {r.status_code} {r.text[:300]}"
        json.loads(r.content)


@pytest.fixture
async def operator(db: Database, clock: Clock, app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A second browser, signed in to the admin panel as an admin."""
    boss = await new_user(db, clock, "boss", Role.ADMIN)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pay.test") as browser:
        yield await signed_in(browser, boss)


# --- defect 3: amounts ---------------------------------------------------------------------------

# Decimal() takes every one of these; none is an amount. 1e-1000000000 was paid as 0.00, 1e999999
# was a 500 (decimal.Overflow), "1_000" and other scripts' digits were taken as numbers.
HOSTILE_AMOUNTS = [
    "1e-1000000000",
    "1e999999",
    "1E+99999999999999999999",
    "0.0000000000000000000000000000000001",
    "1_000",
    "٥٠٠",  # Arabic-Indic digits
    "５００",  # fullwidth digits
    "१००",  # Devanagari digits
    "1\u00a0000",
    "sNaN",
    "-Infinity",
    "0x1F4",
]


@pytest.mark.parametrize("amount", HOSTILE_AMOUNTS)
async def test_init_refuses_amounts_only_decimal_would_take(client, db, merchant, amount):
    await refused(db, post_json(client, merchant, INIT, seed(amount=amount)), 422, "validation_error", "amount")


@pytest.mark.parametrize(
    "raw",
    [
        # Rounded to 500.0 by the float the JSON parser made: now read from the text as sent.
        pytest.param(b'{"amount": 500.000000000000000001}', id="more-digits-than-a-float"),
        pytest.param(b'{"amount": 1e-400}', id="float-underflows-to-zero"),
        pytest.param(b'{"amount": 1e999999}', id="float-overflows-to-infinity"),
        pytest.param(b'{"amount": 5e-324}', id="subnormal"),
    ],
)
async def test_init_reads_json_numbers_exactly(client, db, merchant, raw):
    await refused(db, post_json(client, merchant, INIT, raw), 422, "validation_error", "amount")


async def test_exact_json_numbers_still_pass(client, db, merchant):
    for raw, amount in ((b"500.50", "500.50"), (b"5.0E2", "500.00"), (b"1", "1.00"), (b"0.01", "0.01")):
        r = await client.post(
            INIT, content=b'{"amount": ' + raw + b"}", headers={**merchant.headers, "Content-Type": "application/json"}
        )
        assert r.status_code == 201, r.text
        assert r.json()["data"]["amount"] == amount


@pytest.mark.parametrize("amount", [*HOSTILE_AMOUNTS, "0", "-5"])
async def test_api_refund_refuses_the_same_amounts(client, db, merchant, amount):
    pid = await paid(client, merchant)
    before = await snapshot(client, merchant, pid)
    url = f"/api/payment/{pid}/refund"
    await refused(db, post_json(client, merchant, url, {"amount": amount}), 422, "validation_error", "amount")
    assert await snapshot(client, merchant, pid) == before


@pytest.mark.parametrize("amount", ["1e-1000000000", "1e999999", "1_000", "٥٠", "0"])
async def test_payment_page_refuses_the_same_amounts(client, db, merchant, amount):
    """The sandbox's amount field: an error on the page, no attempt and no operation written."""
    pid = (await create_payment(client, merchant))["transaction_id"]
    before = await row_counts(db)
    r = await client.post(f"/pay/{pid}/sandbox", data={"action": "pay", "amount": amount, "checkout_id": "c1"})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"/pay/{pid}?error=error_amount"
    assert await row_counts(db) == before
    page = await client.get(r.headers["location"])
    assert page.status_code == 200


async def test_payment_page_takes_what_people_type(client, db, merchant):
    pid = (await create_payment(client, merchant, amount=2000))["transaction_id"]
    await sandbox(client, pid, amount="1\u202f000,50", checkout_id="c1")
    assert (await snapshot(client, merchant, pid))["paid_amount"] == "1000.50"


@pytest.mark.parametrize("amount", ["1e-1000000000", "1e999999", "1_000", "٥٠", "-1"])
async def test_admin_refund_form_refuses_the_same_amounts(client, db, merchant, operator, amount):
    pid = await paid(client, merchant)
    before = await row_counts(db)
    r = await act(operator, f"/admin/transactions/{pid}/refund", {"amount": amount})
    assert "error" in flash(r), r.headers["location"]
    assert await row_counts(db) == before
    async with db.reading() as session:
        assert list(await session.scalars(select(Refund))) == []


@pytest.mark.parametrize("field", ["min_amount", "max_amount"])
@pytest.mark.parametrize("amount", ["1e999999", "1e-1000000000", "1_000", "٥٠"])
async def test_admin_amount_filters_show_the_error(client, db, merchant, operator, field, amount):
    await create_payment(client, merchant)
    r = await operator.get("/admin/transactions", params={field: amount})
    assert r.status_code == 200 and 'class="flash bad"' in r.text, r.text[:500]
    r = await operator.get("/admin/transactions.csv", params={field: amount})
    assert r.status_code == 422 and 'class="flash bad"' in r.text


# --- defect 4: text and structure ----------------------------------------------------------------

SURROGATE = "\ud800"
# Bodies as bytes: NaN and Infinity tokens are what Python's JSON parser takes and no JSON
# encoder writes back.
NON_FINITE = [b"NaN", b"Infinity", b"-Infinity", b"1e999999"]


def body_with(**fields: Any) -> bytes:
    return json.dumps(seed(**fields)).encode()  # ensure_ascii: a lone surrogate goes as \\ud800


def raw_init(metadata_json: bytes, **fields: bytes) -> bytes:
    extra = b"".join(b', "' + k.encode() + b'": ' + v for k, v in fields.items())
    return b'{"amount": 500, "currency": "KZT", "metadata": ' + metadata_json + extra + b"}"


INIT_REFUSALS: list[Any] = [
    pytest.param(body_with(metadata={"x": SURROGATE}), "metadata", id="surrogate-in-metadata-value"),
    pytest.param(body_with(metadata={SURROGATE: "x"}), "metadata", id="surrogate-in-metadata-key"),
    pytest.param(body_with(metadata={"order_id": "A" + SURROGATE}), "metadata", id="surrogate-order-id"),
    pytest.param(body_with(metadata={"deep": [{"x": "\udfff"}]}), "metadata", id="surrogate-nested"),
    pytest.param(body_with(description=SURROGATE), "description", id="surrogate-description"),
    pytest.param(body_with(customer_name="\udc80"), "customer_name", id="surrogate-customer-name"),
    pytest.param(body_with(webhook_secret=SURROGATE), "webhook_secret", id="surrogate-webhook-secret"),
    pytest.param(body_with(metadata={"x": "a\x00b"}), "metadata", id="nul-in-metadata"),
    # The surrogate as raw bytes (CESU-8), not as an escape: Python's JSON parser decodes bodies
    # with "surrogatepass", so it arrives the same.
    pytest.param(b'{"amount": 500, "description": "\xed\xa0\x80"}', "description", id="surrogate-as-raw-bytes"),
    pytest.param(body_with(metadata={"x": nested(10)}), "metadata", id="metadata-11-levels"),
    # 249 levels within the 500-character value limit: the admin page's tree hit RecursionError.
    pytest.param(body_with(metadata={"x": nested(248)}), "metadata", id="metadata-249-levels"),
    *[pytest.param(raw_init(b'{"x": ' + t + b"}"), "metadata", id=f"metadata-{t.decode()}") for t in NON_FINITE],
    *[
        pytest.param(raw_init(b'{"a": {"b": [1, ' + t + b"]}}"), "metadata", id=f"nested-{t.decode()}")
        for t in NON_FINITE
    ],
    pytest.param(raw_init(b"{}", expires_in=b"Infinity"), "expires_in", id="Infinity-expires-in"),
]


@pytest.mark.parametrize(("body", "field"), INIT_REFUSALS)
async def test_init_refuses_what_storage_or_pages_cannot_take(client, db, merchant, body, field):
    """The same 422 on every backend (before: 201 on SQLite and a 500 on every read, or a 500 at
    init on PostgreSQL), and nothing written."""
    response = await refused(db, post_json(client, merchant, INIT, body), 422, "validation_error", field)
    json.dumps(response, ensure_ascii=False).encode()  # the refusal itself encodes


@pytest.mark.parametrize(
    "surplus",
    [b'"\\ud800"', b"NaN", b"-Infinity", b'"a\\u0000b"', b"[" * 40 + b"]" * 40, b"1e999999"],
    ids=["surrogate", "NaN", "-Infinity", "NUL", "40-levels", "overflowing-number"],
)
async def test_fields_a_body_does_not_know_are_ignored_whatever_they_hold(client, db, merchant, surplus):
    """The document lets a body carry other properties (additionalProperties): they are dropped
    unread, as the old system did, so whatever they hold is never stored or shown and cannot
    make a valid body a 422."""
    response = await post_json(client, merchant, INIT, raw_init(b'{"order_id": "A-1"}', surplus=surplus))()
    assert response.status_code == 201, response.text
    pid = response.json()["data"]["transaction_id"]
    await no_5xx_reads(client, merchant, pid)
    detail = (await client.get(f"/api/transaction/{pid}", headers=merchant.headers)).json()["data"]
    assert "surplus" not in json.dumps(detail) and detail["metadata"] == {"order_id": "A-1"}


async def test_body_that_is_not_utf8_is_malformed(client, db, merchant):
    body = b'{"amount": 500, "description": "\xff\xfe"}'
    await refused(db, post_json(client, merchant, INIT, body), 400, "malformed_json")


async def test_metadata_depth_limit_is_inclusive_and_documented(client, db, merchant, operator):
    pid = (await create_payment(client, merchant, metadata={"x": nested(storable.MAX_DEPTH - 1)}))["transaction_id"]
    await no_5xx_reads(client, merchant, pid)
    page = await operator.get(f"/admin/transactions/{pid}")
    assert page.status_code == 200
    schema = (await client.get("/openapi.json")).json()
    assert schema["components"]["schemas"]["PaymentInit"]["properties"]["metadata"] == {
        "$ref": "#/components/schemas/Metadata"
    }
    described = schema["components"]["schemas"]["Metadata"]["description"]
    assert f"{storable.MAX_DEPTH} levels" in described


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("refund", {"amount": 1, "reason": "r" + SURROGATE}, "reason"),
        ("cancel", {"reason": SURROGATE}, "reason"),
        ("cancel", {"reason": "x\x00"}, "reason"),
    ],
)
async def test_refund_and_cancel_bodies_follow_the_same_rule(client, db, merchant, url, body, field):
    pid = (await create_payment(client, merchant))["transaction_id"]
    await sandbox(client, pid, amount="100", checkout_id="c1")
    before = await snapshot(client, merchant, pid)
    await refused(db, post_json(client, merchant, f"/api/payment/{pid}/{url}", body), 422, "validation_error", field)
    assert await snapshot(client, merchant, pid) == before


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/webhooks/recover", b'{"since": "2024-01-01T00:00:00Z", "until": NaN}', "until"),
        ("/api/webhooks/recover", {"since": "2024-01-01T00:00:00" + SURROGATE}, "since"),
        ("/api/webhook-secret/rotate", b'{"grace_period": Infinity}', "grace_period"),
    ],
)
async def test_webhook_api_bodies_follow_the_same_rule(client, db, merchant, url, body, field):
    await refused(db, post_json(client, merchant, url, body), 422, "validation_error", field)


# --- rows stored before the fix, or by someone else ----------------------------------------------


async def _try_store(db: Database, pid: str, metadata: Any) -> bool:
    """Write metadata straight to the row, as the old code did; False where the backend refuses it."""
    try:
        async with db.transaction() as session:
            await session.execute(update(Payment).where(Payment.id == pid).values(metadata_=metadata))
    except Exception:
        return False
    return True


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param({"x": float("nan"), "y": float("inf")}, id="non-finite"),
        pytest.param({"x": SURROGATE, SURROGATE: "y", "order": ["a\udfffb"]}, id="surrogates"),
        pytest.param({"x": nested(249)}, id="249-levels"),
        pytest.param({"x": "a\x00b"}, id="nul"),
    ],
)
async def test_old_rows_still_read_render_and_act(client, db, merchant, operator, backend, metadata):
    """A row the old API let in (SQLite stored NaN and lone surrogates) reads, renders, pays and
    cancels: no 500, and every event written for it is JSON that parses."""
    pid = (await create_payment(client, merchant, webhook_url="https://shop.example/hook"))["transaction_id"]
    if not await _try_store(db, pid, metadata):
        assert backend != "sqlite", "SQLite stores anything: the case must be exercised there"
        pytest.skip(f"{backend} refuses to store it: no such old row can exist there")
    await sandbox(client, pid, amount="100", checkout_id="c1")  # an event with the metadata in its body
    await no_5xx_reads(client, merchant, pid)
    page = await operator.get(f"/admin/transactions/{pid}")
    assert page.status_code == 200, page.text[:500]
    r = await client.post(f"/api/payment/{pid}/cancel", json={}, headers=merchant.headers)
    assert r.status_code == 200, r.text
    async with db.reading() as session:
        bodies = list(await session.scalars(select(Event.body).where(Event.payment_id == pid)))
    assert len(bodies) == 2
    for body in bodies:  # metadata is one level down in the body
        assert storable.problem(json.loads(body), max_depth=storable.MAX_DEPTH + 1) is None


async def test_stored_event_bodies_with_lone_surrogates_and_deep_nesting_read(client, db, merchant, operator):
    """Event bodies are text on every backend, so an old or imported one can hold anything JSON
    escapes can say: the events feed, the payment's reads and the admin page still answer."""
    pid = await paid(client, merchant, webhook_url="https://shop.example/hook")
    body = json.dumps({"event": "paid", "status": "paid", "metadata": {"x": SURROGATE, "d": nested(300)}})
    body = body[:-1] + ', "n": NaN}'
    async with db.transaction() as session:
        await session.execute(update(Event).where(Event.payment_id == pid).values(body=body))
    await no_5xx_reads(client, merchant, pid)
    events = (await client.get("/api/events", headers=merchant.headers)).json()["data"]["items"]
    assert events[0]["data"]["metadata"]["x"] == storable.REPLACEMENT
    assert events[0]["data"]["n"] is None
    assert (await operator.get(f"/admin/transactions/{pid}")).status_code == 200


# --- admin filters, CSV, paths and forms ---------------------------------------------------------

BAD_FILTERS: list[Any] = [
    pytest.param({"q": "a\x00b"}, id="nul-q"),
    pytest.param({"merchant": "\x00"}, id="nul-merchant"),
    pytest.param({"provider": "sandbox\x00"}, id="nul-provider"),
    pytest.param({"status": "paid\x00"}, id="nul-status"),
    pytest.param({"status": "bogus"}, id="unknown-status"),
    pytest.param({"date_from": "2024-01-01\x00"}, id="nul-date"),
    pytest.param({"date_to": "9999-12-31"}, id="date-to-last-day"),
    pytest.param({"date_from": "9999-12-31"}, id="date-from-last-day"),
    pytest.param({"date_from": "0001-01-01"}, id="date-from-first-day"),
    pytest.param({"date_to": "0001-01-01"}, id="date-to-first-day"),
    pytest.param({"min_amount": "1\x00"}, id="nul-amount"),
    pytest.param({"cursor": "\x00"}, id="nul-cursor"),
]


@pytest.mark.parametrize("params", BAD_FILTERS)
async def test_admin_filters_are_checked_before_any_query(client, db, merchant, operator, params):
    await create_payment(client, merchant, description="coffee")
    r = await operator.get("/admin/transactions", params=params)
    assert r.status_code == 200 and 'class="flash bad"' in r.text, r.text[:500]
    assert 'href="/admin/transactions/' not in r.text.split('class="flash bad"')[1]  # no rows listed


@pytest.mark.parametrize("params", [p for p in BAD_FILTERS if p.id != "nul-cursor"])
async def test_csv_with_a_bad_filter_is_a_4xx_before_any_row(client, db, merchant, operator, params):
    await create_payment(client, merchant, description="coffee")
    r = await operator.get("/admin/transactions.csv", params=params)
    assert r.status_code == 422, r.text[:300]
    assert r.headers["content-type"].startswith("text/html") and 'class="flash bad"' in r.text


async def test_csv_with_good_filters_still_streams(client, db, merchant, operator):
    pid = (await create_payment(client, merchant, description="coffee"))["transaction_id"]
    r = await operator.get("/admin/transactions.csv", params={"date_from": "1970-01-01", "date_to": "9998-12-31"})
    assert r.status_code == 200
    assert [row["transaction_id"] for row in csv.DictReader(io.StringIO(r.text))] == [pid]


async def test_admin_webhook_filters_and_paths_with_nul(client, db, merchant, operator):
    for params in ({"status": "failed\x00"}, {"merchant": "\x00"}, {"status": "bogus"}):
        r = await operator.get("/admin/webhooks", params=params)
        assert r.status_code == 200, params
    for path in ("/admin/deliveries/whd_%00", "/admin/transactions/%00"):
        r = await operator.get(path)
        assert r.status_code == 400 and "NUL" in r.text, path


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/admin/merchants", {"name": "Shop\x00"}),
        ("/admin/transactions/{pid}/refund", {"amount": "1", "reason": "why\x00"}),
        ("/admin/terminals", {"name": "till\x00", "base_url": "https://127.0.0.1:9", "access_token": "t"}),
    ],
)
async def test_admin_forms_refuse_nul(client, db, merchant, operator, path, form):
    pid = await paid(client, merchant)
    before = await row_counts(db)
    r = await act(operator, path.format(pid=pid), form)
    assert r.status_code == 422 and "NUL" in r.text, r.text[:300]
    after = await row_counts(db)
    assert {k: v for k, v in after.items() if k != "admin_sessions"} == {
        k: v for k, v in before.items() if k != "admin_sessions"
    }


async def test_admin_login_with_nul_in_the_username(client, db, operator):
    before = await row_counts(db)
    page = await client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    form = {"username": "bo\x00ss", "password": "x", "csrf_token": token.group(1)}
    r = await client.post("/admin/login", data=form)
    assert r.status_code == 422, r.text[:300]
    assert await row_counts(db) == before


async def test_api_query_parameters_with_nul(client, db, merchant):
    await create_payment(client, merchant)
    for url, field in (
        ("/api/transactions?order_id=%00", "order_id"),
        ("/api/transactions?status=paid%00", "status"),
        ("/api/transactions?cursor=%00", "cursor"),
        ("/api/events?transaction_id=%00", "transaction_id"),
        ("/api/events?cursor=%00", "cursor"),
    ):
        r = await client.get(url, headers=merchant.headers)
        assert_error(r, 422, "validation_error", field)


# --- the legacy importer -------------------------------------------------------------------------


def test_importer_metadata_follows_the_same_rule():
    for raw in ('{"x": NaN}', '{"x": "\\ud800"}', '{"x": "a\\u0000b"}', json.dumps({"x": nested(30)})):
        metadata, warning = parse_metadata(raw)
        assert storable.problem(metadata) is None and warning, raw
    assert parse_metadata('{"x": [[1]]}') == ({"x": [[1]]}, None)


@pytest.fixture
async def hostile_legacy_url() -> AsyncIterator[str]:
    """An old database holding one transaction with what the new API refuses."""
    server = SERVER_URLS["mariadb"]
    if not server:
        if "mariadb" in REQUIRED:
            pytest.fail("mariadb is required (PAYCENTER_TEST_REQUIRE) but PAYCENTER_TEST_MARIADB_URL is not set")
        pytest.skip("the old system's database is MySQL: set PAYCENTER_TEST_MARIADB_URL")
    name = f"legacy_edge_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    await admin.dispose()
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    metadata = '{"order_id": "ORD-\\u0000", "x": NaN, "y": "\\ud800", "deep": ' + json.dumps(nested(40)) + "}"
    async with engine.begin() as conn:
        for statement in sql_statements((FIXTURES / "schema.sql").read_text(encoding="utf-8")):
            await conn.exec_driver_sql(statement.replace("%", "%%"))
        await conn.execute(
            text("INSERT INTO sources (id, name, api_token, is_active) VALUES (1, 'Shop', :token, 1)"),
            {"token": "e" * 64},
        )
        await conn.execute(
            text(
                "INSERT INTO transactions (id, transaction_id, source_id, amount, currency, description, status, "
                "metadata, created_at, updated_at) VALUES (1, :tid, 1, 500.00, 'KZT', :description, 'pending', "
                ":metadata, '2025-03-10 00:30:00', '2025-03-10 00:30:00')"
            ),
            {"tid": "A" * 32, "description": "Заказ\x00 №1", "metadata": metadata},
        )
    await engine.dispose()
    yield url
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
    await admin.dispose()


async def test_importer_sanitizes_what_every_backend_must_store(hostile_legacy_url, db, client, operator):
    report = await import_legacy(hostile_legacy_url, db, options=Options(), now=NOW)
    async with db.reading() as session:
        payment = await session.get(Payment, "A" * 32)
    assert payment is not None, report.lines()
    assert storable.problem(payment.metadata_) is None
    assert payment.description == "Заказ\ufffd №1"
    assert payment.order_id == "ORD-\ufffd"
    assert any("sanitized" in w for w in report.as_dict()["warnings"]), report.lines()
    page = await operator.get(f"/admin/transactions/{payment.id}")
    assert page.status_code == 200
    creds = MerchantCreds("mer_legacy_1", "e" * 64, "tok_legacy_1")
    r = await client.get(f"/api/transaction/{payment.id}", headers=creds.headers)
    assert r.status_code == 200, r.text


async def test_operations_of_a_refused_request_are_not_written(client, db, merchant):
    """The refused sandbox payment of 1e-1000000000 wrote no zero operation (the old code did)."""
    pid = (await create_payment(client, merchant))["transaction_id"]
    await client.post(f"/pay/{pid}/sandbox", data={"action": "pay", "amount": "1e-1000000000", "checkout_id": "z"})
    async with db.reading() as session:
        assert list(await session.scalars(select(Operation).where(Operation.payment_id == pid))) == []
    assert (await snapshot(client, merchant, pid))["status"] == "pending"
