"""Poison rows for the loops' row isolation: planted past the application, then waited for in the
quarantine (tests/jobs/test_quarantine.py and the refund failure paths)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from kit.sink import eventually
from paycenter.db import Database
from paycenter.quarantine import Loop, QuarantinedRow

UNDECRYPTABLE = "fernet:gAAAAABnot-a-token-under-any-key"


async def plant(db: Database, sql: str, **params: Any) -> None:
    """Write a poison straight into the database, past every check of the application."""
    async with db.transaction() as session:
        await session.execute(text(sql), params)


async def mark_of(db: Database, loop: Loop, row_id: str) -> QuarantinedRow | None:
    async with db.reading() as session:
        return await session.get(QuarantinedRow, (loop.value, row_id))


async def quarantined(db: Database, loop: Loop, row_id: str) -> QuarantinedRow:
    async def check() -> QuarantinedRow | None:
        return await mark_of(db, loop, row_id)

    return await eventually(check, timeout=10, what=f"{row_id} quarantined by the {loop}")
