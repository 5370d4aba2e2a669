"""Read-only queries over a merchant's events and their webhook deliveries: the event feed
(``GET /api/events``) and the event types the delivery logs name (the API's and the admin's).

In payments rather than webhooks although the events table (the outbox) is webhooks' model: the
feed speaks payments' ``EventType``, and webhooks imports nothing of payments (the layer map,
docs/architecture.md), while payments may read webhooks' tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from paycenter import pagination
from paycenter.payments.models import Event, EventType
from paycenter.webhooks.models import Delivery, DeliveryStatus


async def event_types(session: AsyncSession, payment_id: str) -> dict[str, str]:
    """The type of each of the payment's events, by event id."""
    rows = await session.execute(select(Event.id, Event.type).where(Event.payment_id == payment_id))
    return {event_id: type_ for event_id, type_ in rows}


async def event_type(session: AsyncSession, event_id: str) -> str:
    """The event's type; "" when it is gone."""
    return await session.scalar(select(Event.type).where(Event.id == event_id)) or ""


async def events_page(
    session: AsyncSession,
    *,
    merchant_id: str,
    type: EventType | None,
    payment_id: str | None,
    delivery_status: DeliveryStatus | None,
    created_from: datetime | None,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[Event], dict[str, list[Delivery]], str | None]:
    """One page of the merchant's events, newest first, each filter applied when given; each event's
    deliveries in the order they were made; and the next page's cursor (None on the last page)."""
    stmt = select(Event).where(Event.merchant_id == merchant_id)
    if type is not None:
        stmt = stmt.where(Event.type == type)
    if payment_id is not None:
        stmt = stmt.where(Event.payment_id == payment_id)
    if delivery_status is not None:
        stmt = stmt.where(exists().where(Delivery.event_id == Event.id, Delivery.status == delivery_status))
    if created_from is not None:
        stmt = stmt.where(Event.created_at >= created_from)
    rows, next_cursor = await pagination.page(
        session, stmt, created_col=Event.created_at, id_col=Event.id, limit=limit, cursor=cursor
    )
    deliveries: dict[str, list[Delivery]] = {e.id: [] for e in rows}
    if rows:
        for d in await session.scalars(
            select(Delivery).where(Delivery.event_id.in_(list(deliveries))).order_by(Delivery.created_at)
        ):
            deliveries[d.event_id].append(d)
    return rows, deliveries, next_cursor
