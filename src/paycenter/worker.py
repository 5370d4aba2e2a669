"""The worker: the background loops (webhook dispatcher, expirer, poller, cleanup) of one process.

``paycenter run`` runs it inside the web process; ``paycenter worker`` runs it alone. Any number
of workers may share one database: claims and guarded updates keep them from doing work twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time

from paycenter.context import AppContext
from paycenter.jobs import heartbeats
from paycenter.jobs.cleanup import CleanupJob
from paycenter.jobs.dispatcher import Dispatcher, listen_postgres
from paycenter.jobs.expirer import Expirer
from paycenter.jobs.loop import BackgroundLoop
from paycenter.jobs.poller import Poller
from paycenter.webhooks import service as webhooks
from paycenter.webhooks.sender import Sender
from paycenter.webhooks.ssrf import parse_networks

log = logging.getLogger("paycenter.worker")


class Heartbeat(BackgroundLoop):
    """The worker's row in ``worker_heartbeats``: alive, and how far behind each loop is."""

    def __init__(self, worker: Worker, *, every: float = 5.0) -> None:
        super().__init__(worker.ctx.db, clock=worker.ctx.clock, interval=every, log=log, failure="heartbeat failed")
        self.worker = worker

    async def step(self) -> None:
        await heartbeats.beat(
            self.db,
            worker_id=self.worker.id,
            started_at=self.worker.started_at,
            loops=self.worker.loop_lags(),
            now=self.clock(),
        )

    async def run(self, stop: asyncio.Event) -> None:
        await super().run(stop)
        with contextlib.suppress(Exception):
            await heartbeats.forget(self.db, worker_id=self.worker.id)


def worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker:
    def __init__(self, ctx: AppContext, *, sender: Sender | None = None) -> None:
        settings = ctx.settings
        self.ctx = ctx
        self.id = worker_id()
        self.sender = sender or Sender(
            allowed_networks=parse_networks(settings.webhook_allowed_networks),
            connect_timeout=settings.webhook_connect_timeout,
            total_timeout=settings.webhook_timeout,
            per_endpoint=settings.webhook_per_endpoint,
        )
        self.dispatcher = Dispatcher(
            ctx.db,
            self.sender,
            owner=self.id,
            clock=ctx.clock,
            schedule=settings.retry_schedule,
            max_in_flight=settings.webhook_max_in_flight,
            lease_seconds=settings.webhook_lease_seconds,
            poll_interval=settings.worker_poll_interval,
            max_retry_after=settings.webhook_max_retry_after,
        )
        self.expirer = Expirer(ctx.db, clock=ctx.clock)
        self.poller = Poller(ctx.db, ctx.providers, settings, owner=self.id, clock=ctx.clock)
        self.cleanup = CleanupJob(ctx.db, settings, owner=self.id, clock=ctx.clock)
        self.started_at = ctx.clock()
        self.heartbeat = Heartbeat(self)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.sender.start()
        self._stop.clear()
        self._tasks = [
            asyncio.create_task(self.dispatcher.run(self._stop), name="dispatcher"),
            asyncio.create_task(self.expirer.run(self._stop), name="expirer"),
            asyncio.create_task(self.poller.run(self._stop), name="poller"),
            asyncio.create_task(self.cleanup.run(self._stop), name="cleanup"),
            asyncio.create_task(self.heartbeat.run(self._stop), name="heartbeat"),
        ]
        if self.ctx.db.backend == "postgresql":
            self._tasks.append(
                asyncio.create_task(
                    listen_postgres(
                        self.ctx.settings.database_url, webhooks.WAKE_CHANNEL, self.dispatcher.wake, self._stop
                    ),
                    name="pg-listen",
                )
            )
        log.info("worker %s started", self.id)

    async def stop(self) -> None:
        """Finish what is in flight, record it and give back leases."""
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.sender.close()
        log.info("worker %s stopped", self.id)

    def loop_lags(self) -> dict[str, float | None]:
        """Seconds since each loop last went round (None: the loop has nothing to do here)."""
        now = time.monotonic()
        loops = {
            "dispatcher": self.dispatcher.last_cycle_at,
            "expirer": self.expirer.last_cycle_at,
            "poller": self.poller.last_cycle_at if self.poller.pull else None,
            "cleanup": self.cleanup.last_cycle_at,
        }
        return {name: (round(now - at, 3) if at else None) for name, at in loops.items()}

    async def run_forever(self) -> None:
        await self.start()
        try:
            await self._stop.wait()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        self._stop.set()
