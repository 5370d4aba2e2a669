"""The admin panel's pages and actions, server-rendered. Every change is a POST with the
session's CSRF token, allowed to admins only, and recorded in the audit log in the same
transaction as the change itself."""

from __future__ import annotations

import csv
import hmac
import io
import json
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from paycenter import contract, quarantine, storable, versions
from paycenter.admin import queries
from paycenter.admin.chart import daily_chart
from paycenter.admin.i18n import text, translator
from paycenter.admin.web import (
    COOKIE,
    BadInput,
    Forbidden,
    LoginRequired,
    Operator,
    PasswordChangeRequired,
    SignedIn,
    back,
    checked_form,
    clean_path,
    client_ip,
    language,
    render,
)
from paycenter.db import normalize_payment_id
from paycenter.deps import Context, public_base_url
from paycenter.errors import ApiError
from paycenter.jobs import heartbeats, retries
from paycenter.merchants import service as merchants
from paycenter.merchants.models import ApiToken
from paycenter.money import MoneyError, to_major_str, typed
from paycenter.operators import service
from paycenter.payments import feed, refunds
from paycenter.payments import queries as payment_queries
from paycenter.payments import service as payments
from paycenter.payments.events import sent_as_webhook
from paycenter.payments.models import PaymentStatus
from paycenter.providers import devices, registry, terminals
from paycenter.timefmt import iso
from paycenter.webhooks import service as webhooks
from paycenter.webhooks.ssrf import check_webhook_url

router = APIRouter(prefix="/admin", include_in_schema=False, dependencies=[Depends(clean_path)])


def install(app: FastAPI) -> None:
    app.include_router(router)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        # Quoted whole: a deep link's own query ("?status=paid&merchant=...") must survive.
        return RedirectResponse(f"/admin/login?next={quote(exc.next_url, safe='/')}", status_code=303)

    @app.exception_handler(PasswordChangeRequired)
    async def _password(request: Request, exc: PasswordChangeRequired) -> Response:
        return RedirectResponse(f"/admin/password?next={quote(exc.next_url, safe='/')}", status_code=303)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        return render(request, "forbidden.html", {"reason": exc.message}, status_code=403)

    @app.exception_handler(BadInput)
    async def _bad_input(request: Request, exc: BadInput) -> Response:
        return render(
            request, "bad_input.html", {"reason": exc.message, "code": exc.status_code}, status_code=exc.status_code
        )


async def _record(
    session: AsyncSession, request: Request, operator: service.Operator, action: str, **entry: Any
) -> None:
    """An operator's action in the audit log, in the action's own transaction."""
    await service.audit(session, actor=operator.username, action=action, ip=client_ip(request), **entry)


# --- login ---------------------------------------------------------------------------------


def _safe_next(value: str | None) -> str:
    # Only paths of this panel: never an open redirect.
    return value if value and value.startswith("/admin") and not value.startswith("//") else "/admin"


LOGIN_CSRF_COOKIE = "pc_admin_login"


def _login_form(request: Request, context: dict[str, Any], *, status_code: int = 200) -> HTMLResponse:
    """The login page with a fresh CSRF token, also set as a cookie for this form only: a login
    must come from our own form, so another site cannot sign a browser in (as its own user)."""
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", {**context, "csrf_token": token}, status_code=status_code)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/admin/login",
        max_age=3600,
    )
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> HTMLResponse:
    return _login_form(request, {"next": _safe_next(request.query_params.get("next"))})


