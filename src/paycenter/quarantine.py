"""Quarantine: rows a background loop could not process, set aside so the loop goes on.

One bad row (a payment whose stored metadata no encoder accepts, a merchant whose signing secret
cannot be decrypted, a refund leg whose provider call crashes) must never stop a loop for every
merchant. A loop that fails on one row marks it here with the reason, counts it in a metric, logs
it with its id and goes on with the others. A marked row leaves the loop's due set, so it is not
tried again every cycle, until an operator who fixed the cause retries it (``paycenter
quarantine retry``, or the admin panel).

Batches stay batches while all is well: ``in_batches`` runs a batch in one transaction, and only
when that fails redoes its rows one per transaction, to find the row that fails. A failure of the
database itself (connection lost, lock timeout, deadlock) is not a row's fault: it is raised, so
the loop retries later and nothing is quarantined for it.

Marks are keyed by (loop, row id): plain strings every backend stores alike, no foreign keys (a
mark must be writable precisely when the row it names is in a state nothing else can write).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Integer, String, delete, exists, func, select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from paycenter.db import Base, Database, UTCDateTime, rowcount
from paycenter.observability import LOOP_ROW_FAILURES, TRANSACTION_ID

log = logging.getLogger("paycenter.quarantine")

T = TypeVar("T")
R = TypeVar("R")


class Loop(enum.StrEnum):
    """The loops that quarantine rows, and what a row is to each."""

    EXPIRER = "expirer"  # a payment due to expire
    DISPATCHER = "dispatcher"  # a webhook delivery
    POLLER = "poller"  # a live or recently closed attempt at a pull provider
    REFUNDS = "refunds"  # a refund leg
    CLEANUP = "cleanup"  # a closed payment due for removal


class QuarantinedRow(Base):
    __tablename__ = "quarantine"

    loop: Mapped[str] = mapped_column(String(32), primary_key=True)
    row_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The payment the row belongs to, so its admin page can show the mark.
    payment_id: Mapped[str | None] = mapped_column(String(32), index=True)
    reason: Mapped[str] = mapped_column(String(500))
    failures: Mapped[int] = mapped_column(Integer, default=1)
    since: Mapped[datetime] = mapped_column(UTCDateTime())
    last_failed_at: Mapped[datetime] = mapped_column(UTCDateTime())


def describe(exc: BaseException) -> str:
    """The reason as storable text: a message that carries a NUL or a lone surrogate (which
    PostgreSQL refuses) must not make the mark itself unwritable."""
    text = f"{type(exc).__name__}: {exc}".replace("\x00", "\\x00")
    return text.encode("utf-8", "replace").decode("utf-8")[:500]


# MySQL/MariaDB errors that are about the server or the connection, not the row. Its drivers
# raise OperationalError for many row errors too (1366 "incorrect string value", ...).
_MYSQL_TRANSIENT = {1040, 1053, 1205, 1213, 1317, 1927, 2002, 2003, 2006, 2013, 2055, 4031}


def is_transient(exc: BaseException) -> bool:
    """A failure of the database or the network rather than of a row: retry later, mark nothing."""
    if isinstance(exc, InterfaceError | TimeoutError | ConnectionError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError):
        args = getattr(exc.orig, "args", ())
        code = args[0] if args and isinstance(args[0], int) else None  # only MySQL drivers give one
        return code is None or code in _MYSQL_TRANSIENT
    return False


def not_quarantined(loop: Loop, row_id: Any) -> ColumnElement[bool]:
    """For a loop's due query: rows without a mark (an index probe each, on the mark's key)."""
    return ~exists().where(QuarantinedRow.loop == loop.value, QuarantinedRow.row_id == row_id)


async def mark(
    session: AsyncSession, *, loop: Loop, row_id: str, reason: str, now: datetime, payment_id: str | None = None
) -> None:
    existing = await session.get(QuarantinedRow, (loop.value, row_id), with_for_update=True, populate_existing=True)
    if existing is not None:
        existing.failures += 1
        existing.reason = reason[:500]
        existing.last_failed_at = now
        return
    session.add(
        QuarantinedRow(
            loop=loop.value,
            row_id=row_id,
            payment_id=payment_id,
            reason=reason[:500],
            failures=1,
            since=now,
            last_failed_at=now,
        )
    )


async def release(session: AsyncSession, *, loop: Loop | str, row_id: str) -> bool:
    """Take a row out of quarantine (the loop picks it up again); False if it was not marked."""
    gone = await session.execute(
        delete(QuarantinedRow)
        .where(QuarantinedRow.loop == str(loop), QuarantinedRow.row_id == row_id)
        .execution_options(synchronize_session=False)
    )
    return bool(rowcount(gone))


async def rows(
    session: AsyncSession, *, loop: Loop | str | None = None, payment_id: str | None = None, limit: int = 500
) -> list[QuarantinedRow]:
    stmt = select(QuarantinedRow).order_by(QuarantinedRow.since, QuarantinedRow.loop, QuarantinedRow.row_id)
    if loop is not None:
        stmt = stmt.where(QuarantinedRow.loop == str(loop))
    if payment_id is not None:
        stmt = stmt.where(QuarantinedRow.payment_id == payment_id)
    return list(await session.scalars(stmt.limit(limit)))


async def counts(session: AsyncSession) -> dict[str, int]:
    result = await session.execute(select(QuarantinedRow.loop, func.count()).group_by(QuarantinedRow.loop))
    return {loop: int(n) for loop, n in result.all()}


def noted(loop: Loop, row_id: str, exc: BaseException, payment_id: str | None = None) -> str:
    """The metric and the log line of a row's failure; returns the reason to record."""
    reason = describe(exc)
    LOOP_ROW_FAILURES.labels(loop.value).inc()
    token = TRANSACTION_ID.set(payment_id)  # on this line only, not on the loop's next ones
    try:
        log.error("%s: row %s failed and is quarantined: %s", loop.value, row_id, reason, exc_info=exc)
    finally:
        TRANSACTION_ID.reset(token)
    return reason


