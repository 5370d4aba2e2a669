"""From Kaspi's `pay` to the merchant's `paid` webhook: the biller's whole chain, measured.

    python -m bench.biller [--db sqlite|postgresql] [--payments 500] [--spread 25]

Kaspi calls us (no QR, no terminal, no polling), so this is the shortest way from the payer's tap to
the merchant. N payments with account numbers are made; the Kaspi biller simulator
(``paycenter.simulators.kaspi_biller``, in this process) sends each one's ``pay`` at a random moment
over ``spread`` seconds to paycenter serving in its own process; a sink process takes the webhooks.
Latency is from the moment the ``pay`` request is sent to the sink receiving that payment's `paid`
(one machine, one clock). Deployed as on each database:

- sqlite: `paycenter run`, the web app with the webhook worker in the same process (`make run`): the
  commit's in-process signal wakes the dispatcher;
- postgresql: `paycenter api` and a separate `paycenter worker`, woken by the commit's NOTIFY.

Issue 16's goal: p99 ≤ 300 ms on both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from bench.kaspi_kit import PAYCENTER, worker_env
from bench.webhooks import BODY, POLICY, drop_database, free_port, fresh_database, make_merchant, sink_stats, start_sink
from paycenter.config import Settings
from paycenter.db import Database, utcnow
from paycenter.merchants.models import Merchant
from paycenter.payments import service
from paycenter.payments.schemas import PaymentInit
from paycenter.simulators.kaspi_biller import KaspiBiller
from paycenter.webhooks.ssrf import parse_networks

DRAIN = 60.0  # seconds the webhooks may take after the last pay


def biller_settings(url: str, port: int, in_process_worker: bool) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=url,
        host="127.0.0.1",
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        run_worker=in_process_worker,
        enabled_providers="sandbox,kaspi_biller",
        kaspi_biller_allowed_networks="127.0.0.1/32",
        webhook_allowed_networks="127.0.0.0/8",  # the sink listens on loopback
        rate_limit_ip_per_minute=0,  # one simulator address sends every pay
    )


async def accounts(url: str, merchant_id: str, count: int, webhook_url: str) -> dict[str, str]:
    """``count`` open biller payments: account -> payment id."""
    data = PaymentInit.model_validate({**BODY, "webhook_url": webhook_url, "provider": "kaspi_biller"})
    policy = POLICY.__class__(
        max_amount=POLICY.max_amount,
        default_expires_in=3600,
        providers=["sandbox", "kaspi_biller"],
        webhook_networks=parse_networks("127.0.0.0/8"),
    )
    db = Database(url)
    made: dict[str, str] = {}
    try:
        async with db.transaction() as session:
            merchant = await session.get(Merchant, merchant_id)
            assert merchant is not None
            for _ in range(count):
                payment = await service.create_payment(
                    session, merchant=merchant, data=data, policy=policy, now=utcnow()
                )
                assert payment.account, "a biller payment got no account"
                made[payment.account] = payment.id
    finally:
        await db.dispose()
    return made


@contextlib.asynccontextmanager
async def paycenter(kind: str, settings: Settings) -> AsyncIterator[str]:
    """paycenter serving on its port (sqlite: `run`, the worker inside; postgresql: `api` + `worker`)."""
    env = worker_env(settings)
    procs = [
        subprocess.Popen(
            [str(PAYCENTER), "run" if kind == "sqlite" else "api", "--port", str(settings.port)],
            env=env,
            stdout=subprocess.DEVNULL,
        )
    ]
    if kind != "sqlite":
        procs.append(subprocess.Popen([str(PAYCENTER), "worker"], env=env, stdout=subprocess.DEVNULL))
    base = f"http://127.0.0.1:{settings.port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):  # bounded: at most ~30 s
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{base}/healthz") as r:
                        if r.status == 200:
                            break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("paycenter did not start")
        yield base
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


async def pay_all(url: str, amounts: dict[str, str], spread: float, rng: random.Random) -> dict[str, float]:
    """Kaspi pays each account at a random moment over ``spread`` s: account -> when its pay was sent."""
    sent: dict[str, float] = {}
    t0 = time.monotonic()
    async with KaspiBiller(url, retries=0) as kaspi:

        async def one(at: float, account: str) -> None:
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            sent[account] = time.time()
            reply = await kaspi.pay(account, amounts[account])
            assert reply.status == 200 and reply.result == 0, reply

        await asyncio.gather(*(one(rng.uniform(0, spread), account) for account in amounts))
    return sent


async def paid_after(port: int, sent: dict[str, float], payment_of: dict[str, str]) -> list[float]:
    """Seconds from each pay to the sink receiving that payment's `paid` (waits at most DRAIN)."""
    deadline = time.time() + DRAIN
    while True:
        stats = await sink_stats(port)
        paid = {tx: at for event, tx, _, at in stats["events"] if event == "paid"}
        if all(payment_of[a] in paid for a in sent) or time.time() > deadline:
            break
        await asyncio.sleep(0.2)
    latencies = [paid[payment_of[a]] - at for a, at in sent.items() if payment_of[a] in paid]
    assert len(latencies) == len(sent), f"only {len(latencies)} of {len(sent)} paid webhooks arrived"
    return latencies


async def run(kind: str, payments: int, spread: float) -> dict[str, float]:
    sink, sink_port = start_sink()
    workdir = Path(tempfile.mkdtemp(prefix="paycenter-bench-"))
    url = await fresh_database(kind, workdir)
    try:
        db = Database(url)
        try:
            merchant_id = await make_merchant(db)
        finally:
            await db.dispose()
        payment_of = await accounts(url, merchant_id, payments, f"http://127.0.0.1:{sink_port}/ep/1?log=1")
        amount = f"{BODY['amount']}.00"  # what each payment asks, paid in full
        settings = biller_settings(url, free_port(), in_process_worker=kind == "sqlite")
        async with paycenter(kind, settings) as base:
            sent = await pay_all(
                f"{base}{settings.kaspi_biller_path}", dict.fromkeys(payment_of, amount), spread, random.Random(16)
            )
            latencies = sorted(await paid_after(sink_port, sent, payment_of))
        return {
            "n": len(latencies),
            "p50": statistics.median(latencies),
            "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "max": latencies[-1],
        }
    finally:
        await drop_database(kind, url)
        sink.terminate()
        sink.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument("--payments", type=int, default=500)
    parser.add_argument("--spread", type=float, default=25.0)
    args = parser.parse_args()
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print("| db | deployed as | payments over | p50 | p99 | max |")
    print("|---|---|---|---|---|---|")
    for kind in args.db or ["sqlite", "postgresql"]:
        r = asyncio.run(run(kind, args.payments, args.spread))
        deployed = "`paycenter run` (worker inside)" if kind == "sqlite" else "`paycenter api` + `paycenter worker`"
        print(
            f"| {kind} | {deployed} | {r['n']:.0f} in {args.spread:g} s | {r['p50'] * 1000:.0f} ms "
            f"| {r['p99'] * 1000:.0f} ms | {r['max'] * 1000:.0f} ms |",
            flush=True,
        )


if __name__ == "__main__":
    main()
