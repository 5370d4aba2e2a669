"""Tenant isolation (a merchant sees and touches only its own payments) and Idempotency-Key."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest

from kit.api import SEED_BODY, MerchantCreds, create_payment, sandbox
from kit.db import row_counts

INIT = "/api/payment/init"

PRIVATE = {
    "customer_email": "payer@example.com",
    "customer_phone": "+77011234567",
    "customer_name": "Айгерим Сапарова",
    "webhook_url": "https://shop.example/hooks/private-path",
    "webhook_secret": "very-secret-webhook-key",
    "success_url": "https://shop.example/thanks",
    "metadata": {"order_id": "ORD-PRIVATE-42", "user_id": "u-777"},
}
PRIVATE_VALUES = [
    "payer@example.com",
    "77011234567",
    "Сапарова",
    "private-path",
    "very-secret-webhook-key",
    "ORD-PRIVATE-42",
    "u-777",
]


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["transaction_id"] for item in response.json()["data"]["items"]]


async def statistics(client: httpx.AsyncClient, creds: MerchantCreds) -> dict[str, Any]:
    response = await client.get("/api/statistics", headers=creds.headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]


# --- tenant isolation ---------------------------------------------------------------------------


async def test_merchants_see_only_their_own_payments(client, db, merchant, other_merchant):
    a_paid = (await create_payment(client, merchant, metadata={"order_id": "A-1"}))["transaction_id"]
    await sandbox(client, a_paid)
    a_pending = (await create_payment(client, merchant, amount=700, metadata={"order_id": "A-2"}))["transaction_id"]
    b_only = (await create_payment(client, other_merchant, amount=300, metadata={"order_id": "B-1"}))["transaction_id"]

    a_list = await client.get("/api/transactions", headers=merchant.headers)
    assert sorted(ids(a_list)) == sorted([a_paid, a_pending])
    b_list = await client.get("/api/transactions", headers=other_merchant.headers)
    assert ids(b_list) == [b_only]

    # Filters never reach across tenants.
    for query in ("order_id=A-1", "status=paid", "status=pending,paid,partially_paid"):
        response = await client.get(f"/api/transactions?{query}", headers=other_merchant.headers)
        assert set(ids(response)) <= {b_only}, query
    response = await client.get("/api/transactions?order_id=A-1", headers=merchant.headers)
    assert ids(response) == [a_paid]

    for pid in (a_paid, a_pending):
        response = await client.get(f"/api/transaction/{pid}", headers=other_merchant.headers)
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"
    response = await client.get(f"/api/transaction/{b_only}", headers=merchant.headers)
    assert response.status_code == 404, response.text
    response = await client.get(f"/api/transaction/{b_only}", headers=other_merchant.headers)
    assert response.status_code == 200
    assert response.json()["data"]["amount"] == "300.00"


async def test_pagination_stays_within_the_tenant(client, db, merchant, other_merchant):
    mine = {(await create_payment(client, other_merchant))["transaction_id"] for _ in range(3)}
    theirs = {(await create_payment(client, merchant))["transaction_id"] for _ in range(3)}

    seen: list[str] = []
    cursor = None
    for _ in range(5):
        url = "/api/transactions?limit=2" + (f"&cursor={cursor}" if cursor else "")
        response = await client.get(url, headers=other_merchant.headers)
        seen += ids(response)
        cursor = response.json()["data"]["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(mine)

    # A cursor taken from another merchant's listing only pages through one's own payments.
    foreign = await client.get("/api/transactions?limit=1", headers=merchant.headers)
    foreign_cursor = foreign.json()["data"]["next_cursor"]
    assert foreign_cursor
    response = await client.get(f"/api/transactions?limit=100&cursor={foreign_cursor}", headers=other_merchant.headers)
    assert set(ids(response)) <= mine
    assert not set(ids(response)) & theirs


async def test_statistics_count_only_own_payments(client, db, merchant, other_merchant):
    paid = (await create_payment(client, merchant))["transaction_id"]
    await sandbox(client, paid)
    await create_payment(client, merchant, amount=250)
    await create_payment(client, other_merchant, amount=1000, currency="USD")

    a = await statistics(client, merchant)
    assert a["total_count"] == 2
    assert a["by_status"] == {"paid": 1, "pending": 1}
    assert a["currencies"] == [
        {
            "currency": "KZT",
            "count": 2,
            "amount": "750.00",
            "paid_amount": "500.00",
            "refunded_amount": "0.00",
            "net_amount": "500.00",
        }
    ]
    b = await statistics(client, other_merchant)
    assert b["total_count"] == 1
    assert b["by_status"] == {"pending": 1}
    assert [c["currency"] for c in b["currencies"]] == ["USD"]
    assert b["currencies"][0]["amount"] == "1000.00"
    assert b["currencies"][0]["paid_amount"] == "0.00"


async def test_other_merchant_cannot_cancel_or_refund(client, db, merchant, other_merchant):
    pending = (await create_payment(client, merchant))["transaction_id"]
    paid = (await create_payment(client, merchant))["transaction_id"]
    await sandbox(client, paid)
    before = await row_counts(db)

    for url in (f"/api/payment/{pending}/cancel", f"/api/payment/{paid}/refund", f"/api/payment/{paid}/cancel"):
        response = await client.post(url, json={}, headers=other_merchant.headers)
        assert response.status_code == 404, (url, response.text)
        assert response.json()["error"]["code"] == "not_found"
    assert await row_counts(db) == before

    # Still the owner's to act on.
    cancel = await client.post(f"/api/payment/{pending}/cancel", json={}, headers=merchant.headers)
    assert cancel.status_code == 200 and cancel.json()["data"]["status"] == "cancelled"
    refund = await client.post(f"/api/payment/{paid}/refund", json={}, headers=merchant.headers)
    assert refund.status_code == 200 and refund.json()["data"]["payment"]["status"] == "refunded"


@pytest.mark.parametrize("path", ["/api/payment/{pid}", "/api/payment/{pid}/status"])
@pytest.mark.parametrize("who", ["anonymous", "other-merchant"])
async def test_public_view_hides_private_data(client, db, merchant, other_merchant, path, who):
    pid = (await create_payment(client, merchant, **PRIVATE))["transaction_id"]
    headers = other_merchant.headers if who == "other-merchant" else {}
    response = await client.get(path.format(pid=pid), headers=headers)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["transaction_id"] == pid
    assert data["amount"] == "500.00"
    assert data["description"] == SEED_BODY["description"]
    for key in (
        "metadata",
        "webhook_url",
        "webhook_secret",
        "has_webhook_secret",
        "customer_email",
        "customer_phone",
        "customer_name",
        "success_url",
        "fail_url",
        "merchant_id",
        "events",
        "refunds",
    ):
        assert key not in data, key
    for value in PRIVATE_VALUES:
        assert value not in response.text, value


async def test_webhook_secret_never_leaves_the_server(client, db, merchant):
    """Even the owner's views say only whether a secret is set, never the secret itself."""
    created = await client.post(INIT, json={**SEED_BODY, **PRIVATE}, headers=merchant.headers)
    assert created.status_code == 201
    pid = created.json()["data"]["transaction_id"]
    await sandbox(client, pid, amount="100")
    refund = await client.post(f"/api/payment/{pid}/refund", json={"amount": 50}, headers=merchant.headers)
    assert refund.status_code == 200, refund.text
    cancel = await client.post(f"/api/payment/{pid}/cancel", json={}, headers=merchant.headers)
    assert cancel.status_code == 200, cancel.text
    detail = await client.get(f"/api/transaction/{pid}", headers=merchant.headers)
    listing = await client.get("/api/transactions", headers=merchant.headers)
    for response in (created, refund, cancel, detail, listing):
        assert "very-secret-webhook-key" not in response.text
    assert detail.json()["data"]["has_webhook_secret"] is True
    assert detail.json()["data"]["metadata"] == PRIVATE["metadata"]
    assert detail.json()["data"]["customer_email"] == PRIVATE["customer_email"]


