"""Webhook delivery benchmark: paycenter's dispatcher beside a bare aiohttp loop, same sink, same run.

    python -m bench.webhooks --db sqlite|postgresql [--events 10000] [--endpoints 100]

1. Bare loop: aiohttp posts the same bodies to the same sink with the same concurrency; no database.
2. Throughput: N events with their deliveries are committed, then one worker delivers them all;
   the rate counts until every delivery is recorded as succeeded in the database.
3. Latency: with the worker idle, events are committed one by one at a steady pace; latency is
   the time from the commit returning to the sink receiving the request (same clock, one machine).
On PostgreSQL the worker is a separate `paycenter worker` process (woken by LISTEN/NOTIFY): the
deliveries are held back (due in 2100) while it starts, then made due at once and the clock
starts. On SQLite it runs in the producing process, as `paycenter run` does.

CPU per delivery (utime + stime from /proc, stable on a shared machine where req/s is not): of the
worker process and of the PostgreSQL backends serving it (its connections carry their own
``application_name``); for the bare loop, of the process that runs it. On SQLite the worker's CPU
is the bench process's, which also polls for the end. ``--py-spy FILE`` records a py-spy profile
of the worker process during the throughput phase (PostgreSQL; py-spy must be installed).
Only loopback is used.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import make_url

from paycenter.config import Settings
from paycenter.context import AppContext
from paycenter.db import Database, create_engine, utcnow
from paycenter.merchants import service as merchants
from paycenter.merchants.models import Merchant
from paycenter.migrate import upgrade
from paycenter.payments import service
from paycenter.payments.models import Event
from paycenter.payments.schemas import PaymentInit
from paycenter.providers.registry import Providers
from paycenter.webhooks.models import Delivery, DeliveryStatus
from paycenter.webhooks.service import WAKE_CHANNEL
from paycenter.webhooks.ssrf import parse_networks
from paycenter.worker import Worker

PG_SERVER = os.environ.get("PAYCENTER_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MARIADB_SERVER = os.environ.get("PAYCENTER_BENCH_MARIADB_URL", "mysql://root@127.0.0.1:3306/mysql")
SERVERS = {"postgresql": PG_SERVER, "mariadb": MARIADB_SERVER}
PAYCENTER = Path(sys.executable).with_name("paycenter")
WORKER_APP_NAME = "paycenter_bench_worker"
HELD = datetime(2100, 1, 1, tzinfo=UTC)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (0 if it is gone), from /proc/<pid>/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # fields[0] is field 3 (state); utime is 14, stime 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sink() -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.sink", "--port", str(port)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("sink did not start")
    return proc, port


async def fresh_database(kind: str, workdir: Path) -> str:
    """A new, migrated database: a file for SQLite, a fresh database on the server otherwise."""
    if kind == "sqlite":
        url = f"sqlite:///{workdir / 'bench.db'}"
    else:
        name = f"paycenter_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(SERVERS[kind], isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            await conn.execute(text(f"CREATE DATABASE {name}"))
        await admin.dispose()
        url = make_url(SERVERS[kind]).set(database=name).render_as_string(hide_password=False)
    # MariaDB warns that it ignores each PRIMARY KEY's name in the migrations; asyncmy logs every one.
    logging.getLogger("asyncmy").setLevel(logging.ERROR)
    await upgrade(url)
    return url


async def drop_database(kind: str, url: str) -> None:
    if kind == "sqlite":
        return
    force = " WITH (FORCE)" if kind == "postgresql" else ""
    admin = create_engine(SERVERS[kind], isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f"DROP DATABASE IF EXISTS {make_url(url).database}{force}"))
    await admin.dispose()


BODY = {"amount": 500, "currency": "KZT", "description": "Benchmark", "webhook_secret": "bench_secret"}
# The bench's endpoints listen on loopback.
POLICY = service.InitPolicy(
    max_amount=10**8, default_expires_in=3600, providers=["sandbox"], webhook_networks=parse_networks("127.0.0.0/8")
)


async def make_merchant(db: Database) -> str:
    async with db.transaction() as session:
        merchant = await merchants.create_merchant(session, name="Bench shop", now=utcnow())
        return merchant.id


async def commit_events(db: Database, merchant_id: str, urls: list[str], count: int, *, batch: int) -> dict[str, float]:
    """Commit ``count`` paid payments (one event and one delivery each): payment id -> commit time."""
    commits: dict[str, float] = {}
    made = 0
    while made < count:
        n = min(batch, count - made)
        ids = []
        async with db.transaction() as session:
            merchant = await session.get(Merchant, merchant_id)
            assert merchant is not None
            for i in range(n):
                data = PaymentInit.model_validate({**BODY, "webhook_url": urls[(made + i) % len(urls)]})
                payment = await service.create_payment(
                    session, merchant=merchant, data=data, policy=POLICY, now=utcnow()
                )
                await service.record_operation(
                    session, payment, provider_txn_id=uuid.uuid4().hex, amount=payment.amount, now=utcnow()
                )
                ids.append(payment.id)
        committed = time.time()
        commits.update(dict.fromkeys(ids, committed))
        made += n
    return commits


async def bare_loop(urls: list[str], bodies: list[bytes], concurrency: int) -> tuple[float, float]:
    """Requests per second of aiohttp alone posting ``bodies`` round-robin over ``urls``, and this
    process's CPU seconds per request meanwhile."""
    sem = asyncio.Semaphore(concurrency)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def post(i: int) -> None:
            async with sem, session.post(urls[i % len(urls)], data=bodies[i], headers=headers) as resp:
                await resp.read()
                assert resp.status == 200

        t0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(post(i) for i in range(len(bodies))))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        return len(bodies) / elapsed, cpu / len(bodies)


