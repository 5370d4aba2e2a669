"""Attempts at pull providers (Kaspi): start, follow, close. Each step is its own transaction.

Starting is three steps, so that no HTTP call happens inside a transaction:
1. ``begin``: under the payment's lock, open the attempt (payment → processing), hold a terminal
   when the provider needs one, and work out what to ask (with the fee when the payer covers it);
2. the provider call, outside any transaction;
3. ``attach`` the provider's answer (its handle, the QR, the deadline), or ``close`` on failure.
The poller then reports what the provider says through ``apply``; every path that ends an
attempt goes through ``close``, which frees its terminal and makes the payment payable again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from paycenter.db import Database
from paycenter.errors import ApiError, Conflict, NotFound
from paycenter.payments import fees, service
from paycenter.payments.models import (
    PAYABLE,
    Attempt,
    AttemptStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
)
from paycenter.providers import terminals
from paycenter.providers.base import (
    METHOD_ALIASES,
    AttemptRef,
    AttemptStart,
    NotSent,
    PollResult,
    PollState,
    ProviderError,
    Started,
    TerminalRef,
)
from paycenter.providers.models import Terminal
from paycenter.providers.registry import Providers


class TerminalsBusy(ApiError):
    status_code = 409
    code = "terminals_busy"


@dataclass(frozen=True)
class Begun:
    provider: str
    request: AttemptStart


async def active_methods(session: AsyncSession) -> list[PaymentMethod]:
    return list(
        await session.scalars(
            select(PaymentMethod)
            .where(PaymentMethod.is_active.is_(True))
            .order_by(PaymentMethod.sort_order, PaymentMethod.code)
        )
    )


async def method(session: AsyncSession, code: str | None) -> PaymentMethod | None:
    if not code:
        return None
    code = METHOD_ALIASES.get(code, code)
    found = await session.get(PaymentMethod, code)
    if found is None or not found.is_active:
        raise ApiError(f"Unknown payment method {code!r}", code="unknown_payment_method", status_code=422)
    return found


async def live_attempt(session: AsyncSession, payment_id: str) -> Attempt | None:
    return await session.scalar(
        select(Attempt).where(Attempt.payment_id == payment_id, Attempt.status == AttemptStatus.LIVE)
    )


async def begin(
    session: AsyncSession,
    *,
    payment_id: str,
    method_code: str | None,
    providers: Providers,
    now: datetime,
    avoid: set[str] | None = None,
    default_method: str | None = None,
) -> Begun:
    payment = await service.lock(session, payment_id)
    if await service.expire_if_due(session, payment, now=now):
        raise Conflict("Payment has expired", code="expired")
    if payment.status not in PAYABLE:
        raise Conflict(f"Payment is {payment.status} and can no longer be paid")
    provider = providers.get(payment.provider) if payment.provider in providers else None
    if provider is None or not provider.pull:
        raise Conflict("This payment is not paid through a bank provider", code="wrong_provider")
    if await live_attempt(session, payment.id) is not None:
        raise Conflict("A payment attempt is already in progress", code="attempt_in_progress")
    # The payer's choice, else the merchant's at init (payment_method_id), else the caller's default.
    chosen = await method(session, method_code or payment.payment_method or default_method)
    fee_bp = chosen.fee_bp if chosen else 0
    covers = bool(chosen and chosen.payer_covers_fee)
    amount = fees.ask_for(payment.remaining_amount, fee_bp, covers, payment.currency)
    attempt = await service.open_attempt(session, payment, amount=amount, now=now)
    attempt.payment_method = chosen.code if chosen else None
    attempt.fee_bp = fee_bp
    attempt.payer_covers_fee = covers
    terminal = None
    if provider.needs_terminal:
        terminal = await terminals.allocate(session, holder=attempt.id, now=now, avoid=avoid)
        if terminal is None:
            raise TerminalsBusy("All terminals are busy right now. Please try again in a minute.")
        attempt.terminal_id = terminal.id
    service.touch(payment, PaymentStatus.PROCESSING, now)
    await session.flush()
    return Begun(
        provider=payment.provider,
        request=AttemptStart(
            attempt_id=attempt.id,
            payment_id=payment.id,
            amount=amount,
            currency=payment.currency,
            description=payment.description,
            payment_method=attempt.payment_method,
            terminal=terminals.ref(terminal) if terminal else None,
        ),
    )


async def attach(session: AsyncSession, *, attempt_id: str, started: Started, now: datetime) -> bool:
    """Record the provider's handle; False if the attempt was closed meanwhile (then cancel it)."""
    locked = await service.lock_attempt(session, attempt_id)
    if locked is None:
        raise NotFound("Attempt not found")
    payment, attempt = locked
    if attempt.status != AttemptStatus.LIVE:
        return False
    attempt.provider_ref = started.provider_ref
    attempt.qr_payload = started.qr_payload
    attempt.pay_link = started.pay_link
    attempt.confirm_timeout = int(started.confirm_timeout) if started.confirm_timeout else None
    attempt.poll_interval = started.poll_interval
    deadlines = [d for d in (started.expires_at, payment.expires_at) if d]
    attempt.expires_at = min(deadlines)
    attempt.next_poll_at = now
    return True


