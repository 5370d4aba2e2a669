"""Terminals asked what device they are: the one health check behind `paycenter terminal check`
and the admin's "check" button, and the provider capability it needs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncSession

from paycenter.db import Database
from paycenter.providers import terminals
from paycenter.providers.base import ProviderError, TerminalRef
from paycenter.providers.models import Terminal


@runtime_checkable
class DescribesDevice(Protocol):
    """A provider whose terminals say what device they are (Kaspi Smart POS: /v2/deviceinfo)."""

    async def device_info(self, terminal: TerminalRef) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Checked:
    """A terminal's health after a check: "ok" with its device info, or why not and the error."""

    health: str
    error: str | None = None
    info: dict[str, Any] | None = None


async def check(
    db: Database,
    provider: DescribesDevice,
    terminal: Terminal,
    *,
    now: datetime,
    audit: Callable[[AsyncSession, Checked], Awaitable[None]],
) -> Checked:
    """Ask a terminal for its device info and record its health, with the caller's audit entry in
    the same transaction. The terminal is asked first, outside any transaction."""
    try:
        checked = Checked("ok", info=await provider.device_info(terminals.ref(terminal)))
    except ProviderError as exc:
        # A refused token is not a network problem: it needs `paycenter terminal register`.
        checked = Checked(terminals.health_after(exc), exc.message)
    async with db.transaction() as session:
        await terminals.record_health(
            session, terminal_id=terminal.id, health=checked.health, error=checked.error, now=now
        )
        await audit(session, checked)
    return checked
