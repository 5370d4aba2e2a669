"""Admin users, sessions, login throttling and the audit log. The only code that changes them.

- Passwords are argon2id hashes (pwdlib). A new user (or a reset) gets a random one-time password,
  which only lets its operator choose their own, and which expires unused.
- Operators change their own password with the current one; that ends their other sessions.
- A session cookie carries 256 random bits; the table keeps only its SHA-256, so a database
  leak yields no usable session. Sessions end after an idle timeout and an absolute lifetime.
- Each session has its own CSRF token, which every form must send back.
- Five wrong passwords for a username (or from one address) lock the login for a while.
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pwdlib import PasswordHash
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paycenter.db import Database, new_id, rowcount
from paycenter.errors import ApiError, Conflict
from paycenter.operators.models import AdminSession, AdminUser, AuditEntry, LoginThrottle, Role

HASHER = PasswordHash.recommended()
# A hash to verify against when the user does not exist, so both cases take the same time.
_DUMMY_HASH = HASHER.hash("not a password")

MAX_FAILURES = 5
LOCK_FOR = timedelta(minutes=15)
FAILURE_WINDOW = timedelta(minutes=15)
IDLE_TIMEOUT = timedelta(minutes=30)
MAX_SESSION = timedelta(hours=12)
ONE_TIME_PASSWORD_TTL = timedelta(hours=72)  # the setting's default
MIN_PASSWORD = 12
MAX_PASSWORD = 1000  # a login checks no more than this many characters


class LoginLocked(ApiError):
    status_code = 429
    code = "login_locked"

    def __init__(self, minutes: int) -> None:
        super().__init__(f"Too many failed logins. Try again in {minutes} min.")
        self.minutes = minutes


class OneTimePasswordExpired(ApiError):
    status_code = 401
    code = "one_time_password_expired"

    def __init__(self) -> None:
        super().__init__("This one-time password has expired: ask for `paycenter admin reset-password`.")


class PasswordRefused(ApiError):
    """A password change refused; ``reason`` is the panel's text key for why."""

    def __init__(self, reason: str, *, status_code: int, minutes: int | None = None) -> None:
        super().__init__(reason, code=reason, status_code=status_code)
        self.reason = reason
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
        must_change_password=True,
        password_set_at=now,
    )
    session.add(user)
    await session.flush()
    return user, password


async def reset_password(session: AsyncSession, *, username: str, now: datetime) -> str:
    """A new one-time password for a user (shown once); their sessions end."""
    user = await session.scalar(select(AdminUser).where(AdminUser.username == username).with_for_update())
    if user is None:
        raise ApiError(f"No user {username!r}", code="not_found", status_code=404)
    password = new_password()
    user.password_hash = HASHER.hash(password)
    user.must_change_password = True
    user.password_set_at = now
    await session.execute(delete(AdminSession).where(AdminSession.user_id == user.id))
    await unlock(session, username=username)  # a new password is no use behind the old lock
    return password


# --- choosing one's own password ---------------------------------------------------------------


def password_problem(*, username: str, current: str, new: str, again: str) -> str | None:
    """Why a chosen password is refused (a text key of the panel), or None if it will do."""
    if new != again:
        return "password_mismatch"
    if len(new.strip()) < MIN_PASSWORD:
        return "password_too_short"
    if len(new) > MAX_PASSWORD:
        return "password_too_long"
    if new == current:
        return "password_same_as_current"
    if new.strip().casefold() == username.strip().casefold():
        return "password_is_username"
    return None


async def hash_password(password: str) -> str:
    # argon2 takes ~0.1 s of CPU by design: off the event loop, so other requests go on.
    return await asyncio.to_thread(HASHER.hash, password)


async def set_password(
    session: AsyncSession,
    *,
    user_id: str,
    password_hash: str,
    now: datetime,
    replaces: str | None = None,
    keep_session: str | None = None,
) -> int:
    """The operator's own password from now on; their sessions but ``keep_session`` end (whoever
    else knew the old password is out). ``replaces``: the hash just verified, so a change made
    meanwhile by another session or a reset is not silently overwritten. Returns sessions ended."""
    condition = [AdminUser.id == user_id]
    if replaces is not None:
        condition.append(AdminUser.password_hash == replaces)
    changed = await session.execute(
        update(AdminUser)
        .where(*condition)
        .values(password_hash=password_hash, must_change_password=False, password_set_at=now)
        .execution_options(synchronize_session=False)
    )
    if rowcount(changed) != 1:
        raise PasswordRefused("password_changed_meanwhile", status_code=409)
    ended = await session.execute(
        delete(AdminSession)
        .where(AdminSession.user_id == user_id, AdminSession.id != (keep_session or ""))
        .execution_options(synchronize_session=False)
    )
    return rowcount(ended) or 0


