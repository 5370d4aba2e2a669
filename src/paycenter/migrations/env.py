"""Alembic environment: runs migrations over the same async engine the app uses."""

from __future__ import annotations

import asyncio
from typing import cast

from alembic import context
from sqlalchemy.engine import Connection

from paycenter import models  # noqa: F401 - registers every table on Base.metadata
from paycenter.db import Base, create_engine

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def _online() -> None:
    # migrate.py sets the URL; without one create_engine refuses None as it always did.
    engine = create_engine(cast(str, config.get_main_option("sqlalchemy.url")))
    async with engine.connect() as conn:
        await conn.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (given := config.attributes.get("connection")) is not None:
    _run(given)  # paycenter migrate: the caller's connection, already in a transaction
else:
    asyncio.run(_online())  # the alembic command line
