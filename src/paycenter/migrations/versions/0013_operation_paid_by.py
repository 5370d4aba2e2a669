"""operation paid_by: how the payer paid at the provider (a terminal's "qr" or "card")

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A terminal refunds a payment the way it was paid (/v2/refund?method=qr|card, the payment's
    # chequeInfo.method; kaspi.md §B). Older operations have none: the configured method applies.
    with op.batch_alter_table("operations") as batch:
        batch.add_column(sa.Column("paid_by", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("paid_by")