@router.post("/login")
async def login(request: Request, ctx: Context) -> Response:
    form = await request.form()
    username = str(form.get("username") or "")[:100]
    password = str(form.get("password") or "")
    next_url = _safe_next(str(form.get("next") or ""))
    expected = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    if not expected or not hmac.compare_digest(expected, str(form.get("csrf_token") or "")):
        # Not counted as a failed login: the password was not even looked at.
        return _login_form(request, {"next": next_url, "message": "login_form_expired"}, status_code=403)
    if storable.text_problem(username):
        # No such user can exist, and PostgreSQL would refuse the lookup (and the audit entry).
        return _login_form(request, {"next": next_url, "message": "wrong_login"}, status_code=422)
    ip = client_ip(request)
    now = ctx.now()
    ttl = timedelta(seconds=ctx.settings.admin_one_time_password_ttl_seconds)
    try:
        result = await service.authenticate(
            ctx.db, username=username, password=password, ip=ip, now=now, one_time_ttl=ttl
        )
    except service.LoginLocked as exc:
        context = {"next": next_url, "message": "login_locked", "minutes": exc.minutes}
        return _login_form(request, context, status_code=429)
    except service.OneTimePasswordExpired as exc:
        async with ctx.db.transaction() as session:
            await service.audit(session, actor=username, action="login_failed", now=now, ip=ip, reason=exc.code)
        return _login_form(request, {"next": next_url, "message": exc.code}, status_code=401)
    one_time = result is not None and result.user.must_change_password
    async with ctx.db.transaction() as session:
        action = "login" if result else "login_failed"
        details: dict[str, Any] = {"one_time_password": True} if one_time else {}
        await service.audit(session, actor=username or "?", action=action, now=now, ip=ip, **details)
    if result is None:
        return _login_form(request, {"next": next_url, "message": "wrong_login"}, status_code=401)
    # A one-time password opens only the page where the operator chooses their own.
    target = f"/admin/password?next={quote(next_url, safe='/')}" if one_time else next_url
    response = RedirectResponse(target, status_code=303)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/admin/login")
    response.set_cookie(
        COOKIE,
        result.token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/admin",
        max_age=int(service.MAX_SESSION.total_seconds()),
    )
    return response


@router.post("/logout")
async def logout(request: Request, ctx: Context, operator: SignedIn) -> Response:
    await checked_form(request, operator, act=False)
    async with ctx.db.transaction() as session:
        await service.logout(session, session_id=operator.session_id)
        await _record(session, request, operator, "logout", now=ctx.now())
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(COOKIE, path="/admin")
    return response


# --- one's own password ----------------------------------------------------------------------


