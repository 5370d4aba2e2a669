"""The old system's payer-side API, kept for the pages and shops built on it (issue 13).

``POST /api/payment/{id}/kaspi`` starts paying at Kaspi exactly as the hosted page's button does
(``attempts.start``: same fee rule, same terminals, same refusals), ``POST .../track-visit`` records
the payer's first visit, and ``GET /api/payment-methods[/active]`` lists the methods a payer may
choose. All public, as they were; every version has them, rendered per version
(``paycenter.versions``): the legacy rendering keeps the old wire types (0/1 flags, numbers where
PHP computed a value, Russian messages, 400 for refusals), the current one decimal strings,
booleans and 404 for an unknown payment.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from paycenter import versions
from paycenter.context import AppContext
from paycenter.db import normalize_payment_id
from paycenter.deps import Context, ExactJsonRoute, PublicRead, merchant_for_token, public_base_url
from paycenter.envelope import Envelope
from paycenter.errors import ApiError, envelope, error_responses
from paycenter.money import to_major_number, to_major_str
from paycenter.payments import attempts, service, views
from paycenter.payments.models import METHOD_LEGACY_IDS, Attempt, Payment, PaymentMethod
from paycenter.providers import sandbox
from paycenter.ratelimit import PublicRateLimit

router = APIRouter(prefix="/api", tags=["payer"], route_class=ExactJsonRoute)

# The old endpoint's method when the body names none (and the payment none at init).
DEFAULT_METHOD = "kaspi_gold"
# Terminals imported from the old system keep its number in their id (legacy.importer).
_LEGACY_TERMINAL = re.compile(r"trm_legacy_([0-9]{1,9})\Z")

# The old API's messages for the refusals of these endpoints (legacy-api.md §4), by error code.
_LEGACY_MESSAGES = {
    "not_found": "Транзакция не найдена",
    "invalid_state": "Транзакция уже обработана",
    "expired": "Транзакция уже обработана",
    "attempt_in_progress": "Транзакция уже обработана",
    "unknown_payment_method": "Способ оплаты не найден",
    "terminals_busy": "Все терминалы заняты, попробуйте позже",
}


async def _settle_version(ctx: AppContext, request: Request, default: str = versions.LEGACY) -> None:
    """The version of a request that names no payment it could take one from (the methods list,
    an unknown payment id): the header's, else that of the merchant whose token came with it, else
    ``default``: ``legacy`` for the methods list (the old payer page called it with neither: an old
    client gets the old answer, a current one says so with its token or the header); the current
    version for an unknown payment's refusal (404, as the document and its fuzzing expect)."""
    if "api_version" in (request.scope.get("state") or {}):
        return
    merchant_version = None
    token = request.headers.get("x-api-token")
    if token and versions.requested(request.scope) is None:
        found = await merchant_for_token(ctx, token)
        merchant_version = found[0].api_version if found else None
    versions.use(request.scope, merchant_version or default)


@asynccontextmanager
async def _rendered_for_version(ctx: AppContext, request: Request) -> AsyncIterator[None]:
    """Refusals in the request's version: the old API said 400 with its own (Russian) message,
    also for an unknown payment and for the bank's refusal; the current one keeps its codes."""
    try:
        yield
    except ApiError as exc:
        await _settle_version(ctx, request, default=versions.CURRENT)
        if not versions.is_legacy(request.scope):
            raise
        message = _LEGACY_MESSAGES.get(exc.code, exc.message)
        status = 400 if exc.status_code in (404, 409, 422, 502) else exc.status_code
        raise ApiError(message, code=exc.code, status_code=status, fields=exc.fields, headers=exc.headers) from None


def _percent(fee_bp: int) -> str:
    return f"{fee_bp // 100}.{fee_bp % 100:02d}"


def _number(minor: int, currency: str) -> int | float:
    # What PHP computed came back as a JSON number, a zero fraction dropped (1010.0 -> 1010).
    value = to_major_number(minor, currency)
    return float(value) if isinstance(value, Decimal) else value


# --- POST /api/payment/{id}/kaspi ----------------------------------------------------------------


def _method_code(value: str | None) -> str | None:
    if value is None:
        return None
    if value not in METHOD_LEGACY_IDS:
        raise ApiError(f"Unknown payment method {value[:40]!r}", code="unknown_payment_method", status_code=422)
    return value


class KaspiStart(BaseModel):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [{"payment_method": "kaspi_gold"}]})

    # Documented only: checked in the handler, once the payment's API version is known, so that an
    # old client hears the old refusal ("Способ оплаты не найден") for any unknown code.
    payment_method: Annotated[
        str | None,
        WithJsonSchema({"anyOf": [{"type": "string", "enum": list(METHOD_LEGACY_IDS)}, {"type": "null"}]}),
    ] = Field(
        default=None,
        description="Code of an active method (GET /api/payment-methods/active). Omitted: the method chosen at "
        "init (payment_method_id), else kaspi_gold.",
    )


