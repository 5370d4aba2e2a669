"""Merchant API for payment links: ``POST /api/links``, ``GET /api/links``. Current version only:
merchants pinned to ``legacy`` (the old system had no links) are answered as for a path that is not
there, and ``/openapi-legacy.json`` leaves the paths out (``docs.legacy``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from paycenter import pagination, versions
from paycenter.deps import CurrentMerchant, ExactJsonRoute, context_of, public_base_url
from paycenter.envelope import Envelope
from paycenter.errors import NotFound, envelope, error_responses
from paycenter.payments import links
from paycenter.payments.links import LinkCreate, LinkPage, LinkView

router = APIRouter(prefix="/api", tags=["links"], route_class=ExactJsonRoute)
PATH = "/api/links"


def _current_only(request: Request) -> None:
    if versions.is_legacy(request.scope):
        raise NotFound("Not Found")


@router.post(
    "/links",
    status_code=201,
    response_model=Envelope[LinkView],
    responses=error_responses(400, 401, 404, 413, 422),
    summary="Create a payment link",
)
async def create_link(body: LinkCreate, merchant: CurrentMerchant, request: Request) -> JSONResponse:
    """A link to send a payer: `one_off` makes its payment now (`payment_url`); `reusable` makes a
    fresh payment, with your webhook URL and `metadata.link_id`, each time a payer opens `url`
    and confirms (a fixed `amount`, or one the payer chooses from `min_amount` to `max_amount`)."""
    _current_only(request)
    ctx = context_of(request)
    now = ctx.now()
    base_url = public_base_url(ctx, request)
    async with ctx.db.transaction() as session:
        link, payment = await links.create(
            session, merchant=merchant, data=body, policy=ctx.init_policy, now=now, created_by=None, via="api"
        )
        shown = links.view(link, base_url, now=now, payment=payment)
    return JSONResponse(envelope(shown, "Payment link created"), status_code=201)


@router.get(
    "/links",
    response_model=Envelope[LinkPage],
    responses=error_responses(401, 404, 422),
    summary="List your payment links",
)
async def list_links(
    merchant: CurrentMerchant,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[
        str | None, Query(pattern=pagination.CURSOR_PATTERN, description="next_cursor of the previous page")
    ] = None,
) -> Any:
    """Newest first, a page at a time (`next_cursor`)."""
    _current_only(request)
    ctx = context_of(request)
    now = ctx.now()
    base_url = public_base_url(ctx, request)
    async with ctx.db.reading() as session:
        rows, next_cursor = await links.page(session, merchant_id=merchant.id, limit=limit, cursor=cursor)
        paid = await links.one_off_payments(session, rows)
    items = [links.view(link, base_url, now=now, payment=paid.get(link.payment_id or "")) for link in rows]
    return envelope({"items": items, "has_more": next_cursor is not None, "next_cursor": next_cursor})
