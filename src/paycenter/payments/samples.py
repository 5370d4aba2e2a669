"""Sample events for `paycenter webhooks test` and the docs' webhook guide: real wire format, made-up
payment. In payments because the body is payments' own renderer (``events.webhook_body``) applied to a
payment row, and payments may use webhooks' signing and sender; webhooks imports nothing of payments."""

from __future__ import annotations

from datetime import UTC, datetime

from paycenter.config import Settings
from paycenter.db import new_id, new_payment_id
from paycenter.payments.events import sent_as_webhook, webhook_body
from paycenter.payments.models import EventType, Payment
from paycenter.webhooks import signing
from paycenter.webhooks.sender import Sender, SendResult
from paycenter.webhooks.ssrf import parse_networks

EVENT_TYPES = [e.value for e in EventType if sent_as_webhook(e)]


def sample_body(event_type: str, now: datetime) -> tuple[str, str]:
    """(event id, body) of a 500 KZT sample payment that just had ``event_type``."""
    paid = event_type in ("paid", "refunded", "refund_failed")
    payment = Payment(
        id=new_payment_id(),
        merchant_id="sample",
        amount=50000,
        currency="KZT",
        description="Test webhook from paycenter",
        metadata_={"order_id": "TEST-001"},
        status={"partially_paid": "partially_paid", "refunded": "refunded"}.get(
            event_type, "paid" if paid else event_type
        ),
        paid_amount=50000 if paid else (20000 if event_type == "partially_paid" else 0),
        received_amount=50000 if paid else (20000 if event_type == "partially_paid" else 0),
        credited_amount=50000 if paid else (20000 if event_type == "partially_paid" else 0),
        refunded_amount=50000 if event_type == "refunded" else 0,
        created_at=now,
        paid_at=now if paid else None,
        expires_at=now,
    )
    event_id = new_id("evt")
    body = webhook_body(
        payment,
        event_type=EventType(event_type),
        event_id=event_id,
        sequence=1,
        previous_status="pending",
        now=now,
        extras={"test": True},
    )
    return event_id, body


async def send_sample(
    settings: Settings, *, url: str, event_type: str, secret: str | None, signing_secret: str | None
) -> SendResult:
    now = datetime.now(UTC)
    event_id, body = sample_body(event_type, now)
    raw = body.encode()
    headers = signing.headers(
        event_type=event_type,
        event_id=event_id,
        body=raw,
        timestamp=int(now.timestamp()),
        webhook_secret=secret,
        signing_secrets=[signing_secret] if signing_secret else [],
    )
    sender = Sender(
        allowed_networks=parse_networks(settings.webhook_allowed_networks),
        connect_timeout=settings.webhook_connect_timeout,
        total_timeout=settings.webhook_timeout,
    )
    try:
        return await sender.send(url, headers, raw)
    finally:
        await sender.close()
