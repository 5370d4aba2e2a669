"""The migrations make the schema the models declare, on every backend.

The tests' databases are made by the real migrations (conftest), and the code reads and writes
them through the models: a column a migration made narrower than its model (MariaDB's TEXT, 64 KiB,
where the model says MEDIUMTEXT) passes every test whose data is small and fails in production.
Alembic's own comparison, the one ``alembic revision --autogenerate`` runs, finds such a drift.
"""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import paycenter.models  # noqa: F401  (every table registered)
from paycenter.db import Base, Database


def _drift(connection: Any) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


async def test_the_migrated_schema_is_the_models(db: Database) -> None:
    async with db.engine.connect() as connection:
        drift = await connection.run_sync(_drift)
    if db.backend == "sqlite":
        # SQLite keeps a column's declared type as a name and enforces no length (0006 widened
        # the sealed secrets' columns with ALTER where a backend has lengths); what it has or
        # lacks (tables, columns, indexes, nullability) still counts.
        drift = [d for d in drift if not (isinstance(d, list) and d and d[0][0] == "modify_type")]
    assert drift == []
