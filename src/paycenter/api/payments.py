"""Merchant API for payments (DESIGN §2). Handlers are thin: parse, call the service, answer."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from paycenter import contract, versions
from paycenter.context import AppContext
from paycenter.contract import DateTime
from paycenter.db import normalize_payment_id
from paycenter.deps import (
    Context,
    CurrentMerchant,
    ExactJsonRoute,
    ReadingMerchant,
    context_of,
    limit_public_read,
    public_base_url,
)
from paycenter.envelope import Envelope
from paycenter.errors import ApiError, Conflict, NotFound, Unprocessable, envelope, error_responses
from paycenter.idempotency import service as idempotency
from paycenter.merchants.models import Merchant
from paycenter.money import FINEST_CURRENCY, MoneyError, api_minor, to_major_str
from paycenter.observability import bind_transaction
from paycenter.payments import listing, queries, refunds, service, views, views_legacy
from paycenter.payments.models import PaymentStatus
from paycenter.payments.schemas import (
    CancelRequest,
    PaymentCreated,
    PaymentDetail,
    PaymentFull,
    PaymentInit,
    PaymentPublic,
    RefundRequest,
    RefundResult,
    Statistics,
    TransactionPage,
)
from paycenter.timefmt import almaty_date

router = APIRouter(prefix="/api", tags=["payments"], route_class=ExactJsonRoute)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Any unique string of 1 to 255 printable characters (a UUID is ideal). "
        "Retrying with the same key and body returns the first answer instead of acting twice; "
        "the same key with another body is refused with 409.",
        # Documented only: idempotency.run checks the key itself, with its own clear message (422).
        json_schema_extra={
            "minLength": 1,
            "maxLength": idempotency.MAX_KEY_LENGTH,
            "pattern": contract.IDEMPOTENCY_KEY_PATTERN,
        },
    ),
]


async def _once(
    ctx: AppContext,
    merchant: Merchant,
    request: Request,
    key: str | None,
    body: BaseModel,
    now: datetime,
    work: idempotency.Work,
) -> tuple[int, dict[str, Any], bool]:
    """Run a POST's work in one transaction, at most once per Idempotency-Key."""
    return await idempotency.run(
        ctx.db,
        merchant_id=merchant.id,
        key=key,
        # Only a keyed request is ever compared: no dump and hash of the body without a key.
        fp=idempotency.fingerprint("POST", request.url.path, body.model_dump(mode="json")) if key is not None else "",
        now=now,
        ttl=timedelta(seconds=ctx.settings.idempotency_ttl_seconds),
        work=work,
    )


def _answer(status: int, body: dict[str, Any], replayed: bool) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSONResponse(body, status_code=status, headers=headers)


