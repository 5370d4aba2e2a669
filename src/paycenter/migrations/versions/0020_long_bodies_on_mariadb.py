"""MariaDB: events.body and idempotency_keys.response_body as MEDIUMTEXT, as the models declare

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 00:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = [("events", "body"), ("idempotency_keys", "response_body")]


def upgrade() -> None:
    # 0001 made both TEXT, which MariaDB caps at 65,535 bytes; the models say MEDIUMTEXT (16 MiB)
    # as 0002 did for the delivery bodies. A webhook body escapes a Cyrillic letter as \uXXXX (six
    # bytes for the request's two), so the largest metadata the API takes made a `paid` event
    # MariaDB refused: the payment could not be marked paid there. TEXT elsewhere has no cap.
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return
    for table, column in COLUMNS:
        op.alter_column(table, column, type_=mysql.MEDIUMTEXT(), existing_type=sa.Text(), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return
    for table, column in COLUMNS:
        op.alter_column(table, column, type_=sa.Text(), existing_type=mysql.MEDIUMTEXT(), existing_nullable=False)
