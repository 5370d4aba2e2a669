"""Refunds Kaspi answers "temporary error, try again" (-99000006 on payment/return): sent again
with a growing pause for a bounded time (PAYCENTER_REFUND_RETRY_FOR, 30 min by default), driven
here by the app's clock; a refund that still did not go back ends `failed` and the merchant gets a
signed `refund_failed` webhook, which the admin shows too. Against the Kaspi QR simulator over
HTTP, the real worker and a loopback webhook endpoint, on every backend."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from kit.admin import admin_browser
from kit.api import MerchantCreds, create_payment
from kit.clock import drive
from kit.kaspi import Kaspi, qr_id
from paycenter.merchants.models import Merchant
from paycenter.payments.models import Refund

# Kaspi answers -99000006 to payment/return, which is sent as such on r3 (directly; on r2 only after
# the customer scanned a return QR, and r1 has no refund API: kaspi-qr-api.md §5).
pytestmark = pytest.mark.parametrize("kaspi", ["r3"], indirect=True)

SEED_KEYS = [
    "event",
    "transaction_id",
    "amount",
    "original_amount",
    "paid_amount",
    "actual_amount_received",
    "remaining_amount",
    "currency",
    "status",
    "description",
    "created_at",
    "paid_at",
    "metadata",
    "timestamp",
]


async def paid(k: Kaspi, creds: MerchantCreds, *parts: int) -> str:
    """A Kaspi QR payment of sum(parts) paid in those parts (one QR payment each)."""
    total = sum(parts) or 500
    data = await create_payment(
        k.client, creds, provider="kaspi_qr", amount=total, webhook_url=k.sink.on("/hooks"), webhook_secret="s3cret"
    )
    pid = data["transaction_id"]
    for i, part in enumerate(parts or (total,)):
        await k.start(pid)
        k.qr.confirm(qr_id(await k.live(pid)), amount=part)
        await k.wait_event(pid, "paid" if i == len(parts or (total,)) - 1 else "partially_paid")
    return pid


async def refund_in(k: Kaspi, refund_id: str, *statuses: str) -> Refund | None:
    async with k.db.reading() as session:
        refund = await session.get(Refund, refund_id, populate_existing=True)
    return refund if refund is not None and refund.status in statuses else None


def return_calls(k: Kaspi) -> int:
    return k.qr.stats()["Calls"].get("payment/return", 0)


async def test_a_refund_kaspi_asks_to_retry_goes_through_on_its_own(kaspi: Kaspi, merchant):
    k = kaspi
    pid = await paid(k, merchant)
    k.qr.inject_error("payment/return", -99000006, times=3)
    r = await k.client.post(f"/api/payment/{pid}/refund")
    refund = r.json()["data"]["refund"]
    assert refund["status"] == "pending", r.text  # accepted; Kaspi will be asked again

    await drive(k.ctx.clock, lambda: refund_in(k, refund["id"], "succeeded"), step=6, what="the refund")
    assert return_calls(k) == 4  # three "try again" answers, then done: never more than needed
    body = await k.wait_event(pid, "refunded")
    assert (body["refund_amount"], body["status"]) == (500, "refunded")
    assert await k.webhooks(pid, "refund_failed") == []
    assert sum(float(p["Returned"]) for p in k.qr.payments()) == 500


@pytest.mark.slow  # over 2 s: make test runs it, make test-fast does not
async def test_a_refund_kaspi_keeps_refusing_fails_and_the_merchant_hears(kaspi: Kaspi, merchant):
    k = kaspi
    clock = k.ctx.clock
    pid = await paid(k, merchant)
    k.qr.inject_error("payment/return", -99000006, times=None)
    r = await k.client.post(f"/api/payment/{pid}/refund", json={"reason": "customer returned the shoes"})
    refund_id = r.json()["data"]["refund"]["id"]

    failed = await drive(clock, lambda: refund_in(k, refund_id, "failed"), step=60, what="the refund to fail")
    calls = return_calls(k)
    assert 5 <= calls <= 40, calls  # retried with a growing pause, not hammered, and not forever
    assert "try again" in failed.error and "30 min" in failed.error
    waited = (failed.completed_at - failed.created_at).total_seconds()
    assert 30 * 60 <= waited <= 40 * 60, waited

    body = await k.wait_event(pid, "refund_failed")
    assert list(body)[: len(SEED_KEYS)] == SEED_KEYS  # the wire style of every other event
    assert (body["refund_id"], body["refund_amount"], body["failed_amount"], body["refunded_amount"]) == (
        refund_id,
        500,
        500,
        0,
    )
    assert body["reason"] == "customer returned the shoes" and "try again" in body["error"]
    assert (body["partial"], body["status"], body["previous_status"]) == (False, "paid", "paid")
    received = next(x for x in k.sink.received if json.loads(x.body)["event"] == "refund_failed")
    headers = {key.lower(): value for key, value in received.headers.items()}
    async with k.db.reading() as session:
        signing_secret = (await session.get(Merchant, merchant.merchant_id)).signing_secret
    # Signed like every event (the library's own signing; its verify() would refuse the timestamp,
    # which follows the app's clock, moved half an hour ahead by this test).
    sent_at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
    expected = Webhook(signing_secret).sign(headers["webhook-id"], sent_at, received.body.decode())
    assert expected in headers["webhook-signature"].split(" ")
    assert headers["webhook-id"] == body["event_id"]
    assert headers["x-webhook-signature"] == hmac.new(b"s3cret", received.body, hashlib.sha256).hexdigest()
    assert headers["x-webhook-event"] == "refund_failed"

    # The merchant's event feed has the type and its filter.
    feed = (await k.client.get("/api/events", params={"type": "refund_failed"})).json()["data"]["items"]
    assert [(e["type"], e["data"]["refund_id"]) for e in feed] == [("refund_failed", refund_id)]
    # The operator sees it: the refund failed with Kaspi's words, and the event in the timeline.
    async with admin_browser(k.client._transport.app, k.db, clock) as browser:  # type: ignore[attr-defined]
        page = (await browser.get(f"/admin/transactions/{pid}")).text
    refunds_table = page[page.index('data-testid="refunds"') :]
    assert refund_id in refunds_table and "failed" in refunds_table and "try again" in refunds_table
    assert 'data-type="refund_failed"' in page

    # Nothing went back, so the money is still refundable once Kaspi works again.
    k.qr.clear_injected()
    r = await k.client.post(f"/api/payment/{pid}/refund")
    assert r.json()["data"]["refund"]["status"] == "succeeded", r.text
    assert sum(float(p["Returned"]) for p in k.qr.payments()) == 500


@pytest.mark.slow  # over 2 s: make test runs it, make test-fast does not
async def test_a_partly_failed_refund_says_what_went_back_and_what_did_not(kaspi: Kaspi, merchant):
    k = kaspi
    pid = await paid(k, merchant, 200, 300)  # two QR payments: the refund goes back in two legs
    k.qr.inject_error("payment/return", -99000006, times=1)  # the first leg is refused, the second goes
    r = await k.client.post(f"/api/payment/{pid}/refund")
    refund_id = r.json()["data"]["refund"]["id"]
    assert r.json()["data"]["refund"]["status"] == "pending", r.text
    k.qr.inject_error("payment/return", -99000006, times=None)  # and keeps being refused

    done = await drive(
        k.ctx.clock, lambda: refund_in(k, refund_id, "partially_succeeded"), step=60, what="the refund to settle"
    )
    returned = round(sum(float(p["Returned"]) for p in k.qr.payments()))
    assert returned in (200, 300) and done.refunded_amount == returned * 100
    refunded = await k.wait_event(pid, "refunded")
    failed = await k.wait_event(pid, "refund_failed")
    assert (refunded["refund_id"], refunded["refund_amount"]) == (refund_id, returned)
    assert (failed["refund_id"], failed["refund_amount"], failed["failed_amount"]) == (refund_id, 500, 500 - returned)
    assert (failed["partial"], failed["refunded_amount"]) == (True, returned)
    assert failed["sequence"] == refunded["sequence"] + 1  # written together, in that order
    async with k.db.reading() as session:
        assert (await session.scalar(select(Refund.status).where(Refund.id == refund_id))) == "partially_succeeded"
