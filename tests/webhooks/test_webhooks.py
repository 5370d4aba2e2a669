"""Webhooks end to end: real payments, a real worker, a real HTTP endpoint on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta

from sqlalchemy import select
from standardwebhooks import Webhook

from kit.api import create_payment, make_merchant, sandbox
from kit.clock import Clock
from kit.sink import eventually, wait_until
from kit.worker import worker_settings
from paycenter.context import AppContext
from paycenter.jobs.expirer import expire_due
from paycenter.merchants.models import Merchant
from paycenter.payments.models import Event
from paycenter.providers.registry import Providers
from paycenter.webhooks.models import Delivery, DeliveryAttempt
from paycenter.worker import Worker


async def signing_secret(db, merchant_id: str) -> str:
    async with db.reading() as session:
        return (await session.get(Merchant, merchant_id)).signing_secret


async def deliveries(db) -> list[Delivery]:
    async with db.reading() as session:
        return list(await session.scalars(select(Delivery).order_by(Delivery.created_at)))


async def attempts_of(db, delivery_id: str) -> list[DeliveryAttempt]:
    async with db.reading() as session:
        rows = await session.scalars(
            select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery_id).order_by(DeliveryAttempt.number)
        )
        return list(rows)


async def test_all_five_events_arrive_signed(client, db, merchant, worker, sink, clock):
    url = sink.on("/hooks")
    secret = "test_secret_key"
    paid = (await create_payment(client, merchant, webhook_url=url, webhook_secret=secret))["transaction_id"]
    await sandbox(client, paid, amount="200", checkout_id="a")  # partially_paid
    await sandbox(client, paid, checkout_id="b")  # paid
    r = await client.post(f"/api/payment/{paid}/refund", headers=merchant.headers, json={"amount": 100})
    assert r.status_code == 200  # refunded
    cancelled = (await create_payment(client, merchant, webhook_url=url, webhook_secret=secret))["transaction_id"]
    assert (await client.post(f"/api/payment/{cancelled}/cancel", headers=merchant.headers)).status_code == 200
    expiring = (await create_payment(client, merchant, webhook_url=url, webhook_secret=secret, expires_in=10))[
        "transaction_id"
    ]
    clock.advance(seconds=11)  # the expirer notices within its next pass

    await wait_until(lambda: len(sink.at("/hooks")) >= 5, timeout=10, what="five webhooks")
    got = {json.loads(r.body)["event"]: r for r in sink.at("/hooks")}
    assert set(got) == {"partially_paid", "paid", "refunded", "cancelled", "expired"}

    verifier = Webhook(await signing_secret(db, merchant.merchant_id))
    for event, received in got.items():
        h = {k.lower(): v for k, v in received.headers.items()}
        # 1. The official Standard Webhooks library accepts it.
        payload = verifier.verify(received.body, h)
        assert payload["event"] == event
        # 2. The old scheme: lowercase hex HMAC-SHA256 of the exact body with the payment's secret.
        expected = hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
        assert h["x-webhook-signature"] == expected
        assert h["x-webhook-event"] == event
        assert h["webhook-id"] == payload["event_id"]
        assert h["content-type"] == "application/json"
        assert abs(int(h["x-webhook-timestamp"]) - int(h["webhook-timestamp"])) <= 1
    assert json.loads(got["expired"].body)["transaction_id"] == expiring
    assert json.loads(got["cancelled"].body)["transaction_id"] == cancelled
    refunded = json.loads(got["refunded"].body)
    assert (refunded["refund_amount"], refunded["status"]) == (100, "paid")
    seqs = [json.loads(got[e].body)["sequence"] for e in ("partially_paid", "paid", "refunded")]
    assert seqs == [1, 2, 3]


async def test_merchant_default_url_and_no_url(client, db, sink, worker):
    with_default = await make_merchant(db, name="Default URL shop", webhook_url=sink.on("/default"))
    pid = (await create_payment(client, with_default, webhook_url=None, webhook_secret=None))["transaction_id"]
    await sandbox(client, pid, checkout_id="x")
    await wait_until(lambda: len(sink.at("/default")) == 1, timeout=5, what="delivery to the default URL")
    assert "x-webhook-signature" not in {k.lower() for k in sink.at("/default")[0].headers}  # no payment secret

    no_url = await make_merchant(db, name="No URL shop")
    pid = (await create_payment(client, no_url, webhook_url=None))["transaction_id"]
    await sandbox(client, pid, checkout_id="y")
    r = await client.get("/api/events", headers=no_url.headers)
    (item,) = r.json()["data"]["items"]
    assert (item["type"], item["deliveries"]) == ("paid", [])  # still readable from the feed


async def test_retries_follow_the_schedule(client, db, merchant, worker, sink, clock):
    url = sink.on("/flaky", 500, 503, 200)
    pid = (await create_payment(client, merchant, webhook_url=url))["transaction_id"]
    await sandbox(client, pid, checkout_id="x")
    (delivery,) = await eventually(lambda: deliveries(db), timeout=5, what="the delivery row")

    async def recorded(n: int) -> list[DeliveryAttempt]:
        rows = await attempts_of(db, delivery.id)
        return rows if len(rows) >= n else []

    (first,) = await eventually(lambda: recorded(1), timeout=5, what="the first try")
    gap = (first.next_attempt_at - first.started_at).total_seconds()
    assert 48 <= gap <= 72, gap  # 1 min ± 20%
    clock.advance(seconds=73)
    worker.dispatcher.wake()
    second = (await eventually(lambda: recorded(2), timeout=5, what="the second try"))[1]
    gap = (second.next_attempt_at - second.started_at).total_seconds()
    assert 240 <= gap <= 360, gap  # 5 min ± 20%
    clock.advance(seconds=361)
    worker.dispatcher.wake()
    rows = await eventually(lambda: recorded(3), timeout=5, what="the third try")
    assert [(a.number, a.response_status, a.error_class) for a in rows] == [
        (1, 500, "http_status"),
        (2, 503, "http_status"),
        (3, 200, None),
    ]
    assert rows[2].next_attempt_at is None
    (delivery,) = await deliveries(db)
    assert (delivery.status, delivery.attempt_count) == ("succeeded", 3)
    assert len({r.headers["webhook-id"] for r in sink.at("/flaky")}) == 1  # one event id on every try


async def delivery_in(db, status: str) -> Delivery | None:
    rows = await deliveries(db)
    return rows[0] if rows and rows[0].status == status else None


async def test_gives_up_after_four_tries_then_resend_delivers(client, db, merchant, worker, sink, clock):
    url = sink.on("/down", 500)
    pid = (await create_payment(client, merchant, webhook_url=url))["transaction_id"]
    await sandbox(client, pid, checkout_id="x")
    for n in range(1, 5):
        await wait_until(lambda n=n: len(sink.at("/down")) == n, timeout=5, what=f"try {n}")
        await eventually(lambda n=n: _attempts_recorded(db, n), timeout=5, what=f"try {n} recorded")
        clock.advance(hours=1)
        worker.dispatcher.wake()
    d = await eventually(lambda: delivery_in(db, "failed"), timeout=5, what="the delivery to fail")
    assert (d.attempt_count, d.next_attempt_at) == (4, None)
    assert len(sink.at("/down")) == 4

    r = await client.get(f"/api/payment/{pid}/webhooks", headers=merchant.headers)
    (log,) = r.json()["data"]
    assert log["status"] == "failed" and len(log["attempts"]) == 4
    assert log["attempts"][0]["request_headers"]["webhook-id"] == log["event_id"]
    assert log["attempts"][0]["response_body"] == "nope"
    assert json.loads(log["attempts"][0]["request_body"])["event"] == "paid"

    sink.on("/down", 200)
    r = await client.post(f"/api/webhooks/{d.id}/resend", headers=merchant.headers)
    assert r.status_code == 200, r.text
    await wait_until(lambda: len(sink.at("/down")) == 5, timeout=5, what="the resend")
    assert len({r.headers["webhook-id"] for r in sink.at("/down")}) == 1
    d = await eventually(lambda: delivery_in(db, "succeeded"), timeout=5, what="the resend to be recorded")
    assert d.attempt_count == 5


async def _attempts_recorded(db, n: int) -> bool:
    rows = await deliveries(db)
    return bool(rows) and len(await attempts_of(db, rows[0].id)) >= n


async def test_recover_resends_failed_since(client, db, merchant, ctx, sink, clock):
    ctx.settings = worker_settings(ctx.settings.database_url, webhook_retry_schedule="")  # one try only
    w = Worker(ctx)
    await w.start()
    try:
        url = sink.on("/outage", 500)
        ids = []
        for i in range(3):
            pid = (await create_payment(client, merchant, webhook_url=url))["transaction_id"]
            await sandbox(client, pid, checkout_id=f"x{i}")
            ids.append(pid)

        async def all_failed() -> bool:
            rows = await deliveries(db)
            return len(rows) == 3 and all(d.status == "failed" for d in rows)

        await eventually(all_failed, timeout=5, what="three failed deliveries")
        r = await client.get("/api/events", params={"delivery_status": "failed"}, headers=merchant.headers)
        assert {e["transaction_id"] for e in r.json()["data"]["items"]} == set(ids)
        sink.on("/outage", 200)
        since = (clock() - timedelta(minutes=5)).isoformat()
        r = await client.post("/api/webhooks/recover", json={"since": since}, headers=merchant.headers)
        assert r.json()["data"]["resent"] == 3
        await wait_until(lambda: len(sink.at("/outage")) == 6, timeout=5, what="recovered deliveries")
    finally:
        await w.stop()


async def test_hanging_endpoint_does_not_delay_others(client, db, merchant, worker, sink):
    hang = sink.url("/hang")
    fast = sink.on("/fast")
    for i in range(12):  # more than the per-endpoint bound (8)
        pid = (await create_payment(client, merchant, webhook_url=hang))["transaction_id"]
        await sandbox(client, pid, checkout_id=f"h{i}")
    await wait_until(lambda: len(sink.at("/hang")) >= 8, timeout=5, what="the hanging endpoint's slots to fill")
    started = datetime.now().timestamp()
    for i in range(10):
        pid = (await create_payment(client, merchant, webhook_url=fast))["transaction_id"]
        await sandbox(client, pid, checkout_id=f"f{i}")
    await wait_until(lambda: len(sink.at("/fast")) == 10, timeout=3, what="deliveries to the healthy endpoint")
    assert max(r.at for r in sink.at("/fast")) - started < 3
    assert len(sink.at("/hang")) == 8  # its own bound holds while it hangs
    sink.release_hang.set()
    await wait_until(lambda: len(sink.at("/hang")) == 12, timeout=5, what="the rest once it recovers")


async def test_redirect_and_retry_after(client, db, merchant, worker, sink, clock):
    moved_url = sink.on("/moved", 302, headers={"Location": "https://example.com/"})
    busy_url = sink.on("/busy", 503, headers={"Retry-After": "1200"})
    for i, url in enumerate((moved_url, busy_url)):
        pid = (await create_payment(client, merchant, webhook_url=url))["transaction_id"]
        await sandbox(client, pid, checkout_id=f"x{i}")

    async def first_attempts() -> dict[str, DeliveryAttempt]:
        rows = {}
        for d in await deliveries(db):
            attempts = await attempts_of(db, d.id)
            if attempts:
                rows[d.url] = attempts[0]
        return rows if len(rows) == 2 else {}

    rows = await eventually(first_attempts, timeout=5, what="both first tries")
    moved = rows[moved_url]
    assert (moved.response_status, moved.error_class) == (302, "http_status")
    assert "not followed" in moved.error
    assert len(sink.at("/moved")) == 1  # the redirect target was never requested
    busy = rows[busy_url]
    assert (busy.next_attempt_at - busy.started_at).total_seconds() >= 1200  # honoured: longer than 1 min


async def test_secret_rotation_signs_with_both(client, db, merchant, worker, sink):
    old = await signing_secret(db, merchant.merchant_id)
    r = await client.post("/api/webhook-secret/rotate", json={"grace_period": 3600}, headers=merchant.headers)
    new = r.json()["data"]["signing_secret"]
    assert new != old and new.startswith("whsec_")
    pid = (await create_payment(client, merchant, webhook_url=sink.on("/rot")))["transaction_id"]
    await sandbox(client, pid, checkout_id="x")
    await wait_until(lambda: len(sink.at("/rot")) == 1, timeout=5, what="delivery")
    received = sink.at("/rot")[0]
    h = {k.lower(): v for k, v in received.headers.items()}
    assert len(h["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(received.body, h)
    Webhook(old).verify(received.body, h)


def test_clock_fixture_is_movable():
    c = Clock()
    before = c()
    c.advance(minutes=1)
    assert c() - before >= timedelta(minutes=1)


async def test_worker_settings_are_valid(database_url):
    s = worker_settings(database_url, webhook_retry_schedule="1s,2s")
    assert s.retry_schedule == [1.0, 2.0]
    ctx = AppContext(settings=s, db=None, providers=Providers(s))  # type: ignore[arg-type]
    assert ctx.settings.webhook_allowed_networks == "127.0.0.0/8"


async def test_expirer_keeps_the_money_of_a_partial_payment(client, db, merchant, clock):
    pid = (await create_payment(client, merchant, expires_in=60))["transaction_id"]
    await sandbox(client, pid, amount="120", checkout_id="x")
    assert await expire_due(db, now=clock()) == 0  # not yet
    clock.advance(seconds=61)
    assert await expire_due(db, now=clock()) == 1
    assert await expire_due(db, now=clock()) == 0  # a second pass (or a second worker) finds nothing
    r = await client.get(f"/api/payment/{pid}")
    assert (r.json()["data"]["status"], r.json()["data"]["paid_amount"]) == ("expired", "120.00")
    async with db.reading() as session:
        body = json.loads(
            await session.scalar(select(Event.body).where(Event.payment_id == pid, Event.type == "expired"))
        )
    assert (body["partially_paid"], body["paid_amount"], body["previous_status"]) == (True, 120, "partially_paid")