class KaspiStarted(BaseModel):
    transaction_id: str
    amount: str | float = Field(
        description="What the payer is asked. Current version: a decimal string. Legacy: a number when a fee was "
        "added, else the remaining amount as a decimal string (as the old API answered)."
    )
    original_amount: str = Field(description="What remained to be paid before any fee.")
    commission_amount: str | float = Field(
        description="The fee added on top (0 when the merchant carries it). "
        "Current: a decimal string; legacy: a number."
    )
    commission_percent: str = Field(description='The method\'s fee, e.g. "1.00", also when the merchant carries it.')
    payment_method: str | None
    payment_url: str = Field(
        description="The Kaspi pay link of this try (opens Kaspi.kz); the hosted payment page where there is none "
        "(a sandbox payment, a terminal without a camera)."
    )
    qr_code: str | None = Field(description="What the QR encodes. Legacy: always a string (empty when none).")
    terminal_id: int | str | None = Field(
        description="The Kaspi Smart POS terminal holding this try, null for Kaspi QR and the sandbox. Current: "
        "paycenter's terminal id. Legacy: the old system's number for a terminal imported from it, else null."
    )


def _terminal_id(terminal_id: str | None, legacy: bool) -> int | str | None:
    if terminal_id is None or not legacy:
        return terminal_id
    match = _LEGACY_TERMINAL.match(terminal_id)
    return int(match.group(1)) if match else None


def _started(
    payment: Payment,
    *,
    base: int,
    asked: int,
    method: PaymentMethod | None,
    payment_url: str,
    qr: str | None,
    terminal_id: str | None,
    legacy: bool,
) -> dict[str, Any]:
    cur = payment.currency
    extra = max(asked - base, 0)
    fee_bp = method.fee_bp if method else 0
    if legacy:
        amount: str | float = _number(asked, cur) if extra else to_major_str(base, cur)
        commission: str | float = _number(extra, cur)
    else:
        amount, commission = to_major_str(asked, cur), to_major_str(extra, cur)
    return {
        "transaction_id": payment.id,
        "amount": amount,
        "original_amount": to_major_str(base, cur),
        "commission_amount": commission,
        "commission_percent": _percent(fee_bp),
        "payment_url": payment_url,
        "qr_code": (qr or "") if legacy else qr,
        "terminal_id": _terminal_id(terminal_id, legacy),
        "payment_method": method.code if method else None,  # after the old keys, in their order
    }


@router.post(
    "/payment/{payment_id}/kaspi",
    response_model=Envelope[KaspiStarted],
    responses=error_responses(400, 404, 409, 413, 422, 429, 502),
    summary="Start paying at Kaspi (public)",
)
async def start_kaspi(
    payment_id: str, ctx: Context, request: Request, _: PublicRateLimit, body: KaspiStart | None = None
) -> JSONResponse:
    """Public, as the payment page's own button: starts a try at Kaspi (a QR, or an operation on a
    Kaspi Smart POS terminal) for what remains to be paid, with the method's fee added where the
    payer covers it (`remaining / (1 − fee)`, so the net covers the rest). Only a payment that can
    still be paid (pending, partially paid) is started: a cancelled, expired or paid one is refused
    (409; 400 for legacy), never made payable again. While a try is live, another is refused.

    For a sandbox payment no try is made (its page's buttons are the bank): the answer links to the
    hosted page, so an integration of this call can be exercised in test mode.

    Rate limited per client address."""
    pid = normalize_payment_id(payment_id)
    base_url = public_base_url(ctx, request)
    async with _rendered_for_version(ctx, request):
        async with ctx.db.read_once() as session:
            payment, api_version = await service.get_with_api_version(session, pid)
        versions.use(request.scope, api_version)
        code = _method_code(body.payment_method if body else None)
        legacy = versions.is_legacy(request.scope)
        if payment.provider == sandbox.SandboxProvider.name:
            async with ctx.db.transaction() as session:
                payment = await service.check_payable(session, payment_id=pid, now=ctx.now())
                method = await attempts.method(session, code or payment.payment_method or DEFAULT_METHOD)
            page = views.payment_url(base_url, pid)
            data = _started(
                payment,
                base=payment.remaining_amount,
                asked=payment.remaining_amount,
                method=method,
                payment_url=page,
                qr=page,
                terminal_id=None,
                legacy=legacy,
            )
        else:
            base = payment.remaining_amount  # what the payer saw; the try asks it (and the fee)
            attempt = await attempts.start(
                ctx.db, ctx.providers, payment_id=pid, method_code=code, clock=ctx.clock, default_method=DEFAULT_METHOD
            )
            data = await _attempt_started(ctx, payment, attempt, base=base, base_url=base_url, legacy=legacy)
    return JSONResponse(envelope(data, "Платеж инициирован" if legacy else "Payment started"))


async def _attempt_started(
    ctx: Context, payment: Payment, attempt: Attempt, *, base: int, base_url: str, legacy: bool
) -> dict[str, Any]:
    async with ctx.db.reading() as session:
        method = await session.get(PaymentMethod, attempt.payment_method) if attempt.payment_method else None
    return _started(
        payment,
        base=base,
        asked=attempt.amount,
        method=method,
        payment_url=attempt.pay_link or views.payment_url(base_url, payment.id),
        qr=attempt.qr_payload,
        terminal_id=attempt.terminal_id,
        legacy=legacy,
    )