# --- idempotency -------------------------------------------------------------------------------


def with_key(creds: MerchantCreds, key: str) -> dict[str, str]:
    return {**creds.headers, "Idempotency-Key": key}


async def test_same_key_same_body_replays(client, db, merchant):
    key = str(uuid.uuid4())
    first = await client.post(INIT, json=SEED_BODY, headers=with_key(merchant, key))
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers

    # The same JSON with other key order and spacing is the same request.
    reordered = json.dumps(dict(reversed(list(SEED_BODY.items()))), indent=2).encode()
    for content in (json.dumps(SEED_BODY).encode(), reordered):
        again = await client.post(
            INIT, content=content, headers={**with_key(merchant, key), "Content-Type": "application/json"}
        )
        assert again.status_code == 201, again.text
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()

    counts = await row_counts(db)
    assert counts["payments"] == 1
    assert counts["idempotency_keys"] == 1
    listing = await client.get("/api/transactions", headers=merchant.headers)
    assert ids(listing) == [first.json()["data"]["transaction_id"]]


async def test_same_key_other_body_is_409(client, db, merchant):
    key = "order-1001"
    first = await client.post(INIT, json=SEED_BODY, headers=with_key(merchant, key))
    assert first.status_code == 201
    before = await row_counts(db)
    for body in ({**SEED_BODY, "amount": 501}, {**SEED_BODY, "metadata": {"order_id": "TEST-002"}}):
        response = await client.post(INIT, json=body, headers=with_key(merchant, key))
        assert response.status_code == 409, response.text
        assert response.json()["success"] is False
        assert response.json()["error"]["code"] == "idempotency_key_reused"
        assert response.json()["message"]
    # The same key on another endpoint is another request too.
    pid = first.json()["data"]["transaction_id"]
    response = await client.post(f"/api/payment/{pid}/cancel", json={}, headers=with_key(merchant, key))
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert await row_counts(db) == before
    detail = await client.get(f"/api/transaction/{pid}", headers=merchant.headers)
    assert detail.json()["data"]["status"] == "pending"


