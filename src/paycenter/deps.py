"""Typed request dependencies shared by the routers."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response, Security
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader

from paycenter.context import AppContext
from paycenter.errors import Unauthorized
from paycenter.merchants import service as merchants
from paycenter.merchants.models import Merchant
from paycenter.money import ExactFloat


class ExactJsonRequest(Request):
    """A request whose JSON numbers with a fraction or exponent keep their text (``ExactFloat``),
    so an amount is parsed from what the merchant wrote, not from the float nearest to it."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            parsed = json.loads(await self.body(), parse_float=ExactFloat)
            # A bare number as the whole body is no amount: a plain float, which validation then
            # refuses as a body (pydantic reads a float subclass's attributes like a model's).
            self._json = float(parsed) if isinstance(parsed, ExactFloat) else parsed
        return self._json


class ExactJsonRoute(APIRoute):
    """The API's routes: bodies parsed by ``ExactJsonRequest``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def exact(request: Request) -> Response:
            return await handler(ExactJsonRequest(request.scope, request.receive))

        return exact


async def get_context(request: Request) -> AppContext:
    # async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per request.
    return request.app.state.ctx  # type: ignore[no-any-return]


Context = Annotated[AppContext, Depends(get_context)]

_token_header = APIKeyHeader(
    name="X-API-Token",
    auto_error=False,
    description="The merchant's API token (shown once when created).",
)


async def current_merchant(
    request: Request, ctx: Context, token: Annotated[str | None, Security(_token_header)]
) -> Merchant:
    if not token:
        raise Unauthorized("Missing X-API-Token header", headers={"WWW-Authenticate": "ApiKey"})
    if len(token) > 200:
        raise Unauthorized("Invalid API token")
    token = token.strip()
    token_hash = merchants.hash_token(token)
    async with ctx.db.read_once() as session:
        merchant = await merchants.authenticate(session, token, token_hash=token_hash)
    if merchant is None:
        raise Unauthorized("Invalid or revoked API token")
    limiter = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None:
        limiter.hit(f"token:{token_hash[:32]}", ctx.settings.rate_limit_token_per_minute)
    return merchant


CurrentMerchant = Annotated[Merchant, Depends(current_merchant)]


def public_base_url(ctx: AppContext, request: Request) -> str:
    """Base of the links we hand out: the configured public URL, else this request's own."""
    return ctx.settings.public_url or str(request.base_url)
