"""The dispatcher loop: claim due deliveries, send them concurrently, record every try.

Three cooperating tasks:
- the claimer wakes on a commit signal (in-process), a PostgreSQL NOTIFY (other processes) or a
  short poll, and claims as many due deliveries as there is room for, skipping endpoints that are
  already at their concurrency bound. It claims up to one batch ahead of the sends: a claimed
  delivery waits for one of the ``max_in_flight`` send slots, so a slot that frees up is taken at
  once instead of after the next claim's round trips (which wait for an event loop busy with
  hundreds of sends: they used to leave the slots empty for a third of the time);
- each claimed delivery is sent in its own task, outside any database transaction;
- the recorder writes finished tries in batches (one transaction per batch) and renews the
  leases of deliveries still in flight, so a slow endpoint never loses its claim to another worker.

No delivery can stop the others: one that cannot be signed or sent is recorded as an internal
failure and quarantined; a batch of tries that cannot be written is written again one try per
transaction, and a try that cannot be written even alone is recorded without what the endpoint
answered, and quarantined.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from paycenter import quarantine
from paycenter.db import Database
from paycenter.jobs.loop import BackgroundLoop
from paycenter.observability import DELIVERY_ATTEMPTS, EVENT_TO_DELIVERY, bind_transaction
from paycenter.quarantine import Loop
from paycenter.webhooks import service
from paycenter.webhooks.sender import Sender, SendResult

log = logging.getLogger("paycenter.webhooks")


class Dispatcher(BackgroundLoop):
    def __init__(
        self,
        db: Database,
        sender: Sender,
        *,
        owner: str,
        clock: Callable[[], datetime],
        schedule: list[float],
        max_in_flight: int = 256,
        lease_seconds: float = 30.0,
        poll_interval: float = 0.5,
        max_retry_after: float = 3600.0,
        batch_size: int = 200,
    ) -> None:
        # A claim pass every poll interval, sooner when woken (see the module's docstring).
        super().__init__(db, clock=clock, interval=poll_interval, log=log, failure="claiming webhook deliveries failed")
        self.sender = sender
        self.owner = owner
        self.schedule = schedule
        self.max_in_flight = max_in_flight
        self.lease = timedelta(seconds=lease_seconds)
        self.max_retry_after = max_retry_after
        self.batch_size = batch_size
        self._last_lease = datetime.min.replace(tzinfo=UTC)
        self._closing = False  # set once the sends in flight are done: the recorder may stop
        # Set when the worker stops: claimed deliveries still waiting for a slot are not sent.
        self._stop = asyncio.Event()
        # Claimed and not yet recorded (their leases are renewed); `_unsent` of them have not been
        # sent yet (they wait for a slot or are on the wire), `_sending` of them are on the wire.
        self._in_flight: dict[str, service.Job] = {}
        self._slots = asyncio.Semaphore(max_in_flight)
        self._unsent = 0
        self._sending = 0
        self._done: list[service.Outcome] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # PostgreSQL claims in one statement (service.claim), atomic by itself: run outside a
        # transaction, it is one round trip instead of three (BEGIN and COMMIT are round trips of
        # their own with psycopg), and each round trip waits for an event loop busy with hundreds
        # of sends. A claim that commits and then gets lost is a lease that lapses: at least once.
        self._claims = (
            async_sessionmaker(db.engine.execution_options(isolation_level="AUTOCOMMIT"), autoflush=False)
            if db.backend == "postgresql"
            else None
        )

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def room(self) -> int:
        # Sends bound the concurrency (the slots), with one batch claimed ahead of them; a finished
        # send waiting for the recorder's next batch (a few ms) doesn't, or the recorder's cadence
        # would cap the rate.
        return min(
            self.max_in_flight + self.batch_size - self._unsent,
            self.batch_size,
            4 * self.max_in_flight - self.in_flight,
        )

    async def run(self, stop: asyncio.Event) -> None:
        self._closing = False
        self._stop = stop
        unsubscribe = self.db.subscribe(service.WAKE_CHANNEL, self.wake)
        recorder = asyncio.create_task(self._record_loop(stop), name="webhooks-recorder")
        try:
            await super().run(stop)  # the claimer
        finally:
            unsubscribe()
            # Let sends in flight finish (each is bounded by the HTTP timeout), then let the
            # recorder write them down: it is never cancelled mid-batch, or a batch of tries
            # that reached the merchant would go unrecorded and be sent again by another worker.
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=self.sender.timeout.total)
            self._closing = True
            await recorder
            await self._flush()
            with contextlib.suppress(Exception):
                async with self.db.transaction() as session:
                    await service.release(session, owner=self.owner, now=self.clock())

    async def step(self) -> int:
        return await self.claim_once()

    def again(self, claimed: int) -> bool:
        return claimed >= self.batch_size and self.room > 0  # more may be due right now

    async def claim_once(self) -> int:
        room = self.room
        if room <= 0:
            return 0
        now = self.clock()
        busy = {job.url for job in self._in_flight.values() if self.sender.endpoint_busy(job.url)}
        # Unique per claim, so the batch can be read back by its lease time alone.
        lease_until = max(now + self.lease, self._last_lease + timedelta(microseconds=1))
        self._last_lease = lease_until
        async with self._claim_session() as session:
            jobs = await service.claim(
                session,
                owner=self.owner,
                limit=room,
                now=now,
                lease_until=lease_until,
                skip_urls=busy,
                default_max_attempts=1 + len(self.schedule),
            )
        if not jobs:
            return 0
        for job in jobs:
            self._in_flight[job.delivery_id] = job
            self._unsent += 1
            task = asyncio.create_task(self._deliver(job), name=f"webhook-{job.delivery_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(jobs)

    @contextlib.asynccontextmanager
    async def _claim_session(self) -> AsyncIterator[AsyncSession]:
        if self._claims is None:
            async with self.db.transaction() as session:
                yield session
        else:
            async with self._claims() as session:
                yield session

    async def _deliver(self, job: service.Job) -> None:
        try:
            async with self._slots:
                if self._stop.is_set():
                    # Never sent, so no try to record: its lease is given back with the others
                    # when the dispatcher stops (service.release).
                    self._in_flight.pop(job.delivery_id, None)
                    return
                await self._try(job)
        finally:
            self._unsent -= 1
            if self.room >= self.batch_size // 2:
                self.wake()  # room for half a batch: claim more

    async def _try(self, job: service.Job) -> None:
        bind_transaction(job.payment_id)
        started = self.clock()
        headers: dict[str, str] = {}
        try:
            if job.problem:
                raise UnsendableDelivery(job.problem)
            body = job.body.encode()
            headers = service.delivery_headers(job, at=started)
        except Exception as exc:
            # Raised here, it would leave the delivery in flight with no try, its lease renewed forever.
            quarantine.noted(Loop.DISPATCHER, job.delivery_id, exc, job.payment_id)
            self._done.append(service.internal_failure(job, exc, started_at=started, headers=headers))
            return
        self._sending += 1
        try:
            result = await self.sender.send(job.url, headers, body)
        except Exception as exc:  # the sender turns every failure into a result; this is a bug
            quarantine.noted(Loop.DISPATCHER, job.delivery_id, exc, job.payment_id)
            self._done.append(service.internal_failure(job, exc, started_at=started, headers=headers))
            return
        finally:
            self._sending -= 1
        result.started_at = started  # the app's clock, so schedules follow it (and tests can move it)
        self._done.append(service.Outcome(job, headers, result))

    async def _record_loop(self, stop: asyncio.Event) -> None:
        renew_every = self.lease.total_seconds() / 3
        last_renew = time.monotonic()
        while not self._closing:
            await asyncio.sleep(0.03 if self._done else 0.05)
            await self._flush()
            if time.monotonic() - last_renew >= renew_every and self._in_flight:
                last_renew = time.monotonic()
                try:
                    async with self.db.transaction() as session:
                        await service.renew_leases(
                            session, owner=self.owner, ids=list(self._in_flight), until=self.clock() + self.lease
                        )
                except Exception:
                    log.exception("renewing webhook leases failed")

    async def _flush(self) -> None:
        if not self._done:
            return
        batch, self._done = self._done, []
        now = self.clock()

        async def write(session: AsyncSession, outcomes: list[service.Outcome]) -> None:
            await service.record(
                session,
                outcomes,
                owner=self.owner,
                now=now,
                schedule=self.schedule,
                max_retry_after=self.max_retry_after,
            )

        async def unrecordable(outcome: service.Outcome, exc: Exception) -> None:
            # Write the try without what the endpoint answered (the likely culprit), and set
            # the delivery aside; if even that fails, at least the mark.
            failure = RecordingFailed(f"this try ({_summary(outcome.result)}) could not be recorded: {exc}")
            bare = service.internal_failure(
                outcome.job, failure, started_at=outcome.result.started_at, headers=outcome.request_headers
            )
            try:
                async with self.db.transaction() as session:
                    await write(session, [bare])
                quarantine.noted(Loop.DISPATCHER, outcome.job.delivery_id, exc, outcome.job.payment_id)
            except Exception as again:
                await quarantine.isolate(
                    self.db,
                    loop=Loop.DISPATCHER,
                    row_id=outcome.job.delivery_id,
                    exc=again,
                    now=now,
                    payment_id=outcome.job.payment_id,
                )

        try:
            await quarantine.in_batches(
                self.db,
                loop=Loop.DISPATCHER,
                items=batch,
                size=len(batch),
                handle=write,
                ids=lambda o: (o.job.delivery_id, o.job.payment_id),
                now=now,
                poisoned=unrecordable,
            )
        except Exception:
            # The database failed, not a row: the leases lapse and the deliveries are tried again
            # (at least once).
            log.exception("recording %d webhook attempts failed", len(batch))
        for outcome in batch:
            self._in_flight.pop(outcome.job.delivery_id, None)
            if outcome.result.ok:
                DELIVERY_ATTEMPTS.labels("succeeded").inc()
                if outcome.job.number == 1:
                    EVENT_TO_DELIVERY.observe(
                        max((outcome.result.started_at - outcome.job.event_created_at).total_seconds(), 0.0)
                        + outcome.result.duration_ms / 1000
                    )
            else:
                DELIVERY_ATTEMPTS.labels(outcome.result.error_class or "failed").inc()
        self.wake()  # room freed: claim more


class UnsendableDelivery(Exception):
    """A delivery whose request cannot be made from what is stored (e.g. unreadable secrets)."""


class RecordingFailed(Exception):
    pass


def _summary(result: SendResult) -> str:
    if result.status is not None:
        return f"HTTP {result.status}"
    return str(result.error_class or "no answer")


async def listen_postgres(url: str, channel: str, callback: Callable[[], None], stop: asyncio.Event) -> None:
    """Call ``callback`` on every NOTIFY on ``channel``: the cross-process wake-up on PostgreSQL.

    Reconnects with backoff; while it is down the dispatcher still polls, so nothing is lost.
    """
    import psycopg
    from sqlalchemy.engine import make_url

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    delay = 0.5
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                await conn.execute(f"LISTEN {channel}")
                delay = 0.5
                callback()  # anything committed while we were not listening
                while not stop.is_set():
                    # Bounded waits, so a stop request is noticed within a second.
                    async for _ in conn.notifies(timeout=1.0):
                        callback()
        except Exception as exc:
            log.warning("LISTEN %s failed (%s); retrying in %.1f s", channel, exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, 10.0)
