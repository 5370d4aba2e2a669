"""What the command modules share: a database for one command, its audit record, and how they print."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from paycenter import crypto
from paycenter.config import Settings, get_settings
from paycenter.db import Database, utcnow
from paycenter.errors import ApiError

T = TypeVar("T")


def with_db(fn: Callable[[Database], Awaitable[T]], settings: Settings | None = None) -> T:
    settings = settings or get_settings()
    crypto.configure(settings.secret_keys)

    async def go() -> T:
        db = Database(settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
        try:
            return await fn(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(go())
    except ApiError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None


async def audit(session: AsyncSession, action: str, target: str | None = None, **details: Any) -> None:
    """A command's change in the audit log, in the change's own transaction, by ``cli:<os user>``."""
    from paycenter.operators import service as admins

    await admins.audit(session, actor=admins.cli_actor(), action=action, now=utcnow(), target=target, **details)


def one_time_note() -> str:
    hours = get_settings().admin_one_time_password_ttl_seconds / 3600
    return (
        f"It is good for {hours:g} h (PAYCENTER_ADMIN_ONE_TIME_PASSWORD_TTL_SECONDS), and "
        "the first login asks the user to choose their own password."
    )


def safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
