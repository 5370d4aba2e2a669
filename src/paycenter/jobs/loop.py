"""The one skeleton of every background loop: a pass, a rest, until the worker stops.

The expirer, the poller, the dispatcher's claimer, the cleanup and the worker's heartbeat each
used to write this for themselves. What they share, and what a loop gets by being one:

- **the interval**: after each pass the loop rests ``interval`` seconds; a ``fixed_rate`` loop
  (the poller) rests only what the pass left of it, so passes start every ``interval`` seconds;
- **a prompt stop**: the rest ends the moment the worker's stop event is set (and when the loop is
  woken: the dispatcher on a commit signal, even one that came while the pass ran), and no new
  pass starts after it;
- **the lag**: ``last_cycle_at``, the monotonic time the last pass began. The worker's heartbeat
  reports each loop's age (``loop_lag_seconds`` in ``paycenter status`` and ``/readyz``), so a
  loop stuck in a pass shows up as a growing number;
- **a failed pass is not the end**: whatever a pass raises (the database gone for a moment, a bug)
  is logged and the loop goes on with its next pass;
- **a failed row is not the pass's**: ``isolated`` runs one row's work and quarantines that row
  alone (logged on the loop's logger), where operators see it (``paycenter quarantine``, the admin panel, the
  ``paycenter_loop_row_failures_total`` metric); batches go through ``quarantine.in_batches``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from paycenter import quarantine
from paycenter.db import Database
from paycenter.quarantine import Loop


class BackgroundLoop:
    """A loop of passes over ``db``; a subclass says what one pass does (``step``)."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], datetime],
        interval: float,
        log: logging.Logger,
        failure: str,
        fixed_rate: bool = False,
    ) -> None:
        self.db = db
        self.clock = clock
        self.interval = interval
        self.fixed_rate = fixed_rate
        self.last_cycle_at = 0.0  # monotonic; 0: no pass yet
        self._log = log
        self._failure = failure  # the log line of a failed pass: "expiring payments failed"
        self._wake = asyncio.Event()

    async def step(self) -> Any:
        """One pass. Its result goes to ``again``."""
        raise NotImplementedError

    def again(self, result: Any) -> bool:
        """Start the next pass at once, without resting (more work is due right now)."""
        return False

    def wake(self) -> None:
        """End the current rest: work came in that should not wait for the interval."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            began = time.monotonic()
            self.last_cycle_at = began
            # Cleared before the pass looks for work, never after: a wake-up that comes while the
            # pass runs (a NOTIFY for a row committed after the pass's SELECT) ends the next rest at
            # once. Cleared at the rest instead, it was lost and the row waited a whole interval.
            self._wake.clear()
            try:
                if self.again(await self.step()):
                    continue
            except Exception:
                self._log.exception(self._failure)
            rest = self.interval - (time.monotonic() - began) if self.fixed_rate else self.interval
            if rest > 0:
                await self._rest(stop, rest)

    async def _rest(self, stop: asyncio.Event, seconds: float) -> None:
        waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        _, pending = await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for fut in pending:
            fut.cancel()

    async def isolated(self, work: Awaitable[None], *, loop: Loop, row_id: str, payment_id: str | None) -> bool:
        """One row's work: whatever it raises is that row's failure, never the pass's. False if it
        failed.

        A failure of the database or the network is nobody's row: the row is tried on the next
        pass. Any other is quarantined (a mark, the metric, a log line with the row and its payment)."""
        try:
            await work
        except Exception as exc:
            if quarantine.is_transient(exc):
                self._log.warning("%s: row %s failed (%s); trying again next cycle", loop.value, row_id, exc)
                return False
            await quarantine.isolate(
                self.db, loop=loop, row_id=row_id, exc=exc, now=self.clock(), payment_id=payment_id
            )
            return False
        return True
