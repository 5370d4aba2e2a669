"""terminal tokens: the /v2/register pair, its expiry, and what each terminal supports

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 08:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import paycenter.db

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A terminal's access token expires (about a day) and is renewed with /v2/revoke, which needs
    # the refresh token and the client name given to /v2/register (shared/reference/kaspi.md §B).
    # Terminals added before this have a static token and no refresh token: they keep working
    # until it expires, then `paycenter terminal register` gives them a renewable pair.
    with op.batch_alter_table("terminals") as batch:
        batch.add_column(sa.Column("client_name", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("refresh_token", sa.String(length=400), nullable=True))
        batch.add_column(sa.Column("token_expires_at", paycenter.db.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("token_renewed_at", paycenter.db.UTCDateTime(timezone=True), nullable=True))
        # /v2/cancel is in no independent client's contract: None until the terminal has answered one.
        batch.add_column(sa.Column("cancel_supported", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("terminals") as batch:
        for column in ("cancel_supported", "token_renewed_at", "token_expires_at", "refresh_token", "client_name"):
            batch.drop_column(column)
