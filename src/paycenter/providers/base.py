"""The provider interface: how paycenter talks to whoever moves the money.

A provider starts attempts, reports what happened to them and sends refunds. Calls that reach a
bank are made outside any database transaction; their results come back through the payment
service, which is the only code that changes payments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

from paycenter.payments.models import Payment, Refund


@dataclass(frozen=True)
class RefundOutcome:
    """``succeeded`` None means the provider accepted it and will say later."""

    succeeded: bool | None
    provider_ref: str | None = None
    error: str | None = None


class Provider(Protocol):
    name: ClassVar[str]
    # Pull providers don't call back: the poller asks them about live attempts.
    pull: ClassVar[bool]

    async def refund(self, payment: Payment, refund: Refund) -> RefundOutcome: ...
