"""quarantine: rows a background loop could not process

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import paycenter.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "quarantine",
        sa.Column("loop", sa.String(length=32), nullable=False),
        sa.Column("row_id", sa.String(length=64), nullable=False),
        sa.Column("payment_id", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("since", paycenter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_failed_at", paycenter.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("loop", "row_id", name=op.f("pk_quarantine")),
    )
    op.create_index(op.f("ix_quarantine_payment_id"), "quarantine", ["payment_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_quarantine_payment_id"), table_name="quarantine")
    op.drop_table("quarantine")
