"""admin panel

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 05:50:44.931885
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import paycenter.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "admin_users",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", paycenter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", paycenter.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_users")),
        sa.UniqueConstraint("username", name=op.f("uq_admin_users_username")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("at", paycenter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("target", sa.String(length=100), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"], unique=False)
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_failure_at", paycenter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("locked_until", paycenter.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_throttle")),
    )
    op.create_table(
        "admin_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", paycenter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", paycenter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", paycenter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["admin_users.id"], name=op.f("fk_admin_sessions_user_id_admin_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_sessions")),
    )
    op.create_index(op.f("ix_admin_sessions_expires_at"), "admin_sessions", ["expires_at"], unique=False)
    op.create_index(op.f("ix_admin_sessions_user_id"), "admin_sessions", ["user_id"], unique=False)
    op.add_column("payments", sa.Column("metadata_user_id", sa.String(length=500), nullable=True))
    _backfill_user_ids()
    op.create_index("ix_payments_created", "payments", ["created_at"], unique=False)
    op.create_index("ix_payments_metadata_user_id", "payments", ["metadata_user_id"], unique=False)
    op.create_index("ix_payments_order_id", "payments", ["order_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_payments_order_id", table_name="payments")
    op.drop_index("ix_payments_metadata_user_id", table_name="payments")
    op.drop_index("ix_payments_created", table_name="payments")
    op.drop_column("payments", "metadata_user_id")
    op.drop_index(op.f("ix_admin_sessions_user_id"), table_name="admin_sessions")
    op.drop_index(op.f("ix_admin_sessions_expires_at"), table_name="admin_sessions")
    op.drop_table("admin_sessions")
    op.drop_table("login_throttle")
    op.drop_index(op.f("ix_audit_log_at"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("admin_users")


def _backfill_user_ids() -> None:
    """metadata.user_id of existing payments into the new searchable column, in batches."""
    payments = sa.table(
        "payments", sa.column("id", sa.String), sa.column("metadata", sa.JSON), sa.column("metadata_user_id", sa.String)
    )
    bind = op.get_bind()
    rows = bind.execute(sa.select(payments.c.id, payments.c.metadata)).all()
    updates = []
    for payment_id, metadata in rows:
        if isinstance(metadata, dict) and metadata.get("user_id") is not None:
            value = metadata["user_id"]
            updates.append({"pid": payment_id, "uid": (value if isinstance(value, str) else str(value))[:500]})
    if updates:
        bind.execute(
            payments.update().where(payments.c.id == sa.bindparam("pid")).values(metadata_user_id=sa.bindparam("uid")),
            updates,
        )
