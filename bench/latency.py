"""From the payer paying at Kaspi to the merchant receiving `paid`: the whole chain, measured.

    python -m bench.latency --db sqlite|postgresql [--payments 250] [--spread 25]

The Kaspi simulator (its own process) flips each of N live QR payments to paid at a random moment
over ``spread`` seconds. A `paycenter worker` process (poller + webhook dispatcher, as deployed)
notices on its next 1-second poll and delivers `paid` to a sink process. Latency is from the flip
(the simulator's answer to the flip request) to the sink receiving the webhook; one machine, one
clock. The old system needed up to 60 s; the seed promises 1-3 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import subprocess
import time

import aiohttp
from sqlalchemy import select

from bench.kaspi_kit import PAYCENTER, Setup, live_payments, worker_env
from bench.webhooks import sink_stats, start_sink
from paycenter.payments.models import Attempt, AttemptStatus


async def run(kind: str, payments: int, spread: float) -> dict[str, float]:
    sink, port = start_sink()
    worker = None
    try:
        async with Setup(kind) as s:
            ids = await live_payments(s.ctx, s.merchant_id, payments, f"http://127.0.0.1:{port}/ep/1?log=1")
            async with s.ctx.db.reading() as session:
                qr = dict(
                    (
                        await session.execute(
                            select(Attempt.payment_id, Attempt.provider_ref).where(Attempt.status == AttemptStatus.LIVE)
                        )
                    ).all()
                )
            worker = subprocess.Popen([str(PAYCENTER), "worker"], env=worker_env(s.settings), stdout=subprocess.DEVNULL)
            await asyncio.sleep(3)  # the worker's first poll records every QR's status
            flips: dict[str, float] = {}
            rng = random.Random(7)
            moments = sorted((rng.uniform(0, spread), pid) for pid in ids)
            t0 = time.monotonic()
            async with aiohttp.ClientSession() as http:

                async def flip(at: float, pid: str) -> None:
                    await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
                    async with http.post(f"{s.sim_url}/_sim/payments/{qr[pid]}/confirm", json={}) as r:
                        assert r.status == 200, await r.text()
                    flips[pid] = time.time()

                await asyncio.gather(*(flip(at, pid) for at, pid in moments))
            deadline = time.time() + 60
            while time.time() < deadline:
                stats = await sink_stats(port)
                paid = {tx: at for event, tx, _, at in stats["events"] if event == "paid"}
                if all(pid in paid for pid in ids):
                    break
                await asyncio.sleep(0.2)
            latencies = sorted(paid[pid] - flips[pid] for pid in ids if pid in paid)
            assert len(latencies) == len(ids), f"only {len(latencies)} of {len(ids)} paid webhooks arrived"
            return {
                "n": len(latencies),
                "p50": statistics.median(latencies),
                "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
                "max": latencies[-1],
            }
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        sink.terminate()
        sink.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument("--payments", type=int, default=250)
    parser.add_argument("--spread", type=float, default=25.0)
    args = parser.parse_args()
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print("| db | payments | p50 | p99 | max |")
    print("|---|---|---|---|---|")
    for kind in args.db or ["sqlite", "postgresql"]:
        r = asyncio.run(run(kind, args.payments, args.spread))
        print(f"| {kind} | {r['n']:.0f} | {r['p50']:.2f} s | {r['p99']:.2f} s | {r['max']:.2f} s |", flush=True)


if __name__ == "__main__":
    main()
