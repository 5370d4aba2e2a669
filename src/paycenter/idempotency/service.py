"""Idempotency-Key for merchant POSTs: the same key with the same request gets the same answer.

The key row is inserted in the transaction that does the work, so a crash leaves neither. Two
concurrent requests with one key both run; the second's insert hits the unique key, its work is
rolled back, and it replays the first's stored answer. A key reused with a different request is a
409. Only successful answers are stored: a refused request changed nothing and may be retried.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paycenter import contract
from paycenter.db import Database, rowcount
from paycenter.errors import ApiError, Conflict, Unprocessable
from paycenter.idempotency.models import IdempotencyKey

MAX_KEY_LENGTH = 255
Work = Callable[[AsyncSession], Awaitable[tuple[int, dict[str, Any]]]]


def fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


class Replay:
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body


def _check_key(key: str) -> None:
    # The published pattern itself (paycenter.contract), so the document and this check agree.
    if contract.IDEMPOTENCY_KEY.fullmatch(key) is None:
        raise Unprocessable(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters (inner spaces allowed)",
            fields=[{"field": "Idempotency-Key", "message": "invalid"}],
        )


async def _stored(
    session: AsyncSession, *, merchant_id: str, key: str, fp: str, now: datetime, ttl: timedelta
) -> Replay | None:
    row = await session.scalar(
        select(IdempotencyKey).where(IdempotencyKey.merchant_id == merchant_id, IdempotencyKey.key == key)
    )
    if row is None:
        return None
    if row.created_at < now - ttl:
        await session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == row.id))
        await session.flush()
        return None
    if row.fingerprint != fp:
        raise Conflict(
            "Idempotency-Key was already used with a different request",
            code="idempotency_key_reused",
        )
    return Replay(row.response_status, json.loads(row.response_body))


async def run(
    db: Database,
    *,
    merchant_id: str,
    key: str | None,
    fp: str,
    now: datetime,
    ttl: timedelta,
    work: Work,
) -> tuple[int, dict[str, Any], bool]:
    """Run ``work`` in one write transaction, at most once per key. Returns (status, body, replayed)."""
    if key is None:
        async with db.transaction() as session:
            status, body = await work(session)
        return status, body, False
    _check_key(key)
    try:
        async with db.transaction() as session:
            replay = await _stored(session, merchant_id=merchant_id, key=key, fp=fp, now=now, ttl=ttl)
            if replay is not None:
                return replay.status, replay.body, True
            status, body = await work(session)
            session.add(
                IdempotencyKey(
                    merchant_id=merchant_id,
                    key=key,
                    fingerprint=fp,
                    response_status=status,
                    response_body=json.dumps(body, separators=(",", ":")),
                    created_at=now,
                )
            )
            await session.flush()
        return status, body, False
    except IntegrityError:
        pass
    except ApiError:
        # Refused, perhaps only because a concurrent request with this key committed while we
        # waited for the payment's lock (it cancelled or refunded it first): then answer as it did.
        async with db.reading() as session:
            replay = await _stored(session, merchant_id=merchant_id, key=key, fp=fp, now=now, ttl=ttl)
        if replay is None:
            raise
        return replay.status, replay.body, True
    # A concurrent request with the same key committed first: answer as it did.
    async with db.reading() as session:
        replay = await _stored(session, merchant_id=merchant_id, key=key, fp=fp, now=now, ttl=ttl)
    if replay is None:
        raise Conflict("A request with this Idempotency-Key is still in progress", code="idempotency_in_progress")
    return replay.status, replay.body, True


async def purge_stale(session: AsyncSession, *, now: datetime, ttl: timedelta) -> int:
    """Forget keys older than their time to live (the daily cleanup; an old key no longer replays
    anyway, see ``_stored``). Returns how many went."""
    gone = await session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < now - ttl))
    return rowcount(gone) or 0
