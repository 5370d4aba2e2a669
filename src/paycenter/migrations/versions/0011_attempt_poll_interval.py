"""attempt poll interval: the seconds between status polls the provider asked for this try

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 12:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Kaspi's qr/create answers StatusPollingInterval for each QR and asks to poll that QR at that
    # interval, not faster (shared/reference/kaspi-qr-api.md §3, §4). Attempts made before this have
    # none: the poller uses the provider's interval for them, as it did.
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("poll_interval", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("poll_interval")
