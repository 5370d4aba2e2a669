"""Rate limits per API token and per client address, shared by every process through the database.

Fixed one-minute windows. A request is decided in memory against the last known shared count plus
what this process let through since; once a second each process adds its own hits to the shared
row and reads the total back. So the limit holds across processes and hosts to within about a
second's worth of traffic, at one write per key per second instead of one per request (which the
payment hot path could not afford).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import String, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from paycenter.db import Base, Database, UTCDateTime, rowcount
from paycenter.errors import ApiError

log = logging.getLogger("paycenter.ratelimit")
WINDOW = 60  # seconds
VOUCH_FOR = timedelta(seconds=1)


class RateCounter(Base):
    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime())
    count: Mapped[int] = mapped_column(default=0)


class TooManyRequests(ApiError):
    status_code = 429
    code = "rate_limited"


def _window(now: datetime) -> datetime:
    seconds = int(now.timestamp()) // WINDOW * WINDOW
    return datetime.fromtimestamp(seconds, UTC)


class RateLimiter:
    def __init__(self, db: Database, *, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.clock = clock
        self._pending: dict[tuple[str, datetime], int] = defaultdict(int)
        self._shared: dict[tuple[str, datetime], int] = {}
        # Hashes of tokens found valid, and when: see ``vouched``.
        self._vouched: dict[str, datetime] = {}

    def hit(self, key: str, limit: int) -> None:
        """Count one request for ``key``; refuse (429) once the window's limit is reached."""
        if limit <= 0:
            return
        now = self.clock()
        window = _window(now)
        slot = (key, window)
        if self._shared.get(slot, 0) + self._pending[slot] >= limit:
            retry = int((window.timestamp() + WINDOW) - now.timestamp()) + 1
            raise TooManyRequests(
                f"Too many requests: at most {limit} a minute. Try again in {retry} s.",
                headers={"Retry-After": str(retry)},
            )
        self._pending[slot] += 1

    def vouched(self, token_hash: str) -> bool:
        """Whether the token was found valid in the last second.

        For counting public reads only, which a valid token moves from its address's limit to its
        own: a merchant's poller then costs one token lookup a second instead of one per read.
        Nothing is let in on it (token endpoints look the token up every time), and a token revoked
        this second has its public reads counted as its own a second longer."""
        seen = self._vouched.get(token_hash)
        return seen is not None and self.clock() - seen < VOUCH_FOR

    def vouch(self, token_hash: str) -> None:
        now = self.clock()
        if len(self._vouched) >= 1000:  # only valid tokens get here; a second's worth is few
            self._vouched = {h: t for h, t in self._vouched.items() if now - t < VOUCH_FOR}
        self._vouched[token_hash] = now

    async def sync(self) -> None:
        """Add this process's hits to the shared counters and learn everyone's totals."""
        pending, self._pending = self._pending, defaultdict(int)
        current = _window(self.clock())
        self._shared = {slot: n for slot, n in self._shared.items() if slot[1] >= current}
        if not pending:
            await self._refresh(current)
            return
        try:
            async with self.db.transaction() as session:
                for (key, window), n in sorted(pending.items()):
                    added = await session.execute(
                        update(RateCounter)
                        .where(RateCounter.key == key, RateCounter.window_start == window)
                        .values(count=RateCounter.count + n)
                        .execution_options(synchronize_session=False)
                    )
                    if not rowcount(added):
                        # A new window: restart the row (or create it).
                        renewed = await session.execute(
                            update(RateCounter)
                            .where(RateCounter.key == key, RateCounter.window_start < window)
                            .values(window_start=window, count=n)
                            .execution_options(synchronize_session=False)
                        )
                        if not rowcount(renewed):
                            async with session.begin_nested():
                                session.add(RateCounter(key=key, window_start=window, count=n))
                    total = await session.scalar(
                        select(RateCounter.count).where(RateCounter.key == key, RateCounter.window_start == window)
                    )
                    self._shared[(key, window)] = int(total or 0)
        except IntegrityError:
            # Another process created the same row at the same moment: count these next time.
            for slot, n in pending.items():
                self._pending[slot] += n

    async def _refresh(self, window: datetime) -> None:
        """Learn what the other processes counted for the keys we limit in this window."""
        keys = [key for key, w in self._shared if w == window]
        if not keys:
            return
        async with self.db.reading() as session:
            rows = await session.execute(
                select(RateCounter.key, RateCounter.count).where(
                    RateCounter.key.in_(keys), RateCounter.window_start == window
                )
            )
            for key, count in rows:
                self._shared[(key, window)] = int(count)

    async def run(self, stop: asyncio.Event, every: float = 1.0) -> None:
        while not stop.is_set():
            try:
                await self.sync()
            except Exception:
                log.exception("rate limit sync failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)


async def purge_stale(session: AsyncSession, *, now: datetime) -> int:
    """Drop counters of past windows: a row per client address would otherwise stay forever."""
    result = await session.execute(
        delete(RateCounter)
        .where(RateCounter.window_start < _window(now) - timedelta(seconds=WINDOW))
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) or 0


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def hit_address(request: Request) -> None:
    """Count a request that no valid API token vouches for against its client address."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None:
        limit = request.app.state.ctx.settings.rate_limit_ip_per_minute
        limiter.hit(f"ip:{client_address(request)}"[:120], limit)


async def limit_by_address(request: Request) -> None:
    """Dependency for public endpoints the payer's browser calls (the payment page); the public
    reads a merchant's server polls use ``paycenter.deps.PublicRead``, which counts a valid token's
    reads against the token instead."""
    hit_address(request)


PublicRateLimit = Annotated[None, Depends(limit_by_address)]
