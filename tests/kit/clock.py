"""The app's clock, movable by tests, and driving loops by moving it."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Any

from paycenter.db import utcnow


class Clock:
    """The app's clock, movable by tests: expiry and retention without sleeping."""

    def __init__(self) -> None:
        self.offset = timedelta()
        self.frozen: datetime | None = None

    def __call__(self) -> datetime:
        return (self.frozen or utcnow()) + self.offset

    def freeze(self) -> None:
        """Stop the clock where it is: from now on only ``advance`` moves it, so a test about
        intervals is exact however slowly the machine runs."""
        self.frozen = utcnow()

    def advance(self, **kwargs: float) -> None:
        self.offset += timedelta(**kwargs)


async def drive(clock: Any, check: Any, *, step: float, timeout: float = 20, what: str) -> Any:
    """Move the app's clock ``step`` seconds at a time until ``check()`` holds: backoffs of
    minutes pass in a moment, and the deadline is real time."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        clock.advance(seconds=step)
        await asyncio.sleep(0.05)  # the poll step: let the loops run at the new time