async def close(
    session: AsyncSession,
    attempt: Attempt,
    payment: Payment,
    status: AttemptStatus,
    *,
    now: datetime,
    error: str | None = None,
    free_terminal: bool = True,
) -> None:
    """End a live attempt without money: free its terminal, make the payment payable again.
    ``free_terminal`` False: its operation may still run on the terminal (it could not be
    cancelled there), so the attempt keeps holding it until the poller sees the operation end."""
    if attempt.status != AttemptStatus.LIVE:
        return
    if attempt.terminal_id and free_terminal:
        await terminals.free(session, terminal_id=attempt.terminal_id, holder=attempt.id)
    await service.end_attempt(session, attempt, payment, status, now=now, error=error)


async def close_by_id(
    session: AsyncSession,
    *,
    attempt_id: str,
    status: AttemptStatus,
    now: datetime,
    error: str | None = None,
    free_terminal: bool = True,
) -> Attempt | None:
    locked = await service.lock_attempt(session, attempt_id)
    if locked is None:
        return None
    payment, attempt = locked
    was_live = attempt.status == AttemptStatus.LIVE
    await close(session, attempt, payment, status, now=now, error=error, free_terminal=free_terminal)
    return attempt if was_live else None


async def apply(session: AsyncSession, *, attempt_id: str, result: PollResult, now: datetime) -> bool:
    """What the provider said about a live attempt; True if the attempt ended."""
    locked = await service.lock_attempt(session, attempt_id)
    if locked is None:
        return False
    payment, attempt = locked
    if attempt.status != AttemptStatus.LIVE:
        return False
    attempt.provider_status = result.raw_status[:40] or None
    attempt.poll_failures = 0
    attempt.trouble_since = None
    attempt.next_poll_at = None  # asked again on the next cycle (only trouble backs off)
    if result.state is PollState.SUCCEEDED:
        assert result.provider_txn_id is not None
        gross = result.amount if result.amount is not None else attempt.amount
        code = result.payment_method or attempt.payment_method
        fee_bp = attempt.fee_bp
        if code and code != attempt.payment_method:  # paid another way than chosen: that way's fee
            actual = await session.get(PaymentMethod, code)
            fee_bp = actual.fee_bp if actual else fee_bp
        await service.record_operation(
            session,
            payment,
            provider_txn_id=result.provider_txn_id,
            amount=gross,
            fee=fees.fee_of(gross, fee_bp),
            now=now,
            attempt=attempt,
            payment_method=code,
            terminal_id=attempt.terminal_id,
            payer_covers_fee=attempt.payer_covers_fee,
            paid_by=result.paid_by,
        )
        if attempt.terminal_id:
            await terminals.free(session, terminal_id=attempt.terminal_id, holder=attempt.id)
        return True
    if result.state is PollState.FAILED:
        await close(session, attempt, payment, AttemptStatus.FAILED, now=now, error=result.error)
        return True
    if result.state is PollState.CANCELLED:
        await close(session, attempt, payment, AttemptStatus.CANCELLED, now=now, error=result.error)
        return True
    if result.expires_at is not None:
        attempt.expires_at = min(result.expires_at, payment.expires_at)
    return False


async def apply_late(session: AsyncSession, *, attempt_id: str, result: PollResult, now: datetime) -> bool:
    """A try we had closed was paid after all: count the money (``paid_late`` if the payment
    has closed meanwhile). True if counted."""
    if result.provider_txn_id is None:
        return False
    locked = await service.lock_attempt(session, attempt_id)
    if locked is None:
        return False
    payment, attempt = locked
    if attempt.status == AttemptStatus.SUCCEEDED:
        return False
    gross = result.amount if result.amount is not None else attempt.amount
    counted = await service.record_operation(
        session,
        payment,
        provider_txn_id=result.provider_txn_id,
        amount=gross,
        fee=fees.fee_of(gross, attempt.fee_bp),
        now=now,
        attempt=attempt,
        payment_method=result.payment_method or attempt.payment_method,
        terminal_id=attempt.terminal_id,
        payer_covers_fee=attempt.payer_covers_fee,
        paid_by=result.paid_by,
    )
    return counted.counted


async def watch_later(session: AsyncSession, *, attempt_id: str, at: datetime) -> None:
    await session.execute(
        update(Attempt)
        .where(Attempt.id == attempt_id)
        .values(next_poll_at=at)
        .execution_options(synchronize_session=False)
    )