async def delivered(db: Database) -> int:
    async with db.reading() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(Delivery).where(Delivery.status == DeliveryStatus.SUCCEEDED)
            )
            or 0
        )


async def sink_stats(port: int) -> dict:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/stats") as r:
        return await r.json()


async def sink_count(port: int) -> int:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/count") as r:
        return int((await r.json())["distinct"])


async def sink_reset(port: int) -> None:
    async with aiohttp.ClientSession() as s, s.delete(f"http://127.0.0.1:{port}/stats") as r:
        await r.read()


def start_worker(url: str) -> subprocess.Popen[bytes]:
    """``paycenter worker`` on ``url``, its database connections named for ``backend_cpu``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYCENTER_")}
    env |= {
        "PAYCENTER_DATABASE_URL": f"{url}?application_name={WORKER_APP_NAME}",
        "PAYCENTER_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "PAYCENTER_LOG_LEVEL": "warning",
    }
    return subprocess.Popen([str(PAYCENTER), "worker"], env=env, stdout=subprocess.DEVNULL)


async def wait_ready(db: Database, proc: subprocess.Popen[bytes]) -> None:
    """Until the worker's first heartbeat is written (its loops are running)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}")
        async with db.reading() as session:
            if await session.scalar(text("SELECT count(*) FROM worker_heartbeats WHERE pid = :p"), {"p": proc.pid}):
                return
        await asyncio.sleep(0.1)
    raise RuntimeError("worker did not start")


async def backend_cpu(db: Database) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving the bench's worker process."""
    async with db.reading() as session:
        pids = await session.scalars(
            text("SELECT pid FROM pg_stat_activity WHERE application_name = :n"), {"n": WORKER_APP_NAME}
        )
        return {pid: cpu_seconds(pid) for pid in pids}


async def set_due(db: Database, when: datetime) -> None:
    async with db.transaction() as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.status == DeliveryStatus.PENDING)
            .values(next_attempt_at=when)
            .execution_options(synchronize_session=False)
        )
        if db.backend == "postgresql":
            await session.execute(text(f"NOTIFY {WAKE_CHANNEL}"))


async def drain(db: Database, port: int, events: int) -> None:
    """Until the sink has every event and the database shows every delivery succeeded."""
    while (await sink_count(port)) < events:  # cheap to ask; the database is busy
        await asyncio.sleep(0.05)
    while await delivered(db) < events:
        await asyncio.sleep(0.05)


def settings_for(url: str) -> Settings:
    return Settings(  # type: ignore[call-arg]
        database_url=url,
        run_worker=False,
        webhook_allowed_networks="127.0.0.0/8",
        _env_file=None,
    )


