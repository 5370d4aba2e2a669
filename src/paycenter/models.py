"""Every table, imported in one place so Alembic and tests see the whole schema."""

from paycenter.idempotency.models import IdempotencyKey
from paycenter.jobs.models import CleanupRun, WorkerHeartbeat
from paycenter.leadership import Lease
from paycenter.merchants.models import ApiToken, Merchant
from paycenter.payments.models import Attempt, Event, Operation, Payment, PaymentMethod, Refund, RefundLeg
from paycenter.providers.models import Terminal
from paycenter.webhooks.models import Delivery, DeliveryAttempt

__all__ = [
    "ApiToken",
    "Attempt",
    "CleanupRun",
    "Delivery",
    "DeliveryAttempt",
    "Event",
    "IdempotencyKey",
    "Lease",
    "Merchant",
    "Operation",
    "Payment",
    "PaymentMethod",
    "Refund",
    "RefundLeg",
    "Terminal",
    "WorkerHeartbeat",
]
