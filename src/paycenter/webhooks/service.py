"""Webhook deliveries: the outbox rows, their claims by workers and the record of every try.

A delivery row is written in the same transaction as the event it carries, so an event can never
exist without its deliveries (nor the reverse). Workers claim due rows with a lease; when a worker
dies its lease lapses and another worker picks the rows up, so every event is delivered at least
once, and a duplicate carries the same event id.

A delivery that cannot be sent through no fault of its endpoint (its merchant's signing secret
cannot be decrypted or is malformed, ...) gets an attempt of error class ``internal`` and is
quarantined: still pending, but with no next try, until an operator retries it (or the merchant
resends it). Its retries are kept for when the cause is fixed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import String, Table, bindparam, column, delete, insert, select, table, text, type_coerce, update
from sqlalchemy.ext.asyncio import AsyncSession

from paycenter import crypto, quarantine
from paycenter.db import new_id, rowcount
from paycenter.errors import NotFound
from paycenter.merchants.models import Merchant
from paycenter.quarantine import Loop
from paycenter.webhooks import signing
from paycenter.webhooks.models import Delivery, DeliveryAttempt, DeliveryStatus, ErrorClass, Event
from paycenter.webhooks.sender import SendResult

# Name of the PostgreSQL channel (and of the in-process signal) that says "deliveries are due".
WAKE_CHANNEL = "paycenter_webhooks"
# The in-process signal after a commit that recorded events, delivered or not: the events stream
# waits on it (other processes' events reach it by its short poll, or WAKE_CHANNEL's NOTIFY).
EVENTS_CHANNEL = "paycenter_events"

# The one thing webhooks reads of payments: a payment's own signing key (``X-Webhook-Signature``),
# read when a delivery is sent, by table name as ``Delivery.payment_id``'s foreign key names it
# (importing payments' model would make webhooks depend on the domain above it). Untyped, so it
# is read as stored, encrypted, and opened row by row (``_open``).
_payment_secrets = table("payments", column("id", String()), column("webhook_secret", String()))


async def publish(
    session: AsyncSession,
    *,
    event_id: str,
    payment_id: str,
    merchant_id: str,
    event_type: str,
    sequence: int,
    body: str,
    url: str | None,
    deliver: bool,
    now: datetime,
) -> Event:
    """Record an event in the transaction of the change it records, with its delivery when
    ``deliver``: to ``url`` (the payment's own endpoint), else to its merchant's.

    ``body`` is the exact text that will be signed and sent (payments renders it, in the
    merchant's API version): deliveries never render anything, so a resend carries the same bytes.
    """
    event = Event(
        id=event_id,
        payment_id=payment_id,
        merchant_id=merchant_id,
        type=event_type,
        sequence=sequence,
        body=body,
        created_at=now,
    )
    session.add(event)
    session.info.setdefault("signals", set()).add(EVENTS_CHANNEL)
    if not deliver:
        return event
    if not url:
        url = await session.scalar(select(Merchant.webhook_url).where(Merchant.id == merchant_id))
    if not url:
        return event  # no endpoint: the event stays readable through GET /api/events
    session.add(
        Delivery(
            id=new_id("whd"),
            event_id=event_id,
            payment_id=payment_id,
            merchant_id=merchant_id,
            url=url,
            status=DeliveryStatus.PENDING,
            attempt_count=0,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )
    )
    signals: set[str] = session.info.setdefault("signals", set())
    if WAKE_CHANNEL not in signals:
        signals.add(WAKE_CHANNEL)
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            # Transactional: other processes hear it when (and only if) this commits.
            await session.execute(text(f"NOTIFY {WAKE_CHANNEL}"))
    return event


# --- what a worker needs to send a claimed delivery ---------------------------------------


@dataclass(frozen=True)
class Job:
    delivery_id: str
    url: str
    number: int  # this try's number, 1-based
    max_attempts: int
    event_id: str
    event_type: str
    body: str
    webhook_secret: str | None
    signing_secrets: list[str]
    payment_id: str
    event_created_at: datetime
    # Why this delivery cannot be sent as it is (recorded as an internal failure, not sent).
    problem: str | None = None


def _as_stored(column: Any) -> Any:
    """A secret column read as stored, to be decrypted row by row: decrypted in the statement,
    one merchant's unreadable secret would fail the whole claim, and every merchant's webhooks."""
    return type_coerce(column, String())


def _open(value: str | None) -> str | None:
    return None if value is None else crypto.keyring().open(value)


async def claim(
    session: AsyncSession,
    *,
    owner: str,
    limit: int,
    now: datetime,
    lease_until: datetime,
    skip_urls: set[str],
    default_max_attempts: int,
) -> list[Job]:
    """Take up to ``limit`` due deliveries for this worker and return what is needed to send them.

    The lease is ``next_attempt_at`` itself, set to ``lease_until``: a claimed row leaves the due
    range of the (status, next_attempt_at) index, so claims never wade through rows that others
    hold, and a dead worker's rows fall due again by themselves when its lease ends. The batch is
    then read back by that exact lease time (the caller keeps it unique per claim), which costs
    one index range scan instead of a list of ids; on PostgreSQL the claiming statement returns
    it itself (``_CLAIM_PG``).
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        rows: Any = await _claim_postgresql(
            session, owner=owner, limit=limit, now=now, lease_until=lease_until, skip_urls=skip_urls
        )
    else:
        rows = await _claim_portable(
            session, dialect, owner=owner, limit=limit, now=now, lease_until=lease_until, skip_urls=skip_urls
        )
    jobs = []
    for row in rows:
        did, url, count, max_attempts, eid, etype, body, created, pid, stored, current, previous, until = row
        secret, secrets, problem = _signing_keys(stored, current, previous, until, now=now)
        jobs.append(
            Job(
                did,
                url,
                count + 1,
                max_attempts or default_max_attempts,
                eid,
                etype,
                body,
                secret,
                secrets,
                pid,
                created,
                problem,
            )
        )
    return jobs


def _signing_keys(
    payment_secret: str | None,
    current: str | None,
    previous: str | None,
    previous_until: datetime | None,
    *,
    now: datetime,
) -> tuple[str | None, list[str], str | None]:
    """The keys a delivery is signed with, opened from their stored form: the payment's own
    ``webhook_secret``, the merchant's ``whsec_`` secrets (the previous one during its grace
    period), and why they cannot be read (None when they can)."""
    try:
        secret, current, previous = _open(payment_secret), _open(current), _open(previous)
    except Exception as exc:
        return None, [], f"cannot read its secrets: {quarantine.describe(exc)}"
    secrets = [current] if current else []
    if previous and previous_until and previous_until > now:
        secrets.append(previous)
    return secret, secrets, None


# PostgreSQL: claim and read back in one statement (one round trip instead of two), handed to the
# driver as written (no ORM statement built and compiled per claim).
_CLAIM_PG = """
    WITH claimed AS (
        UPDATE webhook_deliveries AS d SET lease_owner = %(owner)s, next_attempt_at = %(lease_until)s
        WHERE d.id IN (
            SELECT id FROM webhook_deliveries
            WHERE status = %(pending)s AND next_attempt_at <= %(now)s AND NOT (url = ANY(%(skip)s::text[]))
            ORDER BY next_attempt_at LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED)
        RETURNING d.id, d.url, d.attempt_count, d.max_attempts, d.event_id, d.payment_id, d.merchant_id)
    SELECT c.id, c.url, c.attempt_count, c.max_attempts, e.id, e.type, e.body, e.created_at, c.payment_id,
        p.webhook_secret, m.signing_secret, m.previous_signing_secret, m.previous_secret_expires_at
    FROM claimed AS c
    JOIN events AS e ON e.id = c.event_id
    JOIN payments AS p ON p.id = c.payment_id
    JOIN merchants AS m ON m.id = c.merchant_id
"""


async def _claim_postgresql(
    session: AsyncSession, *, owner: str, limit: int, now: datetime, lease_until: datetime, skip_urls: set[str]
) -> list[tuple[Any, ...]]:
    result = await (await session.connection()).exec_driver_sql(
        _CLAIM_PG,
        {
            "owner": owner,
            "lease_until": lease_until,
            "now": now,
            "skip": list(skip_urls),
            "limit": limit,
            "pending": str(DeliveryStatus.PENDING),
        },
    )
    rows: list[tuple[Any, ...]] = [tuple(row) for row in result]
    # Read as UTCDateTime reads them: in UTC, whatever the session's time zone.
    return [(*row[:7], _utc(row[7]), *row[8:12], _utc(row[12])) for row in rows]


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


async def _claim_portable(
    session: AsyncSession,
    dialect: str,
    *,
    owner: str,
    limit: int,
    now: datetime,
    lease_until: datetime,
    skip_urls: set[str],
) -> Any:
    due = (
        select(Delivery.id)
        .where(Delivery.status == DeliveryStatus.PENDING, Delivery.next_attempt_at <= now)
        .order_by(Delivery.next_attempt_at)
        .limit(limit)
    )
    if skip_urls:
        due = due.where(Delivery.url.not_in(skip_urls))
    if dialect != "sqlite":
        due = due.with_for_update(skip_locked=True)  # workers skip each other's rows, never wait
    if dialect in ("mysql", "mariadb"):
        # MariaDB refuses LIMIT inside IN (subquery): lock the ids first, then mark them.
        ids = list(await session.scalars(due))
        if not ids:
            return []
        target: Any = Delivery.id.in_(ids)
    else:
        target = Delivery.id.in_(due.scalar_subquery())
    marked = await session.execute(
        update(Delivery)
        .where(target)
        .values(lease_owner=owner, next_attempt_at=lease_until)
        .execution_options(synchronize_session=False)
    )
    if not rowcount(marked):
        return []
    return await session.execute(
        select(
            Delivery.id,
            Delivery.url,
            Delivery.attempt_count,
            Delivery.max_attempts,
            Event.id,
            Event.type,
            Event.body,
            Event.created_at,
            Delivery.payment_id,
            _payment_secrets.c.webhook_secret,
            _as_stored(Merchant.signing_secret),
            _as_stored(Merchant.previous_signing_secret),
            Merchant.previous_secret_expires_at,
        )
        .join(Event, Event.id == Delivery.event_id)
        .join(_payment_secrets, _payment_secrets.c.id == Delivery.payment_id)
        .join(Merchant, Merchant.id == Delivery.merchant_id)
        .where(
            Delivery.status == DeliveryStatus.PENDING,
            Delivery.next_attempt_at == lease_until,
            Delivery.lease_owner == owner,
        )
    )


async def renew_leases(session: AsyncSession, *, owner: str, ids: list[str], until: datetime) -> None:
    if ids:
        await session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids), Delivery.lease_owner == owner)
            .values(next_attempt_at=until)
            .execution_options(synchronize_session=False)
        )


