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
