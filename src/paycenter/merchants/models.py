from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from paycenter.crypto import EncryptedString
from paycenter.db import Base, Money, UTCDateTime, utcnow
from paycenter.versions import CURRENT


class Merchant(Base):
    __tablename__ = "merchants"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # Used when a payment brings no webhook_url of its own.
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    # Standard Webhooks signing secret (`whsec_...`); the previous one stays valid for a grace
    # period after a rotation so in-flight retries still verify.
    signing_secret: Mapped[str] = mapped_column(EncryptedString(255))
    previous_signing_secret: Mapped[str | None] = mapped_column(EncryptedString(255))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    default_provider: Mapped[str | None] = mapped_column(String(32))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # How the API renders answers for this merchant (paycenter.versions); requests may override it
    # with the Paycenter-Version header. Merchants imported from the old system are 'legacy'.
    api_version: Mapped[str] = mapped_column(String(20), default=CURRENT, server_default=CURRENT)
    # A payment counts as paid when it lacks at most this much (minor units): the old system's
    # rule was 10 KZT (imported merchants keep it); new merchants get none.
    underpayment_tolerance: Mapped[int] = mapped_column(Money, default=0, server_default="0")


class ApiToken(Base):
    """A merchant's API credential. Only its SHA-256 is stored: the token is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    # First characters of the token, so operators can tell tokens apart without the secret.
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class StreamLease(Base):
    """An open events stream (``GET /api/events/stream``) of a token, counted against the token's
    bound in every API process at once. Renewed with each of the stream's heartbeats; a process
    that died without giving it back leaves a lease that lapses at ``expires_at``."""

    __tablename__ = "stream_leases"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token_id: Mapped[str] = mapped_column(String(40), index=True)  # no foreign key: a token is never deleted
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
