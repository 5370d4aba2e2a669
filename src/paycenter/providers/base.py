"""The provider interface: how paycenter talks to whoever moves the money.

A provider starts attempts, reports what happened to them, cancels them and sends refunds. Its
calls reach a bank or a terminal, so they are made outside any database transaction and take
plain values (no ORM rows); what they report goes back through the payment service, the only
code that changes payments. Pull providers (Kaspi) never call back: the poller asks them.

What only some providers can do is a capability, a Protocol of its own below ``Provider``
(``ReportsReturns``, ``ClearsTerminal``, ``KeepsTokens``, ``RemembersTerminals``): callers ask
``isinstance(provider, Capability)``, never a concrete class or ``getattr``, so mypy checks the call
against the capability's signature and a new provider gains a path by implementing the method.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar, Protocol, runtime_checkable

# The old system's names for Kaspi payment methods, still sent by merchants and forms.
METHOD_ALIASES = {"kaspi_kredit": "kaspi_credit", "kaspi_rassrochka": "kaspi_installment_12"}


class ProviderError(Exception):
    """A provider call failed. ``retryable``: worth asking again later (network, -999, ...)."""

    def __init__(self, message: str, *, code: str | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable


class NotSent(ProviderError):
    """The provider refused before acting (e.g. the terminal is busy): safe to send again later."""


class NeedsOperator(Exception):
    """Only a person can tell what happened to the money. Not a ProviderError, so no loop treats it
    as trouble to retry or give up on: the poller sets the attempt aside (quarantine, with this
    message and an alert) for an operator; it is never closed as failed, nor credited with a guess."""


class UnreadableSuccess(NeedsOperator):
    """The provider says the money was taken but not how much in a form we can read
    (shared/reference/kaspi.md §B: "a success whose amount cannot be parsed stays a success
    needing an operator, never a failure")."""


class UnknownOutcome(NeedsOperator):
    """The provider has not known the outcome for too long (kaspi.md §B: an independent client
    hands a terminal operation to manual review after 180 s of ``unknown``)."""


class TokenRejected(NotSent):
    """The terminal refused the access token (HTTP 401/403): nothing was done. Renewed with the
    refresh token where there is one; otherwise only `paycenter terminal register` helps."""


class CancelUnsupported(ProviderError):
    """The terminal has no ``/v2/cancel`` (no independent contract has it; kaspi.md §B)."""


@dataclass(frozen=True)
class TerminalRef:
    id: str
    name: str
    base_url: str
    access_token: str
    camera_url: str | None = None
    # The /v2/register pair's other half and the client name it was issued to (renewal needs
    # both), when it expires and when it was issued; None for a static token.
    client_name: str | None = None
    refresh_token: str | None = None
    token_expires_at: datetime | None = None
    token_renewed_at: datetime | None = None
    cancel_supported: bool | None = None  # None: not known yet


class TerminalStore(Protocol):
    """Where a terminal provider keeps what it learns about a terminal between calls and processes
    (renewed tokens, whether it can cancel). Each method is its own short transaction, called
    after the terminal answered, never around the call."""

    async def current(self, terminal_id: str) -> TerminalRef | None: ...

    async def save_tokens(self, terminal_id: str, *, replaced: str, renewed: TerminalRef) -> bool: ...

    async def note(
        self, terminal_id: str, *, cancel_supported: bool | None = None, trouble: str | None = None
    ) -> None: ...


@dataclass(frozen=True)
class AttemptStart:
    """What a provider needs to start a try."""

    attempt_id: str
    payment_id: str
    amount: int  # minor units asked from the payer
    currency: str
    description: str
    payment_method: str | None = None
    terminal: TerminalRef | None = None


@dataclass(frozen=True)
class Started:
    provider_ref: str
    qr_payload: str | None = None
    pay_link: str | None = None
    expires_at: datetime | None = None
    # Seconds the payer has to confirm once the QR is scanned (a new deadline from then on).
    confirm_timeout: float | None = None
    # Whole seconds between two status polls that the provider asks for this try (Kaspi QR's
    # StatusPollingInterval); None: the provider's ``poll_every``.
    poll_interval: int | None = None


class PollState(enum.StrEnum):
    WAITING = "waiting"  # created, the payer has not acted yet
    ACTIVE = "active"  # scanned / in progress at the provider
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # the payer cancelled at the provider (the terminal, the app)
    UNKNOWN = "unknown"  # the provider itself does not know right now


@dataclass(frozen=True)
class AttemptRef:
    """A live attempt as the poller hands it to a provider."""

    attempt_id: str
    provider_ref: str
    amount: int
    currency: str
    terminal: TerminalRef | None = None
    last_status: str | None = None  # the raw status the previous poll saw
    confirm_timeout: float | None = None


@dataclass(frozen=True)
class PollResult:
    state: PollState
    raw_status: str = ""
    provider_txn_id: str | None = None
    amount: int | None = None  # gross minor units actually paid, when known
    payment_method: str | None = None
    # How the payer paid at the provider, where a refund must go back the same way ("qr" | "card").
    paid_by: str | None = None
    error: str | None = None
    # A new deadline for the try, e.g. once scanned the confirmation timeout applies.
    expires_at: datetime | None = None


@dataclass(frozen=True)
class ReturnQr:
    """A QR the payer scans in the bank's app before their money can go back (Kaspi QR r2's
    return QR): who scans it tells the bank whose purchase may be refunded."""

    payload: str  # the text to render as the QR image
    ref: str  # the provider's id for it (Kaspi's QrReturnId)
    expires_at: datetime | None = None  # not scanned by then: the refund is not done


@dataclass(frozen=True)
class RefundLegRef:
    leg_id: str
    amount: int
    currency: str
    provider_txn_id: str  # the operation being refunded
    attempt_ref: str | None  # its attempt's provider handle (QR payment id)
    terminal: TerminalRef | None = None
    provider_ref: str | None = None  # the refund's own handle, once the provider accepted it
    # The return QR the leg showed the payer, if the provider asked for one (``ReturnQr``).
    return_qr_ref: str | None = None
    return_qr_expires_at: datetime | None = None
    paid_by: str | None = None  # how the operation was paid (PollResult.paid_by), where known


@dataclass(frozen=True)
class RefundOutcome:
    """``succeeded`` None: accepted, the provider will say later (poll with ``provider_ref``), or,
    with ``return_qr``, once the payer has scanned that QR (``poll_refund`` follows the scan).
    ``payer_ready`` (from ``poll_refund``): the payer scanned it and may be refunded: call
    ``refund`` again to send the money, marked as sent first."""

    succeeded: bool | None
    provider_ref: str | None = None
    error: str | None = None
    return_qr: ReturnQr | None = None
    payer_ready: bool = False
    poll_in: timedelta | None = None  # when to ask again (succeeded None); None: soon


class Provider(Protocol):
    name: ClassVar[str]
    pull: ClassVar[bool]  # the poller asks it about live attempts
    needs_terminal: ClassVar[bool]  # an attempt holds a terminal of the pool while live
    # Concurrent calls the poller may make to it (per terminal the bound is always one).
    max_in_flight: ClassVar[int]
    # Currencies it can charge in; None: any.
    currencies: ClassVar[tuple[str, ...] | None]
    # Least time between two status polls of one attempt (0: every poller cycle), unless the
    # attempt has its own (``Started.poll_interval``, kept in ``attempts.poll_interval``).
    poll_every: timedelta
    # Why refunds cannot go through this provider as configured (Kaspi QR's r1 scheme has no
    # refund API), said to whoever asks for one; None: they can.
    refunds_refused: str | None

    async def start(self, request: AttemptStart) -> Started: ...

    async def poll(self, attempt: AttemptRef) -> PollResult: ...

    async def cancel(self, attempt: AttemptRef) -> None: ...

    async def refund(self, leg: RefundLegRef) -> RefundOutcome: ...

    async def poll_refund(self, leg: RefundLegRef) -> RefundOutcome: ...

    async def close(self) -> None: ...


# --- capabilities: what only some providers can do (``isinstance(provider, Capability)``) ------


@runtime_checkable
class ReportsReturns(Protocol):
    """Says how much of a purchase has gone back (Kaspi QR's payment/details), so that a refund leg
    sent without an answer is looked up (``refunds.resync``) instead of failed or sent twice."""

    async def returned(self, qr_payment_id: str) -> tuple[int, int]:
        """(total, still returnable) of the purchase with this attempt handle, in minor units."""
        ...


@runtime_checkable
class ClearsTerminal(Protocol):
    """Can end whatever operation runs on a terminal without knowing its handle (a bare
    ``/v2/cancel``): the poller frees a terminal whose start was never recorded this way."""

    async def clear(self, terminal: TerminalRef) -> None: ...


@runtime_checkable
class KeepsTokens(Protocol):
    """Holds per-terminal credentials that expire: the poller has it renew an idle terminal's
    token in time, since no call would renew it otherwise."""

    async def keep_token(self, terminal: TerminalRef) -> None: ...


@runtime_checkable
class RemembersTerminals(Protocol):
    """Keeps what it learns about a terminal (renewed tokens, features) in a ``TerminalStore``,
    given once the database is up (``Providers.attach``); None: it learns for this process only."""

    store: TerminalStore | None
