"""The webhook outbox and its log: the events, one delivery per (event, target URL), one attempt
row per HTTP try.

Events belong to payments' story (payments writes them through ``service.publish`` and reads them
as a payment's history), but they are the outbox deliveries are sent from, so they live here:
webhooks imports nothing of payments. Its foreign keys name payments' tables, never their models.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from paycenter.db import Base, BigIntPK, LongText, UTCDateTime, utcnow


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for its next try (or being tried right now)
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # every try used up; a resend makes it pending again


class ErrorClass(enum.StrEnum):
    DNS = "dns"
    CONNECT = "connect"
    TLS = "tls"
    TIMEOUT = "timeout"
    HTTP_STATUS = "http_status"
    BLOCKED = "blocked"
    # Our side could not make or record the try (its secrets unreadable, a bug): not sent, and
    # the delivery waits in quarantine for an operator.
    INTERNAL = "internal"


class Event(Base):
    """What happened to a payment, frozen as the exact webhook body bytes at the time."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("payment_id", "sequence", name="uq_events_payment_sequence"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    sequence: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(LongText)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Delivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_merchant_created", "merchant_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"), index=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    url: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    # Tries allowed. None: 1 + the configured retry schedule; a resend sets a new round's limit.
    max_attempts: Mapped[int | None] = mapped_column(Integer)
    # When the next try is due; while a worker holds the delivery, the end of its lease (the
    # worker renews it). A dead worker's deliveries thus fall due again by themselves.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error_class: Mapped[str | None] = mapped_column(String(16))
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Never loaded (readers use the ids): declared so that one flush inserts the event before the
    # delivery naming it. Without it the unit of work orders unrelated mappers by class name.
    event: Mapped[Event] = relationship(lazy="raise")


class DeliveryAttempt(Base):
    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    duration_ms: Mapped[int] = mapped_column(Integer)
    request_headers: Mapped[str] = mapped_column(LongText)  # JSON object
    request_body: Mapped[str] = mapped_column(LongText)
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[str | None] = mapped_column(LongText)  # JSON object
    response_body: Mapped[str | None] = mapped_column(LongText)  # first 16 KiB
    error_class: Mapped[str | None] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(String(500))
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
