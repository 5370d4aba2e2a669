"""Leases for singleton loops: one holder at a time, taken over when the holder stops renewing.

A lease is a row (name, owner, expires_at). A process holds it while it keeps renewing before
expiry; if it dies, the lease lapses and any other process takes it on its next try. No lock
files, nothing to remove by hand after a crash.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import String, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from paycenter.db import Base, Database, UTCDateTime, rowcount


class Lease(Base):
    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(100))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime())
    renewed_at: Mapped[datetime] = mapped_column(UTCDateTime())


async def hold(db: Database, name: str, *, owner: str, ttl: timedelta, now: datetime) -> bool:
    """Take or renew lease ``name`` for ``owner``; True while we hold it."""
    async with db.transaction() as session:
        result = await session.execute(
            update(Lease)
            .where(Lease.name == name, (Lease.owner == owner) | (Lease.expires_at < now))
            .values(owner=owner, expires_at=now + ttl, renewed_at=now)
            .execution_options(synchronize_session=False)
        )
        if rowcount(result):
            return True
        if await session.scalar(select(Lease.name).where(Lease.name == name)) is not None:
            return False  # someone else holds it
    try:
        async with db.transaction() as session:
            session.add(Lease(name=name, owner=owner, expires_at=now + ttl, acquired_at=now, renewed_at=now))
        return True
    except IntegrityError:
        return False  # another process created it first


async def release(db: Database, name: str, *, owner: str, now: datetime) -> None:
    async with db.transaction() as session:
        await session.execute(
            update(Lease)
            .where(Lease.name == name, Lease.owner == owner)
            .values(expires_at=now)
            .execution_options(synchronize_session=False)
        )


async def holders(db: Database) -> list[Lease]:
    async with db.reading() as session:
        return list(await session.scalars(select(Lease).order_by(Lease.name)))
