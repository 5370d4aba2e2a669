"""The background-loop skeleton (jobs/loop.py) every loop runs on: a failed pass or row never ends
the loop, a stop ends it at once however long its interval, a wake-up ends its rest, and the lag
the heartbeat reports moves with each pass."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import pytest

from kit.clock import Clock
from paycenter import quarantine
from paycenter.db import Database
from paycenter.jobs.loop import BackgroundLoop
from paycenter.observability import LOOP_ROW_FAILURES
from paycenter.quarantine import Loop

log = logging.getLogger("paycenter.test-loop")


class Counting(BackgroundLoop):
    """Passes that fail when told to, and may ask for the next pass at once."""

    def __init__(self, *, interval: float, fail: bool = False, hurry: int = 0) -> None:
        # No database and no clock: these passes touch neither.
        super().__init__(None, clock=Clock(), interval=interval, log=log, failure="test pass failed")
        self.passes = 0
        self.fail = fail
        self.hurry = hurry  # this many passes follow the previous one without a rest

    async def step(self) -> int:
        self.passes += 1
        if self.fail:
            raise RuntimeError(f"pass {self.passes} broke")
        return self.passes

    def again(self, result: int) -> bool:
        return result <= self.hurry


async def until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def running(loop: BackgroundLoop, stop: asyncio.Event, body: Callable[[], Awaitable[None]]) -> float:
    """Run ``loop`` while ``body`` runs; returns how long the loop took to end once stopped."""
    task = asyncio.create_task(loop.run(stop))
    try:
        await body()
    finally:
        stop.set()
        began = time.monotonic()
        await asyncio.wait_for(task, timeout=5)
    return time.monotonic() - began


async def test_a_failed_pass_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    loop = Counting(interval=0.01, fail=True)

    async def three_passes() -> None:
        await until(lambda: loop.passes >= 3, timeout=5, what="three failed passes")

    with caplog.at_level(logging.ERROR, logger=log.name):
        await running(loop, asyncio.Event(), three_passes)
    failures = [r for r in caplog.records if r.name == log.name and r.getMessage() == "test pass failed"]
    assert len(failures) >= 3 and all(r.exc_info for r in failures)


async def test_a_stop_ends_a_long_rest_at_once_and_the_lag_moves_with_each_pass() -> None:
    loop = Counting(interval=3600)
    assert loop.last_cycle_at == 0.0  # the heartbeat reports no lag before the first pass
    before = time.monotonic()

    async def one_pass() -> None:
        await until(lambda: loop.passes == 1, timeout=5, what="the first pass")

    took = await running(loop, asyncio.Event(), one_pass)
    assert took < 1.0, f"the loop took {took:.2f} s to stop"
    assert loop.passes == 1
    assert loop.last_cycle_at >= before


async def test_a_wake_up_ends_the_rest_and_again_skips_it() -> None:
    loop = Counting(interval=3600, hurry=3)

    async def woken() -> None:
        # Passes 1-3 asked for the next one at once; pass 4 did not, so the loop rests for an hour.
        await until(lambda: loop.passes == 4, timeout=5, what="four passes without a rest")
        await asyncio.sleep(0.05)
        assert loop.passes == 4
        loop.wake()
        await until(lambda: loop.passes == 5, timeout=5, what="the pass after the wake-up")

    await running(loop, asyncio.Event(), woken)


async def test_a_failed_row_is_quarantined_and_a_transient_failure_is_not(db: Database, clock: Clock) -> None:
    clock.freeze()  # the mark's "since" is exactly the loop's clock
    loop = BackgroundLoop(db, clock=clock, interval=1, log=log, failure="unused")
    counted = LOOP_ROW_FAILURES.labels(Loop.REFUNDS.value)
    seen = counted._value.get()

    async def fine() -> None:
        return None

    async def broken() -> None:
        raise ValueError("no key decrypts this row")

    async def offline() -> None:
        raise ConnectionError("the database went away")

    assert await loop.isolated(fine(), loop=Loop.REFUNDS, row_id="leg-ok", payment_id=None)
    assert not await loop.isolated(broken(), loop=Loop.REFUNDS, row_id="leg-bad", payment_id="P1")
    assert not await loop.isolated(offline(), loop=Loop.REFUNDS, row_id="leg-later", payment_id=None)
    async with db.reading() as session:
        marks = await quarantine.rows(session, loop=Loop.REFUNDS)
    assert [(m.row_id, m.payment_id, m.reason, m.since) for m in marks] == [
        ("leg-bad", "P1", "ValueError: no key decrypts this row", clock())
    ]
    assert counted._value.get() == seen + 1


class WokenMidPass(Counting):
    """The first pass is woken after it has looked for work: a NOTIFY for a row committed after
    the pass's SELECT, which that pass could not see."""

    async def step(self) -> int:
        result = await super().step()
        if self.passes == 1:
            await asyncio.sleep(0)  # the pass has looked; the wake-up arrives before it ends
            self.wake()
        return result


async def test_a_wake_up_during_a_pass_is_not_lost() -> None:
    # Before the fix the rest cleared the flag, the wake-up was dropped, and the new row waited
    # the whole interval (an hour here; a NOTIFY test timed out on CI this way).
    loop = WokenMidPass(interval=3600)

    async def woken_mid_pass() -> None:
        await until(lambda: loop.passes == 2, timeout=5, what="the pass the mid-pass wake-up asked for")
        await asyncio.sleep(0.05)
        assert loop.passes == 2  # and one wake-up is one more pass, not a busy loop

    await running(loop, asyncio.Event(), woken_mid_pass)
