"""The daily cleanup (the seed's "Автоочистка"): unpaid expired and cancelled payments go.

Rules, each checked again under the payment's row lock just before it is deleted:
- only ``expired`` and ``cancelled`` payments that never received money (anything with money,
  partial or late, is kept for good);
- only once they have been closed longer than the retention period (24 h by default);
- only once every webhook about them reached a final state, delivered or given up ("вебхук
  перед удалением"): the merchant hears about the expiry before the row disappears.
Every run, scheduled or by hand, is recorded in ``cleanup_runs`` with its counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter
from sqlalchemy import ColumnElement, Exists, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from paycenter import leadership, quarantine, ratelimit
from paycenter.config import Settings
from paycenter.db import Database
from paycenter.idempotency import service as idempotency
from paycenter.jobs.loop import BackgroundLoop
from paycenter.jobs.models import CleanupRun
from paycenter.merchants import service as merchants
from paycenter.operators import service as admin_service
from paycenter.payments import service as payments
from paycenter.payments.models import Payment, PaymentStatus
from paycenter.quarantine import Loop
from paycenter.webhooks.models import Delivery, DeliveryStatus

log = logging.getLogger("paycenter.cleanup")
CLOSED = (PaymentStatus.EXPIRED, PaymentStatus.CANCELLED)
LEASE = "cleanup"


@dataclass
class CleanupResult:
    removed: list[str] = field(default_factory=list)
    waiting_for_webhooks: int = 0
    kept_with_money: int = 0
    idempotency_keys_removed: int = 0
    stale_rows_removed: int = 0  # admin sessions, login counters, rate-limit windows past use


def _closed_at() -> ColumnElement[datetime]:
    return func.coalesce(Payment.cancelled_at, Payment.expires_at)


def _webhook_pending() -> Exists:
    return exists().where(Delivery.payment_id == Payment.id, Delivery.status == DeliveryStatus.PENDING)


def _removable(cutoff: datetime) -> list[ColumnElement[bool]]:
    return [
        Payment.status.in_(CLOSED),
        Payment.paid_amount == 0,
        _closed_at() < cutoff,
        ~_webhook_pending(),
        quarantine.not_quarantined(Loop.CLEANUP, Payment.id),
    ]


async def run(
    db: Database,
    *,
    now: datetime,
    retention: timedelta,
    idempotency_ttl: timedelta,
    dry_run: bool = False,
    trigger: str = "manual",
    batch: int = 200,
) -> CleanupResult:
    """One cleanup run. ``dry_run`` lists what would go and changes nothing (but the run log)."""
    cutoff = now - retention
    result = CleanupResult()
    async with db.reading() as session:
        candidates = list(
            await session.scalars(select(Payment.id).where(*_removable(cutoff)).order_by(Payment.created_at))
        )
        result.waiting_for_webhooks = int(
            await session.scalar(
                select(func.count())
                .select_from(Payment)
                .where(
                    Payment.status.in_(CLOSED),
                    Payment.paid_amount == 0,
                    _closed_at() < cutoff,
                    _webhook_pending(),
                )
            )
            or 0
        )
        result.kept_with_money = int(
            await session.scalar(
                select(func.count()).select_from(Payment).where(Payment.status.in_(CLOSED), Payment.paid_amount > 0)
            )
            or 0
        )
    if dry_run:
        result.removed = candidates
    else:
        # A batch per transaction; a payment that cannot be deleted (something else still
        # points at it) is quarantined, and the rest of its batch still goes.
        removed = await quarantine.in_batches(
            db,
            loop=Loop.CLEANUP,
            items=candidates,
            size=batch,
            handle=lambda session, ids: _delete(session, ids, cutoff),
            ids=lambda pid: (pid, pid),
            now=now,
        )
        result.removed = [pid for done in removed for pid in done]
        async with db.transaction() as session:
            result.idempotency_keys_removed = await idempotency.purge_stale(session, now=now, ttl=idempotency_ttl)
            result.stale_rows_removed = await admin_service.purge_stale(session, now=now)
            result.stale_rows_removed += await ratelimit.purge_stale(session, now=now)
            result.stale_rows_removed += await merchants.purge_lapsed_streams(session, now=now)
    async with db.transaction() as session:
        session.add(
            CleanupRun(
                started_at=now,
                finished_at=now,
                dry_run=dry_run,
                trigger=trigger,
                removed=len(result.removed),
                waiting_for_webhooks=result.waiting_for_webhooks,
                kept_with_money=result.kept_with_money,
                idempotency_keys_removed=result.idempotency_keys_removed,
            )
        )
    log.info(
        "cleanup (%s%s): removed %d, waiting for webhooks %d, kept with money %d, idempotency keys %d, "
        "stale sessions and counters %d",
        trigger,
        ", dry run" if dry_run else "",
        len(result.removed),
        result.waiting_for_webhooks,
        result.kept_with_money,
        result.idempotency_keys_removed,
        result.stale_rows_removed,
    )
    return result


async def _delete(session: AsyncSession, ids: list[str], cutoff: datetime) -> list[str]:
    return await payments.delete_closed(session, ids, still=_removable(cutoff))


class CleanupJob(BackgroundLoop):
    """Runs the cleanup on its cron schedule, in one process at a time (the ``cleanup`` lease).

    A run missed while no worker was up (the host was down at 03:00) happens as soon as one is.
    Every ``check_every`` seconds it looks whether a run is due.
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        owner: str,
        clock: Callable[[], datetime],
        check_every: float = 30.0,
    ) -> None:
        super().__init__(db, clock=clock, interval=check_every, log=log, failure="cleanup failed")
        self.owner = owner
        self.schedule = settings.cleanup_schedule
        self.zone = ZoneInfo(settings.cleanup_timezone)
        self.retention = timedelta(seconds=settings.cleanup_retention_seconds)
        self.idempotency_ttl = timedelta(seconds=settings.idempotency_ttl_seconds)

    def due_since(self, now: datetime) -> datetime:
        """The latest scheduled moment at or before ``now``."""
        return croniter(self.schedule, now.astimezone(self.zone)).get_prev(datetime)

    async def run_if_due(self) -> CleanupResult | None:
        now = self.clock()
        if not await leadership.hold(self.db, LEASE, owner=self.owner, ttl=timedelta(minutes=10), now=now):
            return None
        due = self.due_since(now)
        async with self.db.reading() as session:
            last = await session.scalar(
                select(func.max(CleanupRun.started_at)).where(
                    CleanupRun.trigger == "schedule", CleanupRun.dry_run.is_(False)
                )
            )
        if last is not None and last >= due:
            return None
        return await run(
            self.db, now=now, retention=self.retention, idempotency_ttl=self.idempotency_ttl, trigger="schedule"
        )

    async def step(self) -> CleanupResult | None:
        return await self.run_if_due()