async def release(session: AsyncSession, *, owner: str, now: datetime) -> None:
    """Give back every lease this worker holds (on shutdown), so others need not wait for them."""
    await session.execute(
        update(Delivery)
        .where(Delivery.lease_owner == owner, Delivery.status == DeliveryStatus.PENDING)
        .values(lease_owner=None, next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )


def retry_delay(number: int, schedule: list[float], retry_after: float | None, max_retry_after: float) -> float:
    """Wait after failed try ``number``: the schedule's step ±20%, or longer if the endpoint asked."""
    delay = schedule[min(number - 1, len(schedule) - 1)] * random.uniform(0.8, 1.2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, max_retry_after))
    return delay


@dataclass(frozen=True)
class Outcome:
    job: Job
    request_headers: dict[str, str]
    result: SendResult
    # Failed on our side, not the endpoint's: no next try until an operator retries it.
    quarantine: bool = False


def internal_failure(job: Job, exc: BaseException, *, started_at: datetime, headers: dict[str, str]) -> Outcome:
    """The outcome of a try that could not be made (or recorded) because of our own data or code."""
    result = SendResult(
        started_at=started_at, duration_ms=0, error_class=ErrorClass.INTERNAL, error=quarantine.describe(exc)
    )
    return Outcome(job, headers, result, quarantine=True)