# --- POST /api/payment/{id}/track-visit ----------------------------------------------------------


@router.post(
    "/payment/{payment_id}/track-visit",
    response_model=Envelope[None],
    responses=error_responses(400, 404, 429),
    summary="Record the payer's visit (public)",
)
async def track_visit(payment_id: str, ctx: Context, request: Request, _: PublicRateLimit) -> JSONResponse:
    """Public: the old payment pages called it when the payer opened them. The first visit's time
    is kept (shown to operators); later calls change nothing. Any body is ignored.

    Rate limited per client address."""
    pid = normalize_payment_id(payment_id)
    async with _rendered_for_version(ctx, request):
        async with ctx.db.read_once() as session:
            _payment, api_version = await service.get_with_api_version(session, pid)
        versions.use(request.scope, api_version)
        async with ctx.db.transaction() as session:
            await service.track_visit(session, payment_id=pid, now=ctx.now())
    return JSONResponse(envelope(None, "Visit tracked"))


# --- GET /api/payment-methods[/active] -----------------------------------------------------------


class PaymentMethodOut(BaseModel):
    id: int | None = Field(description="The old system's id (1 Kaspi Gold, 2 Red, 3 credit, 4 and 5 instalments).")
    code: str
    name: str
    type: str = Field(description="wallet, card, credit or installment")
    provider: str
    country_id: int | None
    allowed_countries: str | None = Field(description="A JSON array as text, as the old API sent it; null: any.")
    payment_currency: str
    icon_url: str | None
    icon_emoji: str | None
    commission_percent: str
    credit_commission_percent: str
    installment_commission_percent: str
    has_credit: bool | int = Field(description="Current version: a boolean; legacy: 0 or 1. So are the next two.")
    has_installment: bool | int
    add_commission_to_amount: bool | int = Field(description="The payer covers the fee (it is added on top).")
    sort_order: int
    installment_months: int | None


_MONTHS = re.compile(r"_([0-9]{1,3})\Z")
# What the old system's seed said of its five methods (type, icon); others are plain wallets.
_OLD_SEED = {
    "kaspi_gold": ("wallet", "💰"),
    "kaspi_red": ("card", "💳"),
    "kaspi_credit": ("credit", "🏦"),
    "kaspi_installment_12": ("installment", "📅"),
    "kaspi_installment_24": ("installment", "📆"),
}


def _method(m: PaymentMethod, legacy: bool) -> dict[str, Any]:
    credit = "credit" in m.code
    installment = "installment" in m.code
    months = _MONTHS.search(m.code) if installment else None
    percent = _percent(m.fee_bp)
    flag: type[int] = int if legacy else bool  # 0/1 in the old API
    return {
        "id": m.legacy_id,
        "code": m.code,
        "name": m.name,
        "type": _OLD_SEED.get(m.code, ("credit" if credit else "installment" if installment else "wallet", None))[0],
        "provider": "Kaspi" if m.code.startswith("kaspi_") else m.code.split("_", 1)[0],
        "country_id": None,
        "allowed_countries": None,
        "payment_currency": "KZT",
        "icon_url": None,
        "icon_emoji": _OLD_SEED.get(m.code, ("", None))[1],
        # The old table kept a credit or instalment method's fee in its own column, 0 here.
        "commission_percent": "0.00" if credit or installment else percent,
        "credit_commission_percent": percent if credit else "0.00",
        "installment_commission_percent": percent if installment else "0.00",
        "has_credit": flag(credit),
        "has_installment": flag(installment),
        "add_commission_to_amount": flag(m.payer_covers_fee),
        "sort_order": m.sort_order,
        "installment_months": int(months.group(1)) if months else None,
    }


@router.get(
    "/payment-methods",
    response_model=Envelope[list[PaymentMethodOut]],
    responses=error_responses(400, 429),
    summary="List the active payment methods (public)",
)
@router.get(
    "/payment-methods/active",
    response_model=Envelope[list[PaymentMethodOut]],
    responses=error_responses(400, 429),
    summary="List the active payment methods (public)",
)
async def list_payment_methods(ctx: Context, request: Request, _: PublicRead) -> JSONResponse:
    """Public (the old API asked a token for the bare path, its documentation did not): the
    methods a payer may choose, by `sort_order`, with their fees. Both paths give the same list.

    Rendered in the `Paycenter-Version` header's version, else in that of the merchant whose
    `X-API-Token` is sent (an unknown token is ignored), else as the old API did (`legacy`): the
    old payer page called it with neither."""
    await _settle_version(ctx, request)
    legacy = versions.is_legacy(request.scope)
    async with ctx.db.read_once() as session:
        methods = await attempts.active_methods(session)
    return JSONResponse(envelope([_method(m, legacy) for m in methods], "Success" if legacy else "OK"))