async def unlock(session: AsyncSession, *, username: str | None = None, ip: str | None = None) -> int:
    """Lift the login lock (and forget the failures) of a username and/or an address: the way
    out when someone locked an operator out by guessing on purpose. Returns the rows cleared."""
    keys = throttle_keys(username, ip) if username else [f"ip:{ip[:64]}"] if ip else []
    result = await session.execute(
        delete(LoginThrottle).where(LoginThrottle.key.in_(keys)).execution_options(synchronize_session=False)
    )
    return rowcount(result) or 0


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


async def _check(db: Database, *, username: str, password: str, ip: str | None, now: datetime) -> AdminUser | None:
    """The active user whose password this is, else None (counted towards a lock).

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
    ok = await asyncio.to_thread(HASHER.verify, password[:MAX_PASSWORD], user.password_hash if user else _DUMMY_HASH)
    if not ok or user is None or not user.is_active:
        return None
    async with db.transaction() as session:
        await session.execute(
            update(LoginThrottle)
            .where(LoginThrottle.key.in_(keys))
            .values(failures=0, locked_until=None)
            .execution_options(synchronize_session=False)
        )
    return user


def one_time_password_expired(user: AdminUser, *, ttl: timedelta, now: datetime) -> bool:
    return user.must_change_password and (user.password_set_at or user.created_at) + ttl <= now


async def authenticate(
    db: Database,
    *,
    username: str,
    password: str,
    ip: str | None,
    now: datetime,
    one_time_ttl: timedelta = ONE_TIME_PASSWORD_TTL,
) -> Login | None:
    """Check a password and open a session; None for wrong credentials (counted towards a lock).

    Raises LoginLocked while the username or the address is locked, and OneTimePasswordExpired
    for a right one-time password past its time (it stays counted as a failure: it opens nothing).
    """
    user = await _check(db, username=username, password=password, ip=ip, now=now)
    if user is None:
        return None
    if one_time_password_expired(user, ttl=one_time_ttl, now=now):
        raise OneTimePasswordExpired()
    token = secrets.token_urlsafe(32)
    async with db.transaction() as session:
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


async def check_current_password(
    db: Database, operator: Operator, *, password: str, ip: str | None, now: datetime
) -> str | None:
    """The stored hash if ``password`` is the operator's current one, else None. Throttled like a
    login (and counted with it): a borrowed session cannot be used to guess the password."""
    user = await _check(db, username=operator.username, password=password, ip=ip, now=now)
    return user.password_hash if user is not None and user.id == operator.user_id else None


async def change_password(
    db: Database, operator: Operator, *, current: str, new: str, again: str, ip: str | None, now: datetime
) -> int:
    """The operator's own new password, given the current one (at first login, the one-time one).
    Their other sessions end, the one making the change stays; the change, or a refusal for a
    wrong current password, is audited. Raises PasswordRefused. Returns the sessions ended."""
    problem = password_problem(username=operator.username, current=current, new=new, again=again)
    if problem:
        raise PasswordRefused(problem, status_code=422)

    async def refuse(reason: str) -> None:
        async with db.transaction() as session:
            await audit(
                session, actor=operator.username, action="password_change_failed", now=now, ip=ip, reason=reason
            )

    try:
        verified = await check_current_password(db, operator, password=current, ip=ip, now=now)
    except LoginLocked as exc:
        await refuse("locked")
        raise PasswordRefused("login_locked", status_code=429, minutes=exc.minutes) from None
    if verified is None:
        await refuse("wrong_current_password")
        raise PasswordRefused("wrong_current_password", status_code=403)
    password_hash = await hash_password(new)
    async with db.transaction() as session:
        ended = await set_password(
            session,
            user_id=operator.user_id,
            password_hash=password_hash,
            now=now,
            replaces=verified,
            keep_session=operator.session_id,
        )
        await audit(
            session,
            actor=operator.username,
            action="password_change",
            now=now,
            ip=ip,
            forced=operator.must_change_password,
            sessions_ended=ended,
        )
    return ended


@dataclass(frozen=True)
class Operator:
    user_id: str
    username: str
    role: str
    session_id: str
    csrf_token: str
    must_change_password: bool = False

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
    return Operator(user.id, user.username, user.role, row.id, row.csrf_token, user.must_change_password)


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
        gone += rowcount(result) or 0
    return gone


def csrf_ok(operator: Operator, submitted: str | None) -> bool:
    return bool(submitted) and secrets.compare_digest(operator.csrf_token, submitted or "")


# --- audit -----------------------------------------------------------------------------------


def cli_actor() -> str:
    """The audit log's actor for a ``paycenter`` command: ``cli:`` and the OS account that ran it.

    Under sudo that is the account that called sudo: the command itself runs as the service's
    user (deploy/paycenter.sh), which would name every operator alike."""
    user = os.environ.get("SUDO_USER", "").strip()
    if not user:
        try:
            user = getpass.getuser()
        except (OSError, KeyError):  # no LOGNAME/USER and no passwd entry: a bare container uid
            user = f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"cli:{user}"[:100]


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
