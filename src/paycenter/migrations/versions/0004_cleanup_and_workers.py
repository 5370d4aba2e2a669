"""cleanup and workers

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 05:36:46.451130
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import paycenter.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cleanup_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("started_at", paycenter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", paycenter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("removed", sa.Integer(), nullable=False),
        sa.Column("waiting_for_webhooks", sa.Integer(), nullable=False),
        sa.Column("kept_with_money", sa.Integer(), nullable=False),
        sa.Column("idempotency_keys_removed", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cleanup_runs")),
    )
    op.create_index(op.f("ix_cleanup_runs_started_at"), "cleanup_runs", ["started_at"], unique=False)
    op.create_table(
        "worker_heartbeats",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("host", sa.String(length=100), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", paycenter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", paycenter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("loops", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worker_heartbeats")),
    )
    op.create_index(op.f("ix_worker_heartbeats_last_seen_at"), "worker_heartbeats", ["last_seen_at"], unique=False)
    op.add_column("payments", sa.Column("paid_late", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.drop_column("payments", "paid_late")
    op.drop_index(op.f("ix_worker_heartbeats_last_seen_at"), table_name="worker_heartbeats")
    op.drop_table("worker_heartbeats")
    op.drop_index(op.f("ix_cleanup_runs_started_at"), table_name="cleanup_runs")
    op.drop_table("cleanup_runs")