async def isolate(
    db: Database,
    *,
    loop: Loop,
    row_id: str,
    exc: BaseException,
    now: datetime,
    payment_id: str | None = None,
    also: Callable[[AsyncSession], Awaitable[None]] | None = None,
) -> None:
    """Quarantine one row in a transaction of its own (with ``also``, the loop's own bookkeeping
    of the failure, when there is some). Never raises: the loop must go on."""
    reason = noted(loop, row_id, exc, payment_id)
    try:
        async with db.transaction() as session:
            if also is not None:
                await also(session)
            await mark(session, loop=loop, row_id=row_id, reason=reason, now=now, payment_id=payment_id)
    except Exception:
        # The row is tried again on the loop's next pass (and failing, logged again).
        log.exception("%s: row %s could not even be quarantined", loop.value, row_id)


async def in_batches(
    db: Database,
    *,
    loop: Loop,
    items: Sequence[T],
    size: int,
    handle: Callable[[AsyncSession, list[T]], Awaitable[R]],
    ids: Callable[[T], tuple[str, str | None]],
    now: datetime,
    poisoned: Callable[[T, Exception], Awaitable[None]] | None = None,
) -> list[R]:
    """``handle`` every item, a batch of ``size`` per transaction; a batch that fails is redone
    one item per transaction, and an item that fails alone is quarantined (or given to
    ``poisoned``). ``ids`` names an item: (row id, payment id). Returns the results of the
    transactions that committed."""
    results: list[R] = []
    for start in range(0, len(items), size):
        batch = list(items[start : start + size])
        try:
            async with db.transaction() as session:
                results.append(await handle(session, batch))
            continue
        except Exception as exc:
            if is_transient(exc):
                raise
            log.warning("%s: a batch of %d rows failed; trying them one by one", loop.value, len(batch))
        for item in batch:
            try:
                async with db.transaction() as session:
                    results.append(await handle(session, [item]))
            except Exception as exc:
                if is_transient(exc):
                    raise
                if poisoned is not None:
                    await poisoned(item, exc)
                else:
                    row_id, payment_id = ids(item)
                    await isolate(db, loop=loop, row_id=row_id, exc=exc, now=now, payment_id=payment_id)
    return results
