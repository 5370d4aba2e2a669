"""Every table, imported in one place so Alembic and tests see the whole schema."""

from paycenter.admin.models import AdminSession, AdminUser, AuditEntry, LoginThrottle
from paycenter.idempotency.models import IdempotencyKey
from paycenter.jobs.models import CleanupRun, WorkerHeartbeat
from paycenter.leadership import Lease
from paycenter.merchants.models import ApiToken, Merchant
from paycenter.payments.models import Attempt, Event, Operation, Payment, PaymentMethod, Refund, RefundLeg
from paycenter.providers.models import Terminal
from paycenter.quarantine import QuarantinedRow
from paycenter.ratelimit import RateCounter
from paycenter.webhooks.models import Delivery, DeliveryAttempt

__all__ = [
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
    "PaymentMethod",
    "QuarantinedRow",
    "RateCounter",
    "Refund",
    "RefundLeg",
    "Terminal",
    "WorkerHeartbeat",
]
