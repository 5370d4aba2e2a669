"""A payment's life through the merchant API and the sandbox page, on every backend."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from kit.api import create_payment, sandbox
from kit.db import delivered_types
from paycenter.db import utcnow
from paycenter.errors import Conflict
from paycenter.payments import service as payments
from paycenter.payments.models import Attempt, Event, Operation

SEED_KEYS = [
    "event", "transaction_id", "amount", "original_amount", "paid_amount", "actual_amount_received",
    "remaining_amount", "currency", "status", "description", "created_at", "paid_at", "metadata", "timestamp",
]  # fmt: skip


async def events_of(db, payment_id: str) -> list[dict]:
    async with db.reading() as session:
        rows = await session.scalars(select(Event).where(Event.payment_id == payment_id).order_by(Event.sequence))
        return [json.loads(e.body) | {"_raw": e.body} for e in rows]


async def get(client, pid):
    r = await client.get(f"/api/payment/{pid}")
    assert r.status_code == 200
    return r.json()["data"]


async def test_two_part_payment_then_refund(client, db, merchant):
    pid = (await create_payment(client, merchant))["transaction_id"]
    assert len(pid) == 32 and pid == pid.upper() and int(pid, 16) >= 0

    await sandbox(client, pid, amount="200", checkout_id="one")
    data = await get(client, pid)
    assert (data["status"], data["paid_amount"], data["remaining_amount"]) == ("partially_paid", "200.00", "300.00")
    assert data["paid_at"] is None

    await sandbox(client, pid, checkout_id="two")  # no amount: what remains
    data = await get(client, pid)
    assert (data["status"], data["paid_amount"], data["remaining_amount"]) == ("paid", "500.00", "0.00")
    assert data["paid_at"] is not None

    r = await client.post(f"/api/payment/{pid}/refund", headers=merchant.headers, json={"reason": "customer asked"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["data"]["refund"]["status"] == "succeeded"
    assert body["data"]["refund"]["amount"] == "500.00"
    assert body["data"]["payment"]["status"] == "refunded"
    assert body["data"]["payment"]["refunded_amount"] == "500.00"
    assert (await get(client, pid))["status"] == "refunded"

    events = await events_of(db, pid)
    assert [e["event"] for e in events] == ["partially_paid", "paid", "refunded"]
    assert [e["sequence"] for e in events] == [1, 2, 3]
    assert [e["previous_status"] for e in events] == ["pending", "partially_paid", "paid"]
    first = events[0]
    assert list(first)[: len(SEED_KEYS)] == SEED_KEYS
    assert first["amount"] == 500 and first["paid_amount"] == 200 and first["remaining_amount"] == 300
    assert first["metadata"] == {"user_id": "12345", "order_id": "TEST-001"}
    assert "\\u0422" in first["_raw"]  # non-ASCII escaped, as PHP's json_encode does
    assert events[2]["refund_id"] == body["data"]["refund"]["id"]
    assert events[2]["refunded_amount"] == 500
    assert len({e["event_id"] for e in events}) == 3


async def test_empty_metadata_is_a_php_empty_array(client, db, merchant):
    pid = (await create_payment(client, merchant, metadata=[], amount=100.5))["transaction_id"]
    await sandbox(client, pid, checkout_id="x")
    (event,) = await events_of(db, pid)
    assert '"metadata":[]' in event["_raw"]
    assert '"amount":100.5,' in event["_raw"]


async def test_partial_refunds_until_refunded(client, db, merchant):
    pid = (await create_payment(client, merchant, amount=1000))["transaction_id"]
    await sandbox(client, pid, checkout_id="x")
    r = await client.post(f"/api/payment/{pid}/refund", headers=merchant.headers, json={"amount": 300})
    assert r.status_code == 200
    assert r.json()["data"]["payment"]["status"] == "paid"
    assert r.json()["data"]["payment"]["refundable_amount"] == "700.00"
    r = await client.post(f"/api/payment/{pid}/refund", headers=merchant.headers, json={"amount": "700.00"})
    assert r.json()["data"]["payment"]["status"] == "refunded"
    r = await client.post(f"/api/payment/{pid}/refund", headers=merchant.headers, json={"amount": 1})
    assert r.status_code == 409
    events = await events_of(db, pid)
    assert [(e["event"], e.get("refund_amount"), e.get("refunded_amount")) for e in events] == [
        ("paid", None, None),
        ("refunded", 300, 300),
        ("refunded", 700, 1000),
    ]


async def test_refund_of_a_partial_payment(client, db, merchant):
    pid = (await create_payment(client, merchant, amount=1000))["transaction_id"]
    await sandbox(client, pid, amount="400", checkout_id="x")
    r = await client.post(f"/api/payment/{pid}/refund", headers=merchant.headers, json={"amount": 500})
    assert r.status_code == 409  # what is left is the payment's state: a conflict
    assert r.json()["error"]["code"] == "amount_exceeds_refundable"
    r = await client.post(f"/api/payment/{pid}/refund", headers=merchant.headers)
    assert r.status_code == 200
    assert r.json()["data"]["refund"]["amount"] == "400.00"


async def test_merchant_cancels(client, db, merchant):
    pid = (await create_payment(client, merchant))["transaction_id"]
    r = await client.post(f"/api/payment/{pid}/cancel", headers=merchant.headers, json={"reason": "out of stock"})
    assert r.status_code == 200
    assert r.json()["data"]["status"] == "cancelled"
    assert r.json()["data"]["cancelled_at"] is not None
    (event,) = await events_of(db, pid)
    assert (event["event"], event["reason"], event["partially_paid"]) == ("cancelled", "out of stock", False)
    # The payer can no longer pay it.
    r = await sandbox(client, pid, checkout_id="late")
    assert "error=error_state" in r.headers["location"]
    assert (await get(client, pid))["paid_amount"] == "0.00"


async def test_cancel_keeps_money_of_a_partial_payment(client, db, merchant):
    pid = (await create_payment(client, merchant))["transaction_id"]
    await sandbox(client, pid, amount="100", checkout_id="x")
    r = await client.post(f"/api/payment/{pid}/cancel", headers=merchant.headers)
    assert r.json()["data"]["status"] == "cancelled"
    assert r.json()["data"]["paid_amount"] == "100.00"
    events = await events_of(db, pid)
    assert events[-1]["event"] == "cancelled" and events[-1]["partially_paid"] is True
    assert events[-1]["paid_amount"] == 100


async def test_payer_cancel_and_decline_leave_the_payment_payable(client, db, merchant):
    pid = (await create_payment(client, merchant))["transaction_id"]
    r = await sandbox(client, pid, "cancel", checkout_id="a")
    assert r.headers["location"].endswith("notice=cancelled")
    r = await sandbox(client, pid, "fail", checkout_id="b")
    assert r.headers["location"].endswith("notice=failed")
    assert (await get(client, pid))["status"] == "pending"
    # Issue 13: the payer's cancel is not `cancelled` (the old system sent that while the payment
    # stayed payable, and merchants closed orders paid a minute later). It is recorded as
    # `attempt_cancelled`, which is sent to no one; a decline records nothing.
    (event,) = await events_of(db, pid)
    assert (event["event"], event["status"], event["previous_status"]) == ("attempt_cancelled", "pending", "pending")
    assert event["reason"] == "cancelled by the payer" and "payment_cancelled" not in event
    assert await delivered_types(db, pid) == []
    r = await client.get(f"/api/transaction/{pid}", headers=merchant.headers)
    attempts = r.json()["data"]["attempts"]
    assert [(a["status"], a["error"]) for a in attempts] == [
        ("cancelled", "cancelled by the payer"),
        ("failed", "declined by the sandbox bank"),
    ]
    assert event["attempt_id"] == attempts[0]["id"]
    await sandbox(client, pid, checkout_id="c")
    assert (await get(client, pid))["status"] == "paid"
    assert [e["event"] for e in await events_of(db, pid)] == ["attempt_cancelled", "paid"]
    assert await delivered_types(db, pid) == ["paid"]
    r = await client.get("/api/events", headers=merchant.headers, params={"type": "attempt_cancelled"})
    assert [(i["transaction_id"], i["deliveries"]) for i in r.json()["data"]["items"]] == [(pid, [])]


async def test_merchant_cancel_after_a_payers_cancel_still_sends_cancelled(client, db, merchant):
    """Only the payment's own end is `cancelled`: a payer's cancel before it changes nothing there."""
    pid = (await create_payment(client, merchant))["transaction_id"]
    await sandbox(client, pid, "cancel", checkout_id="a")
    r = await client.post(f"/api/payment/{pid}/cancel", headers=merchant.headers, json={"reason": "out of stock"})
    assert r.json()["data"]["status"] == "cancelled"
    events = await events_of(db, pid)
    assert [e["event"] for e in events] == ["attempt_cancelled", "cancelled"]
    assert (events[1]["status"], events[1]["payment_cancelled"], events[1]["reason"]) == (
        "cancelled",
        True,
        "out of stock",
    )
    assert await delivered_types(db, pid) == ["cancelled"]


async def test_same_provider_operation_counts_once(client, db, merchant):
    pid = (await create_payment(client, merchant, amount=1000))["transaction_id"]
    first = await sandbox(client, pid, amount="100", checkout_id="same")
    again = await sandbox(client, pid, amount="100", checkout_id="same")
    assert first.headers["location"].endswith("notice=partial")
    assert again.headers["location"].endswith("notice=duplicate")
    assert (await get(client, pid))["paid_amount"] == "100.00"
    async with db.reading() as session:
        assert await session.scalar(select(func.count()).select_from(Operation)) == 1
        assert await session.scalar(select(func.count()).select_from(Attempt)) == 1


async def test_a_payers_checkout_id_names_an_operation_of_its_own_payment_only(client, db, merchant, other_merchant):
    """The form's checkout_id is chosen by whoever posts the form: two payments (of one merchant or
    of two) paid with the same one are two operations, each counted on its own payment."""
    ids = [(await create_payment(client, creds, amount=300))["transaction_id"] for creds in (merchant, other_merchant)]
    ids.append((await create_payment(client, merchant, amount=300))["transaction_id"])
    for pid in ids:
        r = await sandbox(client, pid, checkout_id="chosen-by-the-payer")
        assert r.headers["location"].endswith("notice=paid"), r.headers["location"]
        assert (await get(client, pid))["status"] == "paid"
    again = await sandbox(client, ids[0], checkout_id="chosen-by-the-payer")
    assert again.headers["location"].endswith("notice=duplicate")
    async with db.reading() as session:
        counted = dict(
            (await session.execute(select(Operation.payment_id, func.count()).group_by(Operation.payment_id))).all()
        )
    assert counted == {pid: 1 for pid in ids}


async def test_a_provider_transaction_of_another_payment_is_refused_not_dropped(client, db, merchant):
    """A provider transaction id already counted on one payment can never be 'already counted' on
    another: that is a clash to surface, not money to drop silently."""
    first, second = [(await create_payment(client, merchant, amount=300))["transaction_id"] for _ in range(2)]
    async with db.transaction() as session:
        payment = await payments.lock(session, first)
        await payments.record_operation(session, payment, provider_txn_id="T-1", amount=100, now=utcnow())
    with pytest.raises(Conflict):
        async with db.transaction() as session:
            payment = await payments.lock(session, second)
            await payments.record_operation(session, payment, provider_txn_id="T-1", amount=100, now=utcnow())
    assert (await get(client, second))["paid_amount"] == "0.00"


async def test_sandbox_refuses_more_than_remains(client, db, merchant):
    pid = (await create_payment(client, merchant, amount=100))["transaction_id"]
    r = await sandbox(client, pid, amount="100.01", checkout_id="x")
    assert "error=error_amount" in r.headers["location"]
    r = await sandbox(client, pid, amount="abc", checkout_id="y")
    assert "error=error_amount" in r.headers["location"]
    async with db.reading() as session:
        assert await session.scalar(select(func.count()).select_from(Attempt)) == 0


async def test_expired_payment_cannot_be_paid(client, db, merchant, clock):
    data = await create_payment(client, merchant, expires_in=60)
    pid = data["transaction_id"]
    clock.advance(seconds=61)
    r = await sandbox(client, pid, checkout_id="x")
    assert r.headers["location"].endswith("notice=expired")
    data = await get(client, pid)
    assert (data["status"], data["paid_amount"]) == ("expired", "0.00")
    (event,) = await events_of(db, pid)
    assert event["event"] == "expired" and event["partially_paid"] is False


async def test_options_are_kept(client, merchant):
    data = await create_payment(
        client,
        merchant,
        expires_in=600,
        success_url="https://shop.example/ok?o=1",
        fail_url="https://shop.example/fail",
        language="kk",
        customer_email="a@b.kz",
        currency="usd",
        amount=19.99,
    )
    r = await client.get(f"/api/transaction/{data['transaction_id']}", headers=merchant.headers)
    d = r.json()["data"]
    assert (d["currency"], d["amount"], d["language"], d["success_url"]) == (
        "USD",
        "19.99",
        "kk",
        "https://shop.example/ok?o=1",
    )
    created = datetime.fromisoformat(d["created_at"])
    assert datetime.fromisoformat(d["expires_at"]) - created == timedelta(seconds=600)
    assert d["has_webhook_secret"] is True and "webhook_secret" not in d


async def test_list_transactions_pages_and_filters(client, db, merchant, clock):
    ids = []
    for i in range(25):
        clock.advance(seconds=1)
        ids.append((await create_payment(client, merchant, metadata={"order_id": f"O-{i % 5}"}))["transaction_id"])
    await sandbox(client, ids[0], checkout_id="p")
    seen, cursor = [], None
    for _ in range(5):
        params = {"limit": 10} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/api/transactions", params=params, headers=merchant.headers)).json()["data"]
        seen += [p["transaction_id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    assert seen == list(reversed(ids))  # newest first, nothing skipped or repeated

    async def ids_for(**params):
        r = await client.get("/api/transactions", params=params, headers=merchant.headers)
        assert r.status_code == 200, r.text
        return {p["transaction_id"] for p in r.json()["data"]["items"]}

    assert await ids_for(status="paid") == {ids[0]}
    assert await ids_for(status="paid,pending", limit=100) == set(ids)
    assert await ids_for(order_id="O-3", limit=100) == {ids[i] for i in range(25) if i % 5 == 3}
    items = (await client.get("/api/transactions", params={"limit": 100}, headers=merchant.headers)).json()["data"][
        "items"
    ]
    created = sorted(datetime.fromisoformat(p["created_at"]) for p in items)
    middle = created[12].isoformat()
    assert len(await ids_for(created_from=middle, limit=100)) == 13
    assert len(await ids_for(created_to=middle, limit=100)) == 12


async def test_statistics(client, merchant):
    a = (await create_payment(client, merchant, amount=100))["transaction_id"]
    b = (await create_payment(client, merchant, amount=200))["transaction_id"]
    await create_payment(client, merchant, amount=300)
    await create_payment(client, merchant, amount=5, currency="USD")
    await sandbox(client, a, checkout_id="a")
    await sandbox(client, b, checkout_id="b")
    await client.post(f"/api/payment/{b}/refund", headers=merchant.headers, json={"amount": 50})
    r = await client.get("/api/statistics", headers=merchant.headers)
    d = r.json()["data"]
    assert d["total_count"] == 4
    assert d["by_status"] == {"paid": 2, "pending": 2}
    assert d["paid_conversion"] == 0.5
    kzt = next(c for c in d["currencies"] if c["currency"] == "KZT")
    assert (kzt["count"], kzt["amount"], kzt["paid_amount"], kzt["refunded_amount"], kzt["net_amount"]) == (
        3,
        "600.00",
        "300.00",
        "50.00",
        "250.00",
    )


async def test_payment_page(client, merchant):
    pid = (await create_payment(client, merchant))["transaction_id"]
    r = await client.get(f"/pay/{pid}")
    assert r.status_code == 200
    assert "500,00" in r.text and "Test shop" in r.text and "Ожидает оплаты" in r.text
    r = await client.get(f"/pay/{pid}?lang=en")
    assert "Awaiting payment" in r.text and r.cookies.get("pc_lang") == "en"
    r = await client.get(f"/pay/{pid.lower()}?lang=kk")
    assert "Төлемді күтуде" in r.text
    r = await client.get("/pay/0000000000000000000000000000000F")  # the kk cookie is remembered
    assert r.status_code == 404 and "Төлем табылмады" in r.text
    client.cookies.clear()
    r = await client.get("/pay/0000000000000000000000000000000F")
    assert r.status_code == 404 and "Платёж не найден" in r.text


async def test_payment_page_default_language_is_the_deployments(client, merchant, ctx) -> None:
    """PAYCENTER_DEFAULT_LANGUAGE: the page's language when the link, the payer and the payment
    name none (it was documented and never read)."""
    pid = (await create_payment(client, merchant))["transaction_id"]
    ctx.settings.default_language = "en"
    assert "Awaiting payment" in (await client.get(f"/pay/{pid}")).text
    assert "Ожидает оплаты" in (await client.get(f"/pay/{pid}?lang=ru")).text  # the link still wins
    client.cookies.clear()
    ctx.settings.default_language = "kk"
    assert "Төлемді күтуде" in (await client.get(f"/pay/{pid}")).text
