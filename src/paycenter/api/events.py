"""The events stream: a merchant's webhook events as they happen, over server-sent events
(``GET /api/events/stream``), for ``paycenter listen`` on a developer's machine.

Server-sent events rather than long polling: one long response per listener instead of a request
per batch, the standard's own resume (``Last-Event-ID``, sent again by every SSE client after a
reconnect), and comment lines as heartbeats that keep idle connections open through proxies
(``X-Accel-Buffering: no`` asks nginx not to buffer it). The app's middlewares are pure ASGI and
pass the stream through as it is written: the body limit counts request bytes only, the request
context logs the stream once when it ends; a connection costs one hit of the token's rate limit.
The token is checked again with each heartbeat: a revoked one ends its streams. On shutdown
(SIGTERM/SIGINT) streams end at once, so that the server need not wait out its graceful timeout
for them; listeners reconnect and resume.

Positions. Events are ordered by (created_at, id), but created_at is the time the change began,
not when it committed: a transaction that began earlier may commit later (two payments at once
on SQLite queue for its write lock; clocks of several hosts differ). A plain "after this event"
cursor would skip such an event for good. The position (each message's SSE ``id``) is therefore a
horizon and the events sent at or after it: ``c1.<horizon in µs>[.<event ids>]``. A scan reads
every event created at or after the horizon that is not among those ids; after a scan that found
everything, the horizon moves up to the scan's start minus ``SETTLE`` (an event created before
then has committed by then: a transaction holds for less than ``SETTLE``), and the ids before it
are dropped. So, resuming from the last position received, an event is sent once and never
skipped, however events commit. Positions stay short: at most ``MAX_IDS`` ids (a merchant with
more events than that within ``SETTLE`` gives up this guard for the oldest of them).

Each event is the body and the headers a webhook delivery of it carries (``delivery_headers``, the
payment's ``webhook_secret`` and the merchant's ``whsec_`` secrets, read as the dispatcher reads
them), signed when it is sent: a receiver's signature check passes unchanged. Only the events sent
as webhooks to this merchant (``sent_as_webhook``).

Wake-ups: the in-process signal of a commit that recorded events (``paycenter run``: the API and
the worker in one process); on PostgreSQL also the NOTIFY another process sends with deliveries
(one LISTEN connection per process while streams are open, as the dispatcher's); else a poll
every ``POLL_INTERVAL`` (a separate worker on SQLite, which has no cross-process signal, or an
event with no delivery to notify of).

Connections are bounded per token across every API process (``MAX_STREAMS_PER_TOKEN``; one more
is a 429): each open stream holds a lease row (``merchants.claim_stream``), renewed with its
heartbeats and given back when it ends; one whose process died lapses after ``LEASE_TTL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from paycenter.context import AppContext
from paycenter.deps import Context, CurrentMerchant, merchant_for_token
from paycenter.errors import ApiError, Unprocessable, error_responses
from paycenter.jobs.dispatcher import listen_postgres
from paycenter.merchants import service as merchants
from paycenter.payments.events import sent_as_webhook
from paycenter.payments.models import EventType
from paycenter.ratelimit import TooManyRequests
from paycenter.timefmt import iso
from paycenter.webhooks import service

router = APIRouter(prefix="/api", tags=["webhooks"])
log = logging.getLogger("paycenter.events")

MAX_STREAMS_PER_TOKEN = 5
SETTLE = timedelta(seconds=10)
MAX_IDS = 100
POLL_INTERVAL = 0.5
HEARTBEAT_INTERVAL = 15.0
LEASE_TTL = timedelta(seconds=3 * HEARTBEAT_INTERVAL)  # three missed renewals: the process is gone
BATCH = 200

# A few times MAX_IDS: ids that share one instant are kept together beyond it.
_POSITION = re.compile(r"c1\.(\d{1,19})(?:\.(evt_[0-9a-f]{24}(?:,evt_[0-9a-f]{24}){0,299}))?")
_EVENT_ID = re.compile(r"evt_[0-9a-f]{24}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class BadPosition(ApiError):
    status_code = 400
    code = "invalid_position"


@dataclass
class Position:
    """Where a stream stands: every event created before ``horizon`` was sent (or is not wanted),
    and so were ``sent`` (id -> created_at), created at or after it."""

    horizon: datetime
    sent: dict[str, datetime] = field(default_factory=dict)

    def token(self) -> str:
        micros = (self.horizon - _EPOCH) // _MICROSECOND  # exact (a float timestamp is not)
        ids = sorted(self.sent, key=lambda i: (self.sent[i], i))
        return f"c1.{micros}" + (f".{','.join(ids)}" if ids else "")

    def advance(self, horizon: datetime) -> None:
        if horizon > self.horizon:
            self.horizon = horizon
        self.sent = {i: at for i, at in self.sent.items() if at >= self.horizon}
        if len(self.sent) > MAX_IDS:
            kept = sorted(self.sent.items(), key=lambda kv: (kv[1], kv[0]))[-MAX_IDS:]
            self.horizon = kept[0][1]
            self.sent = {i: at for i, at in self.sent.items() if at >= self.horizon}

    @classmethod
    def parse(cls, token: str) -> tuple[datetime, list[str]]:
        """The horizon and the ids a token names (their times are read from the database)."""
        match = _POSITION.fullmatch(token)
        if match is None:
            raise BadPosition("Last-Event-ID (or after) is not a position this stream gave, nor an event id")
        try:
            horizon = _EPOCH + int(match.group(1)) * _MICROSECOND
        except OverflowError:
            raise BadPosition("Last-Event-ID (or after) is out of range") from None
        return horizon, [i for i in (match.group(2) or "").split(",") if i]


# --- connections per token, and the shutdown that ends them -----------------------------------


@dataclass
class _Streams:
    open: int = 0  # in this process (the bound per token is the leases')
    closing: asyncio.Event = field(default_factory=asyncio.Event)  # the server is stopping
    # PostgreSQL: one LISTEN connection for all of the process's streams, while any is open.
    listening: asyncio.Task[None] | None = None
    unlisten: asyncio.Event = field(default_factory=asyncio.Event)

    def listen(self, ctx: AppContext) -> None:
        """Wake this process's streams on the NOTIFY other processes send with their deliveries."""
        running = self.listening is not None and not self.listening.done() and not self.unlisten.is_set()
        if ctx.db.backend != "postgresql" or running:
            return  # (a listener told to stop finishes by itself; a new one replaces it)
        self.unlisten = asyncio.Event()
        self.listening = asyncio.create_task(
            listen_postgres(
                ctx.settings.database_url,
                service.WAKE_CHANNEL,
                lambda: ctx.db.publish(service.EVENTS_CHANNEL),
                self.unlisten,
            ),
            name="events-stream-listen",
        )

    def release(self) -> None:
        self.open = max(self.open - 1, 0)
        if not self.open:
            self.unlisten.set()


