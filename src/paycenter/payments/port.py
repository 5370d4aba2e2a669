"""Payments' side of ``providers.port``: a provider that decides on the spot (the sandbox) reports
through it on one payment locked in the caller's transaction, and every change goes through the
payment service, as the poller's application of a pull provider's answers does."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from paycenter.errors import Conflict
from paycenter.payments import service
from paycenter.payments.models import PAYABLE, AttemptStatus, Payment, PaymentStatus
from paycenter.providers.base import PollResult, PollState

# How a try the provider decided without money ends.
_ENDED = {PollState.FAILED: AttemptStatus.FAILED, PollState.CANCELLED: AttemptStatus.CANCELLED}


class LockedPayment:
    """``providers.port.PaymentPort`` over a payment the caller's transaction holds locked."""

    def __init__(self, session: AsyncSession, payment: Payment) -> None:
        self._session = session
        self._payment = payment

    @property
    def payment_id(self) -> str:
        return self._payment.id

    @property
    def provider(self) -> str:
        return self._payment.provider

    @property
    def currency(self) -> str:
        return self._payment.currency

    async def recorded(self, provider_txn_id: str) -> bool:
        found = await service.find_operation(
            self._session, provider=self._payment.provider, provider_txn_id=provider_txn_id
        )
        return found is not None

    async def payable(self, *, now: datetime) -> int | None:
        payment = self._payment
        if await service.expire_if_due(self._session, payment, now=now):
            return None
        if payment.status not in PAYABLE:
            raise Conflict(f"Payment is {payment.status} and can no longer be paid")
        return payment.remaining_amount

    async def report(self, *, amount: int, result: PollResult, now: datetime) -> bool:
        session, payment = self._session, self._payment
        if result.state is not PollState.SUCCEEDED and result.state not in _ENDED:
            # Only a decided try can be reported: a pending one would stay live with no one to ask.
            raise ValueError(f"a try reported on the spot must be decided, not {result.state}")
        attempt = await service.open_attempt(session, payment, amount=amount, now=now)
        if result.state is PollState.SUCCEEDED:
            if result.provider_txn_id is None:
                raise ValueError("money reported without its provider transaction id")
            await service.record_operation(
                session,
                payment,
                provider_txn_id=result.provider_txn_id,
                amount=amount if result.amount is None else result.amount,
                now=now,
                attempt=attempt,
                payment_method=result.payment_method,
            )
            return payment.status == PaymentStatus.PAID
        await service.end_attempt(session, attempt, payment, _ENDED[result.state], now=now, error=result.error)
        return False


async def locked(session: AsyncSession, payment_id: str) -> LockedPayment:
    """The payment, locked for the rest of the caller's transaction, as a provider's port."""
    return LockedPayment(session, await service.lock(session, payment_id))
