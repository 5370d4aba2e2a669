from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from paycenter.db import Base, BigIntPK, LongText, UTCDateTime, utcnow


class IdempotencyKey(Base):
    """A merchant's Idempotency-Key with the answer it got, replayed for the same request.

    The row is written in the same transaction as the work it guards, so either both exist or
    neither does; the unique key turns a concurrent duplicate into a replay.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("merchant_id", "key", name="uq_idempotency_keys_merchant_key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    key: Mapped[str] = mapped_column(String(255))
    # SHA-256 of method, path and the canonical request body.
    fingerprint: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[str] = mapped_column(LongText)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
