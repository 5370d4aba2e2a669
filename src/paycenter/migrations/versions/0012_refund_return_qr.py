"""refund return QR: what a Kaspi QR r2 refund leg shows the customer, and when its return went out

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 08:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import paycenter.db

revision: str = "0012"
# Written beside another branch's 0011: the one merged second is re-chained onto the other.
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # On Kaspi QR's r2 scheme a refund needs the customer: return/create gives a QR (QrToken) the
    # customer scans in Kaspi.kz, identified by its QrReturnId; only then may payment/return send the
    # money, with that QrReturnId (shared/reference/kaspi-qr-api.md §5). The leg keeps the QR to show
    # until its deadline, and marks when the return itself went out: a return sent without an
    # answer may have moved money, so it is looked up, never sent again blindly. Legs of other
    # providers and schemes leave all four empty.
    with op.batch_alter_table("refund_legs") as batch:
        batch.add_column(sa.Column("return_qr", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("return_qr_id", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("return_qr_expires_at", paycenter.db.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("return_sent_at", paycenter.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("refund_legs") as batch:
        for column in ("return_sent_at", "return_qr_expires_at", "return_qr_id", "return_qr"):
            batch.drop_column(column)
