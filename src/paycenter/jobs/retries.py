"""Operators' view of the quarantine: what each loop set aside and why, and the retry after a fix.

A retry takes the mark off, so the row is back in its loop's due set, and puts the row itself
where its loop looks first: a delivery is due now with a fresh round of retries, a refund leg and
an attempt are followed on the next cycle. The CLI and the admin panel both come through here.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from paycenter import quarantine
from paycenter.payments import attempts, refunds
from paycenter.quarantine import Loop, QuarantinedRow
from paycenter.webhooks import service as webhooks


def as_dict(mark: QuarantinedRow) -> dict[str, object]:
    return {
        "loop": mark.loop,
        "row_id": mark.row_id,
        "payment_id": mark.payment_id,
        "reason": mark.reason,
        "failures": mark.failures,
        "since": mark.since.isoformat(),
        "last_failed_at": mark.last_failed_at.isoformat(),
    }


async def listed(session: AsyncSession, *, loop: str | None = None, limit: int = 500) -> list[QuarantinedRow]:
    return await quarantine.rows(session, loop=loop, limit=limit)


async def retry(session: AsyncSession, *, loop: str, row_id: str, now: datetime, retries: int) -> bool:
    """Let one row out of quarantine; False if it was not there."""
    if not await quarantine.release(session, loop=loop, row_id=row_id):
        return False
    if loop == Loop.DISPATCHER:
        await webhooks.requeue(session, delivery_id=row_id, retries=retries, now=now)
    elif loop == Loop.REFUNDS:
        await refunds.follow_now(session, leg_id=row_id, now=now)
    elif loop == Loop.POLLER:
        await attempts.watch_later(session, attempt_id=row_id, at=now)
    return True


async def retry_many(
    session: AsyncSession, *, now: datetime, retries: int, loop: str | None = None, row_id: str | None = None
) -> list[QuarantinedRow]:
    """Every mark (of one loop, or of one row id in whichever loop holds it) let out; returns them."""
    chosen = [m for m in await quarantine.rows(session, loop=loop, limit=10_000) if row_id in (None, m.row_id)]
    for mark in chosen:
        await retry(session, loop=mark.loop, row_id=mark.row_id, now=now, retries=retries)
    return chosen
