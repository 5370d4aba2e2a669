"""operator passwords: one-time passwords must be replaced, and expire

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import paycenter.db

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Until now no operator could choose a password: every stored one was printed by paycenter
    # (and the first admin's sits in the server's log), so every existing user must replace it.
    op.add_column(
        "admin_users", sa.Column("must_change_password", sa.Boolean(), nullable=False, server_default=sa.true())
    )
    op.add_column("admin_users", sa.Column("password_set_at", paycenter.db.UTCDateTime(timezone=True), nullable=True))
    # Their one-time passwords count as issued now, not when the user was made: an upgrade must not
    # lock everyone out at once; it gives them the usual time to log in and choose one.
    users = sa.table("admin_users", sa.column("password_set_at", paycenter.db.UTCDateTime(timezone=True)))
    op.execute(users.update().values(password_set_at=paycenter.db.utcnow()))


def downgrade() -> None:
    op.drop_column("admin_users", "password_set_at")
    op.drop_column("admin_users", "must_change_password")
