"""The admin's payment links: the list (with the payments made from each), the create form, a
link's page with its QR (PNG and SVG) and a copy button, and disabling. Operators with the admin
role create and disable, viewers only look; every change is audited in its own transaction."""

from __future__ import annotations

import io
import json
from datetime import datetime
from typing import Any

import segno
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from paycenter import storable
from paycenter.admin.queries import ALMATY
from paycenter.admin.web import BadInput, Operator, back, checked_form, clean_path, client_ip, render
from paycenter.deps import Context, public_base_url
from paycenter.errors import ApiError, NotFound
from paycenter.merchants import service as merchants
from paycenter.money import MoneyError, typed
from paycenter.operators import service as operators
from paycenter.payments import links
from paycenter.payments.models import PaymentLink

router = APIRouter(prefix="/admin", include_in_schema=False, dependencies=[Depends(clean_path)])
FORM_FIELDS = (
    "merchant_id",
    "kind",
    "amount_mode",
    "amount",
    "min_amount",
    "max_amount",
    "description",
    "expires_minutes",
    "link_expires_at",
    "customer_name",
    "customer_phone",
    "metadata",
)


async def _list_page(
    request: Request,
    ctx: Context,
    operator: operators.Operator,
    *,
    form: dict[str, str] | None = None,
    form_error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    merchant = request.query_params.get("merchant") or None
    if merchant is not None and storable.text_problem(merchant):
        raise BadInput(f"merchant {storable.text_problem(merchant)}", status_code=400)
    now = ctx.now()
    async with ctx.db.reading() as session:
        try:
            rows, next_cursor = await links.page(
                session, merchant_id=merchant, limit=50, cursor=request.query_params.get("cursor") or None
            )
        except ApiError:
            rows, next_cursor = [], None
        made = await links.payments_of(session, [link.id for link in rows], limit=10)
        one_off = await links.one_off_payments(session, rows)
        shops = await merchants.list_merchants(session)
    base_url = public_base_url(ctx, request)
    context = {
        "rows": rows,
        "made": made,
        "statuses": {link.id: links.status(link, now, one_off.get(link.payment_id or "")) for link in rows},
        "urls": {link.id: links.url(base_url, link) for link in rows},
        "merchants": shops,
        "merchant_names": {m.id: m.name for m in shops},
        "merchant": merchant or "",
        "next_cursor": next_cursor,
        "form": form or {"kind": "one_off", "amount_mode": "fixed", "expires_minutes": "60"},
        "form_error": form_error,
    }
    return render(request, "links.html", context, operator=operator, status_code=status_code)


@router.get("/links", response_class=HTMLResponse)
async def link_list(request: Request, ctx: Context, operator: Operator) -> HTMLResponse:
    return await _list_page(request, ctx, operator)


def _amount(text: str | None) -> str | None:
    """An amount as typed ("5 000,50") in the API's notation ("5000.50")."""
    value = typed(text)
    return None if value is None else format(value, "f")


def _link_body(form: dict[str, str], now: datetime) -> links.LinkCreate:
    """The form as the API's body: the same checks, the same messages (``LinkCreate``)."""
    reusable = form.get("kind") == "reusable"
    chosen = reusable and form.get("amount_mode") == "range"
    metadata_text = form.get("metadata", "").strip()
    metadata = None
    if metadata_text:
        try:
            metadata = json.loads(metadata_text)
        except ValueError:
            raise ApiError("metadata: not valid JSON", code="validation_error") from None
        if not isinstance(metadata, dict):
            raise ApiError("metadata: must be a JSON object", code="validation_error")
    minutes = form.get("expires_minutes", "").strip()
    expires_at = form.get("link_expires_at", "").strip()
    try:
        body: dict[str, Any] = {
            "kind": "reusable" if reusable else "one_off",
            "amount": None if chosen else _amount(form.get("amount")),
            "min_amount": _amount(form.get("min_amount")) if chosen else None,
            "max_amount": _amount(form.get("max_amount")) if chosen else None,
            "description": form.get("description", "").strip(),
            "expires_in": int(minutes) * 60 if minutes else None,
            "link_expires_at": (
                datetime.fromisoformat(expires_at).replace(tzinfo=ALMATY) if reusable and expires_at else None
            ),
            "customer_name": form.get("customer_name", "").strip() or None,
            "customer_phone": form.get("customer_phone", "").strip() or None,
            "metadata": metadata,
        }
    except MoneyError as exc:
        raise ApiError(f"amount: {exc}", code="validation_error") from None
    except ValueError:
        message = "expires: a whole number of minutes, and a date as YYYY-MM-DDTHH:MM"
        raise ApiError(message, code="validation_error") from None
    try:
        return links.LinkCreate.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first.get("loc", ())) or "form"
        raise ApiError(f"{field}: {str(first['msg']).removeprefix('Value error, ')}", code="validation_error") from None


