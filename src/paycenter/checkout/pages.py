"""The hosted payment page ``/pay/{id}``: what the payer sees and the sandbox's buttons."""

from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import segno
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from paycenter.checkout import i18n
from paycenter.db import normalize_payment_id
from paycenter.deps import Context
from paycenter.errors import ApiError, NotFound
from paycenter.observability import transaction_from_path
from paycenter.payments import attempts, fees, port, refunds, service
from paycenter.payments.models import FINAL, PAYABLE, Payment, PaymentStatus, RefundLeg, RefundStatus
from paycenter.providers import sandbox
from paycenter.providers.models import Terminal
from paycenter.ratelimit import limit_by_address

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False, dependencies=[Depends(transaction_from_path), Depends(limit_by_address)])
LANG_COOKIE = "pc_lang"
KASPI = ("kaspi_qr", "kaspi_pos")
# Paid by typing the payment's account in the Kaspi app: nothing to start, the page shows how.
KASPI_BILLER = "kaspi_biller"


def static_files() -> StaticFiles:
    return StaticFiles(directory=HERE / "static")


def _language(request: Request, payment: Payment | None) -> str:
    for candidate in (
        request.query_params.get("lang"),
        request.cookies.get(LANG_COOKIE),
        payment.language if payment else None,
    ):
        if candidate in i18n.LANGUAGES:
            return candidate
    return str(request.app.state.ctx.settings.default_language)  # PAYCENTER_DEFAULT_LANGUAGE


def _page(request: Request, name: str, context: dict[str, Any], lang: str, status_code: int = 200) -> HTMLResponse:
    response = templates.TemplateResponse(
        request,
        name,
        {"lang": lang, "t": i18n.translator(lang), "languages": i18n.LANGUAGE_NAMES, **context},
        status_code=status_code,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"},
    )
    if request.query_params.get("lang") == lang:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 24 * 3600, samesite="lax", httponly=True)
    return response


def _known(key: str, prefix: str = "notice_") -> str | None:
    """A text key from the query string, only if it is one of ours."""
    return key if key.startswith(prefix) and key in i18n.TEXTS else None


@router.get("/pay/{payment_id}", response_class=HTMLResponse)
async def payment_page(payment_id: str, request: Request, ctx: Context) -> HTMLResponse:
    async with ctx.db.reading() as session:
        try:
            payment = await service.get(session, normalize_payment_id(payment_id))
        except NotFound:
            return _page(request, "not_found.html", {}, _language(request, None), status_code=404)
        merchant_name = await service.merchant_name(session, payment.merchant_id)
        live = await attempts.live_attempt(session, payment.id)
        terminal = await session.get(Terminal, live.terminal_id) if live and live.terminal_id else None
        methods = await attempts.active_methods(session) if payment.provider in KASPI else []
        awaiting_refunds = await refunds.awaiting_payer(session, payment_id=payment.id)
    lang = _language(request, payment)

    def money(minor: int) -> str:
        return i18n.format_money(minor, payment.currency, lang)

    now = ctx.now()
    payable = payment.status in PAYABLE and payment.expires_at > now
    return_url = None
    if payment.status == PaymentStatus.PAID:
        return_url = payment.success_url
    elif payment.status in FINAL or not payable:
        return_url = payment.fail_url
    context = {
        "payment": payment,
        "merchant_name": merchant_name,
        "money": money,
        "payable": payable,
        "sandbox": payment.provider == sandbox.SandboxProvider.name,
        "seconds_left": max(int((payment.expires_at - now).total_seconds()), 0),
        "checkout_id": secrets.token_hex(16),
        "notice": _known(f"notice_{request.query_params.get('notice')}"),
        "error": _known(request.query_params.get("error") or "", prefix="error_"),
        "return_url": return_url,
        "final": not payable,
        # The hint in the page's own number style ("300,00" in Russian); the form takes either.
        "remaining_input": i18n.format_number(payment.remaining_amount, payment.currency, lang, grouping=False),
        "kaspi": payment.provider in KASPI,
        "methods": [
            {
                "code": m.code,
                "name": m.name,
                "ask": money(fees.ask_for(payment.remaining_amount, m.fee_bp, m.payer_covers_fee, payment.currency)),
                "with_fee": m.payer_covers_fee and m.fee_bp > 0,
            }
            for m in methods
        ],
        "attempt": live,
        "terminal_name": terminal.name if terminal else None,
        "qr_image": _qr(code) if live and (code := live.qr_payload or live.pay_link) else None,
        "attempt_seconds_left": (
            max(int((live.expires_at - now).total_seconds()), 0) if live and live.expires_at else None
        ),
        "awaiting_refunds": awaiting_refunds,
        "biller": _biller(payment, ctx.settings.kaspi_biller_service_name or merchant_name),
    }
    return _page(request, "pay.html", context, lang)


def _biller(payment: Payment, service_name: str) -> dict[str, Any] | None:
    """What the payer needs to pay by account in the Kaspi app: the account (in groups of three
    for reading; the page copies the digits alone) and the service to find."""
    if payment.provider != KASPI_BILLER or not payment.account:
        return None
    account = payment.account
    return {
        "account": account,
        "groups": [account[i : i + 3] for i in range(0, len(account), 3)],
        "service_name": service_name,
    }