async def trouble(
    session: AsyncSession, *, attempt_id: str, error: str, now: datetime, give_up_after: float, max_backoff: float
) -> bool:
    """The provider failed or does not know: back off, and give up after a while (True then)."""
    locked = await service.lock_attempt(session, attempt_id)
    if locked is None:
        return False
    payment, attempt = locked
    if attempt.status != AttemptStatus.LIVE:
        return False
    attempt.poll_failures += 1
    attempt.trouble_since = attempt.trouble_since or now
    attempt.error = error[:500]
    if (now - attempt.trouble_since).total_seconds() >= give_up_after:
        await close(
            session,
            attempt,
            payment,
            AttemptStatus.FAILED,
            now=now,
            error=f"the provider gave no answer for {int(give_up_after)} s: {error}"[:500],
        )
        return True
    attempt.next_poll_at = now + timedelta(seconds=min(2 ** min(attempt.poll_failures, 10) * 0.5, max_backoff))
    return False


def ref(attempt: Attempt, currency: str, terminal: Terminal | TerminalRef | None) -> AttemptRef:
    assert attempt.provider_ref is not None
    return AttemptRef(
        attempt_id=attempt.id,
        provider_ref=attempt.provider_ref,
        amount=attempt.amount,
        currency=currency,
        terminal=terminals.ref(terminal) if isinstance(terminal, Terminal) else terminal,
        last_status=attempt.provider_status,
        confirm_timeout=float(attempt.confirm_timeout) if attempt.confirm_timeout else None,
    )


async def start(
    db: Database,
    providers: Providers,
    *,
    payment_id: str,
    method_code: str | None,
    clock: Callable[[], datetime],
    default_method: str | None = None,
) -> Attempt:
    """The payer starts paying (or pays the rest): the three steps above, end to end.

    A terminal that did nothing with the request (busy with an operation of its own: 107; its
    token refused; no connection) is left out and the next free one is tried, up to
    ``TERMINAL_TRIES``; when none is left the payer hears why the last one refused."""
    refused: set[str] = set()  # terminals that did nothing with this payer's request
    last_refusal = ""
    for tries_left in range(TERMINAL_TRIES - 1, -1, -1):
        try:
            async with db.transaction() as session:
                begun = await begin(
                    session,
                    payment_id=payment_id,
                    method_code=method_code,
                    providers=providers,
                    now=clock(),
                    avoid=refused,
                    default_method=default_method,
                )
        except TerminalsBusy:
            if not refused:
                raise
            raise _not_accepted(last_refusal) from None
        provider = providers.get(begun.provider)
        attempt_id = begun.request.attempt_id
        try:
            started = await provider.start(begun.request)
            break
        except ProviderError as exc:
            terminal = begun.request.terminal
            async with db.transaction() as session:
                await close_by_id(
                    session, attempt_id=attempt_id, status=AttemptStatus.FAILED, now=clock(), error=exc.message
                )
            if not (isinstance(exc, NotSent) and terminal is not None and tries_left > 0):
                raise _not_accepted(exc.message) from None
            refused.add(terminal.id)
            last_refusal = exc.message
    async with db.transaction() as session:
        attached = await attach(session, attempt_id=attempt_id, started=started, now=clock())
    if not attached:  # closed while we waited (the payment expired or was cancelled)
        await cancel_at_provider(providers, begun.provider, ref_of_started(begun, started))
    async with db.reading() as session:
        attempt = await session.get(Attempt, attempt_id)
    assert attempt is not None
    return attempt


def ref_of_started(begun: Begun, started: Started) -> AttemptRef:
    return AttemptRef(
        attempt_id=begun.request.attempt_id,
        provider_ref=started.provider_ref,
        amount=begun.request.amount,
        currency=begun.request.currency,
        terminal=begun.request.terminal,
    )


TERMINAL_TRIES = 3


def _not_accepted(reason: str) -> ApiError:
    return ApiError(f"The bank did not accept the payment: {reason}", code="provider_error", status_code=502)


async def cancel_at_provider(providers: Providers, provider_name: str, attempt: AttemptRef) -> bool:
    """Best effort: the provider's own deadline ends the try anyway. True if it was cancelled."""
    try:
        await providers.get(provider_name).cancel(attempt)
    except ProviderError:
        return False
    return True


async def payer_cancel(
    db: Database, providers: Providers, *, payment_id: str, clock: Callable[[], datetime]
) -> Attempt | None:
    """The payer cancels the live attempt on our page: at the provider first, then here."""
    async with db.reading() as session:
        attempt = await live_attempt(session, payment_id)
        if attempt is None:
            return None
        payment = await session.get(Payment, payment_id)
        assert payment is not None
        terminal = await session.get(Terminal, attempt.terminal_id) if attempt.terminal_id else None
    cancelled = attempt.provider_ref is None or await cancel_at_provider(
        providers, payment.provider, ref(attempt, payment.currency, terminal)
    )
    async with db.transaction() as session:
        return await close_by_id(
            session,
            attempt_id=attempt.id,
            status=AttemptStatus.CANCELLED,
            now=clock(),
            error="cancelled by the payer",
            free_terminal=cancelled,  # else held until the terminal ends it (the poller watches)
        )