@router.post("/links")
async def link_create(request: Request, ctx: Context, operator: Operator) -> Response:
    form = await checked_form(request, operator)
    kept = {name: form.get(name, "")[:2000] for name in FORM_FIELDS}
    now = ctx.now()
    try:
        body = _link_body(form, now)
        async with ctx.db.transaction() as session:
            shop = next((m for m in await merchants.list_merchants(session) if m.id == form.get("merchant_id")), None)
            if shop is None or not shop.is_active:
                raise ApiError("merchant: choose a merchant", code="validation_error")
            link, payment = await links.create(
                session,
                merchant=shop,
                data=body,
                policy=ctx.init_policy,
                now=now,
                created_by=operator.username,
                via="admin",
            )
            await operators.audit(
                session,
                actor=operator.username,
                action="link_create",
                target=link.id,
                now=now,
                ip=client_ip(request),
                merchant_id=shop.id,
                kind=link.kind,
                amount=link.amount,
                min_amount=link.min_amount,
                max_amount=link.max_amount,
                payment_id=payment.id if payment else None,
            )
    except ApiError as exc:
        return await _list_page(request, ctx, operator, form=kept, form_error=exc.message, status_code=422)
    return back(request, f"/admin/links/{link.id}", notice="done")


async def _link(ctx: Context, link_id: str) -> PaymentLink:
    async with ctx.db.reading() as session:
        try:
            return await links.get(session, link_id)
        except NotFound:
            raise BadInput("link not found", status_code=404) from None


@router.get("/links/{link_id}", response_class=HTMLResponse)
async def link_page(link_id: str, request: Request, ctx: Context, operator: Operator) -> HTMLResponse:
    link = await _link(ctx, link_id)
    now = ctx.now()
    async with ctx.db.reading() as session:
        made = (await links.payments_of(session, [link.id], limit=100))[link.id]
        one_off = await links.one_off_payments(session, [link])
        merchant_name = next((m.name for m in await merchants.list_merchants(session) if m.id == link.merchant_id), "")
    base_url = public_base_url(ctx, request)
    url = links.url(base_url, link)
    context = {
        "link": link,
        "url": url,
        "payment_url": links.payment_url(base_url, link.payment_id) if link.payment_id else None,
        "qr_svg": segno.make(url, error="m").svg_inline(scale=6, border=2),
        "made": made,
        "status": links.status(link, now, one_off.get(link.payment_id or "")),
        "merchant_name": merchant_name,
        "metadata": json.dumps(link.metadata_ or {}, ensure_ascii=False, indent=2),
    }
    return render(request, "link.html", context, operator=operator)


@router.get("/links/{link_id}/qr.{kind}")
async def link_qr(link_id: str, kind: str, request: Request, ctx: Context, operator: Operator) -> Response:
    if kind not in ("png", "svg"):
        raise BadInput("qr: png or svg", status_code=404)
    link = await _link(ctx, link_id)
    out = io.BytesIO()
    segno.make(links.url(public_base_url(ctx, request), link), error="m").save(out, kind=kind, scale=10, border=2)
    media = "image/png" if kind == "png" else "image/svg+xml"
    headers = {"Content-Disposition": f'attachment; filename="{link.id}.{kind}"', "Cache-Control": "no-store"}
    return Response(out.getvalue(), media_type=media, headers=headers)


@router.post("/links/{link_id}/disable")
async def link_disable(link_id: str, request: Request, ctx: Context, operator: Operator) -> Response:
    await checked_form(request, operator)
    url = f"/admin/links/{link_id}"
    now = ctx.now()
    try:
        async with ctx.db.transaction() as session:
            changed = await links.disable(session, link_id=link_id, now=now)
            if changed:
                await operators.audit(
                    session,
                    actor=operator.username,
                    action="link_disable",
                    target=link_id,
                    now=now,
                    ip=client_ip(request),
                )
    except NotFound:
        raise BadInput("link not found", status_code=404) from None
    return back(request, url, notice="done")