async def run(
    kind: str, events: int, endpoints: int, latency_events: int, latency_rate: float, py_spy: str | None
) -> dict:
    sink, port = start_sink()
    workdir = Path(tempfile.mkdtemp(prefix="paycenter-bench-"))
    url = await fresh_database(kind, workdir)
    settings = settings_for(url)
    ctx = AppContext(settings=settings, db=Database(url), providers=Providers(settings))
    urls = [f"http://127.0.0.1:{port}/ep/{n}" for n in range(endpoints)]
    result: dict = {"db": kind, "events": events, "endpoints": endpoints}
    proc: subprocess.Popen[bytes] | None = None
    spy: subprocess.Popen[bytes] | None = None
    try:
        merchant_id = await make_merchant(ctx.db)
        # Throughput: everything committed first, then one worker drains it.
        await commit_events(ctx.db, merchant_id, urls, events, batch=500)
        async with ctx.db.reading() as session:
            bodies = [b.encode() for b in await session.scalars(text("SELECT body FROM events"))]
        result["bare_rps"], result["bare_cpu"] = await bare_loop(urls, bodies, settings.webhook_max_in_flight)
        await sink_reset(port)
        if kind == "postgresql":
            await set_due(ctx.db, HELD)
            proc = start_worker(url)
            await wait_ready(ctx.db, proc)
            await asyncio.sleep(1)  # its LISTEN connection too
            if py_spy:
                spy = subprocess.Popen(
                    [
                        str(PAYCENTER.with_name("py-spy")),
                        "record",
                        "--pid",
                        str(proc.pid),
                        "--output",
                        py_spy,
                        "--format",
                        "raw",
                        "--nonblocking",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                await asyncio.sleep(1)
            backends0 = await backend_cpu(ctx.db)
            cpu0 = cpu_seconds(proc.pid)
            t0 = time.perf_counter()
            await set_due(ctx.db, utcnow())
            await drain(ctx.db, port, events)
            elapsed = time.perf_counter() - t0
            result["worker_cpu"] = (cpu_seconds(proc.pid) - cpu0) / events
            backends1 = await backend_cpu(ctx.db)
            result["db_cpu"] = sum(cpu - backends0.get(pid, 0.0) for pid, cpu in backends1.items()) / events
            if spy is not None:
                spy.send_signal(2)  # SIGINT: py-spy writes its file
                spy.wait(timeout=60)
            result["worker"] = "separate process (LISTEN/NOTIFY)"
        else:
            worker = Worker(ctx)
            t0, cpu0 = time.perf_counter(), time.process_time()
            await worker.start()
            await drain(ctx.db, port, events)
            elapsed = time.perf_counter() - t0
            result["worker_cpu"] = (time.process_time() - cpu0) / events
            result["db_cpu"] = None
            await worker.stop()
            result["worker"] = "same process (in-process signal)"
        result["paycenter_rps"] = events / elapsed
        result["ratio"] = result["paycenter_rps"] / result["bare_rps"]

        # Latency: an idle worker (on PostgreSQL the same process), events committed one at a time.
        await sink_reset(port)
        if proc is None:
            worker = Worker(ctx)
            await worker.start()
        by_payment: dict[str, float] = {}
        for _ in range(latency_events):
            by_payment |= await commit_events(ctx.db, merchant_id, urls, 1, batch=1)
            await asyncio.sleep(1 / latency_rate)
        async with ctx.db.reading() as session:
            rows = await session.execute(
                select(Event.id, Event.payment_id).where(Event.payment_id.in_(list(by_payment)))
            )
            commits = {event_id: by_payment[payment_id] for event_id, payment_id in rows}
        deadline = time.time() + 30
        while time.time() < deadline:
            arrivals = (await sink_stats(port))["arrivals"]
            if all(e in arrivals for e in commits):
                break
            await asyncio.sleep(0.1)
        latencies = sorted((arrivals[e] - commits[e]) * 1000 for e in commits if e in arrivals)
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
            proc = None
        else:
            await worker.stop()
        result["latency_n"] = len(latencies)
        result["latency_median_ms"] = statistics.median(latencies)
        result["latency_p99_ms"] = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(timeout=30)
        await ctx.db.dispose()
        await drop_database(kind, url)
        sink.terminate()
        sink.wait(timeout=10)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=100)
    parser.add_argument("--latency-events", type=int, default=300)
    parser.add_argument("--latency-rate", type=float, default=50.0, help="events per second in the latency phase")
    parser.add_argument("--py-spy", metavar="FILE", help="py-spy profile of the worker process (PostgreSQL only)")
    args = parser.parse_args()
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average before: {os.getloadavg()[0]:.2f}")
    print(
        "| db | events | bare aiohttp req/s | bare CPU ms/req | paycenter deliveries/s | ratio "
        "| worker CPU ms/delivery | DB CPU ms/delivery | latency median | latency p99 | worker |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for kind in args.db or ["sqlite", "postgresql"]:
        r = asyncio.run(run(kind, args.events, args.endpoints, args.latency_events, args.latency_rate, args.py_spy))
        db_cpu = "n/a" if r["db_cpu"] is None else f"{r['db_cpu'] * 1000:.3f}"
        print(
            f"| {r['db']} | {r['events']} | {r['bare_rps']:.0f} | {r['bare_cpu'] * 1000:.3f} | "
            f"{r['paycenter_rps']:.0f} | {r['ratio']:.0%} | {r['worker_cpu'] * 1000:.3f} | {db_cpu} | "
            f"{r['latency_median_ms']:.1f} ms | {r['latency_p99_ms']:.1f} ms | {r['worker']} |",
            flush=True,
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
