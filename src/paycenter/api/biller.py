"""Kaspi's biller endpoint (issue 16): Kaspi calls ``PAYCENTER_KASPI_BILLER_PATH`` with
``command=check`` and ``command=pay`` (shared/reference/kaspi.md §C).

Thin: who may call and what the request says are ``providers.kaspi_biller``'s rules, what to answer
is ``payments.biller``'s. The caller is judged before anything else is read or looked up; a
refusal is HTTP 403, every other answer HTTP 200 (kaspi.md §C: "Reply always HTTP 200"), one
database transaction per request and no outbound call. A pay's reply goes out as the bytes stored
with it, so a retry gets exactly what the first request got.

Mounted only when kaspi_biller is enabled, and left out of the OpenAPI document: that document is
the merchants' API (their token, the envelope), and this is Kaspi's protocol, which merchants never
call; the operators' documentation describes it instead.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from paycenter.deps import context_of
from paycenter.payments import biller
from paycenter.providers import kaspi_biller
from paycenter.providers.kaspi_biller import BadRequest, Command, Format, KaspiBillerProvider, Reply, Result

log = logging.getLogger("paycenter.biller")
ENABLED_BY = kaspi_biller.NAME  # the provider whose being enabled mounts this endpoint


def router(path: str) -> APIRouter:
    """The endpoint at the configured path (GET, and POST with a form: kaspi.md §C, SPEC.md)."""
    found = APIRouter(include_in_schema=False)
    found.add_api_route(path, endpoint, methods=["GET", "POST"], include_in_schema=False)
    return found


def _answer(reply: Reply, fmt: Format, status: int = 200) -> Response:
    body, content_type = kaspi_biller.render(reply, fmt)
    return Response(body, status_code=status, media_type=content_type)


async def endpoint(request: Request) -> Response:
    ctx = context_of(request)
    provider = ctx.providers.get(kaspi_biller.NAME)
    assert isinstance(provider, KaspiBillerProvider)  # app.py mounts this only when it is enabled
    fmt, gate = provider.format, provider.gate
    # The address first: a caller outside the allow-list learns nothing, not even whether its
    # request was well formed, and nothing of its body is read.
    if not gate.address_allowed(request.client.host if request.client else None):
        log.warning("kaspi biller: refused a request from %s (not in the allowed networks)", request.client)
        return _answer(kaspi_biller.forbidden(), fmt, 403)
    items = list(request.query_params.multi_items())
    unreadable = False
    if request.method == "POST":
        try:
            form = await request.form()
            items += [(name, value) for name, value in form.multi_items() if isinstance(value, str)]
        except (StarletteHTTPException, ValueError, UnicodeDecodeError):
            unreadable = True  # a broken form: malformed, once the caller is known to be Kaspi
    values = kaspi_biller.collect(items)
    if not gate.secret_matches(values.get("data1")):
        log.warning("kaspi biller: refused a request from %s (data1 does not match)", request.client)
        return _answer(kaspi_biller.forbidden(), fmt, 403)
    try:
        if unreadable:
            raise BadRequest("the form could not be read")
        call = kaspi_biller.parse(values)
    except BadRequest as exc:
        # Nothing is written for a request the protocol cannot take (result 5).
        return _answer(Reply(Result.OTHER_ERROR, txn_id=exc.txn_id, comment=exc.message), fmt)
    now = ctx.now()
    if call.command == Command.CHECK:
        async with ctx.db.transaction() as session:
            reply = await biller.check(session, call, now=now)
        return _answer(reply, fmt)
    try:
        async with ctx.db.transaction() as session:
            done = await biller.pay(session, call, now=now, fmt=fmt)
    except IntegrityError:
        # A concurrent pay with this txn_id committed first (this one was rolled back whole):
        # its reply is the one to give.
        async with ctx.db.reading() as session:
            winner = await biller.stored(session, call.txn_id)
        if winner is None:
            raise
        done = winner
    return Response(done.body, status_code=200, media_type=done.content_type)
