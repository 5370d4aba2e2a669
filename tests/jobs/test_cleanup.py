"""The daily cleanup and late money, on every backend, with the injectable clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update

from kit.api import create_payment, sandbox
from paycenter.jobs import cleanup
from paycenter.jobs.expirer import expire_due
from paycenter.jobs.heartbeats import health
from paycenter.jobs.models import CleanupRun
from paycenter.payments import service
from paycenter.payments.models import Event, Operation, Payment
from paycenter.webhooks.models import Delivery

DAY = timedelta(hours=24)


async def run_cleanup(db, clock, **kwargs):
    return await cleanup.run(db, now=clock(), retention=DAY, idempotency_ttl=DAY, **kwargs)


async def exists(db, pid: str) -> bool:
    async with db.reading() as session:
        return await session.get(Payment, pid) is not None


async def finish_deliveries(db, status: str = "succeeded") -> None:
    """Stand in for the dispatcher: every webhook reached a final state."""
    async with db.transaction() as session:
        await session.execute(update(Delivery).values(status=status, next_attempt_at=None))


async def test_cleanup_rules(client, db, merchant, clock):
    expired = (await create_payment(client, merchant, expires_in=60))["transaction_id"]
    cancelled = (await create_payment(client, merchant))["transaction_id"]
    partial = (await create_payment(client, merchant, expires_in=60))["transaction_id"]
    paid = (await create_payment(client, merchant))["transaction_id"]
    pending = (await create_payment(client, merchant, expires_in=30 * 24 * 3600))["transaction_id"]
    await client.post(f"/api/payment/{cancelled}/cancel", headers=merchant.headers)
    await sandbox(client, partial, amount="100", checkout_id="p")
    await sandbox(client, paid, checkout_id="q")
    clock.advance(seconds=61)
    assert await expire_due(db, now=clock()) == 2  # the unpaid one and the partial one

    # Within the retention period nothing goes.
    assert (await run_cleanup(db, clock)).removed == []
    clock.advance(hours=25)
    # Past it, but the `expired` and `cancelled` webhooks have not reached a final state yet.
    result = await run_cleanup(db, clock)
    assert result.removed == [] and result.waiting_for_webhooks == 2
    await finish_deliveries(db, "failed")  # given up counts as final: the merchant was told
    dry = await run_cleanup(db, clock, dry_run=True)
    assert set(dry.removed) == {expired, cancelled} and await exists(db, expired)
    result = await run_cleanup(db, clock)
    assert set(result.removed) == {expired, cancelled}
    assert result.kept_with_money == 1  # the partially paid one stays, with its money
    for pid, kept in ((expired, False), (cancelled, False), (partial, True), (paid, True), (pending, True)):
        assert await exists(db, pid) is kept, pid
    async with db.reading() as session:
        assert await session.scalar(select(func.count()).select_from(Event).where(Event.payment_id == expired)) == 0
        assert (
            await session.scalar(select(func.count()).select_from(Delivery).where(Delivery.payment_id == expired)) == 0
        )
        runs = list(await session.scalars(select(CleanupRun).order_by(CleanupRun.id)))
    assert [(r.dry_run, r.removed, r.waiting_for_webhooks) for r in runs] == [
        (False, 0, 0),
        (False, 0, 2),
        (True, 2, 0),
        (False, 2, 0),
    ]


async def test_late_payment_after_expiry_is_counted_and_kept(client, db, merchant, clock):
    pid = (await create_payment(client, merchant, expires_in=60))["transaction_id"]
    clock.advance(seconds=61)
    assert await expire_due(db, now=clock()) == 1
    # The provider reports a success for this payment after it expired (a QR paid at the last
    # second, noticed on the next poll).
    async with db.transaction() as session:
        payment = await service.lock(session, pid)
        await service.record_operation(session, payment, provider_txn_id="late-1", amount=50000, now=clock())
    r = await client.get(f"/api/payment/{pid}")
    data = r.json()["data"]
    assert (data["status"], data["paid_amount"], data["paid_late"]) == ("expired", "500.00", True)
    async with db.reading() as session:
        # Ordered: without ORDER BY, PostgreSQL returns rows in whatever order it finds them.
        query = select(Event.body).where(Event.payment_id == pid).order_by(Event.sequence)
        bodies = [json.loads(b) for b in await session.scalars(query)]
    assert [(b["event"], b.get("paid_late")) for b in bodies] == [("expired", None), ("paid", True)]
    # Reported twice, counted once.
    async with db.transaction() as session:
        payment = await service.lock(session, pid)
        again = await service.record_operation(session, payment, provider_txn_id="late-1", amount=50000, now=clock())
    assert again.counted is False
    async with db.reading() as session:
        assert await session.scalar(select(func.count()).select_from(Operation)) == 1
    # Money means the cleanup keeps it, whatever its status.
    await finish_deliveries(db)
    clock.advance(days=3)
    assert (await run_cleanup(db, clock)).removed == []
    assert await exists(db, pid)


async def test_scheduled_cleanup_runs_once_per_due_time(db, settings, clock):
    job = cleanup.CleanupJob(db, settings, owner="test", clock=clock)
    # 2026-11-28 04:00 Almaty = 2026-11-27 23:00 UTC: today's 03:00 run is due, once.
    clock.offset = datetime(2026, 11, 27, 23, 0, tzinfo=UTC) - datetime.now(UTC)
    assert await job.run_if_due() is not None
    assert await job.run_if_due() is None
    clock.advance(hours=22)  # 02:00 the next day: not yet
    assert await job.run_if_due() is None
    clock.advance(hours=1, minutes=1)  # 03:01: due again
    assert await job.run_if_due() is not None
    async with db.reading() as session:
        runs = list(await session.scalars(select(CleanupRun.trigger)))
    assert runs == ["schedule", "schedule"]


async def test_health_report(client, db, merchant, clock):
    pid = (await create_payment(client, merchant, webhook_url="https://hooks.example/x"))["transaction_id"]
    await sandbox(client, pid, checkout_id="x")
    report = await health(db, now=clock())
    assert report.database and report.deliveries_pending == 1 and report.deliveries_due == 1
    assert report.workers == [] and report.last_cleanup is None


async def test_readyz_reports_an_overdue_backlog(client, db, merchant, ctx):
    assert (await client.get("/readyz")).status_code == 200
    ctx.settings.ready_max_backlog = 0
    pid = (await create_payment(client, merchant, webhook_url="https://hooks.example/x"))["transaction_id"]
    await sandbox(client, pid, checkout_id="x")  # one delivery due, no worker to send it
    r = await client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["problems"] == ["1 webhook deliveries overdue"]


async def test_cleanup_forgets_dead_admin_sessions_login_counters_and_rate_windows(db, clock):
    """Rows that can never matter again go; live ones stay."""
    from paycenter.operators.models import AdminSession, AdminUser, LoginThrottle
    from paycenter.ratelimit import RateCounter

    now = clock()
    async with db.transaction() as session:
        session.add(AdminUser(id="u1", username="op", password_hash="x", role="admin", is_active=True, created_at=now))
        await session.flush()
        for sid, seen, expires in (
            ("live", now, now + DAY),
            ("idle", now - timedelta(hours=2), now + DAY),
            ("over", now, now - timedelta(seconds=1)),
        ):
            session.add(
                AdminSession(
                    id=sid, user_id="u1", csrf_token="c", created_at=now, last_seen_at=seen, expires_at=expires
                )
            )
        session.add(LoginThrottle(key="old", failures=2, first_failure_at=now - DAY))
        session.add(LoginThrottle(key="locked", failures=5, first_failure_at=now - DAY, locked_until=now + DAY))
        session.add(LoginThrottle(key="recent", failures=1, first_failure_at=now))
        session.add(RateCounter(key="ip:old", window_start=now - timedelta(hours=1), count=3))
        session.add(RateCounter(key="ip:now", window_start=now, count=3))
    result = await run_cleanup(db, clock)
    assert result.stale_rows_removed == 4
    async with db.reading() as session:
        assert set(await session.scalars(select(AdminSession.id))) == {"live"}
        assert set(await session.scalars(select(LoginThrottle.key))) == {"locked", "recent"}
        assert set(await session.scalars(select(RateCounter.key))) == {"ip:now"}
