"""kaspi providers

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 04:58:33.553197
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import paycenter.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=100), nullable=False),
        sa.Column("expires_at", paycenter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("acquired_at", paycenter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("renewed_at", paycenter.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "payment_methods",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("fee_bp", sa.Integer(), nullable=False),
        sa.Column("payer_covers_fee", sa.Boolean(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_payment_methods")),
    )
    op.create_table(
        "terminals",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("base_url", sa.String(length=500), nullable=False),
        sa.Column("access_token", sa.String(length=200), nullable=False),
        sa.Column("camera_url", sa.String(length=500), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("busy_with", sa.String(length=40), nullable=True),
        sa.Column("busy_since", paycenter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", paycenter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("health", sa.String(length=32), nullable=True),
        sa.Column("last_checked_at", paycenter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", paycenter.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_terminals")),
        sa.UniqueConstraint("name", name=op.f("uq_terminals_name")),
    )
    op.create_table(
        "refund_legs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("refund_id", sa.String(length=40), nullable=False),
        sa.Column("operation_id", sa.String(length=40), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("sent_at", paycenter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("provider_ref", sa.String(length=100), nullable=True),
        sa.Column("terminal_id", sa.String(length=40), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("next_poll_at", paycenter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", paycenter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("completed_at", paycenter.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["operation_id"], ["operations.id"], name=op.f("fk_refund_legs_operation_id_operations")
        ),
        sa.ForeignKeyConstraint(["refund_id"], ["refunds.id"], name=op.f("fk_refund_legs_refund_id_refunds")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refund_legs")),
    )
    op.create_index(op.f("ix_refund_legs_operation_id"), "refund_legs", ["operation_id"], unique=False)
    op.create_index(op.f("ix_refund_legs_refund_id"), "refund_legs", ["refund_id"], unique=False)
    op.create_index("ix_refund_legs_status", "refund_legs", ["status"], unique=False)
    op.add_column("attempts", sa.Column("fee_bp", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("attempts", sa.Column("payer_covers_fee", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("attempts", sa.Column("terminal_id", sa.String(length=40), nullable=True))
    op.add_column("attempts", sa.Column("qr_payload", sa.String(length=1000), nullable=True))
    op.add_column("attempts", sa.Column("pay_link", sa.String(length=500), nullable=True))
    op.add_column("attempts", sa.Column("provider_status", sa.String(length=40), nullable=True))
    op.add_column("attempts", sa.Column("confirm_timeout", sa.Integer(), nullable=True))
    op.add_column("attempts", sa.Column("next_poll_at", paycenter.db.UTCDateTime(timezone=True), nullable=True))
    op.add_column("attempts", sa.Column("poll_failures", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("attempts", sa.Column("trouble_since", paycenter.db.UTCDateTime(timezone=True), nullable=True))
    op.add_column("operations", sa.Column("terminal_id", sa.String(length=40), nullable=True))
    op.add_column("operations", sa.Column("credited", sa.BigInteger(), nullable=False, server_default="0"))
    op.execute("UPDATE operations SET credited = net")
    op.add_column("payments", sa.Column("credited_amount", sa.BigInteger(), nullable=False, server_default="0"))
    op.execute("UPDATE payments SET credited_amount = received_amount")
    op.add_column("refunds", sa.Column("refunded_amount", sa.BigInteger(), nullable=False, server_default="0"))
    op.execute("UPDATE refunds SET refunded_amount = amount WHERE status = 'succeeded'")
    # The Kaspi methods as the old system priced them (Gold/Red 1%, credit and instalments 14%);
    # operators change them with `paycenter payment-method set`.
    op.bulk_insert(
        sa.table(
            "payment_methods",
            sa.column("code", sa.String),
            sa.column("name", sa.String),
            sa.column("fee_bp", sa.Integer),
            sa.column("payer_covers_fee", sa.Boolean),
            sa.column("is_active", sa.Boolean),
            sa.column("sort_order", sa.Integer),
        ),
        [
            {
                "code": "kaspi_gold",
                "name": "Kaspi Gold",
                "fee_bp": 100,
                "payer_covers_fee": False,
                "is_active": True,
                "sort_order": 1,
            },
            {
                "code": "kaspi_red",
                "name": "Kaspi Red",
                "fee_bp": 100,
                "payer_covers_fee": False,
                "is_active": True,
                "sort_order": 2,
            },
            {
                "code": "kaspi_credit",
                "name": "Kaspi Кредит",
                "fee_bp": 1400,
                "payer_covers_fee": False,
                "is_active": True,
                "sort_order": 3,
            },
            {
                "code": "kaspi_installment_12",
                "name": "Kaspi Рассрочка 12 мес.",
                "fee_bp": 1400,
                "payer_covers_fee": False,
                "is_active": True,
                "sort_order": 4,
            },
            {
                "code": "kaspi_installment_24",
                "name": "Kaspi Рассрочка 24 мес.",
                "fee_bp": 1400,
                "payer_covers_fee": False,
                "is_active": True,
                "sort_order": 5,
            },
        ],
    )


def downgrade() -> None:
    op.drop_column("refunds", "refunded_amount")
    op.drop_column("payments", "credited_amount")
    op.drop_column("operations", "credited")
    op.drop_column("operations", "terminal_id")
    op.drop_column("attempts", "trouble_since")
    op.drop_column("attempts", "poll_failures")
    op.drop_column("attempts", "next_poll_at")
    op.drop_column("attempts", "confirm_timeout")
    op.drop_column("attempts", "provider_status")
    op.drop_column("attempts", "pay_link")
    op.drop_column("attempts", "qr_payload")
    op.drop_column("attempts", "terminal_id")
    op.drop_column("attempts", "payer_covers_fee")
    op.drop_column("attempts", "fee_bp")
    op.drop_index("ix_refund_legs_status", table_name="refund_legs")
    op.drop_index(op.f("ix_refund_legs_refund_id"), table_name="refund_legs")
    op.drop_index(op.f("ix_refund_legs_operation_id"), table_name="refund_legs")
    op.drop_table("refund_legs")
    op.drop_table("terminals")
    op.drop_table("payment_methods")
    op.drop_table("leases")