async def test_keys_are_per_merchant(client, db, merchant, other_merchant):
    key = "shared-key"
    a = await client.post(INIT, json=SEED_BODY, headers=with_key(merchant, key))
    b = await client.post(INIT, json=SEED_BODY, headers=with_key(other_merchant, key))
    assert a.status_code == b.status_code == 201
    assert "idempotent-replayed" not in b.headers
    assert a.json()["data"]["transaction_id"] != b.json()["data"]["transaction_id"]
    # And a different body under the same key is fine for the other merchant.
    c = await client.post(INIT, json={**SEED_BODY, "amount": 9}, headers=with_key(other_merchant, "other-" + key))
    assert c.status_code == 201
    counts = await row_counts(db)
    assert counts["payments"] == 3
    assert counts["idempotency_keys"] == 3
    assert ids(await client.get("/api/transactions", headers=merchant.headers)) == [a.json()["data"]["transaction_id"]]


@pytest.mark.parametrize(("key", "status"), [("k" * 255, 201), ("k" * 256, 422), ("", 422), ("bad\tkey", 422)])
async def test_key_format(client, db, merchant, key, status):
    before = await row_counts(db)
    response = await client.post(INIT, json=SEED_BODY, headers=with_key(merchant, key))
    assert response.status_code == status, response.text
    after = await row_counts(db)
    if status == 201:
        assert after["idempotency_keys"] == before["idempotency_keys"] + 1
        return
    assert after == before
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == "validation_error"
    assert [f["field"] for f in body["error"]["fields"]] == ["Idempotency-Key"]
    assert "255" in body["message"]


async def test_refused_request_does_not_burn_the_key(client, db, merchant):
    key = "retry-after-fixing"
    bad = await client.post(INIT, json={**SEED_BODY, "amount": -5}, headers=with_key(merchant, key))
    assert bad.status_code == 422
    assert (await row_counts(db))["idempotency_keys"] == 0
    good = await client.post(INIT, json=SEED_BODY, headers=with_key(merchant, key))
    assert good.status_code == 201, good.text
    assert "idempotent-replayed" not in good.headers
    replay = await client.post(INIT, json=SEED_BODY, headers=with_key(merchant, key))
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["data"]["transaction_id"] == good.json()["data"]["transaction_id"]


async def test_concurrent_requests_with_one_key_create_one_payment(client, db, merchant):
    key = str(uuid.uuid4())
    responses = await asyncio.gather(
        *(client.post(INIT, json=SEED_BODY, headers=with_key(merchant, key)) for _ in range(10))
    )
    assert [r.status_code for r in responses] == [201] * 10, [r.text for r in responses if r.status_code != 201]
    assert len({r.json()["data"]["transaction_id"] for r in responses}) == 1
    assert sum("idempotent-replayed" not in r.headers for r in responses) == 1
    counts = await row_counts(db)
    assert counts["payments"] == 1
    assert counts["idempotency_keys"] == 1


async def test_cancel_replay(client, db, merchant):
    pid = (await create_payment(client, merchant))["transaction_id"]
    url = f"/api/payment/{pid}/cancel"
    first = await client.post(url, json={"reason": "out of stock"}, headers=with_key(merchant, "cancel-1"))
    assert first.status_code == 200, first.text
    assert first.json()["data"]["status"] == "cancelled"
    events = (await row_counts(db))["events"]

    replay = await client.post(url, json={"reason": "out of stock"}, headers=with_key(merchant, "cancel-1"))
    assert replay.status_code == 200, replay.text
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()
    # Without the key the same request is a new one, and a cancelled payment can't be cancelled.
    fresh = await client.post(url, json={"reason": "out of stock"}, headers=merchant.headers)
    assert fresh.status_code == 409
    assert (await row_counts(db))["events"] == events


