"""The expirer loop: payments past ``expires_at`` become ``expired`` within a second.

Safe to run in several workers at once: each payment is expired under its row lock and only if
still payable, so a second worker finds nothing left to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select

from paycenter.db import Database
from paycenter.payments import service
from paycenter.payments.models import PAYABLE, Payment

log = logging.getLogger("paycenter.expirer")


async def expire_due(db: Database, *, now: datetime, limit: int = 500, chunk: int = 50) -> int:
    async with db.reading() as session:
        ids = list(
            await session.scalars(
                select(Payment.id)
                .where(Payment.status.in_(PAYABLE), Payment.expires_at <= now)
                .order_by(Payment.expires_at)
                .limit(limit)
            )
        )
    expired = 0
    for start in range(0, len(ids), chunk):
        async with db.transaction() as session:
            for payment_id in ids[start : start + chunk]:
                payment = await service.lock(session, payment_id)
                expired += await service.expire_if_due(session, payment, now=now)
    return expired


class Expirer:
    def __init__(self, db: Database, *, clock: Callable[[], datetime], interval: float = 0.25) -> None:
        self.db = db
        self.clock = clock
        self.interval = interval
        self.last_cycle_at = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.last_cycle_at = time.monotonic()
            try:
                await expire_due(self.db, now=self.clock())
            except Exception:
                log.exception("expiring payments failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