def _streams(request: Request) -> _Streams:
    return streams_of(request.app)


def streams_of(app: Starlette) -> _Streams:
    """The app's open streams (made on first use: a test's app may run no lifespan)."""
    streams: _Streams | None = getattr(app.state, "event_streams", None)
    if streams is None:
        streams = app.state.event_streams = _Streams()
    return streams


_Handler = Callable[[int, Any], Any]  # a signal handler


@contextlib.contextmanager
def ending_streams_on_exit(app: Starlette) -> Iterator[None]:
    """For the app's lifespan: while it runs, SIGTERM and SIGINT first end the app's open streams,
    then go on to the handlers that were there. uvicorn waits for open responses before it stops,
    and a stream never ends by itself; its handlers are in place by now (``Server.serve`` sets them
    in ``capture_signals`` before the lifespan starts up). Afterwards the handlers we replaced are
    put back, unless someone replaced ours meanwhile. Outside the main thread no handler can be
    set: streams then end with the server's graceful timeout."""
    closing = streams_of(app).closing
    loop = asyncio.get_running_loop()

    def chain(previous: _Handler) -> _Handler:
        def handler(signum: int, frame: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed already
                loop.call_soon_threadsafe(closing.set)
            previous(signum, frame)

        return handler

    chained: dict[signal.Signals, tuple[_Handler, _Handler]] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):  # the default action, or ignored: no server is listening for it
            continue
        handler = chain(previous)
        try:
            signal.signal(sig, handler)
        except ValueError:  # not the main thread
            break
        chained[sig] = (handler, previous)
    try:
        yield
    finally:
        for sig, (handler, previous) in chained.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, previous)