@router.post(
    "/payment/init",
    status_code=201,
    response_model=Envelope[PaymentCreated],
    responses=error_responses(400, 401, 409, 413, 422),
    summary="Create a payment",
)
async def init_payment(
    body: PaymentInit, merchant: CurrentMerchant, request: Request, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    """Create a payment and get the link to send the payer to (`payment_url`)."""
    ctx = context_of(request)
    now = ctx.now()
    base_url = public_base_url(ctx, request)
    legacy = versions.is_legacy(request.scope)

    async def work(session: AsyncSession) -> tuple[int, dict[str, Any]]:
        payment = await service.create_payment(session, merchant=merchant, data=body, policy=ctx.init_policy, now=now)
        bind_transaction(payment.id)
        if legacy:
            return 201, envelope(views_legacy.created(payment, base_url), views_legacy.CREATED)
        return 201, envelope(views.created(payment, base_url), "Payment created")

    status, data, replayed = await _once(ctx, merchant, request, idempotency_key, body, now, work)
    return _answer(status, data, replayed)


async def _public(request: Request, payment_id: str) -> JSONResponse:
    # The hot path of every payment page and merchant poll: the context and the rate limit are
    # plain calls, not dependencies, which cost a pass of FastAPI's solver each (issue 15).
    ctx = context_of(request)
    await limit_public_read(request, ctx)
    try:
        async with ctx.db.read_row() as conn:
            payment, api_version = await service.get_public(conn, normalize_payment_id(payment_id))
    except NotFound:
        if versions.is_legacy(request.scope):  # no payment, no merchant: the header's version
            raise NotFound(views_legacy.NOT_FOUND) from None
        raise
    versions.use(request.scope, api_version)
    if versions.is_legacy(request.scope):
        return JSONResponse(envelope(views_legacy.public(payment, public_base_url(ctx, request)), views_legacy.SUCCESS))
    # views.public has exactly PaymentPublic's fields, already as strings: answered as is, not
    # validated and serialized again through the response model on every poll of the page.
    return JSONResponse(envelope(views.public(payment, public_base_url(ctx, request))))


@router.get(
    "/payment/{payment_id}",
    response_model=Envelope[PaymentPublic],
    responses=error_responses(404, 429),
    summary="Get a payment (public)",
)
async def get_payment(payment_id: str, request: Request) -> JSONResponse:
    """Public: anyone with the 128-bit payment id may read its amounts and status (the payment page
    does). No metadata, customer data or webhook settings are shown here.

    Rate limited per client address; a server polling its payments may send its `X-API-Token`, and
    is then counted against the token's far larger read limit (an unknown token counts as none)."""
    return await _public(request, payment_id)


@router.get(
    "/payment/{payment_id}/status",
    response_model=Envelope[PaymentPublic],
    responses=error_responses(404, 429),
    summary="Get a payment's status (public)",
)
async def get_payment_status(payment_id: str, request: Request) -> JSONResponse:
    return await _public(request, payment_id)


@router.post(
    "/payment/{payment_id}/cancel",
    response_model=Envelope[PaymentDetail],
    responses=error_responses(400, 401, 404, 409, 413, 422),
    summary="Cancel a payment",
)
async def cancel_payment(
    payment_id: str,
    merchant: CurrentMerchant,
    ctx: Context,
    request: Request,
    body: CancelRequest | None = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Cancel a payment that is not paid yet. Money already received (a partial payment) stays
    with the payment; refund it separately. Sends the `cancelled` webhook."""
    now = ctx.now()
    body = body or CancelRequest()
    base_url = public_base_url(ctx, request)
    pid = normalize_payment_id(payment_id)
    legacy = versions.is_legacy(request.scope)

    async def work(session: AsyncSession) -> tuple[int, dict[str, Any]]:
        payment = await service.cancel(session, merchant_id=merchant.id, payment_id=pid, reason=body.reason, now=now)
        if legacy:
            return 200, envelope(None, views_legacy.CANCELLED)
        return 200, envelope(views.detail(payment, base_url), "Payment cancelled")

    if not legacy:
        status, data, replayed = await _once(ctx, merchant, request, idempotency_key, body, now, work)
        return _answer(status, data, replayed)
    try:
        status, data, replayed = await _once(ctx, merchant, request, idempotency_key, body, now, work)
    except NotFound:
        # The old API's words and code for a payment that is not there (or is another merchant's).
        raise ApiError(views_legacy.NOT_FOUND, code="not_found") from None
    except Conflict as exc:
        if exc.code != Conflict.code:  # an Idempotency-Key's conflict, not the payment's state
            raise
        # The old API answered a repeated cancel as the first one; a paid payment in its words.
        async with ctx.db.reading() as session:
            payment = await service.get_for_merchant(session, merchant_id=merchant.id, payment_id=pid)
        if payment.status == PaymentStatus.CANCELLED:
            return _answer(200, envelope(None, views_legacy.CANCELLED), False)
        if payment.status in (PaymentStatus.PAID, PaymentStatus.REFUNDED):
            raise Conflict(views_legacy.PAID_CANNOT_CANCEL, code=exc.code) from None
        raise
    return _answer(status, data, replayed)


@router.post(
    "/payment/{payment_id}/refund",
    response_model=Envelope[RefundResult],
    responses=error_responses(400, 401, 404, 409, 413, 422),
    summary="Refund a payment, in full or in part",
)
async def refund_payment(
    payment_id: str,
    merchant: CurrentMerchant,
    ctx: Context,
    request: Request,
    body: RefundRequest | None = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Send money back to the payer. Without `amount`, everything not yet refunded is refunded.
    Several partial refunds are allowed; together they never exceed what was paid. Sends the
    `refunded` webhook when the provider confirms, and `refund_failed` when money could not be
    returned (after retries while the provider answers "try again"). Kaspi QR on scheme r1 has no
    refund API: such a refund is refused with 409 `refunds_not_supported`, saying what to do instead.
    On scheme r2 the refund stays `pending` until the customer scans a return QR in Kaspi.kz: the
    message gives the page that shows it (`/pay/{transaction_id}/refunds/{refund id}`)."""
    body = body or RefundRequest()
    if body.amount is not None:
        try:  # the deployment's maximum, as the document states it
            api_minor(body.amount, FINEST_CURRENCY, max_major=ctx.settings.max_amount)
        except MoneyError as exc:
            raise Unprocessable(str(exc), fields=[{"field": "amount", "message": str(exc)}]) from None
    now = ctx.now()
    base_url = public_base_url(ctx, request)
    pid = normalize_payment_id(payment_id)

    async def work(session: AsyncSession) -> tuple[int, dict[str, Any]]:
        refund = await refunds.request(
            session,
            merchant_id=merchant.id,
            payment_id=pid,
            amount=body.amount,
            reason=body.reason,
            now=now,
            providers=ctx.providers,
        )
        return 200, {"refund_id": refund.id}

    _status, data, replayed = await _once(ctx, merchant, request, idempotency_key, body, now, work)
    refund_id = data["refund_id"]
    if not replayed:
        await refunds.send(
            ctx.db,
            ctx.providers,
            refund_id=refund_id,
            clock=ctx.clock,
            retry_for=timedelta(seconds=ctx.settings.refund_retry_for_seconds),
        )
    async with ctx.db.reading() as session:
        payment = await service.get(session, pid)
        refund = await refunds.get(session, refund_id)
        awaiting_payer = refund_id in await refunds.awaiting_payer(session, payment_id=pid)
    message = {
        "succeeded": "Refund completed",
        "pending": "Refund accepted; the provider will confirm it",
        "failed": "Refund failed",
        "partially_succeeded": "Refund partly completed",
    }[refund.status]
    page = None
    if awaiting_payer:
        # Kaspi QR r2: the money goes back once the payer scans the return QR this page shows.
        page = f"{base_url.rstrip('/')}/pay/{pid}/refunds/{refund_id}"
        message = f"Refund waiting for the customer: show them the return QR at {page} to scan in Kaspi.kz"
    result = {"refund": views.refund(refund, payment.currency, page), "payment": views.detail(payment, base_url)}
    return _answer(200, envelope(result, message), replayed)


@router.get(
    "/transactions",
    response_model=Envelope[TransactionPage],
    responses=error_responses(401, 422),
    summary="List payments",
    # Read by paycenter.payments.listing, per API version: documented here.
    openapi_extra={"parameters": listing.PARAMETERS},
)
async def list_transactions(merchant: CurrentMerchant, ctx: Context, request: Request) -> Any:
    """Newest first, a page at a time (`next_cursor`). An unknown query parameter is refused (422)
    rather than ignored, so a misspelt filter never lists everything."""
    if versions.is_legacy(request.scope):
        old = listing.legacy(merchant.id, request.query_params)
        async with ctx.db.reading() as session:
            found, total = await queries.list_payments_offset(session, old.filter, limit=old.limit, offset=old.offset)
        data = {
            "transactions": [views_legacy.list_item(p) for p in found],
            "total": total,
            "limit": old.limit,
            "offset": old.offset,
        }
        return JSONResponse(envelope(data, views_legacy.SUCCESS))
    q = listing.current(merchant.id, request.query_params)
    async with ctx.db.reading() as session:
        rows, next_cursor = await queries.list_payments(session, q.filter, limit=q.limit, cursor=q.cursor)
    base_url = public_base_url(ctx, request)
    page = {
        "items": [views.detail(p, base_url) for p in rows],
        "has_more": next_cursor is not None,
        "next_cursor": next_cursor,
    }
    return envelope(page)


@router.get(
    "/transaction/{payment_id}",
    response_model=Envelope[PaymentFull],
    responses=error_responses(401, 404),
    summary="Get one of your payments with its history",
)
async def get_transaction(payment_id: str, merchant: ReadingMerchant, ctx: Context, request: Request) -> Any:
    if versions.is_legacy(request.scope):
        return await _legacy_transaction(payment_id, merchant, ctx, request)
    async with ctx.db.reading() as session:
        payment = await service.get_for_merchant(
            session, merchant_id=merchant.id, payment_id=normalize_payment_id(payment_id)
        )
        hist = await queries.history(session, payment.id)
    cur = payment.currency
    data = views.detail(payment, public_base_url(ctx, request)) | {
        "attempts": [views.attempt(a, cur) for a in hist["attempts"]],
        "operations": [views.operation(o, cur) for o in hist["operations"]],
        "refunds": [views.refund(r, cur) for r in hist["refunds"]],
        "events": [views.event(e) for e in hist["events"]],
    }
    return envelope(data)


async def _legacy_transaction(payment_id: str, merchant: Merchant, ctx: Context, request: Request) -> JSONResponse:
    try:
        async with ctx.db.reading() as session:
            payment = await service.get_for_merchant(
                session, merchant_id=merchant.id, payment_id=normalize_payment_id(payment_id)
            )
            parts = await queries.paid_parts(session, payment.id)
            tries = await queries.webhook_tries(session, payment.id)
    except NotFound:
        raise NotFound(views_legacy.TRANSACTION_NOT_FOUND) from None
    data = {
        "transaction": views_legacy.transaction(payment, public_base_url(ctx, request)),
        "partial_payments": [views_legacy.partial_payment(p, payment.currency) for p in parts],
        "webhook_logs": [views_legacy.webhook_log(t) for t in tries],
    }
    return JSONResponse(envelope(data, views_legacy.SUCCESS))


@router.get(
    "/statistics",
    response_model=Envelope[Statistics],
    responses=error_responses(401, 422),
    summary="Counts and sums of your payments",
)
async def get_statistics(
    merchant: CurrentMerchant,
    ctx: Context,
    request: Request,
    created_from: Annotated[DateTime | None, Query(description="Created at or after (RFC 3339).")] = None,
    created_to: Annotated[DateTime | None, Query(description="Created before (RFC 3339).")] = None,
) -> Any:
    if versions.is_legacy(request.scope):
        return await _legacy_statistics(merchant, ctx, request)
    flt = queries.TransactionFilter(merchant_id=merchant.id, created_from=created_from, created_to=created_to)
    async with ctx.db.reading() as session:
        by_status, currencies = await queries.statistics(session, flt)
    total = sum(by_status.values())
    succeeded = by_status.get(PaymentStatus.PAID, 0) + by_status.get(PaymentStatus.REFUNDED, 0)
    data = {
        "created_from": created_from.isoformat() if created_from else None,
        "created_to": created_to.isoformat() if created_to else None,
        "total_count": total,
        "by_status": by_status,
        "paid_conversion": round(succeeded / total, 4) if total else 0.0,
        "currencies": [
            {
                "currency": c.currency,
                "count": c.count,
                "amount": to_major_str(c.amount, c.currency),
                "paid_amount": to_major_str(c.paid_amount, c.currency),
                "refunded_amount": to_major_str(c.refunded_amount, c.currency),
                "net_amount": to_major_str(c.paid_amount - c.refunded_amount, c.currency),
            }
            for c in currencies
        ],
    }
    return envelope(data)


async def _legacy_statistics(merchant: Merchant, ctx: Context, request: Request) -> JSONResponse:
    """The old ``/api/statistics``: Almaty days ``date_from`` .. ``date_to`` (both included;
    by default the last 30 days up to today)."""
    values = dict(request.query_params.multi_items())
    today = almaty_date(ctx.now())
    date_to = listing.legacy_day(values, "date_to") or today
    date_from = listing.legacy_day(values, "date_from") or date.fromordinal(today.toordinal() - 30)
    flt = queries.TransactionFilter(merchant_id=merchant.id, date_from=date_from, date_to=date_to)
    async with ctx.db.reading() as session:
        totals, refund_count, methods = await queries.legacy_statistics(session, flt)
    data = views_legacy.statistics(date_from, date_to, totals, refund_count, methods)
    return JSONResponse(envelope(data, views_legacy.SUCCESS))
