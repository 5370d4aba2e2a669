"""Payment domain tables: payment, attempt, operation, refund (and the event types).

A payment is what the merchant asked for; an attempt is one try at a provider; an operation is
money that actually arrived (unique per provider transaction id, so a repeated notice never counts
twice); a refund sends money back; an event is the immutable record of a state change, written in
the same transaction as the change and later delivered as a webhook (its table is the webhook
outbox, in ``webhooks.models``).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    case,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, column_property, mapped_column

from paycenter.crypto import EncryptedString
from paycenter.db import Base, Money, UTCDateTime, utcnow

# The events table is the webhook outbox and lives beside its deliveries (``webhooks.models``), so
# that webhooks needs nothing of payments; payments writes it through ``webhooks.service.publish``
# and reads it as its history. Named here too, where its readers have always found it.
from paycenter.webhooks.models import Event as Event


class PaymentStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"  # an attempt is live at the provider
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REFUNDED = "refunded"
    FAILED = "failed"


# A payer may still pay in these states.
PAYABLE = (PaymentStatus.PENDING, PaymentStatus.PROCESSING, PaymentStatus.PARTIALLY_PAID)
FINAL = (
    PaymentStatus.PAID,
    PaymentStatus.CANCELLED,
    PaymentStatus.EXPIRED,
    PaymentStatus.REFUNDED,
    PaymentStatus.FAILED,
)


class AttemptStatus(enum.StrEnum):
    LIVE = "live"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class RefundStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # Some legs went back to the payer, others failed: refunded_amount says how much.
    PARTIALLY_SUCCEEDED = "partially_succeeded"


class EventType(enum.StrEnum):
    PAID = "paid"
    PARTIALLY_PAID = "partially_paid"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"
    EXPIRED = "expired"
    # A refund ended with money not returned (all of it, or some legs): refund_id, failed_amount, error.
    REFUND_FAILED = "refund_failed"
    # The payer cancelled one try (the payment page's button, the terminal, the sandbox; Kaspi QR
    # reports a cancel in the app as an error, a failed try): attempt_id, reason. The payment stays
    # payable, so this is not ``cancelled``, which only the payment's own end sends (issue 13).
    # Recorded, not sent as a webhook: see events.sent_as_webhook.
    ATTEMPT_CANCELLED = "attempt_cancelled"


# Events about one try rather than the payment: they never change what the payment is.
ATTEMPT_EVENT_TYPES = (EventType.ATTEMPT_CANCELLED,)


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        Index("ix_payments_merchant_created", "merchant_id", "created_at"),
        Index("ix_payments_merchant_order", "merchant_id", "order_id"),
        Index("ix_payments_status_expires", "status", "expires_at"),
        Index("ix_payments_created", "created_at"),
        Index("ix_payments_metadata_user_id", "metadata_user_id"),
        Index("ix_payments_order_id", "order_id"),
        Index("ix_payments_link_created", "link_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    amount: Mapped[int] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    description: Mapped[str] = mapped_column(String(1000), default="")
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    # metadata.order_id copied out so merchants and operators can find a payment by it fast.
    order_id: Mapped[str | None] = mapped_column(String(500))
    metadata_user_id: Mapped[str | None] = mapped_column(String(500))  # metadata.user_id, for search
    customer_phone: Mapped[str | None] = mapped_column(String(32))
    customer_email: Mapped[str | None] = mapped_column(String(254))
    customer_name: Mapped[str | None] = mapped_column(String(200))
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    # ≤ 64 chars, encrypted. Never loaded with the payment (deferred, and an error if touched
    # unloaded): only the dispatcher reads it, row by row, so one payment whose stored secret
    # cannot be decrypted breaks no read of its merchant's payments (has_webhook_secret below).
    webhook_secret: Mapped[str | None] = mapped_column(EncryptedString(255), deferred=True, deferred_raiseload=True)
    success_url: Mapped[str | None] = mapped_column(String(2000))
    fail_url: Mapped[str | None] = mapped_column(String(2000))
    language: Mapped[str | None] = mapped_column(String(5))
    provider: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(20), default=PaymentStatus.PENDING)
    # Gross money the payer sent, the bank's fee on it and what reached the merchant.
    paid_amount: Mapped[int] = mapped_column(Money, default=0)
    fee_amount: Mapped[int] = mapped_column(Money, default=0)
    received_amount: Mapped[int] = mapped_column(Money, default=0)
    # What counts toward ``amount``: the gross, less the fee where the payer was asked to cover it
    # (then the net must reach the amount; where the merchant carries the fee, the gross must).
    credited_amount: Mapped[int] = mapped_column(Money, default=0)
    # Money arrived after the payment had expired or been cancelled (counted, and reported).
    paid_late: Mapped[bool] = mapped_column(Boolean, default=False)
    refunded_amount: Mapped[int] = mapped_column(Money, default=0)
    # Last event sequence number, so merchants can order events and drop stale ones.
    last_sequence: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The payer first opened the payment (POST /api/payment/{id}/track-visit, the old pages' call).
    first_visited_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The method the merchant chose at init (``payment_method_id``, a code of payment_methods): the
    # payer's attempt uses it, with its fee, unless the payer picks another.
    payment_method: Mapped[str | None] = mapped_column(String(32))
    # The account number a payer types in Kaspi's payments section (provider kaspi_biller): ours,
    # digits with a check digit, or the merchant's own order number. ``BillerAccount`` says which
    # payment an account names now.
    account: Mapped[str | None] = mapped_column(String(20))
    # The payment link it was made from (``PaymentLink``), also in its metadata as ``link_id``. No
    # foreign key: the daily cleanup deletes payments, never links, and a link's list just shrinks.
    link_id: Mapped[str | None] = mapped_column(String(40))

    @hybrid_property
    def remaining_amount(self) -> int:
        return max(self.amount - self.credited_amount, 0)

    @remaining_amount.inplace.expression
    @classmethod
    def _remaining_amount_sql(cls) -> ColumnElement[int]:
        # The same rule in SQL, for reads that select columns rather than load the payment.
        return case((cls.amount > cls.credited_amount, cls.amount - cls.credited_amount), else_=0)

    @property
    def refundable_amount(self) -> int:
        return max(self.paid_amount - self.refunded_amount, 0)


# Whether the payment has its own webhook secret, from the column as stored (no decryption).
Payment.has_webhook_secret = column_property(Payment.__table__.c.webhook_secret.is_not(None))


class Attempt(Base):
    __tablename__ = "attempts"
    __table_args__ = (Index("ix_attempts_status_provider", "status", "provider"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    # What the payer is asked to pay in this try (gross: with the fee when the payer covers it).
    amount: Mapped[int] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(20), default=AttemptStatus.LIVE)
    # The provider's handle on this try (QR payment id, terminal process id, ...); None until
    # the provider has accepted the try.
    provider_ref: Mapped[str | None] = mapped_column(String(100))
    payment_method: Mapped[str | None] = mapped_column(String(32))
    # The chosen method's fee, in basis points (100 = 1%), and who carries it.
    fee_bp: Mapped[int] = mapped_column(Integer, default=0)
    payer_covers_fee: Mapped[bool] = mapped_column(Boolean, default=False)
    terminal_id: Mapped[str | None] = mapped_column(String(40))
    qr_payload: Mapped[str | None] = mapped_column(String(1000))  # what the QR code encodes
    pay_link: Mapped[str | None] = mapped_column(String(500))  # "open in Kaspi"
    provider_status: Mapped[str | None] = mapped_column(String(40))  # last raw status seen
    confirm_timeout: Mapped[int | None] = mapped_column(Integer)  # seconds to confirm once scanned
    # Seconds between two status polls that the provider asked for this try (Kaspi QR's
    # StatusPollingInterval); None: the provider's own interval (Provider.poll_every).
    poll_interval: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Poller bookkeeping: when to ask next (backoff after errors) and since when answers fail.
    next_poll_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    poll_failures: Mapped[int] = mapped_column(Integer, default=0)
    trouble_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Operation(Base):
    """Money received. The unique key is what makes a twice-reported success count once."""

    __tablename__ = "operations"
    __table_args__ = (UniqueConstraint("provider", "provider_txn_id", name="uq_operations_provider_txn"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    attempt_id: Mapped[str | None] = mapped_column(ForeignKey("attempts.id"))
    provider: Mapped[str] = mapped_column(String(32))
    provider_txn_id: Mapped[str] = mapped_column(String(100))
    amount: Mapped[int] = mapped_column(Money)  # gross, what the payer paid
    fee: Mapped[int] = mapped_column(Money, default=0)
    net: Mapped[int] = mapped_column(Money)
    credited: Mapped[int] = mapped_column(Money, default=0)  # toward the payment's amount
    payment_method: Mapped[str | None] = mapped_column(String(32))
    # How it was paid at the provider where that matters for a refund (a terminal's "qr" | "card").
    paid_by: Mapped[str | None] = mapped_column(String(16))
    # Kaspi POS refunds must run on the terminal that took the money.
    terminal_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class BillerAccount(Base):
    """The payment an account number names now (provider kaspi_biller).

    Kaspi's request carries the account alone, so an account names one payment at a time: a
    merchant's own account may be reused once its payment is closed, and then names the new one.
    Kept after its payment closes, so money that Kaspi takes late is still found and counted."""

    __tablename__ = "biller_accounts"

    account: Mapped[str] = mapped_column(String(20), primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class BillerTransaction(Base):
    """One ``pay`` Kaspi sent, and the first reply it got: a retry with the same ``txn_id`` gets
    these bytes again and is never counted twice. ``id`` is our transaction number (prv_txn)."""

    __tablename__ = "biller_transactions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    txn_id: Mapped[str] = mapped_column(String(20), unique=True)
    account: Mapped[str] = mapped_column(String(20))
    # None: the account named no payment (result 1), and nothing was counted.
    payment_id: Mapped[str | None] = mapped_column(ForeignKey("payments.id"), index=True)
    amount: Mapped[int] = mapped_column(Money)  # the sum Kaspi took, in minor units
    txn_date: Mapped[datetime | None] = mapped_column(UTCDateTime())  # Kaspi's, read as Almaty time
    result: Mapped[int] = mapped_column(Integer)
    reply: Mapped[bytes] = mapped_column(LargeBinary)
    reply_type: Mapped[str] = mapped_column(String(64))  # its Content-Type
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Refund(Base):
    """A merchant's refund request. The money goes back per operation, in legs.

    A manual refund is one an operator recorded after returning the money outside paycenter (in
    the bank's own cabinet), for a provider that cannot refund through paycenter
    (``Provider.refunds_refused``): nothing is sent anywhere; its legs are written succeeded."""

    __tablename__ = "refunds"
    __table_args__ = (UniqueConstraint("submission_id", name="uq_refunds_submission_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    amount: Mapped[int] = mapped_column(Money)
    # What actually went back (succeeded legs).
    refunded_amount: Mapped[int] = mapped_column(Money, default=0)
    reason: Mapped[str] = mapped_column(String(500), default="")
    status: Mapped[str] = mapped_column(String(20), default=RefundStatus.PENDING)
    provider_ref: Mapped[str | None] = mapped_column(String(100))
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    manual: Mapped[bool] = mapped_column(Boolean, default=False)
    recorded_by: Mapped[str | None] = mapped_column(String(100))  # the operator, for a manual one
    # The admin form's one-time token: the same form posted twice records one manual refund.
    submission_id: Mapped[str | None] = mapped_column(String(64))


class RefundLeg(Base):
    """The part of a refund that goes back through one operation (one QR payment, one terminal
    transaction): providers refund per original transaction, never across them."""

    __tablename__ = "refund_legs"
    __table_args__ = (Index("ix_refund_legs_status", "status"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    refund_id: Mapped[str] = mapped_column(ForeignKey("refunds.id"), index=True)
    operation_id: Mapped[str] = mapped_column(ForeignKey("operations.id"), index=True)
    amount: Mapped[int] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(20), default=RefundStatus.PENDING)
    # Written before the provider is called: a leg with sent_at but no answer may have moved
    # money, so it is never sent again blindly (see payments.refunds).
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    provider_ref: Mapped[str | None] = mapped_column(String(100))
    terminal_id: Mapped[str | None] = mapped_column(String(40))
    error: Mapped[str | None] = mapped_column(String(500))
    next_poll_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A refund the customer must allow first (Kaspi QR r2): the return QR to show them, its id at
    # the provider and until when it can be scanned; then when the return itself was sent (like
    # sent_at: sent without an answer, it is looked up, never sent again blindly).
    return_qr: Mapped[str | None] = mapped_column(String(500))
    return_qr_id: Mapped[str | None] = mapped_column(String(40))
    return_qr_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    return_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


# The methods every deployment has (migration 0003) and the old system's id of each (0015): the
# values the API documents for ``payment_method_id`` and ``payment_method``. Operators change their
# fees and switch them off (an inactive one is refused); they add none.
METHOD_LEGACY_IDS = {
    "kaspi_gold": 1,
    "kaspi_red": 2,
    "kaspi_credit": 3,
    "kaspi_installment_12": 4,
    "kaspi_installment_24": 5,
}


class PaymentMethod(Base):
    """How a payer pays (Kaspi Gold, Red, credit, instalments) and what the bank keeps of it."""

    __tablename__ = "payment_methods"
    __table_args__ = (UniqueConstraint("legacy_id", name="uq_payment_methods_legacy_id"),)

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    # Fee in basis points of the gross amount: 100 = 1%.
    fee_bp: Mapped[int] = mapped_column(Integer, default=0)
    # The payer pays the fee on top: an attempt asks remaining / (1 - fee), rounded up.
    payer_covers_fee: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    # The old system's id of this method (1 = Kaspi Gold, ...): what its merchants send as
    # payment_method_id and read as ``id``. None for a method the old system did not have.
    legacy_id: Mapped[int | None] = mapped_column(Integer)


class LinkKind(enum.StrEnum):
    ONE_OFF = "one_off"  # one payment, made when the link is
    REUSABLE = "reusable"  # a fresh payment on each payer's visit


class PaymentLink(Base):
    """A link an operator (or a merchant's program) hands a payer: ``/l/{id}``. A one-off link is
    one payment made at once; a reusable one makes a payment of a fixed amount, or of one the payer
    chooses within [min_amount, max_amount], on each visit. Either way the payments are ordinary
    ones, made by ``service.create_payment`` with ``metadata.link_id``."""

    __tablename__ = "payment_links"
    __table_args__ = (Index("ix_payment_links_merchant_created", "merchant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # lnk_ + 128 random bits: unguessable
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    kind: Mapped[str] = mapped_column(String(10))
    description: Mapped[str] = mapped_column(String(1000), default="")
    currency: Mapped[str] = mapped_column(String(3))
    # A fixed amount, or (reusable links only) the payer's choice within the bounds.
    amount: Mapped[int | None] = mapped_column(Money)
    min_amount: Mapped[int | None] = mapped_column(Money)
    max_amount: Mapped[int | None] = mapped_column(Money)
    # Seconds each payment made from the link stays payable (None: the deployment's default).
    expires_in: Mapped[int | None] = mapped_column(Integer)
    # The link itself stops making payments after this (None: never).
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    customer_name: Mapped[str | None] = mapped_column(String(200))
    customer_phone: Mapped[str | None] = mapped_column(String(32))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    provider: Mapped[str | None] = mapped_column(String(32))  # None: the merchant's default, per payment
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # A one-off link's payment (no foreign key: cleanup may delete the payment, never the link).
    payment_id: Mapped[str | None] = mapped_column(String(32))
    payments_count: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str | None] = mapped_column(String(100))  # the operator; None: the merchant's API
    created_via: Mapped[str] = mapped_column(String(10))  # admin | api
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
