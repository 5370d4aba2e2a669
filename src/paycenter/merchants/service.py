"""Merchants and their API tokens. Tokens are shown once and stored only as SHA-256."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import String, bindparam, delete, func, select, type_coerce, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import defer

from paycenter import crypto, money, versions
from paycenter.db import column_attributes, detached, new_id, rowcount
from paycenter.errors import NotFound, Unprocessable
from paycenter.merchants.models import ApiToken, Merchant, StreamLease

TOKEN_PREFIX = "pct_"


# The old system's tokens: 64 hex digits, which it matched case-insensitively (a MySQL collation).
_OLD_TOKEN = re.compile(r"[0-9A-Fa-f]{64}")


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough: nothing to brute-force. An old
    # system's token is hashed in lower case, so it is found however its merchant writes it.
    if _OLD_TOKEN.fullmatch(token):
        token = token.lower()
    return hashlib.sha256(token.encode()).hexdigest()


def new_signing_secret() -> str:
    # Standard Webhooks format: "whsec_" + standard base64 of the key bytes, which is what the
    # official libraries decode (URL-safe base64 would silently decode to another key).
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # the only time the plain token exists


async def create_merchant(
    session: AsyncSession,
    *,
    name: str,
    now: datetime,
    webhook_url: str | None = None,
    default_provider: str | None = None,
    api_version: str = versions.CURRENT,
) -> Merchant:
    merchant = Merchant(
        id=new_id("mer"),
        name=name,
        webhook_url=webhook_url,
        signing_secret=new_signing_secret(),
        default_provider=default_provider,
        is_active=True,
        created_at=now,
        api_version=versions.check(api_version),
        underpayment_tolerance=0,
    )
    session.add(merchant)
    await session.flush()
    return merchant


async def set_api_version(session: AsyncSession, *, merchant_id: str, api_version: str) -> tuple[str, str]:
    """Pin a merchant to an API version; (before, after)."""
    merchant = await session.get(Merchant, merchant_id, with_for_update=True)
    if merchant is None:
        raise NotFound(f"Merchant {merchant_id} not found")
    before, merchant.api_version = merchant.api_version, versions.check(api_version)
    return before, merchant.api_version


# A tolerance is a rounding allowance, not a discount: refused above 1,000 major units (100000 minor).
MAX_UNDERPAYMENT_TOLERANCE = 100_000


def tolerance_from_text(text: str) -> int:
    """A tolerance as an operator types it, in major units ("10", "10,50"; 2 decimals, as KZT),
    into minor units. ``Unprocessable`` for anything else."""
    try:
        value = money.typed(text)
        if value is None:
            raise money.MoneyError("a tolerance is required")
        return 0 if value == 0 else money.to_minor(value, "KZT")
    except money.MoneyError as exc:
        raise Unprocessable(f"underpayment tolerance: {exc}", code="invalid_tolerance") from None


def checked_tolerance(tolerance: int) -> int:
    if not 0 <= tolerance <= MAX_UNDERPAYMENT_TOLERANCE:
        raise Unprocessable(
            f"underpayment tolerance must be 0 to {MAX_UNDERPAYMENT_TOLERANCE // 100} (major units)",
            code="invalid_tolerance",
        )
    return tolerance


async def set_underpayment_tolerance(session: AsyncSession, *, merchant_id: str, tolerance: int) -> tuple[int, int]:
    """How much a payment may lack and still count as paid (minor units); (before, after)."""
    checked_tolerance(tolerance)
    merchant = await session.get(Merchant, merchant_id, with_for_update=True)
    if merchant is None:
        raise NotFound(f"Merchant {merchant_id} not found")
    before, merchant.underpayment_tolerance = merchant.underpayment_tolerance, tolerance
    return before, tolerance


async def issue_token(session: AsyncSession, *, merchant_id: str, now: datetime, name: str = "") -> IssuedToken:
    if await session.get(Merchant, merchant_id) is None:
        raise NotFound(f"Merchant {merchant_id} not found")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        id=new_id("tok"),
        merchant_id=merchant_id,
        name=name,
        prefix=secret[:12],
        token_hash=hash_token(secret),
        created_at=now,
    )
    session.add(token)
    await session.flush()
    return IssuedToken(token, secret)


async def revoke_token(session: AsyncSession, *, token_id: str, now: datetime) -> ApiToken:
    token = await session.get(ApiToken, token_id, with_for_update=True)
    if token is None:
        raise NotFound(f"Token {token_id} not found")
    if token.revoked_at is None:
        token.revoked_at = now
    return token


async def list_tokens(session: AsyncSession, *, merchant_id: str | None = None) -> list[ApiToken]:
    stmt = select(ApiToken).order_by(ApiToken.created_at)
    if merchant_id:
        stmt = stmt.where(ApiToken.merchant_id == merchant_id)
    return list(await session.scalars(stmt))


async def rotate_signing_secret(
    session: AsyncSession, *, merchant_id: str, grace: timedelta, now: datetime
) -> Merchant:
    """A new signing secret; the old one keeps signing (beside the new) until the grace ends."""
    merchant = await session.get(Merchant, merchant_id, with_for_update=True, populate_existing=True)
    if merchant is None:
        raise NotFound(f"Merchant {merchant_id} not found")
    if grace.total_seconds() > 0:
        merchant.previous_signing_secret = merchant.signing_secret
        merchant.previous_secret_expires_at = now + grace
    else:
        merchant.previous_signing_secret = None
        merchant.previous_secret_expires_at = None
    merchant.signing_secret = new_signing_secret()
    return merchant


async def set_webhook_url(session: AsyncSession, *, merchant_id: str, url: str | None) -> Merchant:
    merchant = await session.get(Merchant, merchant_id, with_for_update=True)
    if merchant is None:
        raise NotFound(f"Merchant {merchant_id} not found")
    merchant.webhook_url = url
    return merchant


async def list_merchants(session: AsyncSession) -> list[Merchant]:
    """Every merchant, without its signing secrets (not read, not decrypted: accessing them raises).
    A list must show every merchant whatever became of one's stored secret."""
    return list(
        await session.scalars(
            select(Merchant)
            .options(
                defer(Merchant.signing_secret, raiseload=True),
                defer(Merchant.previous_signing_secret, raiseload=True),
            )
            .order_by(Merchant.created_at)
        )
    )


