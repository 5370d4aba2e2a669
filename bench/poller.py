"""One poll cycle's time for 10, 100 and 1,000 live Kaspi QR attempts.

    python -m bench.poller --db sqlite|postgresql [--sizes 10,100,1000]

The simulator runs as its own process (`paycenter simulate kaspi-qr`); every attempt is live and
unchanged, so a cycle is: read the live attempts, ask Kaspi about each (in parallel, bounded),
write nothing. Reports the median of 5 cycles.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from bench.kaspi_kit import Setup, live_payments
from paycenter.jobs.poller import Poller

# A QR is asked no more often than its StatusPollingInterval (the simulator answers 5 s): the
# poller's clock moves on by that much before each timed cycle, so every QR is due in each.
DUE = timedelta(seconds=5)


class Ahead:
    """A clock ``skew`` ahead of ``base``."""

    def __init__(self, base: Callable[[], datetime]) -> None:
        self.base = base
        self.skew = timedelta()

    def __call__(self) -> datetime:
        return self.base() + self.skew


async def run(kind: str, sizes: list[int]) -> list[tuple[int, float, float]]:
    rows = []
    async with Setup(kind) as s:
        made = 0
        for size in sizes:
            await live_payments(s.ctx, s.merchant_id, size - made, None)
            made = size
            clock = Ahead(s.ctx.clock)
            poller = Poller(s.ctx.db, s.ctx.providers, s.settings, owner="bench", clock=clock)
            await poller.cycle()  # the first look records each QR's status: writes, not the steady state
            times = []
            for _ in range(5):
                clock.skew += DUE
                t0 = time.perf_counter()
                report = await poller.cycle()
                times.append(time.perf_counter() - t0)
                assert report.live == size and report.polled == size, report
            rows.append((size, statistics.median(times), min(times)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument("--sizes", default="10,100,1000")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print("| db | live attempts | cycle median | cycle best | per attempt |")
    print("|---|---|---|---|---|")
    for kind in args.db or ["sqlite", "postgresql"]:
        for size, median, best in asyncio.run(run(kind, sizes)):
            print(f"| {kind} | {size} | {median * 1000:.0f} ms | {best * 1000:.0f} ms | {median / size * 1e6:.0f} µs |")


if __name__ == "__main__":
    main()
