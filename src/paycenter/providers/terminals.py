"""The Kaspi Smart POS terminal pool: add, list, disable, allocate, free.

A terminal does one operation at a time. Allocation is a guarded update (``busy_with IS NULL``)
after a ``FOR UPDATE SKIP LOCKED`` pick, so two payers never get the same terminal even across
processes; it is freed only by the holder that took it, when its operation has ended.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import String, func, select, type_coerce, update
from sqlalchemy.ext.asyncio import AsyncSession

from paycenter import crypto
from paycenter.db import Database, new_id, rowcount, utcnow
from paycenter.errors import Conflict, NotFound
from paycenter.providers.base import ProviderError, TerminalRef, TokenRejected
from paycenter.providers.models import Terminal


def ref(terminal: Terminal) -> TerminalRef:
    return TerminalRef(
        id=terminal.id,
        name=terminal.name,
        base_url=terminal.base_url,
        access_token=terminal.access_token,
        camera_url=terminal.camera_url,
        client_name=terminal.client_name,
        refresh_token=terminal.refresh_token,
        token_expires_at=terminal.token_expires_at,
        token_renewed_at=terminal.token_renewed_at,
        cancel_supported=terminal.cancel_supported,
    )


async def refs(session: AsyncSession, ids: set[str] | None) -> dict[str, TerminalRef | Exception]:
    """Terminals by id (None: every one, disabled too: their payments may still be refunded), each
    token decrypted on its own: one terminal whose stored token no key decrypts must not keep the
    poller from every other (its entry is the error instead)."""
    if ids is not None and not ids:
        return {}
    query = select(
        Terminal.id,
        Terminal.name,
        Terminal.base_url,
        type_coerce(Terminal.access_token, String()),  # as stored: decrypted below, row by row
        Terminal.camera_url,
        Terminal.client_name,
        type_coerce(Terminal.refresh_token, String()),
        Terminal.token_expires_at,
        Terminal.token_renewed_at,
        Terminal.cancel_supported,
    )
    if ids is not None:
        query = query.where(Terminal.id.in_(ids))
    found: dict[str, TerminalRef | Exception] = {}
    for (
        terminal_id,
        name,
        base_url,
        token,
        camera_url,
        client,
        refresh,
        expires,
        renewed,
        cancel,
    ) in await session.execute(query):
        try:
            keyring = crypto.keyring()
            found[terminal_id] = TerminalRef(
                terminal_id,
                name,
                base_url,
                keyring.open(token),
                camera_url,
                client_name=client,
                refresh_token=keyring.open(refresh) if refresh is not None else None,
                token_expires_at=expires,
                token_renewed_at=renewed,
                cancel_supported=cancel,
            )
        except Exception as exc:
            found[terminal_id] = exc
    return found


class TokenStore:
    """The terminal pool as a provider's ``TerminalStore``: what a terminal provider learns (a
    renewed token pair, whether /v2/cancel exists) is written here, one short transaction each, so
    every process sees it."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    async def current(self, terminal_id: str) -> TerminalRef | None:
        async with self.db.reading() as session:
            found = (await refs(session, {terminal_id})).get(terminal_id)
        if isinstance(found, Exception):
            raise found
        return found

    async def save_tokens(self, terminal_id: str, *, replaced: str, renewed: TerminalRef) -> bool:
        """Store the pair that replaced ``replaced`` (a refresh token); False if the stored pair is
        no longer the one replaced (another process renewed it first: the stored one stays)."""
        async with self.db.transaction() as session:
            terminal = await session.scalar(select(Terminal).where(Terminal.id == terminal_id).with_for_update())
            if terminal is None or terminal.refresh_token != replaced:
                return False
            terminal.access_token = renewed.access_token
            terminal.refresh_token = renewed.refresh_token
            terminal.token_expires_at = renewed.token_expires_at
            terminal.token_renewed_at = renewed.token_renewed_at
            if terminal.health == TOKEN_TROUBLE:
                terminal.health, terminal.last_error = "ok", None
            return True

    async def note(self, terminal_id: str, *, cancel_supported: bool | None = None, trouble: str | None = None) -> None:
        values: dict[str, object] = {}
        if cancel_supported is not None:
            values["cancel_supported"] = cancel_supported
        if trouble is not None:
            values |= {"health": TOKEN_TROUBLE, "last_error": trouble[:500], "last_checked_at": self.clock()}
        if values:
            async with self.db.transaction() as session:
                await session.execute(
                    update(Terminal)
                    .where(Terminal.id == terminal_id)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )


TOKEN_TROUBLE = "token_rejected"  # Terminal.health: only registering it again helps


