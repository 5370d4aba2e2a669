"""The expirer loop: payments past ``expires_at`` become ``expired`` within a second.

Safe to run in several workers at once: each payment is expired under its row lock and only if
still payable, so a second worker finds nothing left to do. Payments are expired in chunks, a
transaction each; a payment that cannot be expired (its row holds what no encoder or key can
read) is quarantined alone, and every other payment of its chunk still expires in that pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paycenter import quarantine
from paycenter.db import Database
from paycenter.jobs.loop import BackgroundLoop
from paycenter.payments import service
from paycenter.payments.models import PAYABLE, Payment
from paycenter.quarantine import Loop

log = logging.getLogger("paycenter.expirer")


async def expire_due(db: Database, *, now: datetime, limit: int = 500, chunk: int = 50) -> int:
    async with db.reading() as session:
        ids = list(
            await session.scalars(
                select(Payment.id)
                .where(
                    Payment.status.in_(PAYABLE),
                    Payment.expires_at <= now,
                    quarantine.not_quarantined(Loop.EXPIRER, Payment.id),
                )
                .order_by(Payment.expires_at)
                .limit(limit)
            )
        )

    async def expire(session: AsyncSession, payment_ids: list[str]) -> int:
        count = 0
        for payment_id in payment_ids:
            payment = await service.lock(session, payment_id)
            count += await service.expire_if_due(session, payment, now=now)
        return count

    done = await quarantine.in_batches(
        db, loop=Loop.EXPIRER, items=ids, size=chunk, handle=expire, ids=lambda pid: (pid, pid), now=now
    )
    return sum(done)


class Expirer(BackgroundLoop):
    def __init__(self, db: Database, *, clock: Callable[[], datetime], interval: float = 0.25) -> None:
        super().__init__(db, clock=clock, interval=interval, log=log, failure="expiring payments failed")

    async def step(self) -> int:
        return await expire_due(self.db, now=self.clock())
