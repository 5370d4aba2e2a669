"""MariaDB/MySQL: text compares exactly (a binary, no-pad collation), as on SQLite and PostgreSQL

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 01:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The server's default, utf8mb4_general_ci, takes "Key-1" and "key-1" (and "é" and "e", and "a"
# and "a ") for one value: an Idempotency-Key differing only in case replayed another request's
# answer, a username or a terminal name in other capitals was "taken", a link id in capitals was
# found; on SQLite and PostgreSQL none of that. A binary no-pad collation compares the bytes.
MARIADB = "utf8mb4_nopad_bin"
MYSQL = "utf8mb4_0900_bin"  # MySQL 8's binary collation is no-pad already


def _collation() -> str | None:
    bind = op.get_bind()
    if bind.dialect.name not in ("mysql", "mariadb"):
        return None
    return MARIADB if getattr(bind.dialect, "is_mariadb", False) else MYSQL


def _convert(collation: str) -> None:
    bind = op.get_bind()
    database = bind.execute(sa.text("SELECT DATABASE()")).scalar_one()
    # Tables a later migration creates take the database's default.
    op.execute(sa.text(f"ALTER DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE {collation}"))
    tables = list(
        bind.execute(
            sa.text(
                "SELECT TABLE_NAME FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME"
            )
        ).scalars()
    )
    # A foreign key joins two text columns, which MariaDB will not change under it (even with
    # FOREIGN_KEY_CHECKS off): the keys are dropped, every table converted, the keys made again.
    keys = bind.execute(
        sa.text(
            "SELECT k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_NAME, "
            "k.REFERENCED_COLUMN_NAME, r.UPDATE_RULE, r.DELETE_RULE "
            "FROM information_schema.KEY_COLUMN_USAGE k JOIN information_schema.REFERENTIAL_CONSTRAINTS r "
            "ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME "
            "AND r.TABLE_NAME = k.TABLE_NAME "
            "WHERE k.TABLE_SCHEMA = DATABASE() AND k.REFERENCED_TABLE_NAME IS NOT NULL "
            "ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION"
        )
    ).all()
    grouped: dict[tuple[str, str], list[Any]] = {}
    for row in keys:
        grouped.setdefault((row[0], row[1]), []).append(row)
    for table, name in grouped:
        op.execute(sa.text(f"ALTER TABLE `{table}` DROP FOREIGN KEY `{name}`"))
    for table in list(tables):
        op.execute(sa.text(f"ALTER TABLE `{table}` CONVERT TO CHARACTER SET utf8mb4 COLLATE {collation}"))
    for (table, name), rows in grouped.items():
        columns = ", ".join(f"`{r[2]}`" for r in rows)
        referenced = ", ".join(f"`{r[4]}`" for r in rows)
        op.execute(
            sa.text(
                f"ALTER TABLE `{table}` ADD CONSTRAINT `{name}` FOREIGN KEY ({columns}) "
                f"REFERENCES `{rows[0][3]}` ({referenced}) ON UPDATE {rows[0][5]} ON DELETE {rows[0][6]}"
            )
        )


def upgrade() -> None:
    collation = _collation()
    if collation is not None:
        _convert(collation)


def downgrade() -> None:
    # Back to case-insensitive: values unique only by case would collide; refused then, as MariaDB
    # refuses a duplicate key, and nothing is changed.
    if _collation() is not None:
        _convert("utf8mb4_general_ci")
