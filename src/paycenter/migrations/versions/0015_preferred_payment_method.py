"""payments.payment_method (the method chosen at init); payment_methods.legacy_id

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 12:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The old system's payment_methods.id of each seeded method: its merchants send these numbers as
# payment_method_id and read them back from GET /api/payment-methods.
LEGACY_IDS = {
    "kaspi_gold": 1,
    "kaspi_red": 2,
    "kaspi_credit": 3,
    "kaspi_installment_12": 4,
    "kaspi_installment_24": 5,
}


def upgrade() -> None:
    # The method the merchant chose at init (payment_method_id): the payer's attempt uses it, and
    # its fee, unless the payer picks another. Not a foreign key: a method is never deleted, only
    # deactivated, and a payment keeps naming what was chosen.
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("payment_method", sa.String(length=32), nullable=True))
    with op.batch_alter_table("payment_methods") as batch:
        batch.add_column(sa.Column("legacy_id", sa.Integer(), nullable=True))
        batch.create_unique_constraint("uq_payment_methods_legacy_id", ["legacy_id"])
    methods = sa.table("payment_methods", sa.column("code", sa.String), sa.column("legacy_id", sa.Integer))
    for code, legacy_id in LEGACY_IDS.items():
        op.execute(methods.update().where(methods.c.code == code).values(legacy_id=legacy_id))


def downgrade() -> None:
    with op.batch_alter_table("payment_methods") as batch:
        batch.drop_constraint("uq_payment_methods_legacy_id", type_="unique")
        batch.drop_column("legacy_id")
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("payment_method")
