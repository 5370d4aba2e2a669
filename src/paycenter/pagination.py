"""Keyset pagination, newest first: the cursor is the last row's (created_at, id).

Unlike offsets, a keyset never skips or repeats a row when rows are added between pages.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession

from paycenter.errors import Unprocessable

T = TypeVar("T")


# The last row's creation as microseconds since the epoch, a dot, its id: every text of this form
# is a position in the ordering (none is "invalid"), so the document's pattern is the whole rule.
CURSOR_PATTERN = "^[0-9]{1,18}\\.[0-9A-Za-z_-]{1,64}$"
_CURSOR = re.compile(CURSOR_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LAST_MICROSECOND = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)


def encode_cursor(created_at: datetime, row_id: str) -> str:
    if created_at.tzinfo is None:  # SQLite and MariaDB hand back naive UTC
        created_at = created_at.replace(tzinfo=UTC)
    return f"{(created_at - _EPOCH) // timedelta(microseconds=1)}.{row_id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    if _CURSOR.fullmatch(cursor) is None:
        raise Unprocessable(
            "cursor is not valid: pass next_cursor from a previous page",
            fields=[{"field": "cursor", "message": "invalid"}],
        )
    micros, row_id = cursor.split(".", 1)
    return _EPOCH + timedelta(microseconds=min(int(micros), _LAST_MICROSECOND)), row_id


async def page(
    session: AsyncSession,
    stmt: Select[T],
    *,
    created_col: Any,
    id_col: Any,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[T], str | None]:
    """One page of ``stmt`` (which selects one entity with ``created_at`` and ``id``)."""
    if cursor:
        created, row_id = decode_cursor(cursor)
        stmt = stmt.where(or_(created_col < created, and_(created_col == created, id_col < row_id)))
    stmt = stmt.order_by(created_col.desc(), id_col.desc()).limit(limit + 1)
    rows = list(await session.scalars(stmt))
    if len(rows) > limit:
        last: Any = rows[limit - 1]
        return rows[:limit], encode_cursor(last.created_at, last.id)
    return rows, None
