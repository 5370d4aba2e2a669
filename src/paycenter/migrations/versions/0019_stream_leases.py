"""stream leases: the events streams open per API token, across processes

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 00:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from paycenter.db import UTCDateTime

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A row per open events stream: the bound per token holds across every API process.
    op.create_table(
        "stream_leases",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("token_id", sa.String(length=40), nullable=False),
        sa.Column("opened_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stream_leases"),
    )
    op.create_index("ix_stream_leases_token_id", "stream_leases", ["token_id"])
    op.create_index("ix_stream_leases_expires_at", "stream_leases", ["expires_at"])


def downgrade() -> None:
    op.drop_table("stream_leases")
