"""The public page of a payment link, ``/l/{id}``. A one-off link sends the payer to its payment;
a reusable one shows the amount (or asks for it within the link's bounds) and makes a fresh
payment when the payer confirms, then sends them to its ``/pay`` page.

The payment is made on the POST, never on the GET: messengers and mail scanners open every link
they see to preview it, and each of those visits would otherwise leave a payment behind (and an
``expired`` webhook an hour later). Payments are limited per client address and per link, beyond
the address's limit on every public page (``limit_by_address``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from paycenter.checkout import i18n
from paycenter.checkout.pages import _language, _page
from paycenter.deps import Context
from paycenter.errors import ApiError, NotFound
from paycenter.payments import links, service
from paycenter.payments.models import LinkKind, PaymentLink
from paycenter.ratelimit import RateLimiter, TooManyRequests, client_address, limit_by_address

router = APIRouter(include_in_schema=False, dependencies=[Depends(limit_by_address)])

# Payments one client address may make from links, a minute (all links together), and payments
# one link may make, a minute (all addresses together): a reusable link costs its merchant a
# payment row and, unpaid, an `expired` webhook, so neither one browser nor many may make them
# without bound. A shop's real payers are far below both.
PAYMENTS_PER_ADDRESS = 10
PAYMENTS_PER_LINK = 120


def _unavailable(request: Request, status_code: int = 410) -> HTMLResponse:
    context = {"what": "link_unavailable", "note": "link_unavailable_note"}
    return _page(request, "not_found.html", context, _language(request, None), status_code=status_code)


async def _form(
    request: Request,
    ctx: Context,
    link: PaymentLink,
    *,
    error: str | None = None,
    typed: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    async with ctx.db.reading() as session:
        merchant_name = await service.merchant_name(session, link.merchant_id)
    lang = _language(request, None)

    def money(minor: int) -> str:
        return i18n.format_money(minor, link.currency, lang)

    context = {"link": link, "merchant_name": merchant_name, "money": money, "error": error, "typed": typed}
    return _page(request, "link.html", context, lang, status_code=status_code)


async def _open_link(ctx: Context, link_id: str) -> PaymentLink | None:
    async with ctx.db.reading() as session:
        try:
            return await links.get(session, link_id)
        except NotFound:
            return None


@router.get("/l/{link_id}", response_class=HTMLResponse)
async def link_page(link_id: str, request: Request, ctx: Context) -> Response:
    link = await _open_link(ctx, link_id)
    if link is None:
        return _page(request, "not_found.html", {}, _language(request, None), status_code=404)
    if link.kind == LinkKind.ONE_OFF:
        if not link.is_active or link.payment_id is None:
            return _unavailable(request)
        return RedirectResponse(f"/pay/{link.payment_id}", status_code=303)
    try:
        links.check_open(link, ctx.now())
    except ApiError:
        return _unavailable(request)
    return await _form(request, ctx, link)


def _hit(request: Request, link: PaymentLink) -> None:
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None:
        limiter.hit(f"link-ip:{client_address(request)}"[:120], PAYMENTS_PER_ADDRESS)
        limiter.hit(f"link:{link.id}", PAYMENTS_PER_LINK)


@router.post("/l/{link_id}")
async def pay_from_link(
    link_id: str, request: Request, ctx: Context, amount: Annotated[str | None, Form(max_length=40)] = None
) -> Response:
    link = await _open_link(ctx, link_id)
    if link is None:
        return _page(request, "not_found.html", {}, _language(request, None), status_code=404)
    if link.kind == LinkKind.ONE_OFF:
        return await link_page(link_id, request, ctx)
    lang = _language(request, None)
    t = i18n.translator(lang)
    typed = (amount or "").strip()
    try:
        _hit(request, link)
    except TooManyRequests:
        return await _form(request, ctx, link, error=t("link_too_many"), typed=typed, status_code=429)
    try:
        async with ctx.db.transaction() as session:
            payment = await links.pay(session, link_id=link.id, amount=typed, policy=ctx.init_policy, now=ctx.now())
    except ApiError as exc:
        if exc.status_code == 410:
            return _unavailable(request)
        if link.min_amount is None or link.max_amount is None:
            raise
        low = i18n.format_money(link.min_amount, link.currency, lang)
        high = i18n.format_money(link.max_amount, link.currency, lang)
        error = t("link_amount_error", low=low, high=high)
        return await _form(request, ctx, link, error=error, typed=typed, status_code=422)
    return RedirectResponse(f"/pay/{payment.id}", status_code=303)
