"""Merchant API for webhooks: the delivery log, resends, recovery, the event feed, secrets."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, BeforeValidator, Field

from paycenter import pagination, storable
from paycenter.contract import TEXT_PATTERN, DateTime, json_int
from paycenter.db import normalize_payment_id
from paycenter.deps import Context, CurrentMerchant, ExactJsonRoute
from paycenter.envelope import Envelope, RequestBody
from paycenter.errors import envelope, error_responses
from paycenter.merchants import service as merchants
from paycenter.payments import feed
from paycenter.payments import service as payments
from paycenter.payments.models import EventType
from paycenter.timefmt import iso
from paycenter.webhooks import service
from paycenter.webhooks.models import Delivery, DeliveryAttempt, DeliveryStatus

router = APIRouter(prefix="/api", tags=["webhooks"], route_class=ExactJsonRoute)


class AttemptLog(BaseModel):
    number: int
    started_at: str
    duration_ms: int
    request_headers: dict[str, str]
    request_body: str
    response_status: int | None
    response_headers: dict[str, str] | None
    response_body: str | None = Field(description="First 16 KiB of the answer.")
    error_class: str | None = Field(
        description="dns, connect, tls, timeout, http_status, blocked, or internal (paycenter could not make the try)."
    )
    error: str | None
    next_attempt_at: str | None


class DeliveryLog(BaseModel):
    id: str
    event_id: str
    event_type: str
    transaction_id: str
    url: str
    status: str = Field(description="pending, succeeded or failed.")
    attempt_count: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error_class: str | None
    last_error: str | None
    created_at: str
    delivered_at: str | None
    attempts: list[AttemptLog]


class DeliveryBrief(BaseModel):
    id: str
    url: str
    status: str
    attempt_count: int


class EventItem(BaseModel):
    id: str = Field(description="Also sent as the webhook-id header.")
    type: str
    transaction_id: str
    sequence: int
    created_at: str
    data: dict[str, Any] = Field(description="The webhook body exactly as sent.")
    deliveries: list[DeliveryBrief]


class EventPage(BaseModel):
    items: list[EventItem]
    has_more: bool
    next_cursor: str | None


class RecoverRequest(RequestBody):
    since: DateTime = Field(description="Resend failed deliveries created at or after this time (RFC 3339).")
    until: DateTime | None = Field(default=None, description="... and before this time.")


class RecoverResult(BaseModel):
    resent: int


class RotateRequest(RequestBody):
    grace_period: Annotated[int, Field(ge=0, le=30 * 24 * 3600), BeforeValidator(json_int)] | None = Field(
        default=None, description="Seconds the old secret keeps signing (24 h by default)."
    )


class SigningSecret(BaseModel):
    signing_secret: str = Field(description="Standard Webhooks secret (whsec_...) for webhook-signature.")
    previous_secret_expires_at: str | None


def _headers(text: str | None) -> dict[str, str] | None:
    return None if text is None else json.loads(text)


def delivery_log(delivery: Delivery, event_type: str, attempts: list[DeliveryAttempt]) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "event_type": event_type,
        "transaction_id": delivery.payment_id,
        "url": delivery.url,
        "status": delivery.status,
        "attempt_count": delivery.attempt_count,
        "next_attempt_at": iso(delivery.next_attempt_at),
        "last_status_code": delivery.last_status_code,
        "last_error_class": delivery.last_error_class,
        "last_error": delivery.last_error,
        "created_at": iso(delivery.created_at),
        "delivered_at": iso(delivery.delivered_at),
        "attempts": [
            {
                "number": a.number,
                "started_at": iso(a.started_at),
                "duration_ms": a.duration_ms,
                "request_headers": _headers(a.request_headers),
                "request_body": a.request_body,
                "response_status": a.response_status,
                "response_headers": _headers(a.response_headers),
                "response_body": a.response_body,
                "error_class": a.error_class,
                "error": a.error,
                "next_attempt_at": iso(a.next_attempt_at),
            }
            for a in attempts
        ],
    }


@router.get(
    "/payment/{payment_id}/webhooks",
    response_model=Envelope[list[DeliveryLog]],
    responses=error_responses(401, 404),
    summary="The webhook log of a payment",
)
async def payment_webhooks(payment_id: str, merchant: CurrentMerchant, ctx: Context) -> dict[str, Any]:
    """Every delivery of every event of the payment, with each HTTP try: what was sent, what came back."""
    async with ctx.db.reading() as session:
        payment = await payments.get_for_merchant(
            session, merchant_id=merchant.id, payment_id=normalize_payment_id(payment_id)
        )
        logs = await service.deliveries_of(session, payment.id)
        types = await feed.event_types(session, payment.id)
    return envelope([delivery_log(d, types.get(d.event_id, ""), attempts) for d, attempts in logs])


@router.post(
    "/webhooks/{delivery_id}/resend",
    response_model=Envelope[DeliveryLog],
    responses=error_responses(401, 404),
    summary="Send a webhook delivery again",
)
async def resend_delivery(delivery_id: str, merchant: CurrentMerchant, ctx: Context) -> dict[str, Any]:
    """Queue the delivery for an immediate try with a fresh round of retries. The body and the
    `webhook-id` are the original event's, so a receiver that already has it can drop it."""
    async with ctx.db.transaction() as session:
        delivery = await service.resend(
            session,
            delivery_id=delivery_id[:40],
            merchant_id=merchant.id,
            retries=len(ctx.settings.retry_schedule),
            now=ctx.now(),
        )
        event_type = await feed.event_type(session, delivery.event_id)
    return envelope(delivery_log(delivery, event_type, []), "Delivery queued")