def health_after(exc: ProviderError) -> str:
    """Terminal.health after a failed check: a refused token is not a network problem."""
    return TOKEN_TROUBLE if isinstance(exc, TokenRejected) else "unreachable"


async def save_registration(
    session: AsyncSession,
    *,
    name: str,
    base_url: str,
    camera_url: str | None,
    registered: TerminalRef,
    now: datetime,
) -> tuple[Terminal, bool]:
    """A terminal's new /v2/register pair: a new terminal, or new tokens for the one of that name
    (its pending operations stay; its old token is dead anyway). True if it was added."""
    terminal = await session.scalar(select(Terminal).where(Terminal.name == name).with_for_update())
    added = terminal is None
    if terminal is None:
        terminal = await add(
            session, name=name, base_url=base_url, access_token=registered.access_token, camera_url=camera_url, now=now
        )
    terminal.base_url = base_url.rstrip("/")
    if camera_url is not None:
        terminal.camera_url = camera_url
    terminal.access_token = registered.access_token
    terminal.client_name = registered.client_name
    terminal.refresh_token = registered.refresh_token
    terminal.token_expires_at = registered.token_expires_at
    terminal.token_renewed_at = registered.token_renewed_at
    terminal.health, terminal.last_error, terminal.last_checked_at = "ok", None, now
    return terminal, added


async def add(
    session: AsyncSession, *, name: str, base_url: str, access_token: str, camera_url: str | None, now: datetime
) -> Terminal:
    if await session.scalar(select(Terminal.id).where(Terminal.name == name)):
        raise Conflict(f"A terminal named {name!r} exists already")
    terminal = Terminal(
        id=new_id("trm"),
        name=name,
        base_url=base_url.rstrip("/"),
        access_token=access_token,
        camera_url=camera_url,
        is_active=True,
        created_at=now,
    )
    session.add(terminal)
    await session.flush()
    return terminal


async def get(session: AsyncSession, name_or_id: str) -> Terminal:
    terminal = await session.scalar(select(Terminal).where((Terminal.id == name_or_id) | (Terminal.name == name_or_id)))
    if terminal is None:
        raise NotFound(f"Terminal {name_or_id} not found")
    return terminal


async def set_active(session: AsyncSession, *, name_or_id: str, active: bool) -> Terminal:
    terminal = await get(session, name_or_id)
    terminal.is_active = active
    return terminal


async def all_terminals(session: AsyncSession) -> list[Terminal]:
    return list(await session.scalars(select(Terminal).order_by(Terminal.name)))


async def allocate(
    session: AsyncSession, *, holder: str, now: datetime, avoid: set[str] | None = None
) -> Terminal | None:
    """A free active terminal, now held by ``holder`` (an attempt or refund leg id), none of
    ``avoid`` (terminals that just refused this payer); None if all are busy. The least
    recently used goes first, so the pool wears evenly.

    The candidates are read without locks; each is then claimed by a guarded update, which on a
    server database waits for a concurrent claim of the same row and then finds it taken. (A
    locking read would lock every row it sorts on MariaDB, making concurrent payers skip
    terminals nobody is using.)
    """
    candidates = list(
        await session.scalars(
            select(Terminal.id)
            .where(Terminal.is_active.is_(True), Terminal.busy_with.is_(None), Terminal.id.not_in(avoid or set()))
            .order_by(func.coalesce(Terminal.last_used_at, Terminal.created_at), Terminal.name)
        )
    )
    for terminal_id in candidates:
        terminal = await take(session, terminal_id=terminal_id, holder=holder, now=now)
        if terminal is not None:
            return terminal
    return None


async def take(session: AsyncSession, *, terminal_id: str, holder: str, now: datetime) -> Terminal | None:
    """Hold one particular terminal (a refund must run where the money was taken); None if busy."""
    taken = await session.execute(
        update(Terminal)
        .where(Terminal.id == terminal_id, Terminal.busy_with.is_(None))
        .values(busy_with=holder, busy_since=now, last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    if rowcount(taken) != 1:
        return None
    return await session.get(Terminal, terminal_id, populate_existing=True)


async def free(session: AsyncSession, *, terminal_id: str, holder: str) -> None:
    """Give the terminal back, only if ``holder`` still holds it."""
    await session.execute(
        update(Terminal)
        .where(Terminal.id == terminal_id, Terminal.busy_with == holder)
        .values(busy_with=None, busy_since=None)
        .execution_options(synchronize_session=False)
    )


async def record_health(
    session: AsyncSession, *, terminal_id: str, health: str, error: str | None, now: datetime
) -> None:
    await session.execute(
        update(Terminal)
        .where(Terminal.id == terminal_id)
        .values(health=health, last_error=error, last_checked_at=now)
        .execution_options(synchronize_session=False)
    )
