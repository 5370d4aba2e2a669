"""The port through which a provider that decides on the spot reports to payments.

Pull providers (Kaspi) never change a payment: they answer the poller with a ``PollResult`` and
payments applies it. The sandbox has no bank to poll: the payer's button is its bank, and it
decides while the request is in hand. It reports through this port, which payments implements
(``payments.port``) over one payment it holds locked in the caller's transaction, so the provider
imports nothing of payments and every change still goes through payments' service.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from paycenter.providers.base import PollResult


class PaymentPort(Protocol):
    """One payment, locked in the caller's transaction, as a provider that decides on the spot
    sees it: what it may charge, and how each try it decided ended."""

    @property
    def payment_id(self) -> str: ...

    @property
    def provider(self) -> str: ...

    @property
    def currency(self) -> str: ...

    async def recorded(self, provider_txn_id: str) -> bool:
        """Whether money with this provider transaction id is already recorded (a report seen
        twice counts once)."""
        ...

    async def payable(self, *, now: datetime) -> int | None:
        """What remains to be paid, in minor units. None: its time was up, and it has just expired.
        A payment closed otherwise raises ``Conflict``."""
        ...

    async def report(self, *, amount: int, result: PollResult, now: datetime) -> bool:
        """A try of ``amount`` (minor units) that the provider decided at once: ``result.state``
        succeeded (``provider_txn_id``, ``payment_method``), failed or cancelled (``error``).
        True if the payment is now paid in full."""
        ...
