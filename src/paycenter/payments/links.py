"""Payment links (``PaymentLink``): the only code that writes them. A link's payments are made by
``service.create_payment``, as the merchant API makes them, so webhooks, events and expiry treat
them like any other; each carries ``metadata.link_id`` and ``payments.link_id``.

Like the rest of the service layer: runs in the caller's transaction, never commits."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from paycenter import contract, pagination
from paycenter.db import rowcount
from paycenter.envelope import RequestBody
from paycenter.errors import Conflict, NotFound, Unprocessable
from paycenter.merchants.models import Merchant
from paycenter.money import MoneyError, api_minor, to_major_str
from paycenter.payments import service
from paycenter.payments.models import LinkKind, Payment, PaymentLink
from paycenter.payments.schemas import METADATA_MAX_KEYS, AmountIn, PaymentInit
from paycenter.timefmt import iso

CURRENCY = "KZT"
_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_LINK_ID = re.compile(r"lnk_[0-9a-z]{25}")


def new_link_id() -> str:
    """``lnk_`` and 25 base-36 characters (129 random bits): public, and unguessable."""
    return "lnk_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(25))


class LinkCreate(RequestBody):
    """Body of ``POST /api/links`` (the admin's form is read into it too)."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {"kind": "one_off", "amount": 5000, "description": "Bouquet #12", "customer_phone": "+77010000000"},
                {"kind": "reusable", "min_amount": 500, "max_amount": 50000, "description": "Donation"},
            ]
        },
    )

    kind: Literal["one_off", "reusable"] = Field(
        default="one_off",
        description="`one_off`: one payment, made now (its `payment_url` is in the answer). `reusable`: a fresh "
        "payment on each payer's visit to the link's `url`.",
    )
    currency: Literal["KZT"] = Field(default="KZT", description="KZT only.")
    amount: AmountIn | None = Field(
        default=None, description="A fixed amount in major units. Required unless a reusable link gives bounds."
    )
    min_amount: AmountIn | None = Field(
        default=None,
        description="Reusable links without `amount`: one bound of what the payer may choose (major units); "
        "with `max_amount`, the two in either order.",
    )
    max_amount: AmountIn | None = Field(
        default=None, description="Reusable links without `amount`: the other bound; with `min_amount`."
    )
    description: str = Field(default="", max_length=1000)
    expires_in: Annotated[int, Field(ge=10, le=30 * 24 * 3600), BeforeValidator(contract.json_int)] | None = Field(
        default=None, description="Seconds each payment made from the link stays payable; 1 hour by default."
    )
    link_expires_at: contract.DateTime | None = Field(
        default=None,
        description="Reusable links: no payments are made from the link after this (RFC 3339; a time past "
        "already makes a link that makes none).",
    )
    customer_name: str | None = Field(default=None, max_length=200)
    customer_phone: str | None = Field(default=None, max_length=32)
    metadata: dict[str, Any] | None = Field(
        default=None,
        description=f"Copied into every payment's metadata, with `link_id` added: at most {METADATA_MAX_KEYS - 1} "
        "keys, the rules of a payment's metadata otherwise.",
    )
    provider: str | None = Field(default=None, description="Payment provider; the merchant's default if omitted.")

    @field_validator("metadata")
    @classmethod
    def _room_for_link_id(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(value) > METADATA_MAX_KEYS - 1:
            raise ValueError(f"metadata must have at most {METADATA_MAX_KEYS - 1} keys (link_id is added)")
        return value


def _invalid(field: str, message: str) -> Unprocessable:
    return Unprocessable(f"{field}: {message}", fields=[{"field": field, "message": message}])


def _minor(value: Any, field: str, max_major: Any) -> int:
    try:
        return api_minor(value, CURRENCY, max_major=max_major)
    except MoneyError as exc:
        raise _invalid(field, str(exc)) from None


def _payment_init(link: PaymentLink, amount: int) -> PaymentInit:
    """What a payment made from the link asks for, checked as the merchant API checks a body."""
    body = {
        "amount": to_major_str(amount, link.currency),
        "currency": link.currency,
        "description": link.description,
        "metadata": {**(link.metadata_ or {}), "link_id": link.id},
        "customer_name": link.customer_name,
        "customer_phone": link.customer_phone,
        "expires_in": link.expires_in,
        "provider": link.provider,
    }
    try:
        return PaymentInit.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first.get("loc") else "body"
        raise _invalid(field, str(first["msg"]).removeprefix("Value error, ")) from None


async def create(
    session: AsyncSession,
    *,
    merchant: Merchant,
    data: LinkCreate,
    policy: service.InitPolicy,
    now: datetime,
    created_by: str | None,
    via: Literal["admin", "api"],
) -> tuple[PaymentLink, Payment | None]:
    """A new link, and a one-off link's payment (made now)."""
    amount = None if data.amount is None else _minor(data.amount, "amount", policy.max_amount)
    low = None if data.min_amount is None else _minor(data.min_amount, "min_amount", policy.max_amount)
    high = None if data.max_amount is None else _minor(data.max_amount, "max_amount", policy.max_amount)
    if amount is not None and (low is not None or high is not None):
        raise _invalid("amount", "give either a fixed amount or min_amount and max_amount, not both")
    if amount is None:
        if data.kind == "one_off":
            raise _invalid("amount", "a one-off link needs a fixed amount")
        if low is None or high is None:
            raise _invalid("amount", "give a fixed amount, or both min_amount and max_amount")
        low, high = min(low, high), max(low, high)  # the bounds, in either order (as documented)
    if data.link_expires_at is not None and data.kind == "one_off":
        raise _invalid("link_expires_at", "a one-off link expires with its payment: use expires_in")
    link = PaymentLink(
        id=new_link_id(),
        merchant_id=merchant.id,
        kind=data.kind,
        description=data.description,
        currency=CURRENCY,
        amount=amount,
        min_amount=low,
        max_amount=high,
        expires_in=data.expires_in,
        expires_at=data.link_expires_at,
        customer_name=data.customer_name or None,
        customer_phone=data.customer_phone or None,
        metadata_=data.metadata or {},
        provider=data.provider or None,
        is_active=True,
        payments_count=0,
        created_by=created_by,
        created_via=via,
        created_at=now,
    )
    # Every payment it will make is checked now (metadata limits with link_id, provider, phone):
    # a link that could never make a payment is refused here, not on the payer's visit.
    checked = _payment_init(link, amount if amount is not None else high or 0)
    service.provider_for(checked.provider, merchant, policy)
    session.add(link)
    await session.flush()
    payment = None
    if link.kind == LinkKind.ONE_OFF:
        assert amount is not None
        payment = await _make_payment(session, link, merchant=merchant, amount=amount, policy=policy, now=now)
        link.payment_id = payment.id
        link.payments_count = 1
    return link, payment


async def _make_payment(
    session: AsyncSession,
    link: PaymentLink,
    *,
    merchant: Merchant,
    amount: int,
    policy: service.InitPolicy,
    now: datetime,
) -> Payment:
    payment = await service.create_payment(
        session, merchant=merchant, data=_payment_init(link, amount), policy=policy, now=now, link_id=link.id
    )
    return payment


def check_open(link: PaymentLink, now: datetime) -> None:
    """Refuse a link that makes no more payments (410: gone for good)."""
    if not link.is_active:
        raise Conflict("This payment link has been disabled", code="link_disabled", status_code=410)
    if link.expires_at is not None and link.expires_at <= now:
        raise Conflict("This payment link has expired", code="link_expired", status_code=410)


def chosen_amount(link: PaymentLink, value: Any) -> int:
    """The amount a payment from a reusable link asks for: its own, or the payer's within bounds."""
    if link.amount is not None:
        return link.amount
    assert link.min_amount is not None and link.max_amount is not None
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _invalid("amount", "enter the amount")
    if isinstance(value, str):  # as a person types it ("5 000,50"), then the API's grammar (no "1e3")
        for space in (" ", "\u00a0", "\u202f", "\u2009"):
            value = value.replace(space, "")
        value = value.replace(",", ".")
    minor = _minor(value, "amount", None)
    if not link.min_amount <= minor <= link.max_amount:
        low, high = to_major_str(link.min_amount, link.currency), to_major_str(link.max_amount, link.currency)
        raise _invalid("amount", f"must be from {low} to {high} {link.currency}")
    return minor


async def pay(
    session: AsyncSession, *, link_id: str, amount: Any, policy: service.InitPolicy, now: datetime
) -> Payment:
    """A fresh payment from a reusable link (a payer's visit). Counted with one guarded UPDATE, so
    a link disabled or expired at this very moment makes no payment."""
    link = await get(session, link_id)
    if link.kind != LinkKind.REUSABLE:
        raise Conflict("A one-off link has its one payment", code="link_one_off")
    check_open(link, now)
    minor = chosen_amount(link, amount)
    counted = await session.execute(
        update(PaymentLink)
        .where(
            PaymentLink.id == link.id,
            PaymentLink.is_active.is_(True),
            or_(PaymentLink.expires_at.is_(None), PaymentLink.expires_at > now),
        )
        .values(payments_count=PaymentLink.payments_count + 1)
        .execution_options(synchronize_session=False)
    )
    if not rowcount(counted):
        raise Conflict("This payment link no longer makes payments", code="link_disabled", status_code=410)
    # Without its signing secrets (not decrypted: a payment needs none of them).
    merchant = await session.scalar(
        select(Merchant)
        .options(
            defer(Merchant.signing_secret, raiseload=True),
            defer(Merchant.previous_signing_secret, raiseload=True),
        )
        .where(Merchant.id == link.merchant_id)
    )
    if merchant is None or not merchant.is_active:
        raise NotFound("Payment link not found", code="link_not_found")
    return await _make_payment(session, link, merchant=merchant, amount=minor, policy=policy, now=now)


async def get(session: AsyncSession, link_id: str, *, merchant_id: str | None = None) -> PaymentLink:
    # A malformed id names no link, and is not sent to the database (PostgreSQL refuses a NUL).
    link = await session.get(PaymentLink, link_id) if _LINK_ID.fullmatch(link_id) else None
    if link is None or (merchant_id is not None and link.merchant_id != merchant_id):
        raise NotFound("Payment link not found", code="link_not_found")
    return link


async def disable(session: AsyncSession, *, link_id: str, now: datetime, merchant_id: str | None = None) -> bool:
    """Stop a link making payments; False if it already was. Payments made from it stay as they are
    (a one-off link's payment too: cancel it as any payment)."""
    link = await get(session, link_id, merchant_id=merchant_id)
    done = await session.execute(
        update(PaymentLink)
        .where(PaymentLink.id == link.id, PaymentLink.is_active.is_(True))
        .values(is_active=False, disabled_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(rowcount(done))


async def page(
    session: AsyncSession, *, merchant_id: str | None, limit: int, cursor: str | None
) -> tuple[Sequence[PaymentLink], str | None]:
    """Links, newest first, a keyset page at a time (``paycenter.pagination``)."""
    stmt = select(PaymentLink)
    if merchant_id is not None:
        stmt = stmt.where(PaymentLink.merchant_id == merchant_id)
    return await pagination.page(
        session, stmt, created_col=PaymentLink.created_at, id_col=PaymentLink.id, limit=limit, cursor=cursor
    )


async def payments_of(session: AsyncSession, link_ids: Sequence[str], *, limit: int = 50) -> dict[str, list[Payment]]:
    """The latest payments made from each link (at most ``limit`` each)."""
    out: dict[str, list[Payment]] = {link_id: [] for link_id in link_ids}
    if not link_ids:
        return out
    rows = await session.scalars(
        select(Payment)
        .where(Payment.link_id.in_(list(link_ids)))
        .order_by(Payment.created_at.desc(), Payment.id)
        .limit(limit * len(link_ids))
    )
    for payment in rows:
        bucket = out[payment.link_id or ""]
        if len(bucket) < limit:
            bucket.append(payment)
    return out


async def one_off_payments(session: AsyncSession, rows: Sequence[PaymentLink]) -> dict[str, Payment]:
    """One-off links' payments by id (one query; a payment the cleanup deleted is absent)."""
    ids = [link.payment_id for link in rows if link.payment_id]
    if not ids:
        return {}
    return {p.id: p for p in await session.scalars(select(Payment).where(Payment.id.in_(ids)))}


def status(link: PaymentLink, now: datetime, payment: Payment | None = None) -> str:
    """What the list shows: disabled, expired, or active; a one-off link says its payment's status
    (``expired`` once the daily cleanup has deleted it: it deletes only closed, unpaid payments)."""
    if not link.is_active:
        return "disabled"
    if link.kind == LinkKind.ONE_OFF:
        return payment.status if payment is not None else "expired"
    if link.expires_at is not None and link.expires_at <= now:
        return "expired"
    return "active"


# --- how a link is shown (the merchant API, the admin) ------------------------------------------


def _major(minor: int | None, currency: str) -> str | None:
    return None if minor is None else to_major_str(minor, currency)


def url(base_url: str, link: PaymentLink) -> str:
    return f"{base_url.rstrip('/')}/l/{link.id}"


def payment_url(base_url: str, payment_id: str) -> str:
    return f"{base_url.rstrip('/')}/pay/{payment_id}"


def view(link: PaymentLink, base_url: str, *, now: datetime, payment: Payment | None = None) -> dict[str, Any]:
    """A link as ``LinkView`` shows it (``payment``: a one-off link's, for its status)."""
    return {
        "id": link.id,
        "kind": link.kind,
        "url": url(base_url, link),
        "status": status(link, now, payment),
        "active": link.is_active,
        "description": link.description,
        "currency": link.currency,
        "amount": _major(link.amount, link.currency),
        "min_amount": _major(link.min_amount, link.currency),
        "max_amount": _major(link.max_amount, link.currency),
        "expires_in": link.expires_in,
        "link_expires_at": iso(link.expires_at),
        "customer_name": link.customer_name,
        "customer_phone": link.customer_phone,
        "metadata": link.metadata_ or {},
        "provider": link.provider,
        "payment_id": link.payment_id,
        "payment_url": payment_url(base_url, link.payment_id) if link.payment_id else None,
        "payments_count": link.payments_count,
        "created_via": link.created_via,
        "created_at": iso(link.created_at),
        "disabled_at": iso(link.disabled_at),
    }


class LinkView(BaseModel):
    id: str = Field(description="`lnk_` and 25 characters: public, unguessable.")
    kind: Literal["one_off", "reusable"]
    url: str = Field(description="The link to send the payer (`/l/{id}`).")
    status: str = Field(
        description="`active`, `disabled`, `expired`; a one-off link says its payment's status "
        "(`pending`, `paid`, ...)."
    )
    active: bool
    description: str
    currency: str
    amount: str | None = Field(description="Fixed amount (decimal string); null when the payer chooses.")
    min_amount: str | None
    max_amount: str | None
    expires_in: int | None = Field(description="Seconds each payment stays payable; null: the default (1 hour).")
    link_expires_at: str | None
    customer_name: str | None
    customer_phone: str | None
    metadata: dict[str, Any]
    provider: str | None
    payment_id: str | None = Field(description="A one-off link's payment.")
    payment_url: str | None = Field(description="A one-off link's payment page.")
    payments_count: int = Field(description="Payments made from the link.")
    created_via: Literal["admin", "api"]
    created_at: str
    disabled_at: str | None


class LinkPage(BaseModel):
    items: list[LinkView]
    has_more: bool
    next_cursor: str | None
