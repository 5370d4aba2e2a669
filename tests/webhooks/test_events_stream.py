"""The events stream (GET /api/events/stream) over real HTTP on every backend: scoped to the token's
merchant, resumable without loss or repeat (also for an event that commits after a later one),
filtered by type, bounded per token, and carrying what a real delivery of each event carries."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
import httpx
import pytest
from sqlalchemy import select, text
from standardwebhooks import Webhook
from starlette.applications import Starlette

from kit.api import create_payment, make_merchant, sandbox
from kit.asgi_server import serve
from kit.sink import eventually, wait_until
from paycenter.api import events as stream_api
from paycenter.app import create_app
from paycenter.cli.listen import Message, sse_messages
from paycenter.context import AppContext
from paycenter.db import Database, utcnow
from paycenter.merchants import service as merchants
from paycenter.merchants.models import Merchant
from paycenter.payments.models import Event
from paycenter.providers.registry import Providers
from paycenter.webhooks import service as webhooks
from paycenter.webhooks import signing

SECRET = "test_secret_key"


@dataclass
class Stream:
    """One open stream, its messages collected as they come."""

    response: aiohttp.ClientResponse
    messages: list[Message] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads("\n".join(m.data)) for m in self.messages if m.event == "webhook"]

    @property
    def position(self) -> str | None:
        ids = [m.id for m in self.messages if m.id is not None]
        return ids[-1] if ids else None

    def position_after(self, event_id: str) -> str:
        for m in self.messages:
            if m.event == "webhook" and json.loads("\n".join(m.data))["id"] == event_id:
                assert m.id is not None
                return m.id
        raise AssertionError(f"{event_id} not streamed")

    async def wait_events(self, n: int, timeout: float = 15) -> list[dict[str, Any]]:
        await wait_until(lambda: len(self.events) >= n, timeout=timeout, what=f"{n} streamed events")
        return self.events


@pytest.fixture
async def base_url(app: Any) -> AsyncIterator[str]:
    async with serve(app) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=30)) as s:
        yield s


@contextlib.asynccontextmanager
async def stream(
    http: aiohttp.ClientSession, base_url: str, token: str, *, last_event_id: str | None = None, **params: str
) -> AsyncIterator[Stream]:
    headers = {"X-API-Token": token}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    async with http.get(f"{base_url}/api/events/stream", headers=headers, params=params) as response:
        assert response.status == 200, await response.text()
        assert response.headers["content-type"].startswith("text/event-stream")
        s = Stream(response)

        async def collect() -> None:
            async for message in sse_messages(response.content):
                s.messages.append(message)

        s.task = asyncio.create_task(collect())
        # The first message gives the starting position: from then on nothing is missed.
        await wait_until(lambda: s.position is not None, timeout=10, what="the stream's first position")
        try:
            yield s
        finally:
            s.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await s.task


async def paid_payment(client: Any, creds: Any, **overrides: Any) -> str:
    payment_id = (await create_payment(client, creds, webhook_secret=SECRET, **overrides))["transaction_id"]
    await sandbox(client, payment_id)
    return str(payment_id)


async def stored_event(db: Any, event_id: str) -> Event:
    async with db.reading() as session:
        event = await session.get(Event, event_id)
        assert event is not None
        return event


async def signing_secret(db: Any, merchant_id: str) -> str:
    async with db.reading() as session:
        return str(await session.scalar(select(Merchant.signing_secret).where(Merchant.id == merchant_id)))


async def test_own_events_only_signed_as_a_delivery_is(
    client, db, merchant, other_merchant, worker, sink, base_url, http
):
    url = sink.on("/hooks")
    async with stream(http, base_url, merchant.token) as s:
        others = await paid_payment(client, other_merchant, webhook_url=url)
        mine = await paid_payment(client, merchant, webhook_url=url)
        (event,) = await s.wait_events(1)
        # Events stream in (created_at, id) order: the other merchant's, made first, would be here.
        assert event["transaction_id"] == mine and event["type"] == "paid"
        await wait_until(lambda: len(sink.at("/hooks")) == 2, timeout=15, what="both real deliveries")
    assert others not in {e["transaction_id"] for e in s.events}

    body = event["body"].encode()
    stored = await stored_event(db, event["id"])
    assert body == stored.body.encode() and stored.merchant_id == merchant.merchant_id
    headers = event["headers"]
    whsec = await signing_secret(db, merchant.merchant_id)
    # What the dispatcher computes for this event at the same time.
    assert headers == signing.headers(
        event_type="paid",
        event_id=event["id"],
        body=body,
        timestamp=int(headers["webhook-timestamp"]),
        webhook_secret=SECRET,
        signing_secrets=[whsec],
    )
    # Both signatures verify: Standard Webhooks with the official library, the old hex HMAC.
    lowered = {k.lower(): v for k, v in headers.items()}
    assert Webhook(whsec).verify(body, lowered)["event_id"] == event["id"]
    assert lowered["x-webhook-signature"] == hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    # And the real delivery of the event carried the same body and the same headers (but for the
    # time it was signed at, and so its signature).
    (delivered,) = [r for r in sink.at("/hooks") if json.loads(r.body)["transaction_id"] == mine]
    assert delivered.body == body
    real = {k.lower(): v for k, v in delivered.headers.items()}
    timed = {"x-webhook-timestamp", "webhook-timestamp", "webhook-signature"}
    for name, value in lowered.items():
        if name not in timed:
            assert real[name] == value, name
    assert Webhook(whsec).verify(delivered.body, real)["event_id"] == event["id"]


async def test_resume_loses_and_repeats_nothing(client, db, merchant, base_url, http):
    async with stream(http, base_url, merchant.token) as s:
        first = await paid_payment(client, merchant)
        second = await paid_payment(client, merchant)
        events = await s.wait_events(2)
        assert [e["transaction_id"] for e in events] == [first, second]
        after_first = s.position_after(events[0]["id"])
        last = s.position
    # Made while nobody listens.
    third = await paid_payment(client, merchant)
    async with stream(http, base_url, merchant.token, last_event_id=after_first) as again:
        fourth = await paid_payment(client, merchant)
        resumed = await again.wait_events(3)
        assert [e["transaction_id"] for e in resumed] == [second, third, fourth]
    async with stream(http, base_url, merchant.token, last_event_id=last) as again:
        resumed = await again.wait_events(2)
        assert [e["transaction_id"] for e in resumed] == [third, fourth]
    # ?after= takes a position or an event id alike (the header wins over it).
    async with stream(http, base_url, merchant.token, after=events[1]["id"]) as again:
        resumed = await again.wait_events(2)
        assert [e["transaction_id"] for e in resumed] == [third, fourth]
    async with stream(http, base_url, merchant.token, after="c1.0", last_event_id=last) as again:
        assert [e["transaction_id"] for e in await again.wait_events(2)] == [third, fourth]
    # Nothing more came meanwhile: a stream resumed from the newest position sends nothing until
    # the next event, and then only it.
    async with stream(http, base_url, merchant.token, last_event_id=again.position) as idle:
        fifth = await paid_payment(client, merchant)
        assert [e["transaction_id"] for e in await idle.wait_events(1)] == [fifth]


async def test_an_event_that_commits_late_is_sent_once(client, db, merchant, clock, base_url, http):
    """An event created (its transaction began) before one already streamed, committed after it:
    sent when it commits, and not again after a reconnect."""
    async with stream(http, base_url, merchant.token) as s:
        early = await paid_payment(client, merchant)
        later = await paid_payment(client, merchant)
        streamed = await s.wait_events(2)
        first_at, second_at = [(await stored_event(db, e["id"])).created_at for e in streamed]
        async with db.transaction() as session:
            await webhooks.publish(
                session,
                event_id="evt_" + "0" * 24,
                payment_id=early,
                merchant_id=merchant.merchant_id,
                event_type="refunded",
                sequence=99,
                body='{"event":"refunded","late":true}',
                url=None,
                deliver=False,
                now=first_at + (second_at - first_at) / 2,  # began before `later` was made
            )
        events = await s.wait_events(3)
        assert [(e["transaction_id"], e["type"]) for e in events] == [
            (early, "paid"),
            (later, "paid"),
            (early, "refunded"),
        ]
        assert events[2]["body"] == '{"event":"refunded","late":true}'
        position = s.position
    async with stream(http, base_url, merchant.token, last_event_id=position) as again:
        newest = await paid_payment(client, merchant)
        assert [e["transaction_id"] for e in await again.wait_events(1)] == [newest]
        assert len(again.events) == 1


async def test_types_filter(client, db, merchant, base_url, http):
    async with stream(http, base_url, merchant.token, types="refunded") as s:
        payment_id = await paid_payment(client, merchant)
        r = await client.post(f"/api/payment/{payment_id}/refund", headers=merchant.headers, json={"amount": 100})
        assert r.status_code == 200, r.text
        partial = (await create_payment(client, merchant))["transaction_id"]
        await sandbox(client, partial, amount="100")
        r = await client.post(f"/api/payment/{partial}/refund", headers=merchant.headers, json={"amount": 50})
        assert r.status_code == 200, r.text
        events = await s.wait_events(2)
        assert [(e["type"], e["transaction_id"]) for e in events] == [("refunded", payment_id), ("refunded", partial)]
    for bad in ("bogus", "paid,nope", "attempt_cancelled"):  # the last is never sent as a webhook
        async with http.get(
            f"{base_url}/api/events/stream", headers={"X-API-Token": merchant.token}, params={"types": bad}
        ) as r:
            body = await r.json()
            assert r.status == 422 and body["success"] is False, body
            assert body["error"]["code"] == "validation_error"


async def test_auth_and_bad_positions(merchant, base_url, http):
    for headers in ({}, {"X-API-Token": "pct_nope"}):
        async with http.get(f"{base_url}/api/events/stream", headers=headers) as r:
            body = await r.json()
            assert r.status == 401 and body["error"]["code"] == "unauthorized", body
    # The last: no such event of theirs.
    for position in ("garbage", "c1.x", "c1.9999999999999999999", "evt_" + "f" * 24):
        async with http.get(
            f"{base_url}/api/events/stream", headers={"X-API-Token": merchant.token, "Last-Event-ID": position}
        ) as r:
            body = await r.json()
            assert r.status == 400 and body["error"]["code"] == "invalid_position", body


async def test_another_merchants_event_id_is_no_position(client, db, merchant, other_merchant, base_url, http):
    others = await paid_payment(client, other_merchant)
    async with db.reading() as session:
        event_id = await session.scalar(select(Event.id).where(Event.payment_id == others))
    async with http.get(
        f"{base_url}/api/events/stream", headers={"X-API-Token": merchant.token}, params={"after": event_id}
    ) as r:
        assert r.status == 400, await r.text()


async def test_streams_per_token_are_bounded(db, merchant, base_url, http):
    async with contextlib.AsyncExitStack() as streams:
        opened = [
            await streams.enter_async_context(stream(http, base_url, merchant.token))
            for _ in range(stream_api.MAX_STREAMS_PER_TOKEN)
        ]
        async with http.get(f"{base_url}/api/events/stream", headers={"X-API-Token": merchant.token}) as r:
            body = await r.json()
            assert r.status == 429 and body["success"] is False and body["error"]["code"] == "rate_limited", body
        # Another token has its own bound.
        other = await make_merchant(db, name="Second")
        async with stream(http, base_url, other.token):
            pass
        # A stream that ends gives its place back.
        opened[0].response.close()
        opened[0].task.cancel()

        async def sixth_accepted() -> bool:
            async with http.get(f"{base_url}/api/events/stream", headers={"X-API-Token": merchant.token}) as response:
                return response.status == 200

        deadline = asyncio.get_running_loop().time() + 10
        while not await sixth_accepted():
            assert asyncio.get_running_loop().time() < deadline, "the closed stream's place was not given back"
            await asyncio.sleep(0.05)


async def test_the_bound_holds_across_processes_and_a_dead_ones_streams_lapse(ctx, db, merchant, clock, base_url, http):
    """Two API processes (two apps on one database) share a token's bound: streams open in one
    count in the other. Streams of a process that died without giving them back (leases claimed
    and never renewed) hold their places until LEASE_TTL, then not."""
    limit = stream_api.MAX_STREAMS_PER_TOKEN
    async with serve(create_app(ctx=ctx)) as second, contextlib.AsyncExitStack() as streams:
        opened = [
            await streams.enter_async_context(stream(http, base_url if i % 2 else second, merchant.token))
            for i in range(limit)
        ]
        for url in (base_url, second):
            async with http.get(f"{url}/api/events/stream", headers={"X-API-Token": merchant.token}) as r:
                assert r.status == 429, await r.text()
        opened[0].response.close()  # one ends in the second process: its place is free in the first
        opened[0].task.cancel()

        async def accepted(url: str) -> bool:
            async with http.get(f"{url}/api/events/stream", headers={"X-API-Token": merchant.token}) as response:
                return response.status == 200

        deadline = asyncio.get_running_loop().time() + 10
        while not await accepted(base_url):
            assert asyncio.get_running_loop().time() < deadline, "the place was not given back across processes"
            await asyncio.sleep(0.05)

    # A dead process's leases: claimed, never renewed nor given back.
    async with db.transaction() as session:
        for _ in range(limit):
            claimed = await merchants.claim_stream(
                session,
                token_hash=merchants.hash_token(merchant.token),
                now=clock(),
                limit=limit,
                ttl=stream_api.LEASE_TTL,
            )
            assert claimed is not None
    async with http.get(f"{base_url}/api/events/stream", headers={"X-API-Token": merchant.token}) as r:
        assert r.status == 429
    clock.advance(seconds=stream_api.LEASE_TTL.total_seconds())
    async with stream(http, base_url, merchant.token):
        pass


async def test_a_stream_whose_lease_lapsed_ends(ctx, db, merchant, clock, base_url, http, monkeypatch):
    """A stream stalled past LEASE_TTL (its place may be another's by now) ends at its next
    renewal; its client reconnects as any other."""
    monkeypatch.setattr(stream_api, "HEARTBEAT_INTERVAL", 0.0)  # renewed with each heartbeat
    async with stream(http, base_url, merchant.token) as s:
        await scanned_once(s)
        assert not s.task.done()
        clock.advance(seconds=stream_api.LEASE_TTL.total_seconds() + 1)
        await asyncio.wait_for(s.task, timeout=10)  # the server ended the stream


def test_positions_stay_short() -> None:
    from datetime import UTC, datetime

    start = datetime(2026, 1, 1, tzinfo=UTC)
    position = stream_api.Position(start)
    for n in range(250):
        position.sent[f"evt_{n:024x}"] = start + timedelta(milliseconds=n)
    position.advance(start)
    assert len(position.sent) == stream_api.MAX_IDS
    assert position.horizon == start + timedelta(milliseconds=150)
    horizon, ids = stream_api.Position.parse(position.token())
    assert ids == sorted(position.sent) and horizon == position.horizon
    assert len(position.token()) < 3100


async def test_a_stop_signal_ends_the_streams_then_goes_to_the_handler_before() -> None:
    """The app's lifespan (ending_streams_on_exit) puts its SIGTERM handler before the one in place
    (uvicorn's, under `paycenter run`), and the one it replaced back when it ends. A real server's
    stop: tests/cli/test_listen.py."""
    received: list[int] = []
    app = Starlette()
    outer = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        uvicorns = signal.getsignal(signal.SIGTERM)
        with stream_api.ending_streams_on_exit(app):
            assert signal.getsignal(signal.SIGTERM) is not uvicorns
            signal.raise_signal(signal.SIGTERM)
            await asyncio.wait_for(stream_api.streams_of(app).closing.wait(), timeout=5)
            assert received == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is uvicorns
    finally:
        signal.signal(signal.SIGTERM, outer)


async def scanned_once(s: Stream) -> None:
    """The stream has made its first scan and waits for a wake-up: the heartbeat it sends after a
    scan (HEARTBEAT_INTERVAL 0) has come, after the first position."""
    await wait_until(lambda: len(s.messages) >= 2, timeout=10, what="a heartbeat after the first scan")
    assert not s.events


async def test_a_commit_wakes_the_stream_at_once(client, db, merchant, base_url, http, monkeypatch):
    """In-process: the commit's signal wakes the stream (the poll, made slow here, does not)."""
    monkeypatch.setattr(stream_api, "POLL_INTERVAL", 60.0)
    monkeypatch.setattr(stream_api, "HEARTBEAT_INTERVAL", 0.0)  # a heartbeat after the first scan
    async with stream(http, base_url, merchant.token) as s:
        await scanned_once(s)
        payment_id = await paid_payment(client, merchant)
        (event,) = await s.wait_events(1, timeout=5)
        assert event["transaction_id"] == payment_id


async def test_another_process_wakes_the_stream_by_notify(
    database_url, settings, db, merchant, base_url, http, monkeypatch
):
    """PostgreSQL: an event committed by another process (its own engine) with a delivery wakes the
    stream through NOTIFY, long before the (slowed) poll."""
    if db.backend != "postgresql":
        pytest.skip("NOTIFY is PostgreSQL's")
    monkeypatch.setattr(stream_api, "POLL_INTERVAL", 60.0)
    monkeypatch.setattr(stream_api, "HEARTBEAT_INTERVAL", 0.0)
    other_db = Database(database_url)
    other = create_app(ctx=AppContext(settings=settings, db=other_db, providers=Providers(settings)))
    try:
        async with (
            stream(http, base_url, merchant.token) as s,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url="http://pay.test") as elsewhere,
        ):
            await scanned_once(s)

            async def listening() -> bool:
                async with db.reading() as session:
                    query = "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN paycenter_webhooks'"
                    return bool(await session.scalar(text(query)))

            await eventually(listening, timeout=10, what="the stream's LISTEN")
            payment_id = await paid_payment(elsewhere, merchant)  # webhook_url: a delivery, so a NOTIFY
            (event,) = await s.wait_events(1, timeout=5)
            assert event["transaction_id"] == payment_id
    finally:
        await other_db.dispose()


async def test_a_revoked_token_ends_its_streams(db, merchant, base_url, http, monkeypatch):
    monkeypatch.setattr(stream_api, "HEARTBEAT_INTERVAL", 0.0)  # the token is checked with each heartbeat
    async with stream(http, base_url, merchant.token) as s:
        await scanned_once(s)
        async with db.transaction() as session:
            await merchants.revoke_token(session, token_id=merchant.token_id, now=utcnow())
        await asyncio.wait_for(s.task, timeout=10)  # the server ended the stream
    async with http.get(f"{base_url}/api/events/stream", headers={"X-API-Token": merchant.token}) as r:
        assert r.status == 401
