"""Production shape: two `paycenter api` processes and a `paycenter worker` on one PostgreSQL.

Payments are driven through both API processes (as a load balancer would), each API process and
then the worker get SIGTERM while requests and deliveries are in flight, and are restarted.
Afterwards every payment the client was told about exists exactly once, every event reached the
merchant exactly once (a graceful stop finishes and records its sends), and nothing was lost.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from kit.api import MerchantCreds
from kit.db import BACKENDS
from kit.served import free_port
from kit.sink import Sink, wait_until
from paycenter.db import Database
from paycenter.jobs.models import WorkerHeartbeat
from paycenter.payments.models import Event, Payment

pytestmark = pytest.mark.slow  # API and worker processes, stopped and restarted

PAYCENTER = Path(sys.executable).with_name("paycenter")
PAYMENTS = 120


@pytest.mark.parametrize("database_url", [b for b in BACKENDS if b == "postgresql"], indirect=True)
async def test_sigterm_loses_nothing(db: Database, database_url: str, merchant: MerchantCreds, tmp_path):
    sink = await Sink(delay=0.3).start()  # a slow merchant: deliveries are in flight when we stop
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYCENTER_")}
    env |= {
        "PAYCENTER_DATABASE_URL": database_url,
        "PAYCENTER_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "PAYCENTER_LOG_LEVEL": "warning",
        "PAYCENTER_WORKER_POLL_INTERVAL": "0.2",
    }
    log = (tmp_path / "processes.log").open("ab")
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([str(PAYCENTER), *args], env=env, stdout=log, stderr=log)
        procs.append(proc)
        return proc

    ports = [free_port(), free_port()]
    apis = [start("api", "--port", str(port)) for port in ports]
    worker = start("worker")
    worker_pids = {worker.pid}
    created: dict[str, str] = {}  # idempotency key -> transaction id the client was given
    try:
        async with httpx.AsyncClient(timeout=30) as http:

            async def up(port: int) -> bool:
                try:
                    return (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            for port in ports:
                for _ in range(300):  # bounded: 30 s
                    if await up(port):
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError(f"api on {port} did not start")

            async def pay(i: int) -> None:
                """Create and pay one payment, like a shop behind a load balancer: a process that
                is gone is skipped, and a retry reuses the Idempotency-Key, so it never doubles."""
                key = str(uuid.uuid4())
                body = {"amount": 100 + i, "webhook_url": sink.on("/hooks")}
                for attempt in range(20):
                    port = ports[(i + attempt) % 2]
                    try:
                        r = await http.post(
                            f"http://127.0.0.1:{port}/api/payment/init",
                            json=body,
                            headers=merchant.headers | {"Idempotency-Key": key},
                        )
                        pid = r.json()["data"]["transaction_id"]
                        created[key] = pid
                        r = await http.post(
                            f"http://127.0.0.1:{port}/pay/{pid}/sandbox",
                            data={"action": "pay", "checkout_id": key.replace("-", "")},
                        )
                        assert r.status_code == 303
                        return
                    except httpx.TransportError:
                        await asyncio.sleep(0.05)
                raise AssertionError(f"payment {i} never went through")

            stops: dict[str, int] = {}

            async def stop_apis() -> None:
                for index, port in enumerate(ports):  # each API process in turn, mid-traffic
                    await asyncio.sleep(0.5)
                    apis[index].send_signal(signal.SIGTERM)
                    # uvicorn finishes the requests it is serving, then exits by the signal itself.
                    assert await asyncio.to_thread(apis[index].wait, 30) in (0, -signal.SIGTERM)
                    apis[index] = start("api", "--port", str(port))
                    for _ in range(300):  # bounded: 30 s
                        if await up(port):
                            break
                        await asyncio.sleep(0.1)

            async def stop_worker() -> None:
                """Meanwhile the worker, with deliveries to the slow endpoint in flight."""
                nonlocal worker
                await wait_until(
                    lambda: len(sink.received) >= 5 and sink.answering > 0, timeout=30, what="sends in flight"
                )
                worker.send_signal(signal.SIGTERM)
                stops["in_flight"] = sink.answering
                assert await asyncio.to_thread(worker.wait, 60) == 0  # clean: its sends are recorded
                stops["delivered_by_first_worker"] = len(sink.received)
                worker = start("worker")
                worker_pids.add(worker.pid)

            gate = asyncio.Semaphore(16)

            async def gated(i: int) -> None:
                async with gate:
                    await pay(i)

            await asyncio.gather(asyncio.gather(*(gated(i) for i in range(PAYMENTS))), stop_apis(), stop_worker())

            async with db.reading() as session:
                payments = await session.scalar(select(func.count()).select_from(Payment))
                paid = await session.scalar(select(func.count()).select_from(Payment).where(Payment.status == "paid"))
                event_ids = set(await session.scalars(select(Event.id)))
                beating = set(await session.scalars(select(WorkerHeartbeat.pid)))
            assert beating and beating <= worker_pids  # API processes run no background loops
            assert len(created) == PAYMENTS
            assert payments == PAYMENTS and paid == PAYMENTS  # none lost, none doubled
            # The stop proves something only if deliveries were in flight and more were left to do.
            assert stops["in_flight"] > 0 and stops["delivered_by_first_worker"] < len(event_ids), stops
            await wait_until(lambda: len(sink.received) >= len(event_ids), timeout=60, what="every event")
            ids = [r.headers["webhook-id"] for r in sink.received]
            assert sorted(ids) == sorted(event_ids)  # each event exactly once: graceful stops record their sends
            assert {json.loads(r.body)["transaction_id"] for r in sink.received} == set(created.values())
            print(f"\n{PAYMENTS} payments, 2 API processes and the worker each SIGTERMed once mid-traffic")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        log.close()
        await sink.stop()
