"""manual refunds: refunds.manual, recorded_by, submission_id

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 22:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A provider with no refund call (Kaspi biller, Kaspi QR r1): the operator returns the money in
    # the bank's cabinet and records it here, marked manual, with who recorded it. The admin form's
    # one-time token is unique, so a form posted twice records one refund (NULL for the others:
    # every backend lets NULLs repeat in a unique constraint).
    with op.batch_alter_table("refunds") as batch:
        batch.add_column(sa.Column("manual", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("recorded_by", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("submission_id", sa.String(length=64), nullable=True))
        batch.create_unique_constraint("uq_refunds_submission_id", ["submission_id"])


def downgrade() -> None:
    with op.batch_alter_table("refunds") as batch:
        batch.drop_constraint("uq_refunds_submission_id", type_="unique")
        for column in ("submission_id", "recorded_by", "manual"):
            batch.drop_column(column)