@router.get("/pay/{payment_id}/refunds/{refund_id}", response_class=HTMLResponse)
async def refund_page(payment_id: str, refund_id: str, request: Request, ctx: Context) -> HTMLResponse:
    """A refund as the payer sees it: the return QR to scan when the bank needs them to allow it
    (Kaspi QR r2), then whether the money went back. The operator shows it from the admin. Two
    random ids in the path make it unguessable; it shows nothing secret."""
    async with ctx.db.reading() as session:
        try:
            payment = await service.get(session, normalize_payment_id(payment_id))
            refund, legs = await refunds.with_return_qrs(session, payment_id=payment.id, refund_id=refund_id)
        except NotFound:
            lang = _language(request, None)
            return _page(request, "not_found.html", {"what": "refund_not_found"}, lang, status_code=404)
        merchant_name = await service.merchant_name(session, payment.merchant_id)
    lang = _language(request, payment)

    def money(minor: int) -> str:
        return i18n.format_money(minor, payment.currency, lang)

    now = ctx.now()
    shown = [_return_qr(leg, now) for leg in legs]
    context = {
        "payment": payment,
        "refund": refund,
        "merchant_name": merchant_name,
        "money": money,
        "legs": shown,
        # Reloaded while the bank waits for the payer or is still returning the money.
        "refresh": refund.status == RefundStatus.PENDING,
    }
    return _page(request, "refund.html", context, lang)


def _return_qr(leg: RefundLeg, now: datetime) -> dict[str, Any]:
    """What the payer sees of one return QR: the code while it can be scanned, else its fate."""
    left = max(int((leg.return_qr_expires_at - now).total_seconds()), 0) if leg.return_qr_expires_at else None
    if leg.status == RefundStatus.SUCCEEDED:
        state = "done"
    elif leg.status == RefundStatus.FAILED:
        state = "failed"
    elif leg.return_sent_at is not None:
        state = "scanned"
    elif left == 0:
        state = "expired"  # the poller fails it after one last look
    else:
        state = "scan"
    return {
        "amount": leg.amount,
        "state": state,
        "image": _qr(leg.return_qr) if state == "scan" and leg.return_qr else None,
        "seconds_left": left,
    }


def _qr(data: str) -> str:
    """The QR as an inline SVG data URI, rendered here: no third-party image service sees it."""
    return str(segno.make(data, error="m").svg_data_uri(scale=5, border=2))


@router.post("/pay/{payment_id}/start")
async def start_attempt(
    payment_id: str,
    ctx: Context,
    method: Annotated[str | None, Form(max_length=32, pattern=r"^[a-z0-9_]+$")] = None,
) -> Response:
    """The payer starts paying at Kaspi (or pays the rest): a new QR or terminal operation."""
    pid = normalize_payment_id(payment_id)
    target = f"/pay/{pid}"
    try:
        await attempts.start(ctx.db, ctx.providers, payment_id=pid, method_code=method, clock=ctx.clock)
    except NotFound:
        raise
    except ApiError as exc:
        error = {
            "terminals_busy": "error_terminals_busy",
            "provider_error": "error_bank",
            "attempt_in_progress": "error_in_progress",
            "unknown_payment_method": "error_state",
            "wrong_provider": "error_provider",
        }.get(exc.code, "error_state")
        return RedirectResponse(f"{target}?error={error}", status_code=303)
    return RedirectResponse(target, status_code=303)


@router.post("/pay/{payment_id}/cancel-attempt")
async def cancel_attempt(payment_id: str, ctx: Context) -> Response:
    """The payer gives up this QR / terminal operation; the payment stays payable."""
    pid = normalize_payment_id(payment_id)
    closed = await attempts.payer_cancel(ctx.db, ctx.providers, payment_id=pid, clock=ctx.clock)
    return RedirectResponse(f"/pay/{pid}?notice=cancelled" if closed else f"/pay/{pid}", status_code=303)


@router.post("/pay/{payment_id}/sandbox")
async def sandbox_action(
    payment_id: str,
    ctx: Context,
    action: Annotated[sandbox.PayerAction, Form()],
    amount: Annotated[str | None, Form(max_length=40)] = None,
    checkout_id: Annotated[str | None, Form(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = None,
) -> Response:
    """The sandbox's buttons. Answers with a redirect back to the page (post/redirect/get)."""
    pid = normalize_payment_id(payment_id)
    target = f"/pay/{pid}"
    try:
        async with ctx.db.transaction() as session:
            outcome = await sandbox.payer_action(
                await port.locked(session, pid),
                action=action,
                amount=amount,
                checkout_id=checkout_id or secrets.token_hex(16),
                now=ctx.now(),
            )
    except NotFound:
        raise
    except ApiError as exc:
        error = {"invalid_amount": "error_amount", "wrong_provider": "error_provider"}.get(exc.code, "error_state")
        return RedirectResponse(f"{target}?error={error}", status_code=303)
    return RedirectResponse(f"{target}?notice={outcome.value}", status_code=303)