def _password_form(
    request: Request, operator: service.Operator, next_url: str, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    context = {"next": next_url, "min_length": service.MIN_PASSWORD, **context}
    return render(request, "password.html", context, operator=operator, status_code=status_code)


@router.get("/password", response_class=HTMLResponse)
async def password_page(request: Request, operator: SignedIn) -> HTMLResponse:
    return _password_form(request, operator, _safe_next(request.query_params.get("next")))


@router.post("/password")
async def password_change(request: Request, ctx: Context, operator: SignedIn) -> Response:
    """The operator's own new password, given the current one (the one-time one at first login).
    Their other sessions end; this one stays."""
    form = await checked_form(request, operator, act=False)
    next_url = _safe_next(form.get("next"))
    try:
        await service.change_password(
            ctx.db,
            operator,
            current=form.get("current_password", ""),
            new=form.get("new_password", ""),
            again=form.get("new_password_again", ""),
            ip=client_ip(request),
            now=ctx.now(),
        )
    except service.PasswordRefused as exc:
        context = {"message": exc.reason, "minutes": exc.minutes}
        return _password_form(request, operator, next_url, status_code=exc.status_code, **context)
    return back(request, next_url, notice="password_changed")


# --- dashboard ---------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
async def dashboard(request: Request, ctx: Context, operator: Operator) -> HTMLResponse:
    now = ctx.now()
    async with ctx.db.reading() as session:
        data = await queries.dashboard(session, now=now)
    health = await heartbeats.health(ctx.db, now=now)
    return render(
        request,
        "dashboard.html",
        {"d": data, "health": health, "chart": daily_chart(data.daily), "statuses": list(PaymentStatus)},
        operator=operator,
    )


# --- transactions ------------------------------------------------------------------------------


@router.get("/transactions", response_class=HTMLResponse)
async def transactions(request: Request, ctx: Context, operator: Operator) -> HTMLResponse:
    filters = queries.Filters.of(request.query_params)
    problem = None
    rows: list[Any] = []
    next_cursor = None
    try:
        async with ctx.db.reading() as session:
            rows, next_cursor = await queries.transactions(
                session, filters, cursor=request.query_params.get("cursor") or None
            )
            names = await merchants.names(session)
    except ApiError as exc:
        problem, names = exc.message, {}
    return _transactions_page(request, ctx, operator, filters, rows, next_cursor, names, problem)


def _transactions_page(
    request: Request,
    ctx: Context,
    operator: service.Operator,
    filters: queries.Filters,
    rows: list[Any],
    next_cursor: str | None,
    names: dict[str, str],
    problem: str | None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "transactions.html",
        {
            "rows": rows,
            "filters": filters,
            "next_cursor": next_cursor,
            "names": names,
            "problem": problem,
            "statuses": list(PaymentStatus),
            "providers": ctx.providers.names(),
        },
        operator=operator,
        status_code=status_code,
    )


@router.get("/transactions.csv")
async def transactions_csv(request: Request, ctx: Context, operator: Operator) -> Response:
    filters = queries.Filters.of(request.query_params)
    try:
        filters.statement()  # checks every filter now: once the 200 is sent, an error can only cut the file
    except ApiError as exc:
        return _transactions_page(request, ctx, operator, filters, [], None, {}, exc.message, status_code=422)

    async def lines() -> AsyncIterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(
            [
                "transaction_id",
                "merchant_id",
                "created_at",
                "status",
                "provider",
                "currency",
                "amount",
                "paid_amount",
                "refunded_amount",
                "description",
                "order_id",
                "user_id",
            ]
        )
        cursor = None
        for _ in range(2000):  # bounded: at most 200,000 rows
            async with ctx.db.reading() as session:
                rows, cursor = await queries.transactions(session, filters, cursor=cursor, limit=100)
            for p in rows:
                writer.writerow(
                    [
                        p.id,
                        p.merchant_id,
                        iso(p.created_at),
                        p.status,
                        p.provider,
                        p.currency,
                        to_major_str(p.amount, p.currency),
                        to_major_str(p.paid_amount, p.currency),
                        to_major_str(p.refunded_amount, p.currency),
                        _cell(p.description),
                        _cell(p.order_id or ""),
                        _cell(p.metadata_user_id or ""),
                    ]
                )
            yield out.getvalue()
            out.seek(0)
            out.truncate()
            if cursor is None:
                break

    headers = {"Content-Disposition": f'attachment; filename="transactions-{date.today().isoformat()}.csv"'}
    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8", headers=headers)


def _cell(text: str) -> str:
    """Text from payers and merchants, defused: a spreadsheet runs a cell starting with = + - @ as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@router.get("/transactions/{payment_id}", response_class=HTMLResponse)
async def transaction(payment_id: str, request: Request, ctx: Context, operator: Operator) -> HTMLResponse:
    async with ctx.db.reading() as session:
        try:
            # Secrets are not shown, and not read: the page of a payment whose stored secret (or
            # its merchant's) no key decrypts is where an operator looks into it.
            payment = await payments.get(session, normalize_payment_id(payment_id))
        except ApiError:
            return render(request, "not_found.html", {}, operator=operator, status_code=404)
        history = await payment_queries.history(session, payment.id)
        logs = await webhooks.deliveries_of(session, payment.id)
        merchant = await merchants.get_without_secrets(session, payment.merchant_id)
        types = await feed.event_types(session, payment.id)
        marks = await quarantine.rows(session, payment_id=payment.id)
        awaiting_payer = await refunds.awaiting_payer(session, payment_id=payment.id)
        # Kaspi biller: the pays Kaspi sent for it (a payment with an account had that provider).
        biller_pays = await queries.biller_pays(session, payment.id) if payment.account else []
    deliveries = [
        {
            "delivery": d,
            "event_type": types.get(d.event_id, ""),
            "attempts": [
                {
                    "a": a,
                    "request_headers": storable.loads(a.request_headers) or {},
                    "response_headers": storable.loads(a.response_headers) or {},
                    "request_body": _pretty(a.request_body),
                    "response_body": _pretty(a.response_body),
                }
                for a in attempts
            ],
        }
        for d, attempts in logs
    ]
    # Rows stored before the API refused NaN, lone surrogates and deep nesting (or imported) are
    # shown sanitized and depth-bounded: the metadata tree recurses in the template.
    metadata = storable.sanitized(payment.metadata_) or {}
    return render(
        request,
        "transaction.html",
        {
            "p": payment,
            "merchant": merchant,
            "h": history,
            "deliveries": deliveries,
            "metadata": metadata,
            "metadata_json": json.dumps(metadata, ensure_ascii=False, indent=2),
            # Events of a try (attempt_cancelled), and those newer than a legacy merchant's five
            # types, are recorded but not sent: said, so that no operator looks for their missing
            # deliveries.
            "events": [
                (e, _dict(storable.loads(e.body)), sent_as_webhook(e.type, merchant.api_version if merchant else None))
                for e in history["events"]
            ],
            "quarantined": marks,
            # Refunds whose return QR the payer must scan: the page to show them (Kaspi QR r2).
            "awaiting_payer": awaiting_payer,
            # Said where the refund form would be, and again if the form is posted anyway.
            "refunds_refused": _refunds_refused(ctx, payment.provider, language(request)),
            "biller_pays": biller_pays,
            "biller_results": BILLER_RESULTS,
            # The manual refund form's one-time token: posted twice, it records one refund.
            "submission_id": secrets.token_urlsafe(24),
        },
        operator=operator,
    )


# The biller protocol's result codes (docs/kaspi.md, "Kaspi biller"), each said in the panel's
# language (texts biller_result_0 to biller_result_5).
BILLER_RESULTS = frozenset(range(6))


def _refunds_refused(ctx: Context, provider: str, lang: str) -> str | None:
    """Why this provider's payments cannot be refunded through paycenter, in the panel's language
    (the provider's own English text when the panel has none for it)."""
    refused = ctx.providers.get(provider).refunds_refused if provider in ctx.providers else None
    if not refused:
        return None
    return text(f"refunds_refused_{provider}", lang) or refused


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _pretty(body: str | None) -> str:
    """A JSON body indented and with its \\u escapes decoded, so people can read it; else as sent
    (and as sent, too, when decoding it would show what no page can encode or nest too deep)."""
    if not body:
        return ""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return storable.clean_text(body)
    if storable.problem(parsed) is not None:
        return storable.clean_text(body)
    return json.dumps(parsed, ensure_ascii=False, indent=2)


@router.post("/transactions/{payment_id}/refund")
async def refund(payment_id: str, request: Request, ctx: Context, operator: Operator) -> Response:
    form = await checked_form(request, operator)
    url = f"/admin/transactions/{payment_id}"
    try:
        amount = typed(form.get("amount"))
    except MoneyError as exc:
        return back(request, url, error=str(exc))
    reason = form.get("reason", "")[:500] or f"refund by {operator.username}"
    now = ctx.now()
    try:
        async with ctx.db.transaction() as session:
            payment = await payments.get(session, payment_id)
            made = await refunds.request(
                session,
                merchant_id=payment.merchant_id,
                payment_id=payment.id,
                amount=amount,
                reason=reason,
                now=now,
                providers=ctx.providers,
            )
            await _record(
                session,
                request,
                operator,
                "refund",
                target=payment.id,
                now=now,
                refund_id=made.id,
                amount=made.amount,
                reason=reason,
            )
    except ApiError as exc:
        return back(request, url, error=exc.message)
    await refunds.send(
        ctx.db,
        ctx.providers,
        refund_id=made.id,
        clock=ctx.clock,
        retry_for=timedelta(seconds=ctx.settings.refund_retry_for_seconds),
    )
    return back(request, url, notice="done")


_SUBMISSION = re.compile(r"[A-Za-z0-9_-]{16,64}")


@router.post("/transactions/{payment_id}/manual-refund")
async def manual_refund(payment_id: str, request: Request, ctx: Context, operator: Operator) -> Response:
    """Record money returned outside paycenter (the bank's cabinet) for a payment whose provider
    cannot refund through paycenter: counted as a refund marked manual, with the ``refunded``
    webhook, audited. The form's one-time token makes a second post of it change nothing."""
    form = await checked_form(request, operator)
    url = f"/admin/transactions/{payment_id}"
    submission = form.get("submission_id", "")
    if not _SUBMISSION.fullmatch(submission):
        return back(request, url, error="error_form_stale")
    try:
        amount = typed(form.get("amount"))
    except MoneyError as exc:
        return back(request, url, error=str(exc))
    note = form.get("note", "")[:500]
    now = ctx.now()
    try:
        async with ctx.db.transaction() as session:
            payment = await payments.get(session, normalize_payment_id(payment_id))
            made, created = await refunds.record_manual(
                session,
                payment_id=payment.id,
                amount=amount,
                note=note,
                recorded_by=operator.username,
                submission_id=submission,
                now=now,
                providers=ctx.providers,
            )
            if created:
                await _record(
                    session,
                    request,
                    operator,
                    "refund_manual",
                    target=payment.id,
                    now=now,
                    refund_id=made.id,
                    amount=made.amount,
                    note=made.reason,
                )
    except ApiError as exc:
        return back(request, url, error=exc.message)
    return back(request, url, notice="done")


@router.post("/transactions/{payment_id}/cancel")
async def cancel(payment_id: str, request: Request, ctx: Context, operator: Operator) -> Response:
    await checked_form(request, operator)
    url = f"/admin/transactions/{payment_id}"
    now = ctx.now()
    try:
        async with ctx.db.transaction() as session:
            payment = await payments.get(session, payment_id)
            await payments.cancel(
                session,
                merchant_id=payment.merchant_id,
                payment_id=payment.id,
                reason=f"cancelled by operator {operator.username}",
                now=now,
            )
            await _record(session, request, operator, "cancel", target=payment.id, now=now)
    except ApiError as exc:
        return back(request, url, error=exc.message)
    return back(request, url, notice="done")


@router.post("/deliveries/{delivery_id}/resend")
async def resend(delivery_id: str, request: Request, ctx: Context, operator: Operator) -> Response:
    form = await checked_form(request, operator)
    url = _safe_next(form.get("next")) if form.get("next") else "/admin/webhooks"
    now = ctx.now()
    try:
        async with ctx.db.transaction() as session:
            delivery = await webhooks.resend(
                session,
                delivery_id=delivery_id[:40],
                merchant_id=None,
                retries=len(ctx.settings.retry_schedule),
                now=now,
            )
            await _record(
                session,
                request,
                operator,
                "webhook_resend",
                target=delivery.id,
                now=now,
                payment_id=delivery.payment_id,
            )
    except ApiError as exc:
        return back(request, url, error=exc.message)
    return back(request, url, notice="done")


# --- webhooks ----------------------------------------------------------------------------------


@router.get("/webhooks", response_class=HTMLResponse)
async def webhook_list(request: Request, ctx: Context, operator: Operator) -> HTMLResponse:
    status = request.query_params.get("status") or None
    merchant = request.query_params.get("merchant") or None
    async with ctx.db.reading() as session:
        try:
            rows, next_cursor = await queries.deliveries(
                session, status=status, merchant=merchant, cursor=request.query_params.get("cursor") or None
            )
        except ApiError:
            rows, next_cursor = [], None
        types = await queries.event_types(session, [d.event_id for d in rows])
    return render(
        request,
        "webhooks.html",
        {"rows": rows, "types": types, "status": status or "", "merchant": merchant or "", "next_cursor": next_cursor},
        operator=operator,
    )


@router.post("/webhooks/resend-failed")
async def resend_failed(request: Request, ctx: Context, operator: Operator) -> Response:
    form = await checked_form(request, operator)
    now = ctx.now()
    try:
        since = datetime.fromisoformat(form.get("since", "")).replace(tzinfo=queries.ALMATY)
    except ValueError:
        return back(request, "/admin/webhooks?status=failed", error="error_since")
    async with ctx.db.transaction() as session:
        count = await webhooks.recover(
            session, merchant_id=None, since=since, until=None, retries=len(ctx.settings.retry_schedule), now=now
        )
        await _record(
            session, request, operator, "webhook_resend_failed", now=now, since=since.isoformat(), count=count
        )
    notice = translator(language(request))("resent_count", count=count)
    return back(request, "/admin/webhooks?status=failed", notice=notice)


# --- merchants ---------------------------------------------------------------------------------


@router.get("/merchants", response_class=HTMLResponse)
async def merchant_list(request: Request, ctx: Context, operator: Operator) -> HTMLResponse:
    async with ctx.db.reading() as session:
        rows = await merchants.list_merchants(session)
        hints = await merchants.signing_secret_hints(session)
        tokens: dict[str, list[ApiToken]] = {}
        for token in await merchants.list_tokens(session):
            tokens.setdefault(token.merchant_id, []).append(token)
    shown = request.cookies.get("pc_admin_shown")  # a token or secret to show once, then forget
    if shown:
        shown = unquote(shown)
    response = render(
        request,
        "merchants.html",
        {
            "rows": rows,
            "hints": hints,
            "tokens": tokens,
            "shown": shown,
            "versions": versions.VERSIONS,
            # As typed into the form: major units, no grouping, no currency.
            "tolerances": {m.id: to_major_str(m.underpayment_tolerance, "KZT") for m in rows},
        },
        operator=operator,
    )
    if shown:
        response.delete_cookie("pc_admin_shown", path="/admin/merchants")
    return response


def _show_once(url: str, value: str) -> Response:
    """Carry a new secret to the next page load only (never in a URL, which logs keep)."""
    response = RedirectResponse(url, status_code=303)
    # Quoted: a header carries Latin-1 only, and merchant names are often Cyrillic.
    response.set_cookie(
        "pc_admin_shown", quote(value, safe=""), max_age=60, httponly=True, samesite="strict", path="/admin/merchants"
    )
    return response


def _typed_url(text: str | None) -> str | None:
    """A URL as an operator types or pastes it: the spaces around it are not part of it."""
    return (text or "").strip() or None


@router.post("/merchants")
async def merchant_create(request: Request, ctx: Context, operator: Operator) -> Response:
    form = await checked_form(request, operator)
    name = form.get("name", "").strip()[:200]
    try:
        url = check_webhook_url(
            contract.check_url(_typed_url(form.get("webhook_url")), field="webhook_url", max_length=500),
            ctx.webhook_networks,
        )
    except ValueError as exc:
        return back(request, "/admin/merchants", error=str(exc))
    if not name:
        return back(request, "/admin/merchants", error="error_name")
    now = ctx.now()
    async with ctx.db.transaction() as session:
        merchant = await merchants.create_merchant(
            session, name=name, webhook_url=url, now=now, api_version=ctx.settings.default_api_version
        )
        issued = await merchants.issue_token(session, merchant_id=merchant.id, name="default", now=now)
        await _record(
            session, request, operator, "merchant_create", target=merchant.id, now=now, token_id=issued.token.id
        )
    return _show_once("/admin/merchants", f"{merchant.name}: {issued.secret}")


@router.post("/merchants/{merchant_id}/webhook-url")
async def merchant_webhook_url(merchant_id: str, request: Request, ctx: Context, operator: Operator) -> Response:
    form = await checked_form(request, operator)
    try:
        url = check_webhook_url(
            contract.check_url(_typed_url(form.get("webhook_url")), field="webhook_url", max_length=500),
            ctx.webhook_networks,
        )
    except ValueError as exc:
        return back(request, "/admin/merchants", error=str(exc))
    now = ctx.now()
    try:
        async with ctx.db.transaction() as session:
            await merchants.set_webhook_url(session, merchant_id=merchant_id, url=url)
            await _record(
                session, request, operator, "merchant_webhook_url", target=merchant_id, now=now, webhook_url=url
            )
    except ApiError as exc:
        return back(request, "/admin/merchants", error=exc.message)
    return back(request, "/admin/merchants", notice="done")


async def _set_merchant_term(
    request: Request,
    ctx: Context,
    operator: service.Operator,
    *,
    merchant_id: str,
    action: str,
    setter: Callable[[AsyncSession], Awaitable[tuple[object, object]]],
) -> Response:
    """One of a merchant's settings changed, audited with its value before and after."""
    now = ctx.now()
    try:
        async with ctx.db.transaction() as session:
            before, after = await setter(session)
            await _record(session, request, operator, action, target=merchant_id, now=now, before=before, after=after)
    except ApiError as exc:
        return back(request, "/admin/merchants", error=exc.message)
    return back(request, "/admin/merchants", notice="done")


@router.post("/merchants/{merchant_id}/api-version")
async def merchant_api_version(merchant_id: str, request: Request, ctx: Context, operator: Operator) -> Response:
    """Pin a merchant to an API version (as `paycenter merchant api-version`): how its answers and
    webhooks are rendered, from its next request on (docs/migrating.md)."""
    form = await checked_form(request, operator)
    try:
        version = versions.check(form.get("api_version", ""))
    except versions.UnknownVersion as exc:
        return back(request, "/admin/merchants", error=str(exc))
    return await _set_merchant_term(
        request,
        ctx,
        operator,
        merchant_id=merchant_id,
        action="merchant_api_version",
        setter=lambda session: merchants.set_api_version(session, merchant_id=merchant_id, api_version=version),
    )


@router.post("/merchants/{merchant_id}/tolerance")
async def merchant_tolerance(merchant_id: str, request: Request, ctx: Context, operator: Operator) -> Response:
    """How much a payment may lack and still count as paid (as `paycenter merchant tolerance`)."""
    form = await checked_form(request, operator)
    try:
        tolerance = merchants.checked_tolerance(merchants.tolerance_from_text(form.get("underpayment_tolerance", "")))
    except ApiError as exc:
        return back(request, "/admin/merchants", error=exc.message)
    return await _set_merchant_term(
        request,
        ctx,
        operator,
        merchant_id=merchant_id,
        action="merchant_tolerance",
        setter=lambda session: merchants.set_underpayment_tolerance(
            session, merchant_id=merchant_id, tolerance=tolerance
        ),
    )


@router.post("/merchants/{merchant_id}/rotate-secret")
async def merchant_rotate(merchant_id: str, request: Request, ctx: Context, operator: Operator) -> Response:
    await checked_form(request, operator)
    now = ctx.now()
    try:
        async with ctx.db.transaction() as session:
            merchant = await merchants.rotate_signing_secret(
                session,
                merchant_id=merchant_id,
                grace=timedelta(seconds=ctx.settings.webhook_secret_grace_seconds),
                now=now,
            )
            await _record(session, request, operator, "signing_secret_rotate", target=merchant_id, now=now)
    except ApiError as exc:
        return back(request, "/admin/merchants", error=exc.message)
    return _show_once("/admin/merchants", f"{merchant.name}: {merchant.signing_secret}")


@router.post("/merchants/{merchant_id}/tokens")
async def token_create(merchant_id: str, request: Request, ctx: Context, operator: Operator) -> Response:
    form = await checked_form(request, operator)
    now = ctx.now()
    try:
        async with ctx.db.transaction() as session:
            issued = await merchants.issue_token(
                session, merchant_id=merchant_id, name=form.get("name", "")[:100], now=now
            )
            await _record(
                session, request, operator, "token_create", target=merchant_id, now=now, token_id=issued.token.id
            )
    except ApiError as exc:
        return back(request, "/admin/merchants", error=exc.message)
    return _show_once("/admin/merchants", issued.secret)


@router.post("/tokens/{token_id}/revoke")
async def token_revoke(token_id: str, request: Request, ctx: Context, operator: Operator) -> Response:
    await checked_form(request, operator)
    now = ctx.now()
    try:
        async with ctx.db.transaction() as session:
            token = await merchants.revoke_token(session, token_id=token_id[:40], now=now)
            await _record(
                session, request, operator, "token_revoke", target=token.merchant_id, now=now, token_id=token.id
            )
    except ApiError as exc:
        return back(request, "/admin/merchants", error=exc.message)
    return back(request, "/admin/merchants", notice="done")


# --- terminals ---------------------------------------------------------------------------------


@router.get("/terminals", response_class=HTMLResponse)
async def terminal_list(request: Request, ctx: Context, operator: Operator) -> HTMLResponse:
    async with ctx.db.reading() as session:
        rows = await terminals.all_terminals(session)
    return render(request, "terminals.html", {"rows": rows}, operator=operator)


@router.post("/terminals")
async def terminal_add(request: Request, ctx: Context, operator: Operator) -> Response:
    form = await checked_form(request, operator)
    try:
        url = contract.check_url(_typed_url(form.get("base_url")), field="url", max_length=500)
        camera = contract.check_url(_typed_url(form.get("camera_url")), field="camera_url", max_length=500)
    except ValueError as exc:
        return back(request, "/admin/terminals", error=str(exc))
    name, token = form.get("name", "").strip()[:100], form.get("access_token", "").strip()[:200]
    if not (name and url and token):
        return back(request, "/admin/terminals", error="error_terminal_fields")
    now = ctx.now()
    try:
        async with ctx.db.transaction() as session:
            terminal = await terminals.add(
                session, name=name, base_url=url, access_token=token, camera_url=camera, now=now
            )
            await _record(session, request, operator, "terminal_add", target=terminal.id, now=now, name=name)
    except ApiError as exc:
        return back(request, "/admin/terminals", error=exc.message)
    return back(request, "/admin/terminals", notice="done")


@router.post("/terminals/{terminal_id}/{state}")
async def terminal_state(terminal_id: str, state: str, request: Request, ctx: Context, operator: Operator) -> Response:
    await checked_form(request, operator)
    if state not in ("enable", "disable", "check"):
        return back(request, "/admin/terminals", error="error_unknown_action")
    now = ctx.now()
    if state == "check":
        try:
            async with ctx.db.reading() as session:
                terminal = await terminals.get(session, terminal_id)
        except ApiError as exc:
            return back(request, "/admin/terminals", error=exc.message)

        async def record(session: AsyncSession, checked: devices.Checked) -> None:
            details = {"health": checked.health, "error": checked.error}
            await _record(session, request, operator, "terminal_check", target=terminal.id, now=now, **details)

        provider = registry.terminal_provider(ctx.settings, ctx.db, ctx.clock)
        try:
            checked = await devices.check(ctx.db, provider, terminal, now=now, audit=record)
        finally:
            await provider.close()
        return back(request, "/admin/terminals", notice=f"health_{checked.health}")
    try:
        async with ctx.db.transaction() as session:
            await terminals.set_active(session, name_or_id=terminal_id, active=state == "enable")
            await _record(session, request, operator, f"terminal_{state}", target=terminal_id, now=now)
    except ApiError as exc:
        return back(request, "/admin/terminals", error=exc.message)
    return back(request, "/admin/terminals", notice="done")


# --- quarantine ---------------------------------------------------------------------------------


@router.get("/quarantine", response_class=HTMLResponse)
async def quarantine_page(request: Request, ctx: Context, operator: Operator) -> HTMLResponse:
    async with ctx.db.reading() as session:
        rows = await retries.listed(session)
    return render(request, "quarantine.html", {"rows": rows}, operator=operator)


@router.post("/quarantine/retry")
async def quarantine_retry(request: Request, ctx: Context, operator: Operator) -> Response:
    form = await checked_form(request, operator)
    url = _safe_next(form.get("next")) if form.get("next") else "/admin/quarantine"
    every = form.get("all") == "1"
    loop, row_id = form.get("loop", "")[:32], form.get("row_id", "")[:64]
    if not every and not (loop and row_id):
        return back(request, url, error="error_retry_what")
    now = ctx.now()
    async with ctx.db.transaction() as session:
        done = await retries.retry_many(
            session,
            now=now,
            retries=len(ctx.settings.retry_schedule),
            loop=None if every else loop,
            row_id=None if every else row_id,
        )
        for mark in done:
            await _record(
                session,
                request,
                operator,
                "quarantine_retry",
                target=mark.row_id,
                now=now,
                loop=mark.loop,
                reason=mark.reason,
            )
    t = translator(language(request))
    if not done:
        return back(request, url, error="not_quarantined")
    return back(request, url, notice=t("retried_count", count=len(done)))


# --- settings ----------------------------------------------------------------------------------

KASPI_BILLER = "kaspi_biller"


@router.get("/settings", response_class=HTMLResponse)
async def settings_page(request: Request, ctx: Context, operator: Operator) -> HTMLResponse:
    """What this installation is set to where an operator has to pass it on: the Kaspi biller's
    endpoint and terms, to give Kaspi. Secrets are said to be set or not, never shown."""
    s = ctx.settings
    biller = {
        "enabled": KASPI_BILLER in s.providers,
        "url": public_base_url(ctx, request).rstrip("/") + s.kaspi_biller_path,
        # Without PAYCENTER_PUBLIC_URL the address is this request's own, maybe not the public one.
        "url_guessed": not s.public_url,
        "format": s.kaspi_biller_format,
        "networks": [n.strip() for n in s.kaspi_biller_allowed_networks.split(",") if n.strip()],
        "secret_set": bool(s.kaspi_biller_secret),
        "service_name": s.kaspi_biller_service_name,
        "account_digits": s.kaspi_biller_account_digits,
    }
    return render(request, "settings.html", {"biller": biller}, operator=operator)


# --- audit log ---------------------------------------------------------------------------------


@router.get("/audit", response_class=HTMLResponse)
async def audit_log(request: Request, ctx: Context, operator: Operator) -> HTMLResponse:
    async with ctx.db.reading() as session:
        rows = await queries.audit_entries(session)
    return render(request, "audit.html", {"rows": rows}, operator=operator)


@router.get("/deliveries/{delivery_id}", response_class=HTMLResponse)
async def delivery_page(delivery_id: str, ctx: Context, operator: Operator) -> Response:
    async with ctx.db.reading() as session:
        delivery = await queries.delivery(session, delivery_id[:40])
    if delivery is None:
        return RedirectResponse("/admin/webhooks", status_code=303)
    return RedirectResponse(f"/admin/transactions/{delivery.payment_id}#{delivery.id}", status_code=303)
