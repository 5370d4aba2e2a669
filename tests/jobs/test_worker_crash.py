"""A worker killed with SIGKILL mid-way loses nothing: a restarted worker delivers the rest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from kit.api import SEED_BODY, make_merchant
from kit.db import BACKENDS
from kit.sink import Sink, eventually, wait_until
from paycenter.merchants.models import Merchant
from paycenter.payments import service
from paycenter.payments.models import Event
from paycenter.payments.schemas import PaymentInit
from paycenter.webhooks.models import Delivery
from paycenter.webhooks.ssrf import parse_networks

pytestmark = pytest.mark.slow  # worker processes killed and restarted

EVENTS = 1000
PAYCENTER = Path(sys.executable).with_name("paycenter")


async def make_events(db, merchant_id: str, url: str, clock, count: int = EVENTS) -> None:
    """Paid payments, each with its `paid` event and delivery, up to 100 per transaction."""
    data = PaymentInit.model_validate({**SEED_BODY, "webhook_url": url})
    policy = service.InitPolicy(
        max_amount=10**8, default_expires_in=3600, providers=["sandbox"], webhook_networks=parse_networks("127.0.0.0/8")
    )
    for batch in range(0, count, 100):
        async with db.transaction() as session:
            merchant = await session.get(Merchant, merchant_id)
            for _ in range(min(100, count - batch)):
                payment = await service.create_payment(
                    session, merchant=merchant, data=data, policy=policy, now=clock()
                )
                await service.record_operation(
                    session, payment, provider_txn_id=uuid.uuid4().hex, amount=payment.amount, now=clock()
                )


def start_worker(database_url: str, log: Path, poll_interval: float = 0.1) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYCENTER_")}
    env |= {
        "PAYCENTER_DATABASE_URL": database_url,
        "PAYCENTER_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "PAYCENTER_WEBHOOK_LEASE_SECONDS": "2",
        "PAYCENTER_WORKER_POLL_INTERVAL": str(poll_interval),
        "PAYCENTER_LOG_LEVEL": "warning",
    }
    return subprocess.Popen([str(PAYCENTER), "worker"], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


async def test_kill_9_mid_delivery_loses_nothing(db, database_url, clock, tmp_path):
    sink = await Sink(delay=0.01).start()  # a little slow, so the kill lands mid-way
    log = tmp_path / "worker.log"
    first = second = None
    try:
        creds = await make_merchant(db, name="Crash shop")
        await make_events(db, creds.merchant_id, sink.on("/hooks"), clock)
        received = lambda: {r.headers["webhook-id"] for r in sink.received}  # noqa: E731

        first = start_worker(database_url, log)
        await wait_until(lambda: len(received()) >= 200, timeout=60, what="the first worker to be mid-way")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        at_kill = len(received())
        assert at_kill < EVENTS, "the worker finished before it could be killed"

        second = start_worker(database_url, log)
        await wait_until(lambda: len(received()) == EVENTS, timeout=90, what="every event to arrive")

        async with db.reading() as session:
            event_ids = set(await session.scalars(select(Event.id)))
        assert received() == event_ids  # every event, at least once, under its own id

        async def all_recorded() -> bool:
            async with db.reading() as session:
                left = await session.scalar(
                    select(func.count()).select_from(Delivery).where(Delivery.status != "succeeded")
                )
            return left == 0

        await eventually(all_recorded, timeout=30, what="every delivery recorded as succeeded")
        bodies = {json.loads(r.body)["event_id"] for r in sink.received}
        assert bodies == event_ids
        duplicates = len(sink.received) - EVENTS
        print(f"killed after {at_kill} of {EVENTS}; {duplicates} duplicate deliveries (same event id)")
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        await sink.stop()


@pytest.mark.parametrize("database_url", [b for b in BACKENDS if b == "postgresql"], indirect=True)
async def test_postgres_notify_wakes_a_worker_in_another_process(db, database_url, clock, tmp_path):
    """With its poll an hour away, a worker in another process still sends at once: NOTIFY woke it."""
    sink = await Sink().start()
    proc = None
    try:
        creds = await make_merchant(db, name="Notify shop")
        url = sink.on("/hooks")
        proc = start_worker(database_url, tmp_path / "worker.log", poll_interval=3600)
        await make_events(db, creds.merchant_id, url, clock, count=1)
        await wait_until(lambda: len(sink.received) == 1, timeout=20, what="the first event (worker start-up)")
        await make_events(db, creds.merchant_id, url, clock, count=1)
        await wait_until(lambda: len(sink.received) == 2, timeout=10, what="the second event, woken by NOTIFY")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=20)
        await sink.stop()
