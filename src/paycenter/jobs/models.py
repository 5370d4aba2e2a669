"""What the background jobs leave behind: cleanup runs and worker heartbeats."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from paycenter.db import Base, BigIntPK, UTCDateTime


class CleanupRun(Base):
    """One run of the daily cleanup, with its counts (the seed's "every run is logged")."""

    __tablename__ = "cleanup_runs"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    trigger: Mapped[str] = mapped_column(String(20))  # schedule or manual
    removed: Mapped[int] = mapped_column(Integer, default=0)
    waiting_for_webhooks: Mapped[int] = mapped_column(Integer, default=0)
    kept_with_money: Mapped[int] = mapped_column(Integer, default=0)
    idempotency_keys_removed: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(500))


class WorkerHeartbeat(Base):
    """A worker process says it is alive every few seconds, with when each loop last ran."""

    __tablename__ = "worker_heartbeats"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    host: Mapped[str] = mapped_column(String(100))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # loop name -> seconds since its last cycle, at last_seen_at
    loops: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
