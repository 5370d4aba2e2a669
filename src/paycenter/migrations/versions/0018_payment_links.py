"""payment links: payment_links, payments.link_id

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 22:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from paycenter.db import UTCDateTime

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Links an operator or a merchant's program hands payers (/l/{id}); their payments are ordinary
    # ones that name the link. No foreign keys to payments either way: cleanup deletes payments.
    op.create_table(
        "payment_links",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("min_amount", sa.BigInteger(), nullable=True),
        sa.Column("max_amount", sa.BigInteger(), nullable=True),
        sa.Column("expires_in", sa.Integer(), nullable=True),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("customer_name", sa.String(length=200), nullable=True),
        sa.Column("customer_phone", sa.String(length=32), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("payment_id", sa.String(length=32), nullable=True),
        sa.Column("payments_count", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=True),
        sa.Column("created_via", sa.String(length=10), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name="fk_payment_links_merchant_id_merchants"),
        sa.PrimaryKeyConstraint("id", name="pk_payment_links"),
    )
    op.create_index("ix_payment_links_merchant_created", "payment_links", ["merchant_id", "created_at"])
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("link_id", sa.String(length=40), nullable=True))
    op.create_index("ix_payments_link_created", "payments", ["link_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_payments_link_created", table_name="payments")
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("link_id")
    # Its indexes go with it (MariaDB refuses to drop the one its foreign key uses on its own).
    op.drop_table("payment_links")