async def any_merchant(session: AsyncSession) -> bool:
    """Whether a merchant exists (on an empty database, ``paycenter run`` makes a demo one)."""
    return await session.scalar(select(Merchant.id).limit(1)) is not None


async def names(session: AsyncSession) -> dict[str, str]:
    """Every merchant's name by its id."""
    return {merchant_id: name for merchant_id, name in (await session.execute(select(Merchant.id, Merchant.name)))}


async def get_without_secrets(session: AsyncSession, merchant_id: str) -> Merchant | None:
    """A merchant, its signing secrets neither read nor decrypted (accessing them raises): a page
    about its payment must show whatever became of the stored secret."""
    return await session.get(
        Merchant,
        merchant_id,
        options=[
            defer(Merchant.signing_secret, raiseload=True),
            defer(Merchant.previous_signing_secret, raiseload=True),
        ],
    )


async def signing_secret_hints(session: AsyncSession, *, length: int = 12) -> dict[str, str | None]:
    """The first characters of each merchant's signing secret, to tell secrets apart on screen;
    None where no configured key decrypts it (decrypted row by row, so one such merchant is shown
    as such instead of failing the whole list)."""
    hints: dict[str, str | None] = {}
    rows = await session.execute(select(Merchant.id, type_coerce(Merchant.signing_secret, String())))
    for merchant_id, stored in rows:
        try:
            hints[merchant_id] = crypto.keyring().open(stored)[:length]
        except crypto.SecretsError:
            hints[merchant_id] = None
    return hints


# Built once: it runs on every API request, and building the statement cost more than its
# (cached) compilation.
# The merchant's columns, not the ORM entity: the row becomes a detached Merchant without the
# ORM's loading machinery, about a sixth of an init's CPU (issue 15).
_AUTHENTICATE = (
    select(*column_attributes(Merchant))
    .join(ApiToken, ApiToken.merchant_id == Merchant.id)
    .where(
        ApiToken.token_hash == bindparam("token_hash"),
        ApiToken.revoked_at.is_(None),
        Merchant.is_active.is_(True),
    )
)


async def authenticate(
    session: AsyncSession | AsyncConnection, token: str, *, token_hash: str | None = None
) -> Merchant | None:
    """The active merchant owning an unrevoked token, in one indexed query.

    Looked up in the database on every request, no cache: a revoked token or a deactivated
    merchant is refused from the next request on, in every process."""
    params = {"token_hash": token_hash or hash_token(token)}
    row = (await session.execute(_AUTHENTICATE, params)).one_or_none()
    return None if row is None else detached(Merchant, row._mapping)


# --- a token's open events streams ---------------------------------------------------------------


async def claim_stream(
    session: AsyncSession, *, token_hash: str, now: datetime, limit: int, ttl: timedelta
) -> str | None:
    """A lease for one more events stream of this token, or None when ``limit`` are open (in any
    process). The token's row is locked first, so two processes claiming at once count each
    other (SQLite's write transactions are serial already); lapsed leases are dropped here."""
    token_id = await session.scalar(
        select(ApiToken.id).where(ApiToken.token_hash == token_hash, ApiToken.revoked_at.is_(None)).with_for_update()
    )
    if token_id is None:
        return None  # revoked this very moment: the stream is refused like any other over-limit one
    await session.execute(
        delete(StreamLease)
        .where(StreamLease.token_id == token_id, StreamLease.expires_at <= now)
        .execution_options(synchronize_session=False)
    )
    open_now = await session.scalar(
        select(func.count()).select_from(StreamLease).where(StreamLease.token_id == token_id)
    )
    if (open_now or 0) >= limit:
        return None
    lease = StreamLease(id=new_id("stl"), token_id=token_id, opened_at=now, expires_at=now + ttl)
    session.add(lease)
    return lease.id


async def renew_stream(session: AsyncSession, *, lease_id: str, now: datetime, ttl: timedelta) -> bool:
    """Keep a stream's lease; False if it lapsed and another stream may have its place (the
    stream then ends, and its client reconnects as any other)."""
    result = await session.execute(
        update(StreamLease)
        .where(StreamLease.id == lease_id, StreamLease.expires_at > now)
        .values(expires_at=now + ttl)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1


async def release_stream(session: AsyncSession, *, lease_id: str) -> None:
    await session.execute(
        delete(StreamLease).where(StreamLease.id == lease_id).execution_options(synchronize_session=False)
    )


async def purge_lapsed_streams(session: AsyncSession, *, now: datetime) -> int:
    """Leases a dead process left behind, for the daily cleanup (a claim drops its token's own)."""
    result = await session.execute(
        delete(StreamLease).where(StreamLease.expires_at <= now).execution_options(synchronize_session=False)
    )
    return rowcount(result) or 0
