"""Kaspi biller: payments.account, biller_accounts, biller_transactions

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 21:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from paycenter.db import UTCDateTime

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The account number a payer types in Kaspi (provider kaspi_biller); None for other providers.
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("account", sa.String(length=20), nullable=True))
    # The payment an account names now: the key Kaspi's check and pay are answered by.
    op.create_table(
        "biller_accounts",
        sa.Column("account", sa.String(length=20), nullable=False),
        sa.Column("payment_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], name="fk_biller_accounts_payment_id_payments"),
        sa.PrimaryKeyConstraint("account", name="pk_biller_accounts"),
    )
    op.create_index("ix_biller_accounts_payment_id", "biller_accounts", ["payment_id"])
    # Every pay Kaspi sent and its first reply, replayed byte for byte to a retry of its txn_id.
    op.create_table(
        "biller_transactions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("txn_id", sa.String(length=20), nullable=False),
        sa.Column("account", sa.String(length=20), nullable=False),
        sa.Column("payment_id", sa.String(length=32), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("txn_date", UTCDateTime(timezone=True), nullable=True),
        sa.Column("result", sa.Integer(), nullable=False),
        sa.Column("reply", sa.LargeBinary(), nullable=False),
        sa.Column("reply_type", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], name="fk_biller_transactions_payment_id_payments"),
        sa.PrimaryKeyConstraint("id", name="pk_biller_transactions"),
        sa.UniqueConstraint("txn_id", name="uq_biller_transactions_txn_id"),
    )
    op.create_index("ix_biller_transactions_payment_id", "biller_transactions", ["payment_id"])


def downgrade() -> None:
    op.drop_index("ix_biller_transactions_payment_id", table_name="biller_transactions")
    op.drop_table("biller_transactions")
    op.drop_index("ix_biller_accounts_payment_id", table_name="biller_accounts")
    op.drop_table("biller_accounts")
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("account")