@router.post(
    "/webhooks/recover",
    response_model=Envelope[RecoverResult],
    responses=error_responses(400, 401, 413, 422),
    summary="Resend every failed delivery since a time",
)
async def recover_deliveries(body: RecoverRequest, merchant: CurrentMerchant, ctx: Context) -> dict[str, Any]:
    """After an outage on your side: every delivery that gave up since `since` is tried again."""
    since, until = body.since, body.until  # aware UTC (contract.DateTime)
    async with ctx.db.transaction() as session:
        count = await service.recover(
            session,
            merchant_id=merchant.id,
            since=since,
            until=until,
            retries=len(ctx.settings.retry_schedule),
            now=ctx.now(),
        )
    return envelope({"resent": count}, f"{count} deliveries queued")


@router.get(
    "/events",
    response_model=Envelope[EventPage],
    responses=error_responses(401, 422),
    summary="Your events, newest first",
)
async def list_events(
    merchant: CurrentMerchant,
    ctx: Context,
    type: Annotated[
        EventType | None,
        Query(
            description="Only events of this type. `attempt_cancelled` (the payer cancelled one try; the "
            "payment stays payable) is read here only: it is not sent as a webhook."
        ),
    ] = None,
    transaction_id: Annotated[
        str | None, Query(max_length=64, pattern=TEXT_PATTERN, description="Only this payment's events.")
    ] = None,
    delivery_status: Annotated[
        DeliveryStatus | None, Query(description="Only events with a delivery in this state (e.g. failed).")
    ] = None,
    created_from: Annotated[DateTime | None, Query(description="Created at or after (RFC 3339).")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[
        str | None, Query(pattern=pagination.CURSOR_PATTERN, description="next_cursor of the previous page")
    ] = None,
) -> dict[str, Any]:
    """The events feed: pull what you missed, whatever happened to its webhooks. It also has the
    events that are not sent as webhooks (`attempt_cancelled`), with no deliveries."""
    async with ctx.db.reading() as session:
        rows, deliveries, next_cursor = await feed.events_page(
            session,
            merchant_id=merchant.id,
            type=type,
            payment_id=None if transaction_id is None else normalize_payment_id(transaction_id),
            delivery_status=delivery_status,
            created_from=created_from,
            limit=limit,
            cursor=cursor,
        )
    items = [
        {
            "id": e.id,
            "type": e.type,
            "transaction_id": e.payment_id,
            "sequence": e.sequence,
            "created_at": iso(e.created_at),
            "data": storable.loads(e.body) or {},
            "deliveries": [
                {"id": d.id, "url": d.url, "status": d.status, "attempt_count": d.attempt_count}
                for d in deliveries[e.id]
            ],
        }
        for e in rows
    ]
    return envelope({"items": items, "has_more": next_cursor is not None, "next_cursor": next_cursor})


@router.get(
    "/webhook-secret",
    response_model=Envelope[SigningSecret],
    responses=error_responses(401),
    summary="Your webhook signing secret",
)
async def get_signing_secret(merchant: CurrentMerchant) -> dict[str, Any]:
    return envelope(
        {
            "signing_secret": merchant.signing_secret,
            "previous_secret_expires_at": iso(merchant.previous_secret_expires_at),
        }
    )


@router.post(
    "/webhook-secret/rotate",
    response_model=Envelope[SigningSecret],
    responses=error_responses(400, 401, 413, 422),
    summary="Rotate the webhook signing secret",
)
async def rotate_signing_secret(
    merchant: CurrentMerchant, ctx: Context, body: RotateRequest | None = None
) -> dict[str, Any]:
    """A new `whsec_` secret signs from now on; during the grace period webhooks carry signatures
    with both the new and the old secret, so you can switch without losing a delivery."""
    grace = ctx.settings.webhook_secret_grace_seconds
    if body is not None and body.grace_period is not None:
        grace = body.grace_period
    async with ctx.db.transaction() as session:
        updated = await merchants.rotate_signing_secret(
            session, merchant_id=merchant.id, grace=timedelta(seconds=grace), now=ctx.now()
        )
    return envelope(
        {
            "signing_secret": updated.signing_secret,
            "previous_secret_expires_at": iso(updated.previous_secret_expires_at),
        },
        "Signing secret rotated",
    )