def _storable(value: str | None) -> str | None:
    """What an endpoint answered, as text every backend stores: PostgreSQL refuses NUL in text, so
    a hostile endpoint answering NUL bytes would otherwise make its try unrecordable."""
    if value is None or (value.isascii() and "\x00" not in value):
        return value  # nearly always, and cheap to tell
    return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


async def record(
    session: AsyncSession,
    outcomes: list[Outcome],
    *,
    owner: str,
    now: datetime,
    schedule: list[float],
    max_retry_after: float,
) -> None:
    """Write a batch of tries in two statements: every attempt row, then every delivery's state.

    One transaction per batch, not per delivery: the bookkeeping must keep up with aiohttp.
    A quarantined outcome stays pending with no next try, and its mark is written here too.
    """
    attempts: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    for outcome in outcomes:
        job, result = outcome.job, outcome.result
        next_at: datetime | None = None
        if outcome.quarantine:
            status = DeliveryStatus.PENDING
        elif result.ok:
            status = DeliveryStatus.SUCCEEDED
        elif job.number >= job.max_attempts:
            status = DeliveryStatus.FAILED
        else:
            status = DeliveryStatus.PENDING
            delay = retry_delay(job.number, schedule, result.retry_after, max_retry_after)
            next_at = result.started_at + timedelta(seconds=delay)
        attempts.append(
            {
                "delivery_id": job.delivery_id,
                "number": job.number,
                "started_at": result.started_at,
                "duration_ms": result.duration_ms,
                "request_headers": json.dumps(outcome.request_headers),
                "request_body": job.body,
                "response_status": result.status,
                "response_headers": json.dumps(result.response_headers)
                if result.response_headers is not None
                else None,
                "response_body": _storable(result.response_body),
                "error_class": result.error_class,
                "error": _storable(result.error),
                "next_attempt_at": next_at,
            }
        )
        changes.append(
            {
                "b_id": job.delivery_id,
                "b_owner": owner,
                "b_number": job.number,
                "status": status,
                "attempt_count": job.number,
                "next_attempt_at": next_at,
                "last_status_code": result.status,
                "last_error_class": result.error_class,
                "last_error": _storable(result.error),
                "delivered_at": now if result.ok else None,
                "updated_at": now,
            }
        )
    if not attempts:
        return
    if session.get_bind().dialect.name == "postgresql":
        await _record_postgresql(session, attempts, changes, owner=owner, now=now)
    else:
        await _record_portable(session, attempts, changes)
    for outcome in outcomes:
        if outcome.quarantine:
            await quarantine.mark(
                session,
                loop=Loop.DISPATCHER,
                row_id=outcome.job.delivery_id,
                reason=outcome.result.error or "internal error",
                now=now,
                payment_id=outcome.job.payment_id,
            )