class _EventStream(StreamingResponse):
    """Gives back its lease however the response ends (even if never started)."""

    def __init__(self, content: AsyncIterator[str], release: Callable[[], Awaitable[None]]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Shielded: a server stopping cancels this task, and the lease would then stay taken
            # for LEASE_TTL, refusing the client's reconnect to another process meanwhile.
            await asyncio.shield(self._release())


async def _release(ctx: AppContext, streams: _Streams, lease: str) -> None:
    streams.release()
    try:
        async with ctx.db.transaction() as session:
            await merchants.release_stream(session, lease_id=lease)
    except Exception:  # the lease lapses by itself; the stream has ended either way
        log.warning("events stream: lease %s not given back", lease, exc_info=True)


# --- the endpoint -------------------------------------------------------------------------------


def _types(merchant_version: str, wanted: str | None) -> list[str]:
    offered = [str(t) for t in EventType if sent_as_webhook(t, merchant_version)]
    if wanted is None or not wanted.strip():
        return offered
    names = [name.strip() for name in wanted.split(",") if name.strip()]
    unknown = [name for name in names if name not in offered]
    if unknown:
        raise Unprocessable(
            f"Unknown or unsent event type {', '.join(unknown[:5])}: choose from {', '.join(offered)}",
            fields=[{"field": "types", "message": "unknown event type"}],
        )
    return names


@router.get(
    "/events/stream",
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "A server-sent events stream (see the description).",
        },
        **error_responses(400, 401, 422, 429),
    },
    summary="Your webhook events as they happen (server-sent events)",
    response_class=StreamingResponse,
)
async def stream_events(
    request: Request,
    merchant: CurrentMerchant,
    ctx: Context,
    types: Annotated[
        str | None,
        Query(max_length=200, description="Comma-separated event types, e.g. `paid,refunded` (default: all sent)."),
    ] = None,
    after: Annotated[
        str | None,
        Query(
            max_length=10_000,
            description="Resume after this position (an `id` the stream sent) or after this event id (`evt_...`). "
            "The `Last-Event-ID` header, which SSE clients send on reconnect, wins over it.",
        ),
    ] = None,
    last_event_id: Annotated[str | None, Header(max_length=10_000, include_in_schema=False)] = None,
) -> StreamingResponse:
    """What `paycenter listen` reads. Each webhook event of yours is a message `event: webhook`
    whose `data` is a JSON object: `id` (the event id, also the `webhook-id`), `type`,
    `transaction_id`, `created_at`, `headers` and `body`: the exact body and headers a webhook
    delivery of it carries, signed as it is sent (`X-Webhook-Signature` with the payment's
    `webhook_secret`, `webhook-signature` with your `whsec_` secret), so POSTing them to your
    endpoint passes its signature check unchanged. Each message's `id` is the stream's position:
    reconnect with it as `Last-Event-ID` (or `after`) and the stream goes on with no event missed
    or repeated. Without one the stream starts now. A message with only an `id` moves the
    position; `:` lines are heartbeats. At most 5 streams per token at once (the next is a 429)."""
    wanted = _types(merchant.api_version, types)
    position = await _start(ctx, merchant.id, last_event_id or after)
    token = request.headers.get("x-api-token", "").strip()
    async with ctx.db.transaction() as session:
        lease = await merchants.claim_stream(
            session, token_hash=merchants.hash_token(token), now=ctx.now(), limit=MAX_STREAMS_PER_TOKEN, ttl=LEASE_TTL
        )
    if lease is None:
        raise TooManyRequests(
            f"At most {MAX_STREAMS_PER_TOKEN} event streams per API token at once", headers={"Retry-After": "5"}
        )
    streams = _streams(request)
    streams.open += 1
    streams.listen(ctx)
    return _EventStream(
        _messages(ctx, merchant.id, token, wanted, position, streams.closing, lease),
        functools.partial(_release, ctx, streams, lease),
    )


