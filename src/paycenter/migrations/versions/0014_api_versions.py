"""merchants.api_version and underpayment_tolerance; payments.first_visited_at

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 11:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import paycenter.db

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CURRENT = "2026-12-01"  # paycenter.versions.CURRENT when this migration was written


def upgrade() -> None:
    # How the API renders answers for a merchant (paycenter.versions): merchants imported from the
    # old system keep its shapes ('legacy'), everyone else gets the current version.
    with op.batch_alter_table("merchants") as batch:
        batch.add_column(sa.Column("api_version", sa.String(length=20), nullable=False, server_default=CURRENT))
        # A payment is paid when what it still lacks is at most this much (minor units). The old
        # system's rule was 10 KZT; new merchants get none.
        batch.add_column(sa.Column("underpayment_tolerance", sa.BigInteger(), nullable=False, server_default="0"))
    # The payer first opened the payment (the old pages' track-visit call).
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("first_visited_at", paycenter.db.UTCDateTime(timezone=True), nullable=True))
    merchants = sa.table("merchants", sa.column("id", sa.String), sa.column("api_version", sa.String))
    op.execute(
        merchants.update().where(merchants.c.id.like("mer\\_legacy\\_%", escape="\\")).values(api_version="legacy")
    )
    tolerance = sa.table("merchants", sa.column("id", sa.String), sa.column("underpayment_tolerance", sa.BigInteger))
    op.execute(
        tolerance.update()
        .where(tolerance.c.id.like("mer\\_legacy\\_%", escape="\\"))
        .values(underpayment_tolerance=1000)
    )


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("first_visited_at")
    with op.batch_alter_table("merchants") as batch:
        batch.drop_column("underpayment_tolerance")
        batch.drop_column("api_version")
