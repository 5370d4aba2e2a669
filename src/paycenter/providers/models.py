"""Provider-side tables: the Kaspi Smart POS terminal pool."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from paycenter.crypto import EncryptedString
from paycenter.db import Base, UTCDateTime, utcnow


class Terminal(Base):
    """A Kaspi Smart POS terminal. It runs one operation at a time: ``busy_with`` names the attempt
    or refund leg holding it, set and cleared only by guarded updates, so two payers never share
    a terminal and a terminal is freed only when its operation has ended."""

    __tablename__ = "terminals"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    base_url: Mapped[str] = mapped_column(String(500))  # scheme://host:port of its local API
    access_token: Mapped[str] = mapped_column(EncryptedString(400))
    # The token pair from /v2/register, renewed with /v2/revoke under the same client name before
    # it expires or when the terminal refuses it (kaspi.md §B). No refresh token: a static token.
    client_name: Mapped[str | None] = mapped_column(String(100))
    refresh_token: Mapped[str | None] = mapped_column(EncryptedString(400))
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    token_renewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Whether it answers /v2/cancel (no independent contract has it): None until it has been tried.
    cancel_supported: Mapped[bool | None] = mapped_column(Boolean)
    # Where to read the payment QR off its screen (the old system's camera service), if anywhere.
    camera_url: Mapped[str | None] = mapped_column(String(500))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    busy_with: Mapped[str | None] = mapped_column(String(40))
    busy_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    health: Mapped[str | None] = mapped_column(String(32))
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
