"""Keyset pagination, newest first: the cursor is the last row's (created_at, id).

Unlike offsets, a keyset never skips or repeats a row when rows are added between pages.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession

from paycenter.errors import Unprocessable

T = TypeVar("T")


def encode_cursor(created_at: datetime, row_id: str) -> str:
    raw = json.dumps([created_at.astimezone(UTC).isoformat(), row_id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, valid_id: Callable[[str], bool]) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        when = datetime.fromisoformat(created)
        if when.tzinfo is None or not isinstance(row_id, str) or not valid_id(row_id):
            raise ValueError
        return when.astimezone(UTC), row_id
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise Unprocessable(
            "cursor is not valid: pass next_cursor from a previous page",
            fields=[{"field": "cursor", "message": "invalid"}],
        ) from None


async def page(
    session: AsyncSession,
    stmt: Select[tuple[T]],
    *,
    created_col: Any,
    id_col: Any,
    limit: int,
    cursor: str | None,
    valid_id: Callable[[str], bool],
) -> tuple[Sequence[T], str | None]:
    """One page of ``stmt`` (which selects one entity with ``created_at`` and ``id``)."""
    if cursor:
        created, row_id = decode_cursor(cursor, valid_id)
        stmt = stmt.where(or_(created_col < created, and_(created_col == created, id_col < row_id)))
    stmt = stmt.order_by(created_col.desc(), id_col.desc()).limit(limit + 1)
    rows = list(await session.scalars(stmt))
    if len(rows) > limit:
        last: Any = rows[limit - 1]
        return rows[:limit], encode_cursor(last.created_at, last.id)
    return rows, None
