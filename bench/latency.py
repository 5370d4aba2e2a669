"""From the payer paying at Kaspi to the merchant receiving `paid`: the whole chain, measured.

    python -m bench.latency [--provider qr|pos] [--db sqlite|postgresql] [--payments 250] [--spread 25]
                            [--terminals 50]

The Kaspi simulator (its own process: `paycenter simulate kaspi-qr` or `kaspi-pos`) flips each of N
live payments to paid at a random moment over ``spread`` seconds. A `paycenter worker` process
(poller + webhook dispatcher, as deployed) notices on its next poll and delivers `paid` to a sink
process. Latency is from the flip (the simulator's answer to the flip request) to the sink receiving
the webhook; one machine, one clock. The old system needed up to 60 s; the seed promises 1-3 s.

- qr: N live QRs, each polled at the StatusPollingInterval Kaspi answered for it (the simulator: 5 s).
- pos: Kaspi Smart POS terminals, polled every poller cycle (1 s). A terminal runs one operation at
  a time, so ``terminals`` terminals take the N payments in rounds, each round over its share of the
  spread (the same flips per second as qr).
Both providers (and both databases) by default.
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
import time
from collections.abc import Iterator

import aiohttp
from sqlalchemy import select

from bench.kaspi_kit import PAYCENTER, Setup, live_payments, worker_env
from bench.webhooks import sink_stats, start_sink
from paycenter.config import Settings
from paycenter.payments.models import Attempt, AttemptStatus
from paycenter.providers.models import Terminal

PROVIDERS = {"qr": "kaspi_qr", "pos": "kaspi_pos"}
DRAIN = 60.0  # seconds a round's webhooks may take after its last flip


async def pay_urls(s: Setup, ids: list[str]) -> dict[str, str]:
    """Payment id -> the simulator's control that pays it: its QR, or the terminal running it."""
    live = (Attempt.payment_id.in_(ids), Attempt.status == AttemptStatus.LIVE)
    async with s.ctx.db.reading() as session:
        if s.provider == "kaspi_qr":
            rows = await session.execute(select(Attempt.payment_id, Attempt.provider_ref).where(*live))
            return {pid: f"{s.sim_url}/_sim/payments/{ref}/confirm" for pid, ref in rows}
        rows = await session.execute(
            select(Attempt.payment_id, Terminal.name).join(Terminal, Terminal.id == Attempt.terminal_id).where(*live)
        )
        return {pid: f"{s.sim_url}/_sim/terminals/{name}/confirm" for pid, name in rows}


async def polled_every(s: Setup, ids: list[str]) -> str:
    """How often the worker asks about these payments: each attempt's own interval (a QR's
    StatusPollingInterval), else its provider's, never faster than one poller cycle."""
    async with s.ctx.db.reading() as session:
        own = set(await session.scalars(select(Attempt.poll_interval).where(Attempt.payment_id.in_(ids)).distinct()))
    default = s.ctx.providers.get(s.provider).poll_every.total_seconds()
    every = {max(seconds or default, s.settings.poller_interval) for seconds in own}
    return ", ".join(f"{seconds:g} s" for seconds in sorted(every))


async def flip(urls: dict[str, str], spread: float, rng: random.Random) -> dict[str, float]:
    """Pay each at a random moment over ``spread`` seconds: payment id -> when the simulator answered."""
    flips: dict[str, float] = {}
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as http:

        async def one(at: float, pid: str) -> None:
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            async with http.post(urls[pid], json={}) as r:
                assert r.status == 200, await r.text()
            flips[pid] = time.time()

        await asyncio.gather(*(one(at, pid) for at, pid in sorted((rng.uniform(0, spread), pid) for pid in urls)))
    return flips


async def paid_after(port: int, flips: dict[str, float]) -> list[float]:
    """Seconds from each flip to the sink receiving that payment's `paid` (waits at most DRAIN)."""
    deadline = time.time() + DRAIN
    while True:
        stats = await sink_stats(port)
        paid = {tx: at for event, tx, _, at in stats["events"] if event == "paid"}
        if all(pid in paid for pid in flips) or time.time() > deadline:
            break
        await asyncio.sleep(0.2)
    latencies = [paid[pid] - at for pid, at in flips.items() if pid in paid]
    assert len(latencies) == len(flips), f"only {len(latencies)} of {len(flips)} paid webhooks arrived"
    return latencies


@contextlib.contextmanager
def worker_process(settings: Settings) -> Iterator[None]:
    """A `paycenter worker` on the bench's database, stopped before the database is dropped."""
    proc = subprocess.Popen([str(PAYCENTER), "worker"], env=worker_env(settings), stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def run(kind: str, provider: str, payments: int, spread: float, terminals: int) -> dict[str, float | str]:
    pos = provider == "kaspi_pos"
    per_round = min(terminals, payments) if pos else payments  # a terminal runs one operation at a time
    sink, port = start_sink()
    try:
        async with Setup(kind, provider, terminals=per_round if pos else 0) as s:
            with worker_process(s.settings):
                rng = random.Random(7)
                ids: list[str] = []
                latencies: list[float] = []
                while len(ids) < payments:
                    n = min(per_round, payments - len(ids))
                    made = await live_payments(
                        s.ctx, s.merchant_id, n, f"http://127.0.0.1:{port}/ep/1?log=1", provider=provider
                    )
                    urls = await pay_urls(s, made)
                    assert len(urls) == n, f"{len(urls)} of {n} payments are live"
                    # The worker's first poll of these records each status (the first round: once it started).
                    await asyncio.sleep(3 if not ids else 2 * s.settings.poller_interval)
                    latencies += await paid_after(port, await flip(urls, spread * n / payments, rng))
                    ids += made
                every = await polled_every(s, ids)
        latencies.sort()
        return {
            "every": every,
            "n": len(latencies),
            "p50": statistics.median(latencies),
            "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "max": latencies[-1],
        }
    finally:
        sink.terminate()
        sink.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--provider", choices=list(PROVIDERS), action="append")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument("--payments", type=int, default=250)
    parser.add_argument("--spread", type=float, default=25.0)
    parser.add_argument("--terminals", type=int, default=50, help="pos: terminals, i.e. payments per round")
    args = parser.parse_args()
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print("| provider | polled every | db | payments | p50 | p99 | max |")
    print("|---|---|---|---|---|---|---|")
    for provider in [PROVIDERS[p] for p in args.provider or PROVIDERS]:
        for kind in args.db or ["sqlite", "postgresql"]:
            r = asyncio.run(run(kind, provider, args.payments, args.spread, args.terminals))
            print(
                f"| {provider} | {r['every']} | {kind} | {r['n']:.0f} | {r['p50']:.2f} s | {r['p99']:.2f} s "
                f"| {r['max']:.2f} s |",
                flush=True,
            )


if __name__ == "__main__":
    main()