async def _record_portable(
    session: AsyncSession, attempts: list[dict[str, Any]], changes: list[dict[str, Any]]
) -> None:
    """The batch as two executemany statements (one statement per row on the server)."""
    # Declarative classes map one Table each (``__table__`` is typed as the broader FromClause).
    await session.execute(insert(_attempts), attempts)
    await session.execute(_RECORD_DELIVERY, changes)


_attempts = cast(Table, DeliveryAttempt.__table__)
_deliveries = cast(Table, Delivery.__table__)
# Guarded by owner and try number: a worker whose lease was taken over records its try in the
# log but cannot overwrite the state the new owner is responsible for.
_RECORD_DELIVERY = (
    update(_deliveries)
    .where(
        _deliveries.c.id == bindparam("b_id"),
        _deliveries.c.lease_owner == bindparam("b_owner"),
        _deliveries.c.attempt_count == bindparam("b_number") - 1,
    )
    .values(
        status=bindparam("status"),
        attempt_count=bindparam("attempt_count"),
        next_attempt_at=bindparam("next_attempt_at"),
        last_status_code=bindparam("last_status_code"),
        last_error_class=bindparam("last_error_class"),
        last_error=bindparam("last_error"),
        delivered_at=bindparam("delivered_at"),
        updated_at=bindparam("updated_at"),
        lease_owner=None,
    )
)