async def test_refund_replay_refunds_once(client, db, merchant):
    pid = (await create_payment(client, merchant))["transaction_id"]
    await sandbox(client, pid)
    url = f"/api/payment/{pid}/refund"
    first = await client.post(url, json={"amount": 100, "reason": "r"}, headers=with_key(merchant, "refund-1"))
    assert first.status_code == 200, first.text
    refund_id = first.json()["data"]["refund"]["id"]
    assert first.json()["data"]["refund"]["status"] == "succeeded"

    for _ in range(2):
        replay = await client.post(url, json={"amount": 100, "reason": "r"}, headers=with_key(merchant, "refund-1"))
        assert replay.status_code == 200, replay.text
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json()["data"]["refund"]["id"] == refund_id
        assert replay.json()["data"]["payment"]["refunded_amount"] == "100.00"
    counts = await row_counts(db)
    assert counts["refunds"] == 1

    # A full refund replayed is not refused as "nothing left": it answers as the first time.
    full = await client.post(url, json={}, headers=with_key(merchant, "refund-2"))
    assert full.status_code == 200, full.text
    assert full.json()["data"]["refund"]["amount"] == "400.00"
    again = await client.post(url, json={}, headers=with_key(merchant, "refund-2"))
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["data"]["refund"]["id"] == full.json()["data"]["refund"]["id"]
    detail = (await client.get(f"/api/transaction/{pid}", headers=merchant.headers)).json()["data"]
    assert detail["status"] == "refunded"
    assert detail["refunded_amount"] == "500.00"
    assert len(detail["refunds"]) == 2


@pytest.mark.parametrize("action", ["cancel", "refund"])
async def test_concurrent_cancel_or_refund_with_one_key_acts_once(client, db, merchant, action):
    pid = (await create_payment(client, merchant))["transaction_id"]
    if action == "refund":
        await sandbox(client, pid)
    url = f"/api/payment/{pid}/{action}"
    key = f"{action}-{uuid.uuid4()}"
    responses = await asyncio.gather(*(client.post(url, json={}, headers=with_key(merchant, key)) for _ in range(8)))
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses if r.status_code != 200]
    assert sum("idempotent-replayed" not in r.headers for r in responses) == 1
    counts = await row_counts(db)
    assert counts["idempotency_keys"] == 1
    detail = (await client.get(f"/api/transaction/{pid}", headers=merchant.headers)).json()["data"]
    if action == "refund":
        assert counts["refunds"] == 1
        assert len({r.json()["data"]["refund"]["id"] for r in responses}) == 1
        assert detail["refunded_amount"] == "500.00"
        assert detail["status"] == "refunded"
    else:
        assert detail["status"] == "cancelled"
        assert [e["type"] for e in detail["events"]].count("cancelled") == 1


async def test_expired_key_acts_anew(client, db, merchant, settings, clock):
    key = "expiring"
    first = await client.post(INIT, json=SEED_BODY, headers=with_key(merchant, key))
    assert first.status_code == 201
    first_id = first.json()["data"]["transaction_id"]

    clock.advance(seconds=settings.idempotency_ttl_seconds - 60)
    still = await client.post(INIT, json=SEED_BODY, headers=with_key(merchant, key))
    assert still.headers.get("idempotent-replayed") == "true"
    assert still.json()["data"]["transaction_id"] == first_id

    clock.advance(seconds=120)  # now past the TTL
    anew = await client.post(INIT, json=SEED_BODY, headers=with_key(merchant, key))
    assert anew.status_code == 201, anew.text
    assert "idempotent-replayed" not in anew.headers
    second_id = anew.json()["data"]["transaction_id"]
    assert second_id != first_id
    counts = await row_counts(db)
    assert counts["payments"] == 2
    assert counts["idempotency_keys"] == 1  # the expired row made way for the new one

    # The new answer is the one replayed from now on; another body under the key is refused again.
    replay = await client.post(INIT, json=SEED_BODY, headers=with_key(merchant, key))
    assert replay.json()["data"]["transaction_id"] == second_id
    other = await client.post(INIT, json={**SEED_BODY, "amount": 1}, headers=with_key(merchant, key))
    assert other.status_code == 409


async def test_expired_key_may_take_another_body(client, db, merchant, settings, clock):
    key = "reused-later"
    assert (await client.post(INIT, json=SEED_BODY, headers=with_key(merchant, key))).status_code == 201
    clock.advance(seconds=settings.idempotency_ttl_seconds + 1)
    response = await client.post(INIT, json={**SEED_BODY, "amount": 42}, headers=with_key(merchant, key))
    assert response.status_code == 201, response.text
    assert response.json()["data"]["amount"] == "42.00"
    assert (await row_counts(db))["payments"] == 2
