"""The built-in test provider: the payer's buttons on the payment page are the bank."""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Any, ClassVar

from paycenter.errors import Conflict, Unprocessable
from paycenter.money import MoneyError, to_minor, typed
from paycenter.providers.base import (
    AttemptRef,
    AttemptStart,
    PollResult,
    PollState,
    ProviderError,
    RefundLegRef,
    RefundOutcome,
    Started,
)
from paycenter.providers.port import PaymentPort


class SandboxProvider:
    """No bank: the page's buttons decide each attempt on the spot (see ``payer_action``)."""

    name: ClassVar[str] = "sandbox"
    pull: ClassVar[bool] = False
    needs_terminal: ClassVar[bool] = False
    max_in_flight: ClassVar[int] = 1
    currencies: ClassVar[tuple[str, ...] | None] = None
    poll_every = timedelta(0)  # not polled: the payer's page reports
    refunds_refused: str | None = None

    async def start(self, request: AttemptStart) -> Started:
        raise ProviderError("sandbox attempts are started by the payment page", retryable=False)

    async def poll(self, attempt: AttemptRef) -> PollResult:
        raise ProviderError("sandbox attempts are never polled", retryable=False)

    async def cancel(self, attempt: AttemptRef) -> None:
        return None

    async def refund(self, leg: RefundLegRef) -> RefundOutcome:
        return RefundOutcome(succeeded=True, provider_ref=f"sandbox-refund-{leg.leg_id}")

    async def poll_refund(self, leg: RefundLegRef) -> RefundOutcome:
        return RefundOutcome(succeeded=True, provider_ref=leg.provider_ref)

    async def close(self) -> None:
        return None


class PayerAction(enum.StrEnum):
    PAY = "pay"
    CANCEL = "cancel"
    FAIL = "fail"


class Outcome(enum.StrEnum):
    PAID = "paid"
    PARTIAL = "partial"
    CANCELLED = "cancelled"
    FAILED = "failed"
    DUPLICATE = "duplicate"
    EXPIRED = "expired"


async def payer_action(
    payment: PaymentPort,
    *,
    action: PayerAction,
    amount: Any | None,
    checkout_id: str,
    now: datetime,
) -> Outcome:
    """One sandbox attempt, decided on the spot by the payer's button, reported through the port
    of the payment that payments holds locked (``payments.port.locked``).

    ``checkout_id`` comes from the rendered form and names the operation, so a double-submitted
    form is the same operation reported twice and counts once. Whoever posts the form chooses it,
    so it names an operation of this payment only: the provider transaction id is scoped by the
    payment's id (a real bank's ids are its own and unique; a payer's are not).
    """
    if payment.provider != SandboxProvider.name:
        raise Conflict("This payment is not a sandbox payment", code="wrong_provider")
    txn_id = f"sb:{payment.payment_id}:{checkout_id}"  # ≤ 3 + 32 + 1 + 64 = 100, the column's width
    if await payment.recorded(txn_id):
        return Outcome.DUPLICATE
    remaining = await payment.payable(now=now)
    if remaining is None:
        return Outcome.EXPIRED
    try:
        wanted = typed(amount) if isinstance(amount, str) else amount
        minor = remaining if wanted is None else to_minor(wanted, payment.currency)
    except MoneyError as exc:
        raise Unprocessable(str(exc), code="invalid_amount") from None
    if minor > remaining:
        raise Unprocessable("Amount exceeds what remains to be paid", code="invalid_amount")
    if action is PayerAction.PAY:
        decided = PollResult(PollState.SUCCEEDED, provider_txn_id=txn_id, amount=minor, payment_method="sandbox")
        paid = await payment.report(amount=minor, result=decided, now=now)
        return Outcome.PAID if paid else Outcome.PARTIAL
    if action is PayerAction.CANCEL:
        await payment.report(
            amount=minor, result=PollResult(PollState.CANCELLED, error="cancelled by the payer"), now=now
        )
        return Outcome.CANCELLED
    await payment.report(
        amount=minor, result=PollResult(PollState.FAILED, error="declined by the sandbox bank"), now=now
    )
    return Outcome.FAILED
