"""Admin users, sessions, login throttling and the audit log. The only code that changes them.

- Passwords are argon2id hashes (pwdlib). A new user gets a random one-time password.
- A session cookie carries 256 random bits; the table keeps only its SHA-256, so a database
  leak yields no usable session. Sessions end after an idle timeout and an absolute lifetime.
- Each session has its own CSRF token, which every form must send back.
- Five wrong passwords for a username (or from one address) lock the login for a while.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pwdlib import PasswordHash
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paycenter.admin.models import AdminSession, AdminUser, AuditEntry, LoginThrottle, Role
from paycenter.db import Database, new_id
from paycenter.errors import ApiError, Conflict

HASHER = PasswordHash.recommended()
# A hash to verify against when the user does not exist, so both cases take the same time.
_DUMMY_HASH = HASHER.hash("not a password")

MAX_FAILURES = 5
LOCK_FOR = timedelta(minutes=15)
FAILURE_WINDOW = timedelta(minutes=15)
IDLE_TIMEOUT = timedelta(minutes=30)
MAX_SESSION = timedelta(hours=12)


class LoginLocked(ApiError):
    status_code = 429
    code = "login_locked"

    def __init__(self, minutes: int) -> None:
        super().__init__(f"Too many failed logins. Try again in {minutes} min.")
        self.minutes = minutes


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_password() -> str:
    return secrets.token_urlsafe(12)


async def create_user(session: AsyncSession, *, username: str, role: Role, now: datetime) -> tuple[AdminUser, str]:
    """A new operator and their one-time password (shown once)."""
    username = username.strip()
    if not username or len(username) > 100:
        raise ApiError("Username must be 1 to 100 characters", code="invalid_username", status_code=422)
    if await session.scalar(select(AdminUser.id).where(AdminUser.username == username)):
        raise Conflict(f"User {username!r} exists already", code="user_exists")
    password = new_password()
    user = AdminUser(
        id=new_id("adm"),
        username=username,
        password_hash=HASHER.hash(password),
        role=str(role),
        is_active=True,
        created_at=now,
    )
    session.add(user)
    await session.flush()
    return user, password


async def reset_password(session: AsyncSession, *, username: str) -> str:
    user = await session.scalar(select(AdminUser).where(AdminUser.username == username).with_for_update())
    if user is None:
        raise ApiError(f"No user {username!r}", code="not_found", status_code=404)
    password = new_password()
    user.password_hash = HASHER.hash(password)
    await session.execute(delete(AdminSession).where(AdminSession.user_id == user.id))
    await unlock(session, username=username)  # a new password is no use behind the old lock
    return password


async def unlock(session: AsyncSession, *, username: str | None = None, ip: str | None = None) -> int:
    """Lift the login lock (and forget the failures) of a username and/or an address: the way
    out when someone locked an operator out by guessing on purpose. Returns the rows cleared."""
    keys = throttle_keys(username, ip) if username else [f"ip:{ip[:64]}"] if ip else []
    result = await session.execute(
        delete(LoginThrottle).where(LoginThrottle.key.in_(keys)).execution_options(synchronize_session=False)
    )
    return result.rowcount or 0  # type: ignore[attr-defined]


async def any_user(session: AsyncSession) -> bool:
    return await session.scalar(select(AdminUser.id).limit(1)) is not None


# --- login throttling ----------------------------------------------------------------------


def throttle_keys(username: str, ip: str | None) -> list[str]:
    keys = [f"user:{username.strip().lower()[:100]}"]
    if ip:
        keys.append(f"ip:{ip[:64]}")
    return keys


async def _ensure_rows(db: Database, keys: list[str], now: datetime) -> None:
    """A throttle row for each key, each made in its own short transaction: logins then only lock
    rows that exist. (Concurrent inserts of one key inside the login's transaction would fail on
    PostgreSQL and deadlock on MariaDB.)"""
    async with db.reading() as session:
        have = set(await session.scalars(select(LoginThrottle.key).where(LoginThrottle.key.in_(keys))))
    for key in keys:
        if key not in have:
            try:
                async with db.transaction() as session:
                    session.add(LoginThrottle(key=key, failures=0, first_failure_at=now))
            except IntegrityError:
                pass  # another login made it meanwhile


def _count_failure(row: LoginThrottle, now: datetime) -> None:
    if row.failures == 0 or row.first_failure_at < now - FAILURE_WINDOW:
        row.failures = 0
        row.first_failure_at = now
        row.locked_until = None
    row.failures += 1
    if row.failures >= MAX_FAILURES:
        row.locked_until = now + LOCK_FOR


async def _reserve_attempt(db: Database, keys: list[str], now: datetime) -> datetime | None:
    """Count this attempt as a failure up front, unless a key is locked (then: until when)."""
    await _ensure_rows(db, keys, now)
    async with db.transaction() as session:
        rows = [await session.get(LoginThrottle, key, with_for_update=True, populate_existing=True) for key in keys]
        until = [row.locked_until for row in rows if row and row.locked_until and row.locked_until > now]
        if until:
            return max(until)
        for row in rows:
            if row is not None:
                _count_failure(row, now)
    return None


# --- sessions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Login:
    user: AdminUser
    token: str  # for the cookie; never stored


async def authenticate(db: Database, *, username: str, password: str, ip: str | None, now: datetime) -> Login | None:
    """Check a password and open a session; None for wrong credentials (counted towards a lock).

    Raises LoginLocked while the username or the address is locked. The attempt is counted as a
    failure before the password is checked, and cleared if it was right: guesses sent in parallel
    are thus counted like guesses in a row (the fifth locks, later ones are refused unchecked).
    The slow hash runs outside any transaction: on SQLite a write transaction holds up every writer.
    """
    keys = sorted(throttle_keys(username, ip))  # one lock order everywhere
    until = await _reserve_attempt(db, keys, now)
    if until is not None:
        raise LoginLocked(max(int((until - now).total_seconds() // 60) + 1, 1))
    async with db.reading() as session:
        user = await session.scalar(select(AdminUser).where(AdminUser.username == username.strip()))
    # argon2 takes ~0.1 s of CPU by design: off the event loop, so other requests go on.
    ok = await asyncio.to_thread(HASHER.verify, password[:1000], user.password_hash if user else _DUMMY_HASH)
    if not ok or user is None or not user.is_active:
        return None
    token = secrets.token_urlsafe(32)
    async with db.transaction() as session:
        await session.execute(
            update(LoginThrottle)
            .where(LoginThrottle.key.in_(keys))
            .values(failures=0, locked_until=None)
            .execution_options(synchronize_session=False)
        )
        await session.execute(
            update(AdminUser)
            .where(AdminUser.id == user.id)
            .values(last_login_at=now)
            .execution_options(synchronize_session=False)
        )
        session.add(
            AdminSession(
                id=_digest(token),
                user_id=user.id,
                csrf_token=secrets.token_urlsafe(24),
                created_at=now,
                last_seen_at=now,
                expires_at=now + MAX_SESSION,
                ip=ip[:64] if ip else None,
            )
        )
    return Login(user, token)


@dataclass(frozen=True)
class Operator:
    user_id: str
    username: str
    role: str
    session_id: str
    csrf_token: str

    @property
    def can_act(self) -> bool:
        return self.role == Role.ADMIN


async def resume(session: AsyncSession, *, token: str, now: datetime) -> Operator | None:
    """The operator behind a session cookie, if the session is alive; touches it."""
    row = await session.get(AdminSession, _digest(token))
    if row is None or row.expires_at <= now or row.last_seen_at < now - IDLE_TIMEOUT:
        return None
    user = await session.get(AdminUser, row.user_id)
    if user is None or not user.is_active:
        return None
    if row.last_seen_at < now - timedelta(seconds=30):  # don't write on every click
        await session.execute(
            update(AdminSession)
            .where(AdminSession.id == row.id)
            .values(last_seen_at=now)
            .execution_options(synchronize_session=False)
        )
    return Operator(user.id, user.username, user.role, row.id, row.csrf_token)


async def logout(session: AsyncSession, *, session_id: str) -> None:
    await session.execute(delete(AdminSession).where(AdminSession.id == session_id))


async def purge_stale(session: AsyncSession, *, now: datetime) -> int:
    """Forget sessions that can no longer be resumed and login counters that no longer count
    (the daily cleanup calls this; a stale row is harmless but would pile up forever)."""
    gone = 0
    for statement in (
        delete(AdminSession).where((AdminSession.expires_at <= now) | (AdminSession.last_seen_at < now - IDLE_TIMEOUT)),
        delete(LoginThrottle).where(
            LoginThrottle.first_failure_at < now - FAILURE_WINDOW,
            (LoginThrottle.locked_until.is_(None)) | (LoginThrottle.locked_until <= now),
        ),
    ):
        result = await session.execute(statement.execution_options(synchronize_session=False))
        gone += result.rowcount or 0  # type: ignore[attr-defined]
    return gone


def csrf_ok(operator: Operator, submitted: str | None) -> bool:
    return bool(submitted) and secrets.compare_digest(operator.csrf_token, submitted or "")


# --- audit -----------------------------------------------------------------------------------


async def audit(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    now: datetime,
    target: str | None = None,
    ip: str | None = None,
    **details: Any,
) -> None:
    """Record an action in the caller's transaction, so the action and its record go together."""
    session.add(AuditEntry(at=now, actor=actor, action=action, target=target, details=details, ip=ip))
