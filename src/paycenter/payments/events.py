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
from paycenter.payments.models import ATTEMPT_EVENT_TYPES, Event, EventType, Payment
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


def sent_as_webhook(event_type: str) -> bool:
    """Whether an event of this type is POSTed to the merchant's webhook URL, besides being recorded.

    Attempt events (``attempt_cancelled``) are not, for any merchant: the old system's merchants
    must get only its five event types (their receivers were written for those and no other), and
    merchants have no API version yet that would tell the current ones apart (issue 13). Every
    merchant reads them in ``GET /api/events`` and the payment's history instead. This is the one
    place to change when merchants get an API version: then legacy merchants get the five old
    types (``refund_failed``, sent to every merchant today, is not one of them), and current ones
    may also get the attempt events.
    """
    return event_type not in ATTEMPT_EVENT_TYPES


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
    webhook delivery when it is one that is sent (``sent_as_webhook``)."""
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
    if sent_as_webhook(event_type):
        await webhooks.enqueue(session, event, payment, now=now)
    return event