# PostgreSQL: the same two writes as one statement, whatever the batch size, the rows passed as
# arrays in psycopg's binary format (``%(name)b``; its text format escapes every quote of every
# JSON body, which costs more than the executemany it replaces). Per row, executemany cost a
# statement in the worker and on the server; this costs an array element. The INSERT in the WITH
# runs to completion whatever the UPDATE does. Same columns, same guard as _RECORD_DELIVERY.
_RECORD_PG = """
    WITH attempts AS (
        INSERT INTO webhook_attempts (delivery_id, number, started_at, duration_ms, request_headers,
            request_body, response_status, response_headers, response_body, error_class, error,
            next_attempt_at)
        SELECT * FROM unnest(%(a_delivery_id)b::text[], %(a_number)b::int[], %(a_started_at)b::timestamptz[],
            %(a_duration_ms)b::int[], %(a_request_headers)b::text[], %(a_request_body)b::text[],
            %(a_response_status)b::int[], %(a_response_headers)b::text[], %(a_response_body)b::text[],
            %(a_error_class)b::text[], %(a_error)b::text[], %(a_next_attempt_at)b::timestamptz[]))
    UPDATE webhook_deliveries AS d
    SET status = v.status, attempt_count = v.number, next_attempt_at = v.next_attempt_at,
        last_status_code = v.last_status_code, last_error_class = v.last_error_class,
        last_error = v.last_error, delivered_at = v.delivered_at, updated_at = %(now)b, lease_owner = NULL
    FROM unnest(%(b_id)b::text[], %(b_number)b::int[], %(status)b::text[], %(next_attempt_at)b::timestamptz[],
        %(last_status_code)b::int[], %(last_error_class)b::text[], %(last_error)b::text[],
        %(delivered_at)b::timestamptz[])
        AS v(id, number, status, next_attempt_at, last_status_code, last_error_class, last_error, delivered_at)
    WHERE d.id = v.id AND d.lease_owner = %(owner)b AND d.attempt_count = v.number - 1
"""
_RECORD_PG_DELIVERY_KEYS = (
    "b_id",
    "b_number",
    "status",
    "next_attempt_at",
    "last_status_code",
    "last_error_class",
    "last_error",
    "delivered_at",
)


def _column(rows: list[dict[str, Any]], key: str) -> list[Any]:
    # Plain str for the StrEnum values: the driver adapts a list by its elements' type.
    return [None if (v := row[key]) is None else (str(v) if isinstance(v, str) else v) for row in rows]


async def _record_postgresql(
    session: AsyncSession,
    attempts: list[dict[str, Any]],
    changes: list[dict[str, Any]],
    *,
    owner: str,
    now: datetime,
) -> None:
    params: dict[str, Any] = {f"a_{key}": _column(attempts, key) for key in attempts[0]}
    params |= {key: _column(changes, key) for key in _RECORD_PG_DELIVERY_KEYS}
    params |= {"owner": owner, "now": now}
    # Through SQLAlchemy (its transaction, its errors), but handed to the driver as written.
    await (await session.connection()).exec_driver_sql(_RECORD_PG, params)


# --- the events stream (GET /api/events/stream) ---------------------------------------------


@dataclass(frozen=True)
class Signable:
    """An event as a delivery of it would be sent: its exact body and the keys that sign it."""

    event_id: str
    event_type: str
    payment_id: str
    body: str
    created_at: datetime
    webhook_secret: str | None
    signing_secrets: list[str]
    problem: str | None = None  # why it cannot be signed (its secrets are unreadable)


def delivery_headers(event: Job | Signable, *, at: datetime) -> dict[str, str]:
    """The headers a delivery of ``event`` carries when sent at ``at``: the dispatcher's, and the
    events stream's (so what the stream hands a listener verifies as a delivery would)."""
    return signing.headers(
        event_type=event.event_type,
        event_id=event.event_id,
        body=event.body.encode(),
        timestamp=int(at.timestamp()),
        webhook_secret=event.webhook_secret,
        signing_secrets=event.signing_secrets,
    )


async def events_since(
    session: AsyncSession,
    *,
    merchant_id: str,
    types: Sequence[str],
    since: datetime,
    exclude: Sequence[str],
    limit: int,
    now: datetime,
) -> list[Signable]:
    """The merchant's events of ``types`` created at or after ``since``, but those in ``exclude``,
    oldest first (by created_at, then id), each with what a delivery of it is signed with (read as
    ``claim`` reads it)."""
    stmt = (
        select(
            Event.id,
            Event.type,
            Event.payment_id,
            Event.body,
            Event.created_at,
            _payment_secrets.c.webhook_secret,
            _as_stored(Merchant.signing_secret),
            _as_stored(Merchant.previous_signing_secret),
            Merchant.previous_secret_expires_at,
        )
        .join(_payment_secrets, _payment_secrets.c.id == Event.payment_id)
        .join(Merchant, Merchant.id == Event.merchant_id)
        .where(Event.merchant_id == merchant_id, Event.type.in_(list(types)), Event.created_at >= since)
        .order_by(Event.created_at, Event.id)
        .limit(limit)
    )
    if exclude:
        stmt = stmt.where(Event.id.not_in(list(exclude)))
    found = []
    for eid, etype, pid, body, created, stored, current, previous, until in await session.execute(stmt):
        secret, secrets, problem = _signing_keys(stored, current, previous, until, now=now)
        found.append(Signable(eid, etype, pid, body, created, secret, secrets, problem))
    return found


