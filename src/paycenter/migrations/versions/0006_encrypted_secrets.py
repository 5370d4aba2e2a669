"""encrypted secrets

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 05:58:59.344812
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# (table, column, old length, new length, nullable): encrypted values are longer than the secret.
WIDENED = [
    ("merchants", "signing_secret", 100, 255, False),
    ("merchants", "previous_signing_secret", 100, 255, True),
    ("payments", "webhook_secret", 64, 255, True),
    ("terminals", "access_token", 200, 400, False),
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return  # SQLite does not enforce VARCHAR lengths
    for table, column, old, new, nullable in WIDENED:
        op.alter_column(table, column, existing_type=sa.String(old), type_=sa.String(new), existing_nullable=nullable)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, column, old, new, nullable in WIDENED:
        op.alter_column(table, column, existing_type=sa.String(new), type_=sa.String(old), existing_nullable=nullable)
