"""Events: written in the same transaction as the state change they record, with their deliveries.

The body is frozen at that moment as the exact webhook bytes (DESIGN §2): the seed's keys in the
seed's order, then the event's extras, then ``event_id``, ``sequence`` and ``previous_status`` so
merchants can deduplicate and drop stale events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paycenter import storable
from paycenter.db import new_id
from paycenter.money import to_major_number
from paycenter.payments.models import Event, EventType, Payment
from paycenter.timefmt import iso
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
) -> str:
    """The event's body as it is stored, signed and sent: in PHP's own JSON (``webhooks.wire``),
    so that PHP's ``json_encode(json_decode($body, true))`` gives back these very bytes."""
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
        "created_at": iso(payment.created_at),
        "paid_at": iso(payment.paid_at),
        # The old system sent PHP's empty array for no metadata; merchants' code expects it (and
        # php_json writes {} so anyway: PHP's json_decode($body, true) reads {} as an empty array).
        # Sanitized: a row stored before the API refused NaN must not make every event unsendable.
        "metadata": storable.sanitized(payment.metadata_) or [],
        "timestamp": int(now.timestamp()),
    }
    body.update(extras)
    body["event_id"] = event_id
    body["sequence"] = sequence
    body["previous_status"] = previous_status
    return php_json(body)


async def emit(
    session: AsyncSession,
    payment: Payment,
    event_type: EventType,
    *,
    previous_status: str,
    now: datetime,
    extras: dict[str, Any] | None = None,
) -> Event:
    """Record an event for a payment the caller holds locked, in the caller's transaction."""
    payment.last_sequence += 1
    event_id = new_id("evt")
    body = webhook_body(
        payment,
        event_type=event_type,
        event_id=event_id,
        sequence=payment.last_sequence,
        previous_status=previous_status,
        now=now,
        extras=extras or {},
    )
    event = Event(
        id=event_id,
        payment_id=payment.id,
        merchant_id=payment.merchant_id,
        type=str(event_type),
        sequence=payment.last_sequence,
        body=body,
        created_at=now,
    )
    session.add(event)
    await webhooks.enqueue(session, event, payment, now=now)
    return event