async def events_created_at(
    session: AsyncSession, *, merchant_id: str, ids: Sequence[str] = (), at: datetime | None = None
) -> dict[str, datetime]:
    """When each of the merchant's events named by ``ids`` (or created at the instant ``at``) was
    created, by id; others' events and events that are gone are left out."""
    stmt = select(Event.id, Event.created_at).where(Event.merchant_id == merchant_id)
    stmt = stmt.where(Event.created_at == at) if at is not None else stmt.where(Event.id.in_(list(ids)))
    return {eid: created for eid, created in await session.execute(stmt)}


# --- merchant and operator actions ----------------------------------------------------------


async def resend(
    session: AsyncSession, *, delivery_id: str, merchant_id: str | None, retries: int, now: datetime
) -> Delivery:
    """Send a delivery again now, with a fresh round of retries. Same event, same webhook-id."""
    delivery = await session.get(Delivery, delivery_id, with_for_update=True, populate_existing=True)
    if delivery is None or (merchant_id is not None and delivery.merchant_id != merchant_id):
        raise NotFound("Webhook delivery not found")
    _reschedule(delivery, retries=retries, now=now)
    await quarantine.release(session, loop=Loop.DISPATCHER, row_id=delivery.id)
    _signal(session)
    return delivery


async def requeue(session: AsyncSession, *, delivery_id: str, retries: int, now: datetime) -> bool:
    """A delivery let out of quarantine: tried now, with a fresh round of retries."""
    delivery = await session.get(Delivery, delivery_id, with_for_update=True, populate_existing=True)
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return False
    _reschedule(delivery, retries=retries, now=now)
    _signal(session)
    return True


def _reschedule(delivery: Delivery, *, retries: int, now: datetime) -> None:
    delivery.status = DeliveryStatus.PENDING
    delivery.max_attempts = delivery.attempt_count + 1 + retries
    delivery.next_attempt_at = now
    delivery.lease_owner = None
    delivery.updated_at = now


def _signal(session: AsyncSession) -> None:
    session.info.setdefault("signals", set()).add(WAKE_CHANNEL)


async def recover(
    session: AsyncSession,
    *,
    merchant_id: str | None,
    since: datetime,
    until: datetime | None,
    retries: int,
    now: datetime,
    limit: int = 10_000,
) -> int:
    """Resend every failed delivery created in [since, until): a merchant's, or (operators) all."""
    stmt = (
        select(Delivery)
        .where(
            Delivery.status == DeliveryStatus.FAILED,
            Delivery.created_at >= since,
        )
        .order_by(Delivery.created_at)
        .limit(limit)
        .with_for_update()
    )
    if until is not None:
        stmt = stmt.where(Delivery.created_at < until)
    if merchant_id is not None:
        stmt = stmt.where(Delivery.merchant_id == merchant_id)
    count = 0
    for delivery in await session.scalars(stmt):
        _reschedule(delivery, retries=retries, now=now)
        count += 1
    if count:
        _signal(session)
    return count


async def deliveries_of(session: AsyncSession, payment_id: str) -> list[tuple[Delivery, list[DeliveryAttempt]]]:
    deliveries = list(
        await session.scalars(
            select(Delivery).where(Delivery.payment_id == payment_id).order_by(Delivery.created_at, Delivery.id)
        )
    )
    attempts: dict[str, list[DeliveryAttempt]] = {d.id: [] for d in deliveries}
    if deliveries:
        rows = await session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id.in_(list(attempts)))
            .order_by(DeliveryAttempt.delivery_id, DeliveryAttempt.number, DeliveryAttempt.id)
        )
        for attempt in rows:
            attempts[attempt.delivery_id].append(attempt)
    return [(d, attempts[d.id]) for d in deliveries]


async def forget(session: AsyncSession, payment_ids: Sequence[str]) -> None:
    """Delete the events and deliveries (with their attempts) of payments that are being deleted
    (the daily cleanup, through ``payments.service.delete_closed``, in its transaction)."""
    deliveries = select(Delivery.id).where(Delivery.payment_id.in_(payment_ids))
    for stmt in (
        delete(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(deliveries)),
        delete(Delivery).where(Delivery.payment_id.in_(payment_ids)),
        delete(Event).where(Event.payment_id.in_(payment_ids)),
    ):
        await session.execute(stmt.execution_options(synchronize_session=False))
