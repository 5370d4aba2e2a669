"""The old API's payer-side endpoints (issue 13, paycenter.api.payer), on every backend:
POST /api/payment/{id}/kaspi, POST /api/payment/{id}/track-visit, GET /api/payment-methods[/active],
and payment_method_id at init. Each in both renderings (legacy: the old wire types, Russian
messages, 400 for refusals; current: decimal strings, booleans, 404/409/422), and what must not
come back from the old system (legacy-api.md §7): a cancelled or expired payment revived, the fee
charged twice or grossed up short."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from sqlalchemy import select, update

from kit.admin import by_testid, new_user, signed_in
from kit.api import MerchantCreds, create_payment, make_merchant, sandbox
from kit.clock import Clock
from kit.db import row_counts
from kit.kaspi import Kaspi, new_payment, qr_id
from paycenter import versions
from paycenter.db import Database
from paycenter.operators.models import Role
from paycenter.payments.models import Attempt, Payment, PaymentMethod
from paycenter.providers.models import Terminal

LEGACY = {versions.HEADER: versions.LEGACY}
CURRENT = {versions.HEADER: versions.CURRENT}
METHOD_KEYS = [
    "id",
    "code",
    "name",
    "type",
    "provider",
    "country_id",
    "allowed_countries",
    "payment_currency",
    "icon_url",
    "icon_emoji",
    "commission_percent",
    "credit_commission_percent",
    "installment_commission_percent",
    "has_credit",
    "has_installment",
    "add_commission_to_amount",
    "sort_order",
    "installment_months",
]
STARTED_KEYS = {
    "transaction_id",
    "amount",
    "original_amount",
    "commission_amount",
    "commission_percent",
    "payment_method",
    "payment_url",
    "qr_code",
    "terminal_id",
}


@pytest.fixture
async def legacy_merchant(db: Database) -> MerchantCreds:
    return await make_merchant(db, name="Old shop", api_version=versions.LEGACY)


@asynccontextmanager
async def method_changed(db: Database, code: str, **values: bool) -> AsyncIterator[None]:
    """A payment method changed for one test (payment_methods keeps its rows between tests)."""
    async with db.transaction() as session:
        method = await session.get(PaymentMethod, code)
        assert method is not None
        before = {name: getattr(method, name) for name in values}
        await session.execute(update(PaymentMethod).where(PaymentMethod.code == code).values(**values))
    try:
        yield
    finally:
        async with db.transaction() as session:
            await session.execute(update(PaymentMethod).where(PaymentMethod.code == code).values(**before))


@pytest.fixture
async def payer_covers_credit(db: Database) -> AsyncIterator[None]:
    """Kaspi credit (14%) with the fee on top, as the old system priced it."""
    async with method_changed(db, "kaspi_credit", payer_covers_fee=True):
        yield


async def _payment(db: Database, pid: str) -> Payment:
    async with db.reading() as session:
        payment = await session.get(Payment, pid)
        assert payment is not None
        return payment


async def _attempts(db: Database, pid: str) -> list[Attempt]:
    async with db.reading() as session:
        return list(await session.scalars(select(Attempt).where(Attempt.payment_id == pid)))


# --- GET /api/payment-methods[/active] -----------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/payment-methods", "/api/payment-methods/active"])
async def test_methods_are_public_and_typed_per_version(client: httpx.AsyncClient, path: str) -> None:
    current = await client.get(path, headers=CURRENT)
    legacy = await client.get(path)  # no token, no header: the old API's answer, as its payer page got it
    assert legacy.json() == (await client.get(path, headers=LEGACY)).json()
    assert current.status_code == legacy.status_code == 200, (current.text, legacy.text)
    methods = current.json()["data"]
    assert [m["code"] for m in methods] == [
        "kaspi_gold",
        "kaspi_red",
        "kaspi_credit",
        "kaspi_installment_12",
        "kaspi_installment_24",
    ]
    assert [m["id"] for m in methods] == [1, 2, 3, 4, 5]  # the old system's ids
    for m in methods:
        assert list(m) == METHOD_KEYS
        assert type(m["has_credit"]) is bool and type(m["add_commission_to_amount"]) is bool
    gold, _red, credit, inst12, inst24 = methods
    assert (gold["commission_percent"], gold["credit_commission_percent"]) == ("1.00", "0.00")
    assert (credit["credit_commission_percent"], credit["has_credit"], credit["installment_months"]) == (
        "14.00",
        True,
        None,
    )
    assert (inst12["installment_commission_percent"], inst12["has_installment"], inst12["installment_months"]) == (
        "14.00",
        True,
        12,
    )
    assert inst24["installment_months"] == 24 and inst24["sort_order"] == 5
    assert gold["allowed_countries"] is None and gold["payment_currency"] == "KZT"

    old = legacy.json()
    assert old["success"] is True and old["message"] == "Success"
    for m in old["data"]:
        assert list(m) == METHOD_KEYS
        for flag in ("has_credit", "has_installment", "add_commission_to_amount"):
            assert type(m[flag]) is int and m[flag] in (0, 1)
    assert [m["has_credit"] for m in old["data"]] == [0, 0, 1, 0, 0]
    assert [(m["id"], m["code"]) for m in old["data"]] == [(m["id"], m["code"]) for m in methods]


async def test_methods_follow_the_tokens_merchant_and_list_only_active_ones(
    client: httpx.AsyncClient, db: Database, legacy_merchant: MerchantCreds, merchant: MerchantCreds
) -> None:
    r = await client.get("/api/payment-methods", headers=legacy_merchant.headers)
    assert r.status_code == 200 and r.json()["data"][0]["has_credit"] == 0
    r = await client.get("/api/payment-methods", headers=merchant.headers)
    assert r.json()["data"][0]["has_credit"] is False
    r = await client.get("/api/payment-methods", headers={"X-API-Token": "pct_unknown"})
    assert r.status_code == 200  # public: an unknown token is no refusal
    async with method_changed(db, "kaspi_red", is_active=False):
        r = await client.get("/api/payment-methods/active")
        assert "kaspi_red" not in [m["code"] for m in r.json()["data"]]


# --- POST /api/payment/{id}/track-visit ----------------------------------------------------------


async def test_track_visit_keeps_the_first_visit(
    client: httpx.AsyncClient, db: Database, legacy_merchant: MerchantCreds, clock: Clock
) -> None:
    clock.freeze()
    pid = (await create_payment(client, legacy_merchant))["transaction_id"]
    assert (await _payment(db, pid)).first_visited_at is None
    first = clock()
    r = await client.post(f"/api/payment/{pid.lower()}/track-visit", json={"anything": [1, 2]})
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "message": "Visit tracked", "data": None}
    clock.advance(seconds=90)
    r = await client.post(f"/api/payment/{pid}/track-visit", content=b"not json at all")
    assert r.status_code == 200, r.text
    visited = (await _payment(db, pid)).first_visited_at
    assert visited is not None and abs((visited - first).total_seconds()) < 1  # the first, not the second


async def test_the_admin_shows_the_first_visit_and_the_chosen_method(
    client: httpx.AsyncClient, db: Database, merchant: MerchantCreds, clock: Clock
) -> None:
    operator = await new_user(db, clock, "boss", Role.ADMIN)
    pid = (await create_payment(client, merchant, payment_method_id="kaspi_red"))["transaction_id"]
    await signed_in(client, operator)
    page = (await client.get(f"/admin/transactions/{pid}")).text
    assert 'data-testid="first-visit"' not in page and by_testid(page, "method") == "kaspi_red"
    assert (await client.post(f"/api/payment/{pid}/track-visit")).status_code == 200
    page = (await client.get(f"/admin/transactions/{pid}")).text
    assert by_testid(page, "first-visit")


async def test_track_visit_of_an_unknown_payment(client: httpx.AsyncClient, merchant: MerchantCreds) -> None:
    unknown = "0" * 32
    # No payment, no token, no header: nothing says the caller is old; the documented 404.
    r = await client.post(f"/api/payment/{unknown}/track-visit")
    assert r.status_code == 404
    r = await client.post(f"/api/payment/{unknown}/track-visit", headers=LEGACY)
    assert r.status_code == 400 and r.json()["message"] == "Транзакция не найдена"
    r = await client.post(f"/api/payment/{unknown}/track-visit", headers=CURRENT)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await client.post(f"/api/payment/{unknown}/track-visit", headers=merchant.headers)  # a current token
    assert r.status_code == 404


# --- payment_method_id at init -------------------------------------------------------------------


@pytest.mark.parametrize("ref", [3, "3", "kaspi_credit"])
async def test_init_records_the_method_without_touching_the_amount(
    client: httpx.AsyncClient, db: Database, merchant: MerchantCreds, payer_covers_credit: None, ref: object
) -> None:
    data = await create_payment(client, merchant, amount=1000, payment_method_id=ref)
    assert data["amount"] == "1000.00"  # the old system made it 1140 here, then charged 14% again
    assert (await _payment(db, data["transaction_id"])).payment_method == "kaspi_credit"


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("ref", [99, 0, -1, "99", "kaspi_platinum", "Kaspi Gold", True, 3.5, 2**40, [3]])
async def test_init_refuses_an_unknown_method_without_writing(
    client: httpx.AsyncClient,
    db: Database,
    merchant: MerchantCreds,
    legacy_merchant: MerchantCreds,
    legacy: bool,
    ref: object,
) -> None:
    creds = legacy_merchant if legacy else merchant
    before = await row_counts(db)
    r = await client.post("/api/payment/init", json={"amount": 500, "payment_method_id": ref}, headers=creds.headers)
    assert r.status_code == (400 if legacy else 422), r.text
    assert r.json()["success"] is False
    assert [f["field"] for f in r.json()["error"]["fields"]] == ["payment_method_id"]
    assert await row_counts(db) == before


async def test_init_refuses_an_inactive_method(
    client: httpx.AsyncClient, db: Database, merchant: MerchantCreds
) -> None:
    async with method_changed(db, "kaspi_red", is_active=False):
        body = {"amount": 500, "payment_method_id": 2}
        r = await client.post("/api/payment/init", json=body, headers=merchant.headers)
        assert r.status_code == 422, r.text


# --- POST /api/payment/{id}/kaspi: the sandbox -----------------------------------------------------


async def test_kaspi_on_a_sandbox_payment_points_at_the_page(
    client: httpx.AsyncClient, db: Database, merchant: MerchantCreds, legacy_merchant: MerchantCreds
) -> None:
    pid = (await create_payment(client, merchant, amount=500))["transaction_id"]
    r = await client.post(f"/api/payment/{pid}/kaspi", json={"payment_method": "kaspi_gold"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["message"] == "Payment started"
    data = body["data"]
    assert set(data) == STARTED_KEYS
    assert data == {
        "transaction_id": pid,
        "amount": "500.00",
        "original_amount": "500.00",
        "commission_amount": "0.00",
        "commission_percent": "1.00",
        "payment_method": "kaspi_gold",
        "payment_url": f"http://pay.test/pay/{pid}",
        "qr_code": f"http://pay.test/pay/{pid}",
        "terminal_id": None,
    }
    assert await _attempts(db, pid) == []  # the page's buttons make the sandbox's tries
    assert (await _payment(db, pid)).status == "pending"

    old = (await create_payment(client, legacy_merchant, amount=500))["transaction_id"]
    r = await client.post(f"/api/payment/{old}/kaspi")  # no body: kaspi_gold
    assert r.status_code == 200, r.text
    assert r.json()["message"] == "Платеж инициирован"
    data = r.json()["data"]
    assert (data["amount"], data["original_amount"], data["commission_amount"]) == ("500.00", "500.00", 0)
    assert (data["commission_percent"], data["payment_method"], data["terminal_id"]) == ("1.00", "kaspi_gold", None)
    assert isinstance(data["qr_code"], str)
    await sandbox(client, old)
    assert (await _payment(db, old)).status == "paid"


@pytest.mark.parametrize("legacy", [False, True])
async def test_kaspi_never_revives_a_cancelled_or_expired_payment(
    client: httpx.AsyncClient,
    db: Database,
    merchant: MerchantCreds,
    legacy_merchant: MerchantCreds,
    clock: Clock,
    legacy: bool,
) -> None:
    creds = legacy_merchant if legacy else merchant
    cancelled = (await create_payment(client, creds))["transaction_id"]
    r = await client.post(f"/api/payment/{cancelled}/cancel", headers=creds.headers)
    assert r.status_code == 200, r.text
    clock.freeze()
    expired = (await create_payment(client, creds, expires_in=60))["transaction_id"]
    clock.advance(seconds=61)
    paid = (await create_payment(client, creds))["transaction_id"]
    await sandbox(client, paid)
    for pid, status in ((cancelled, "cancelled"), (expired, "pending"), (paid, "paid")):
        r = await client.post(f"/api/payment/{pid}/kaspi", json={"payment_method": "kaspi_gold"})
        assert r.status_code == (400 if legacy else 409), r.text
        if legacy:
            assert r.json()["message"] == "Транзакция уже обработана"
        assert (await _payment(db, pid)).status == status  # the expirer's job: not here, in a refusal
        assert [a.status for a in await _attempts(db, pid)] == (["succeeded"] if pid == paid else [])


@pytest.mark.parametrize("legacy", [False, True])
async def test_kaspi_refusals_in_each_version(
    client: httpx.AsyncClient, merchant: MerchantCreds, legacy_merchant: MerchantCreds, legacy: bool
) -> None:
    creds = legacy_merchant if legacy else merchant
    pid = (await create_payment(client, creds))["transaction_id"]
    r = await client.post(f"/api/payment/{pid}/kaspi", json={"payment_method": "kaspi_platinum"})
    assert r.status_code == (400 if legacy else 422), r.text
    assert r.json()["error"]["code"] == "unknown_payment_method"
    if legacy:
        assert r.json()["message"] == "Способ оплаты не найден"
    for odd in ("Kaspi Gold!", "x" * 300, "kaspi\u0000gold"):
        r = await client.post(f"/api/payment/{pid}/kaspi", json={"payment_method": odd})
        assert r.status_code == (400 if legacy else 422), r.text
        assert r.json()["error"]["code"] == "unknown_payment_method"
    headers = LEGACY if legacy else CURRENT
    r = await client.post(f"/api/payment/{'F' * 32}/kaspi", headers=headers)
    assert r.status_code == (400 if legacy else 404), r.text
    assert r.json()["message"] == ("Транзакция не найдена" if legacy else "Payment not found")


# --- POST /api/payment/{id}/kaspi: Kaspi, over HTTP --------------------------------------------------


async def test_kaspi_qr_with_the_init_method_grosses_the_fee_up_once_and_ends_paid(kaspi: Kaspi, merchant) -> None:
    k = kaspi
    async with method_changed(k.db, "kaspi_credit", payer_covers_fee=True):
        created = await create_payment(
            k.client, merchant, provider="kaspi_qr", amount=100_000, payment_method_id=3, webhook_url=k.sink.on("/h")
        )
        pid = created["transaction_id"]
        assert created["amount"] == "100000.00"
        r = await k.client.post(f"/api/payment/{pid}/kaspi", headers=LEGACY)  # no body: the init's method
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        # 100,000 / (1 - 0.14) up to whole tenge; the old system asked 114,000 (and 1.14² at init).
        assert data["amount"] == 116280 and data["commission_amount"] == 16280
        assert (data["original_amount"], data["commission_percent"], data["payment_method"]) == (
            "100000.00",
            "14.00",
            "kaspi_credit",
        )
        assert data["payment_url"].startswith("https://pay.kaspi.kz/pay/") and data["qr_code"]
        assert data["terminal_id"] is None
        attempt = await k.live(pid)
        assert (attempt.amount, attempt.payment_method) == (116_280_00, "kaspi_credit")
        assert attempt.qr_payload == data["qr_code"]
        assert (await k.payment(pid))["status"] == "processing"
        r = await k.client.post(f"/api/payment/{pid}/kaspi", headers=LEGACY)  # a try is live already
        assert r.status_code == 400 and r.json()["message"] == "Транзакция уже обработана"
        k.qr.confirm(qr_id(attempt), product="Loan")
        body = await k.wait_event(pid, "paid")
        assert body["paid_amount"] == 116280 and body["actual_amount_received"] >= 100_000
        assert body["payment_method"] == "kaspi_credit"


async def test_kaspi_pos_answers_its_terminal_and_busy_terminals(kaspi: Kaspi, merchant) -> None:
    k = kaspi
    pids = [await new_payment(k, merchant, "kaspi_pos", amount=100 + i) for i in range(4)]
    started = []
    for pid in pids[:3]:
        r = await k.client.post(f"/api/payment/{pid}/kaspi", json={"payment_method": "kaspi_red"})
        assert r.status_code == 200, r.text
        started.append(r.json()["data"])
    # Current version: decimal strings, paycenter's terminal ids; the merchant carries Red's fee.
    first = started[0]
    assert (first["amount"], first["commission_amount"], first["commission_percent"]) == ("100.00", "0.00", "1.00")
    async with k.db.reading() as session:
        ids = set(await session.scalars(select(Terminal.id)))
    assert {s["terminal_id"] for s in started} == ids  # one payer per terminal
    r = await k.client.post(f"/api/payment/{pids[3]}/kaspi", json={"payment_method": "kaspi_red"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "terminals_busy"
    r = await k.client.post(f"/api/payment/{pids[3]}/kaspi", headers=LEGACY)
    assert r.status_code == 400 and r.json()["message"] == "Все терминалы заняты, попробуйте позже"
    assert (await k.payment(pids[3]))["status"] == "pending"

    attempt = await k.live(pids[0])
    async with k.db.reading() as session:
        name = (await session.get(Terminal, attempt.terminal_id)).name
    k.pos.confirm(name, method="kaspi_red")  # the terminal reports how the payer paid
    body = await k.wait_event(pids[0], "paid")
    assert (body["paid_amount"], body["payment_method"]) == (100, "kaspi_red")
