"""Every table, imported in one place so Alembic and tests see the whole schema."""

from typing import Any

from sqlalchemy import Column

from paycenter.crypto import EncryptedString
from paycenter.db import Base
from paycenter.idempotency.models import IdempotencyKey
from paycenter.jobs.models import CleanupRun, WorkerHeartbeat
from paycenter.leadership import Lease
from paycenter.merchants.models import ApiToken, Merchant, StreamLease
from paycenter.operators.models import AdminSession, AdminUser, AuditEntry, LoginThrottle
from paycenter.payments.models import Attempt, Event, Operation, Payment, PaymentLink, PaymentMethod, Refund, RefundLeg
from paycenter.providers.models import Terminal
from paycenter.quarantine import QuarantinedRow
from paycenter.ratelimit import RateCounter
from paycenter.webhooks.models import Delivery, DeliveryAttempt

# Every column sealed with PAYCENTER_SECRET_KEYS, found by its type on the models themselves (by
# table name, then as declared): `paycenter secrets rotate` re-seals them and `paycenter config
# check` tests that the keys open them, so a new secret column is covered by declaring it.
ENCRYPTED_COLUMNS: tuple[Column[Any], ...] = tuple(
    column
    for table in sorted(Base.metadata.tables.values(), key=lambda table: table.name)
    for column in table.columns
    if isinstance(column.type, EncryptedString)
)

__all__ = [
    "ENCRYPTED_COLUMNS",
    "AdminSession",
    "AdminUser",
    "ApiToken",
    "Attempt",
    "AuditEntry",
    "CleanupRun",
    "Delivery",
    "DeliveryAttempt",
    "Event",
    "IdempotencyKey",
    "Lease",
    "LoginThrottle",
    "Merchant",
    "Operation",
    "Payment",
    "PaymentLink",
    "PaymentMethod",
    "QuarantinedRow",
    "RateCounter",
    "Refund",
    "RefundLeg",
    "StreamLease",
    "Terminal",
    "WorkerHeartbeat",
]
