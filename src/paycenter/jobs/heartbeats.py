"""Worker heartbeats and the health view built on them (``paycenter status``, ``/readyz``)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError

from paycenter import leadership, quarantine
from paycenter.db import Database, rowcount
from paycenter.jobs.models import CleanupRun, WorkerHeartbeat
from paycenter.payments.models import Attempt, AttemptStatus
from paycenter.webhooks.models import Delivery, DeliveryStatus

ALIVE_WITHIN = timedelta(seconds=20)


async def beat(
    db: Database, *, worker_id: str, started_at: datetime, loops: dict[str, float | None], now: datetime
) -> None:
    async with db.transaction() as session:
        updated = await session.execute(
            update(WorkerHeartbeat)
            .where(WorkerHeartbeat.id == worker_id)
            .values(last_seen_at=now, loops=loops)
            .execution_options(synchronize_session=False)
        )
        if rowcount(updated):
            return
    try:
        async with db.transaction() as session:
            session.add(
                WorkerHeartbeat(
                    id=worker_id,
                    host=socket.gethostname()[:100],
                    pid=os.getpid(),
                    started_at=started_at,
                    last_seen_at=now,
                    loops=loops,
                )
            )
    except IntegrityError:
        pass


async def forget(db: Database, *, worker_id: str) -> None:
    async with db.transaction() as session:
        await session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.id == worker_id))


@dataclass
class Health:
    database: bool
    workers: list[dict[str, Any]]
    leases: list[dict[str, Any]]
    deliveries_pending: int
    deliveries_due: int
    oldest_due_seconds: float | None
    live_attempts: int
    last_cleanup: dict[str, Any] | None
    # Rows the loops set aside: how many per loop, and the oldest few (loop, row, reason, since).
    quarantined_by_loop: dict[str, int] = field(default_factory=dict)
    quarantined: list[dict[str, Any]] = field(default_factory=list)

    @property
    def quarantined_total(self) -> int:
        return sum(self.quarantined_by_loop.values())


async def health(db: Database, *, now: datetime) -> Health:
    """What an operator (or a load balancer) wants to know, in a few cheap queries."""
    try:
        async with db.reading() as session:
            await session.execute(text("SELECT 1"))
    except Exception:
        return Health(False, [], [], 0, 0, None, 0, None)
    async with db.reading() as session:
        workers = [
            {
                "id": w.id,
                "host": w.host,
                "pid": w.pid,
                "alive": w.last_seen_at >= now - ALIVE_WITHIN,
                "last_seen_seconds": round((now - w.last_seen_at).total_seconds(), 1),
                "loop_lag_seconds": w.loops,
            }
            for w in await session.scalars(select(WorkerHeartbeat).order_by(WorkerHeartbeat.started_at))
        ]
        pending = await session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.status == DeliveryStatus.PENDING)
        )
        due_count, oldest = (
            await session.execute(
                select(func.count(), func.min(Delivery.next_attempt_at)).where(
                    Delivery.status == DeliveryStatus.PENDING, Delivery.next_attempt_at <= now
                )
            )
        ).one()
        live = await session.scalar(
            select(func.count()).select_from(Attempt).where(Attempt.status == AttemptStatus.LIVE)
        )
        last = await session.scalar(select(CleanupRun).order_by(CleanupRun.started_at.desc()).limit(1))
        quarantined_by_loop = await quarantine.counts(session)
        quarantined = [
            {
                "loop": m.loop,
                "row_id": m.row_id,
                "payment_id": m.payment_id,
                "reason": m.reason,
                "failures": m.failures,
                "since": m.since.isoformat(),
            }
            for m in (await quarantine.rows(session, limit=20) if quarantined_by_loop else [])
        ]
    leases = [
        {
            "name": lease.name,
            "owner": lease.owner,
            "held": lease.expires_at > now,
            "expires_in_seconds": round((lease.expires_at - now).total_seconds(), 1),
        }
        for lease in await leadership.holders(db)
    ]
    oldest_seconds = None if oldest is None else round((now - oldest).total_seconds(), 1)
    return Health(
        database=True,
        workers=workers,
        leases=leases,
        deliveries_pending=int(pending or 0),
        deliveries_due=int(due_count or 0),
        oldest_due_seconds=oldest_seconds,
        live_attempts=int(live or 0),
        last_cleanup=None
        if last is None
        else {
            "started_at": last.started_at.isoformat(),
            "trigger": last.trigger,
            "dry_run": last.dry_run,
            "removed": last.removed,
            "waiting_for_webhooks": last.waiting_for_webhooks,
            "kept_with_money": last.kept_with_money,
        },
        quarantined_by_loop=quarantined_by_loop,
        quarantined=quarantined,
    )
