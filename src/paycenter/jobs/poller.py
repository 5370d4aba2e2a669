"""The poller: every second, every live attempt at a pull provider (Kaspi) is asked for its status.

One process at a time polls (the ``poller`` lease); if it dies another takes over within seconds,
with nothing to clean up by hand. Calls run in parallel, bounded per provider (and a terminal
only ever has its one live attempt). A status that did not change costs no database write. What a
provider reports goes through the payment service, so the same transaction never counts twice.

Each cycle also:
- expires tries past their deadline (cancelling them at the provider);
- gives a terminal back once the attempt holding it ended elsewhere (payment expired or
  cancelled): the operation is cancelled on the terminal first, so it is free for real;
- closes tries whose start never completed (a crash between the two transactions);
- sends refund legs that wait for their terminal, and follows the ones the provider accepted;
- keeps watching tries it closed for a while: money paid to them late is still counted;
- every minute, renews the token of each terminal whose token nears its expiry (an idle terminal
  makes no call that would renew it).

Each attempt, terminal and refund leg is its own job: whatever one of them raises (a row no key
decrypts, a bug) quarantines that row alone, and the cycle goes on with every other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, select

from paycenter import leadership, quarantine
from paycenter.config import Settings
from paycenter.db import Database
from paycenter.jobs.loop import BackgroundLoop
from paycenter.observability import POLL_CYCLE, PROVIDER_CALLS, PROVIDER_ERRORS
from paycenter.payments import attempts, refunds
from paycenter.payments.models import Attempt, AttemptStatus, Payment, Refund, RefundLeg, RefundStatus
from paycenter.providers import terminals
from paycenter.providers.base import (
    AttemptRef,
    ClearsTerminal,
    KeepsTokens,
    NeedsOperator,
    PollState,
    Provider,
    ProviderError,
    TerminalRef,
)
from paycenter.providers.models import Terminal
from paycenter.providers.registry import Providers
from paycenter.quarantine import Loop

log = logging.getLogger("paycenter.poller")
LEASE = "poller"
# How often terminal tokens are looked at; each is renewed well before it expires (kaspi_pos).
TOKEN_CHECK_EVERY = timedelta(seconds=60)
# A terminal whose operation outlived its attempt (it has no /v2/cancel) stays held until the
# terminal ends the operation, at most this long: the terminal simulator S gives up a waiting
# operation after 300 s (kaspi.md §B); after that a busy answer (107) still sends payers elsewhere.
HOLD_AFTER_END = timedelta(seconds=300)
WATCH_AFTER_CLOSE = (AttemptStatus.EXPIRED, AttemptStatus.CANCELLED, AttemptStatus.FAILED)


@dataclass
class CycleReport:
    number: int
    live: int = 0
    polled: int = 0
    ended: int = 0
    errors: int = 0
    refund_legs: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


class Poller(BackgroundLoop):
    def __init__(
        self,
        db: Database,
        providers: Providers,
        settings: Settings,
        *,
        owner: str,
        clock: Callable[[], datetime],
    ) -> None:
        # Fixed rate: a cycle starts every interval, however long the last one's calls took.
        super().__init__(
            db, clock=clock, interval=settings.poller_interval, log=log, failure="poll cycle failed", fixed_rate=True
        )
        self.providers = providers
        self.owner = owner
        self.give_up_after = settings.poller_give_up_after
        self.max_backoff = settings.poller_max_backoff
        # A start whose provider answer was never recorded (crash) is given up after this.
        self.stale_start = timedelta(seconds=2 * settings.kaspi_timeout + 10)
        self.late_window = timedelta(seconds=settings.poller_late_window)
        self.late_every = timedelta(seconds=settings.poller_late_every)
        self.refund_retry_for = timedelta(seconds=settings.refund_retry_for_seconds)
        self.pull = {p.name: p for p in providers.pull()}
        self._limits = {name: asyncio.Semaphore(p.max_in_flight) for name, p in self.pull.items()}
        self.cycles = 0
        # When each live attempt was last asked (this process leads the poller alone), so the
        # least interval between polls holds: the attempt's own (Kaspi's StatusPollingInterval
        # for that QR), else its provider's (Provider.poll_every).
        self._polled_at: dict[str, datetime] = {}
        self._tokens_checked_at: datetime | None = None

    async def run(self, stop: asyncio.Event) -> None:
        if not self.pull:
            return  # nothing to poll: the sandbox decides on the spot
        try:
            await super().run(stop)
        finally:
            with contextlib.suppress(Exception):
                await leadership.release(self.db, LEASE, owner=self.owner, now=self.clock())

    async def step(self) -> None:
        ttl = timedelta(seconds=max(5.0, 5 * self.interval))
        if await leadership.hold(self.db, LEASE, owner=self.owner, ttl=ttl, now=self.clock()):
            await self.cycle()

    async def cycle(self) -> CycleReport:
        self.cycles += 1
        report = CycleReport(number=self.cycles)
        began = time.monotonic()
        now = self.clock()
        names = list(self.pull)
        async with self.db.reading() as session:
            live = (
                await session.execute(
                    select(Attempt, Payment.currency, Payment.provider)
                    .join(Payment, Payment.id == Attempt.payment_id)
                    .where(
                        Attempt.status == AttemptStatus.LIVE,
                        Attempt.provider.in_(names),
                        quarantine.not_quarantined(Loop.POLLER, Attempt.id),
                    )
                )
            ).all()
            closed = (
                await session.execute(
                    select(Attempt, Payment.currency, Payment.provider)
                    .join(Payment, Payment.id == Attempt.payment_id)
                    .where(
                        Attempt.status.in_(WATCH_AFTER_CLOSE),
                        Attempt.provider.in_(names),
                        Attempt.provider_ref.is_not(None),
                        Attempt.finished_at >= now - self.late_window,
                        or_(Attempt.next_poll_at.is_(None), Attempt.next_poll_at <= now),
                        quarantine.not_quarantined(Loop.POLLER, Attempt.id),
                    )
                )
            ).all()
            orphaned = (
                await session.execute(
                    select(Terminal.id, Attempt, Payment.currency, Payment.provider)
                    .join(Attempt, Attempt.id == Terminal.busy_with)
                    .join(Payment, Payment.id == Attempt.payment_id)
                    .where(Attempt.status != AttemptStatus.LIVE, quarantine.not_quarantined(Loop.POLLER, Terminal.id))
                )
            ).all()
            legs = (
                await session.execute(
                    select(RefundLeg.id, Refund.payment_id)
                    .join(Refund, Refund.id == RefundLeg.refund_id)
                    .where(
                        RefundLeg.status == RefundStatus.PENDING,
                        or_(RefundLeg.next_poll_at.is_(None), RefundLeg.next_poll_at <= now),
                        quarantine.not_quarantined(Loop.REFUNDS, RefundLeg.id),
                    )
                    .limit(500)
                )
            ).all()
            # Tokens are decrypted terminal by terminal: read with the attempts, one unreadable
            # token failed the whole cycle for every payment.
            wanted = {a.terminal_id for a, _, _ in [*live, *closed] if a.terminal_id}
            pool = await terminals.refs(session, wanted | {terminal_id for terminal_id, *_ in orphaned})
        report.live = len(live)
        live_ids = {attempt.id for attempt, _, _ in live}
        self._polled_at = {key: at for key, at in self._polled_at.items() if key in live_ids}
        jobs: list[Awaitable[None]] = []
        for attempt, currency, provider_name in live:
            provider = self.pull.get(provider_name)
            if provider is not None:
                work = self._follow_live(provider, attempt, currency, pool, report, now)
                jobs.append(self._isolated(Loop.POLLER, attempt.id, attempt.payment_id, work, report))
        for attempt, currency, provider_name in closed:
            provider = self.pull.get(provider_name)
            if provider is not None:
                work = self._watch_closed(provider, attempt, currency, pool, report)
                jobs.append(self._isolated(Loop.POLLER, attempt.id, attempt.payment_id, work, report))
        for terminal_id, attempt, currency, provider_name in orphaned:
            provider = self.pull.get(provider_name)
            if provider is not None:
                work = self._release_terminal(provider, terminal_id, pool, attempt, currency)
                jobs.append(self._isolated(Loop.POLLER, terminal_id, attempt.payment_id, work, report))
        for leg_id, payment_id in legs:
            report.refund_legs += 1
            jobs.append(self._isolated(Loop.REFUNDS, leg_id, payment_id, self._follow_leg(leg_id), report))
        jobs.extend(await self._token_jobs(now))
        if jobs:
            await asyncio.gather(*jobs)
        report.seconds = time.monotonic() - began
        POLL_CYCLE.observe(report.seconds)
        return report

    async def _isolated(
        self, loop: Loop, row_id: str, payment_id: str | None, work: Awaitable[None], report: CycleReport
    ) -> None:
        """One row's work (see ``BackgroundLoop.isolated``), its failure counted in the report."""
        if not await self.isolated(work, loop=loop, row_id=row_id, payment_id=payment_id):
            report.errors += 1

    async def _follow_live(
        self,
        provider: Provider,
        attempt: Attempt,
        currency: str,
        pool: dict[str, TerminalRef | Exception],
        report: CycleReport,
        now: datetime,
    ) -> None:
        terminal = _terminal(pool, attempt.terminal_id)
        if attempt.provider_ref is None:
            if attempt.created_at < now - self.stale_start:
                await self._abandon_start(provider, attempt, terminal, report)
            return
        ref = attempts.ref(attempt, currency, terminal)
        if attempt.expires_at is not None and attempt.expires_at <= now:
            await self._expire(provider, ref, report)
        elif attempt.next_poll_at is None or attempt.next_poll_at <= now:
            last = self._polled_at.get(attempt.id)
            every = timedelta(seconds=attempt.poll_interval) if attempt.poll_interval else provider.poll_every
            if last is not None and now - last < every:
                return  # asked recently enough
            self._polled_at[attempt.id] = now
            await self._poll(provider, ref, report)

    async def _poll(self, provider: Provider, ref: AttemptRef, report: CycleReport) -> None:
        async with self._limits[provider.name]:
            began = time.perf_counter()
            try:
                result = await provider.poll(ref)
            except ProviderError as exc:
                PROVIDER_ERRORS.labels(provider.name, "poll").inc()
                report.errors += 1
                await self._trouble(ref.attempt_id, exc.message, report)
                return
            except NeedsOperator:
                raise  # quarantined for an operator by _isolated: never failed, never guessed
            except Exception as exc:  # a bug or an odd answer must not stop the other polls
                log.exception("polling attempt %s failed", ref.attempt_id)
                report.errors += 1
                await self._trouble(ref.attempt_id, f"{type(exc).__name__}: {exc}", report)
                return
            finally:
                PROVIDER_CALLS.labels(provider.name, "poll").observe(time.perf_counter() - began)
        report.polled += 1
        if result.state is PollState.UNKNOWN:
            # The provider does not know whether the money was taken: back off, but never close the
            # try as failed for it (the provider hands it to an operator: NeedsOperator).
            error = result.error or "the provider does not know the status"
            await self._trouble(ref.attempt_id, error, report, give_up=False)
            return
        if result.state in (PollState.WAITING, PollState.ACTIVE) and result.expires_at is None:
            return  # still in progress, no new deadline: nothing to write
        async with self.db.transaction() as session:
            ended = await attempts.apply(session, attempt_id=ref.attempt_id, result=result, now=self.clock())
        report.ended += ended

    async def _watch_closed(
        self,
        provider: Provider,
        attempt: Attempt,
        currency: str,
        pool: dict[str, TerminalRef | Exception],
        report: CycleReport,
    ) -> None:
        """A try we closed may still be paid at the provider (a QR until its own deadline)."""
        ref = attempts.ref(attempt, currency, _terminal(pool, attempt.terminal_id))
        async with self._limits[provider.name]:
            try:
                result = await provider.poll(ref)
            except ProviderError:
                result = None
        async with self.db.transaction() as session:
            if result is not None and result.state is PollState.SUCCEEDED:
                report.ended += await attempts.apply_late(
                    session, attempt_id=ref.attempt_id, result=result, now=self.clock()
                )
            else:
                await attempts.watch_later(session, attempt_id=ref.attempt_id, at=self.clock() + self.late_every)

    async def _trouble(self, attempt_id: str, error: str, report: CycleReport, *, give_up: bool = True) -> None:
        async with self.db.transaction() as session:
            ended = await attempts.trouble(
                session,
                attempt_id=attempt_id,
                error=error,
                now=self.clock(),
                give_up_after=self.give_up_after if give_up else float("inf"),
                max_backoff=self.max_backoff,
            )
        report.ended += ended

    async def _expire(self, provider: Provider, ref: AttemptRef, report: CycleReport) -> None:
        """Past its deadline: one last look (it may have been paid at the last second), then cancel."""
        async with self._limits[provider.name]:
            try:
                result = await provider.poll(ref)
            except ProviderError:
                result = None
        if result is not None and result.state in (PollState.SUCCEEDED, PollState.FAILED, PollState.CANCELLED):
            async with self.db.transaction() as session:
                await attempts.apply(session, attempt_id=ref.attempt_id, result=result, now=self.clock())
            report.ended += 1
            return
        cancelled = await attempts.cancel_at_provider(self.providers, provider.name, ref)
        async with self.db.transaction() as session:
            closed = await attempts.close_by_id(
                session,
                attempt_id=ref.attempt_id,
                status=AttemptStatus.EXPIRED,
                now=self.clock(),
                error="time ran out",
                free_terminal=cancelled,  # else held until the terminal ends it (_release_terminal)
            )
        report.ended += closed is not None

    async def _abandon_start(
        self, provider: Provider, attempt: Attempt, terminal: TerminalRef | None, report: CycleReport
    ) -> None:
        """A start whose answer was never recorded (the process died during the call). On a
        terminal the operation may still be on its screen, payable, with no processId to follow:
        it is cleared where the terminal can, and otherwise set before an operator (an independent
        client sends such an operation to manual review, kaspi.md §B), never retried."""
        cleared = terminal is None or await self._clear_terminal(provider, terminal)
        async with self.db.transaction() as session:
            closed = await attempts.close_by_id(
                session,
                attempt_id=attempt.id,
                status=AttemptStatus.FAILED,
                now=self.clock(),
                error="the provider's answer to the start was never recorded",
                free_terminal=cleared,
            )
            if not cleared and terminal is not None:
                await quarantine.mark(
                    session,
                    loop=Loop.POLLER,
                    row_id=attempt.id,
                    payment_id=attempt.payment_id,
                    now=self.clock(),
                    reason=(
                        f"a payment of {attempt.amount / 100:.2f} may have been started on terminal "
                        f"{terminal.name} at {attempt.created_at:%Y-%m-%d %H:%M:%S} UTC without paycenter "
                        "learning its operation: check the terminal's cheques; money taken there is not "
                        "on any payment"
                    ),
                )
        report.ended += closed is not None

    async def _clear_terminal(self, provider: Provider, terminal: TerminalRef) -> bool:
        """Clear whatever runs on the terminal; True if it was cleared."""
        if not isinstance(provider, ClearsTerminal):
            return True
        try:
            await provider.clear(terminal)
        except ProviderError:
            return False
        return True

    async def _release_terminal(
        self,
        provider: Provider,
        terminal_id: str,
        pool: dict[str, TerminalRef | Exception],
        attempt: Attempt,
        currency: str,
    ) -> None:
        """The attempt holding this terminal ended elsewhere: cancel its operation, then free it."""
        terminal = _terminal(pool, terminal_id)
        assert terminal is not None
        if attempt.provider_ref:
            ref = attempts.ref(attempt, currency, terminal)
            await attempts.cancel_at_provider(self.providers, provider.name, ref)
            # Money paid to it meanwhile is the late-money watcher's; this only decides the terminal.
            if not await self._operation_ended(provider, ref, attempt.finished_at):
                return  # still running on the device: the pool keeps it until it ends
        elif not await self._clear_terminal(provider, terminal):
            # Nothing to ask the terminal about: it is held as long as an operation could run.
            if attempt.finished_at is not None and self.clock() - attempt.finished_at < HOLD_AFTER_END:
                return
        async with self.db.transaction() as session:
            await terminals.free(session, terminal_id=terminal_id, holder=attempt.id)

    async def _token_jobs(self, now: datetime) -> list[Awaitable[None]]:
        keepers = [p for p in self.pull.values() if isinstance(p, KeepsTokens)]
        if not keepers or (self._tokens_checked_at is not None and now - self._tokens_checked_at < TOKEN_CHECK_EVERY):
            return []
        self._tokens_checked_at = now
        async with self.db.reading() as session:
            pool = await terminals.refs(session, None)
        return [self._keep_token(provider, terminal) for provider in keepers for terminal in pool.values()]

    async def _keep_token(self, provider: KeepsTokens, terminal: TerminalRef | Exception) -> None:
        """One terminal's renewal: a failure is that terminal's (its health says why), not the cycle's."""
        if isinstance(terminal, Exception):
            return  # unreadable: the attempts that use it report it
        try:
            await provider.keep_token(terminal)
        except ProviderError as exc:
            log.warning("terminal %s: token renewal failed: %s", terminal.name, exc.message)
        except Exception:
            log.exception("terminal %s: token renewal failed", terminal.name)

    async def _operation_ended(self, provider: Provider, ref: AttemptRef, ended_at: datetime | None) -> bool:
        """Has the terminal ended the operation of an attempt that ended here? A terminal without
        /v2/cancel keeps showing it until the payer or its own timeout ends it."""
        if ended_at is not None and self.clock() - ended_at >= HOLD_AFTER_END:
            return True
        try:
            result = await provider.poll(ref)
        except NeedsOperator:
            return False
        except ProviderError as exc:
            return exc.code == "101"  # "process not found": nothing runs there
        return result.state in (PollState.SUCCEEDED, PollState.FAILED, PollState.CANCELLED)

    async def _follow_leg(self, leg_id: str) -> None:
        async with self.db.reading() as session:
            sent = await session.scalar(select(RefundLeg.sent_at).where(RefundLeg.id == leg_id))
        if sent is None:
            await refunds.send_leg(
                self.db, self.providers, leg_id=leg_id, clock=self.clock, retry_for=self.refund_retry_for
            )
        else:
            await refunds.poll_leg(
                self.db,
                self.providers,
                leg_id=leg_id,
                clock=self.clock,
                answer_grace=self.stale_start,
                retry_for=self.refund_retry_for,
            )


def _terminal(pool: dict[str, TerminalRef | Exception], terminal_id: str | None) -> TerminalRef | None:
    """The attempt's terminal; raises what made it unreadable (the row's failure, not the cycle's)."""
    if terminal_id is None:
        return None
    found = pool.get(terminal_id)
    if isinstance(found, Exception):
        raise found
    if found is None:
        raise LookupError(f"terminal {terminal_id} not found")
    return found