async def _start(ctx: AppContext, merchant_id: str, given: str | None) -> Position:
    given = (given or "").strip()
    if not given:
        return Position(ctx.now())
    if _EVENT_ID.fullmatch(given):
        async with ctx.db.reading() as session:
            created = (await service.events_created_at(session, merchant_id=merchant_id, ids=[given])).get(given)
            if created is None:
                raise BadPosition(f"No event {given} of yours")
            # After it in (created_at, id) order: the events of the same instant up to it are sent.
            ties = await service.events_created_at(session, merchant_id=merchant_id, at=created)
        return Position(created, {i: at for i, at in ties.items() if i <= given})
    horizon, ids = Position.parse(given)
    if not ids:
        return Position(horizon)
    async with ctx.db.reading() as session:
        # An id that is gone (the daily cleanup) will not be found again either: not needed.
        sent = await service.events_created_at(session, merchant_id=merchant_id, ids=ids)
    return Position(horizon, {i: at for i, at in sent.items() if at >= horizon})


def _message(position: Position, event: service.Signable, now: datetime) -> str:
    headers = service.delivery_headers(event, at=now) if event.problem is None else {}
    data: dict[str, Any] = {
        "id": event.event_id,
        "type": event.event_type,
        "transaction_id": event.payment_id,
        "created_at": iso(event.created_at),
        "headers": headers,
        "body": event.body,
    }
    if event.problem is not None:
        data["problem"] = event.problem
    return f"id: {position.token()}\nevent: webhook\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _messages(
    ctx: AppContext,
    merchant_id: str,
    token: str,
    types: list[str],
    position: Position,
    closing: asyncio.Event,
    lease: str,
) -> AsyncIterator[str]:
    wake = asyncio.Event()
    unsubscribe = [ctx.db.subscribe(channel, wake.set) for channel in (service.EVENTS_CHANNEL, service.WAKE_CHANNEL)]
    try:
        yield f"retry: 1000\nid: {position.token()}\n\n"
        last_beat = time.monotonic()
        while not closing.is_set():
            wake.clear()
            started = ctx.now()
            async with ctx.db.reading() as session:
                events = await service.events_since(
                    session,
                    merchant_id=merchant_id,
                    types=types,
                    since=position.horizon,
                    exclude=list(position.sent),
                    limit=BATCH,
                    now=started,
                )
            for event in events:
                position.sent[event.event_id] = event.created_at
                yield _message(position, event, ctx.now())
            if len(events) >= BATCH:
                continue  # more may be there right now
            position.advance(started - SETTLE)
            if time.monotonic() - last_beat >= HEARTBEAT_INTERVAL:
                last_beat = time.monotonic()
                # A token revoked (or a merchant disabled) meanwhile ends the stream: the client's
                # reconnect then gets the 401.
                found = await merchant_for_token(ctx, token)
                if found is None or found[0].id != merchant_id:
                    return
                # A lease that lapsed (this process stalled past LEASE_TTL) may have gone to
                # another stream: this one ends, and its client reconnects as any other.
                async with ctx.db.transaction() as session:
                    if not await merchants.renew_stream(session, lease_id=lease, now=ctx.now(), ttl=LEASE_TTL):
                        return
                yield f": heartbeat\nid: {position.token()}\n\n"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(wake, closing), timeout=POLL_INTERVAL)
    finally:
        for stop in unsubscribe:
            stop()


async def _first(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
