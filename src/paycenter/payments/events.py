"""Events: written in the same transaction as the state change they record, with their deliveries.

The body is frozen at that moment as the exact webhook bytes (DESIGN §2): the seed's keys in the
seed's order, then the event's extras, then ``event_id``, ``sequence`` and ``previous_status`` so
merchants can deduplicate and drop stale events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.util import identity_key

from paycenter import storable, versions
from paycenter.db import new_id
from paycenter.merchants.models import Merchant
from paycenter.money import to_major_number
from paycenter.payments.models import ATTEMPT_EVENT_TYPES, Event, EventType, Payment
from paycenter.timefmt import almaty, iso
from paycenter.webhooks import service as webhooks
from paycenter.webhooks.wire import php_json


def webhook_body(
    payment: Payment,
    *,
    event_type: EventType,
    event_id: str,
    sequence: int,
    previous_status: str,
    now: datetime,
    extras: dict[str, Any],
    api_version: str = versions.CURRENT,
) -> str:
    """The event's body as it is stored, signed and sent: in PHP's own JSON (``webhooks.wire``),
    so that PHP's ``json_encode(json_decode($body, true))`` gives back these very bytes. Times
    (also datetimes among the extras) as the merchant's API version writes them: RFC 3339 UTC, or
    the old system's naive Almaty ``Y-m-d H:i:s`` for ``legacy``."""
    stamp = almaty if api_version == versions.LEGACY else iso
    cur = payment.currency
    body: dict[str, Any] = {
        "event": str(event_type),
        "transaction_id": payment.id,
        "amount": to_major_number(payment.amount, cur),
        "original_amount": to_major_number(payment.amount, cur),
        "paid_amount": to_major_number(payment.paid_amount, cur),
        "actual_amount_received": to_major_number(payment.received_amount, cur),
        "remaining_amount": to_major_number(payment.remaining_amount, cur),
        "currency": cur,
        "status": payment.status,
        "description": payment.description,
        "created_at": stamp(payment.created_at),
        "paid_at": stamp(payment.paid_at),
        # The old system sent PHP's empty array for no metadata; merchants' code expects it (and
        # php_json writes {} so anyway: PHP's json_decode($body, true) reads {} as an empty array).
        # Sanitized: a row stored before the API refused NaN must not make every event unsendable.
        "metadata": storable.sanitized(payment.metadata_) or [],
        "timestamp": int(now.timestamp()),
    }
    body.update({key: stamp(value) if isinstance(value, datetime) else value for key, value in extras.items()})
    body["event_id"] = event_id
    body["sequence"] = sequence
    body["previous_status"] = previous_status
    return php_json(body)


# The old system's five event types: the only ones its merchants' receivers were written for.
LEGACY_EVENT_TYPES = frozenset(
    {EventType.PAID, EventType.PARTIALLY_PAID, EventType.CANCELLED, EventType.REFUNDED, EventType.EXPIRED}
)


def sent_as_webhook(event_type: str, api_version: str | None = None) -> bool:
    """Whether an event of this type is POSTed to a merchant of this API version, besides being
    recorded (every event is readable in ``GET /api/events`` and the payment's history).

    Merchants pinned to ``legacy`` get only the old system's five types: ``refund_failed`` and
    whatever comes later are recorded for them, never sent. Attempt events (``attempt_cancelled``)
    are sent to no merchant of any version: there is no way yet to subscribe to them, and a
    receiver that treats an unknown type as the payment's end would close a payable order.
    ``api_version`` None: the types that are sent to some merchant.
    """
    if event_type in ATTEMPT_EVENT_TYPES:
        return False
    return api_version != versions.LEGACY or event_type in LEGACY_EVENT_TYPES


async def merchant_version(session: AsyncSession, merchant_id: str) -> str:
    """A merchant's pinned API version. Read from the session's identity map when the merchant is
    already loaded (no query); otherwise one indexed column by primary key."""
    loaded = session.identity_map.get(identity_key(Merchant, merchant_id))
    if loaded is not None and "api_version" not in inspect(loaded).unloaded:  # no lazy load in async
        return loaded.api_version
    found = await session.scalar(select(Merchant.api_version).where(Merchant.id == merchant_id))
    return found or versions.CURRENT


async def emit(
    session: AsyncSession,
    payment: Payment,
    event_type: EventType,
    *,
    previous_status: str,
    now: datetime,
    extras: dict[str, Any] | None = None,
) -> Event:
    """Record an event for a payment the caller holds locked, in the caller's transaction, with its
    webhook delivery when it is one that is sent to this merchant (``sent_as_webhook``). Webhooks
    gets plain values: the body rendered here, the payment's own endpoint (else its merchant's)."""
    payment.last_sequence += 1
    event_id = new_id("evt")
    # The merchant's version shapes the body (its times) and whether it is sent: one read by
    # primary key, none when the merchant is already in the session.
    api_version = await merchant_version(session, payment.merchant_id)
    body = webhook_body(
        payment,
        event_type=event_type,
        event_id=event_id,
        sequence=payment.last_sequence,
        previous_status=previous_status,
        now=now,
        extras=extras or {},
        api_version=api_version,
    )
    return await webhooks.publish(
        session,
        event_id=event_id,
        payment_id=payment.id,
        merchant_id=payment.merchant_id,
        event_type=str(event_type),
        sequence=payment.last_sequence,
        body=body,
        url=payment.webhook_url,
        deliver=sent_as_webhook(event_type, api_version),
        now=now,
    )
