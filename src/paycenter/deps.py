"""Typed request dependencies shared by the routers."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, MutableMapping
from typing import Annotated, Any

from fastapi import Depends, Request, Response, Security
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader

from paycenter import versions
from paycenter.context import AppContext
from paycenter.errors import Unauthorized
from paycenter.merchants import service as merchants
from paycenter.merchants.models import Merchant
from paycenter.money import ExactFloat
from paycenter.observability import bind_path_transaction
from paycenter.ratelimit import RateLimiter, hit_address


class ExactJsonRequest(Request):
    """A request whose JSON numbers with a fraction or exponent keep their text (``ExactFloat``),
    so an amount is parsed from what the merchant wrote, not from the float nearest to it."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            parsed = json.loads(await self.body(), parse_float=ExactFloat)
            # A bare number as the whole body is no amount: a plain float, which validation then
            # refuses as a body (pydantic reads a float subclass's attributes like a model's).
            self._json = float(parsed) if isinstance(parsed, ExactFloat) else parsed
            if self._json == [] and self.url.path.endswith("/cancel"):
                # PHP's json_encode(array()) of an empty body ("[]", what an old client sends
                # with a cancel): PHP has one type for both, so it is the empty object there.
                self._json = {}
        return self._json


def _json_whatever_the_type(scope: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The scope with its body declared JSON: the old API decoded the body as JSON whatever its
    Content-Type (legacy-api.md §1), and PHP's curl sends a JSON string given as POSTFIELDS as
    ``application/x-www-form-urlencoded``. A body that is not JSON is then refused as such (400).
    A body with no Content-Type at all too: FastAPI no longer reads it as JSON (0.165 refused it
    as "not an object", found by the recorded answers of issue 15)."""
    headers = scope.get("headers") or []
    declared = [value for name, value in headers if name == b"content-type"]
    if declared and any(b"json" in value.lower() for value in declared):
        return scope
    scope.setdefault("state", {})  # shared with the copy: the request's API version is kept there
    kept = [(name, value) for name, value in headers if name != b"content-type"]
    return {**scope, "headers": [*kept, (b"content-type", b"application/json")]}


class ExactJsonRoute(APIRoute):
    """The API's routes: bodies parsed by ``ExactJsonRequest``, as JSON whatever their declared type,
    and the payment a path names bound to the request's log lines (here rather than as a router
    dependency: a dependency costs the API's hot reads a pass of FastAPI's dependency solver)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def exact(request: Request) -> Response:
            scope = request.scope
            bind_path_transaction(scope["path_params"])
            if request.method in ("POST", "PUT", "PATCH"):
                scope = _json_whatever_the_type(scope)
            return await handler(ExactJsonRequest(scope, request.receive))

        return exact


def context_of(request: Request) -> AppContext:
    """The application's context (create_app keeps it in the app's state)."""
    ctx: AppContext = request.app.state.ctx
    return ctx


async def get_context(request: Request) -> AppContext:
    # async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per request.
    return context_of(request)


Context = Annotated[AppContext, Depends(get_context)]

_token_header = APIKeyHeader(
    name="X-API-Token",
    auto_error=False,
    description="The merchant's API token (shown once when created).",
)


async def merchant_for_token(ctx: AppContext, token: str | None) -> tuple[Merchant, str] | None:
    """The active merchant an unrevoked token belongs to, with the token's hash; None for a missing,
    malformed, unknown or revoked token. Looked up on every call (``merchants.authenticate``)."""
    if not token or len(token) > 200:
        return None
    token = token.strip()
    token_hash = merchants.hash_token(token)
    async with ctx.db.read_row() as conn:
        merchant = await merchants.authenticate(conn, token, token_hash=token_hash)
    return None if merchant is None else (merchant, token_hash)


def _limiter(request: Request) -> RateLimiter | None:
    return getattr(request.app.state, "rate_limiter", None)


def _hit_token(request: Request, ctx: AppContext, token_hash: str, *, read: bool) -> None:
    limiter = _limiter(request)
    if limiter is None:
        return
    if read:
        limiter.hit(f"read:{token_hash[:32]}", ctx.settings.rate_limit_token_reads_per_minute)
    else:
        limiter.hit(f"token:{token_hash[:32]}", ctx.settings.rate_limit_token_per_minute)


async def _authenticated(request: Request, ctx: AppContext, token: str | None, *, read: bool) -> Merchant:
    found = await merchant_for_token(ctx, token)
    if found is None:
        # A 401, not counted against the address: that would turn the documented 401 into a 429
        # for a busy address, and save no lookup (the token has to be looked up to know).
        if not token:
            raise Unauthorized("Missing X-API-Token header", headers={"WWW-Authenticate": "ApiKey"})
        raise Unauthorized("Invalid or revoked API token" if len(token) <= 200 else "Invalid API token")
    merchant, token_hash = found
    _hit_token(request, ctx, token_hash, read=read)
    versions.use(request.scope, merchant.api_version)
    return merchant


async def current_merchant(request: Request, token: Annotated[str | None, Security(_token_header)]) -> Merchant:
    # The context as a plain call, not a sub-dependency: every merchant call pays the solver per
    # dependency (issue 15).
    return await _authenticated(request, context_of(request), token, read=False)


async def reading_merchant(request: Request, token: Annotated[str | None, Security(_token_header)]) -> Merchant:
    """``current_merchant`` for reads of one payment, which merchants poll: counted against the
    token's read limit (PAYCENTER_RATE_LIMIT_TOKEN_READS_PER_MINUTE)."""
    return await _authenticated(request, context_of(request), token, read=True)


async def limit_public_read(request: Request, ctx: Context) -> None:
    """Rate limit of a public read (a payment's status): a merchant's server polling its payments
    sends its token, and is counted against that token's read limit; without a valid token (none,
    or one that is unknown or revoked) the read is the client address's. The token is read here
    only for the count: the endpoint stays public (no 401) and its document declares no security."""
    limiter = _limiter(request)
    if limiter is None:
        return
    token = request.headers.get("x-api-token")
    if token and len(token) <= 200:
        token_hash = merchants.hash_token(token.strip())
        valid = limiter.vouched(token_hash)
        if not valid and await merchant_for_token(ctx, token) is not None:
            limiter.vouch(token_hash)  # looked up, not taken from the last second's answer
            valid = True
        if valid:
            _hit_token(request, ctx, token_hash, read=True)
            return
    hit_address(request)


CurrentMerchant = Annotated[Merchant, Depends(current_merchant)]
ReadingMerchant = Annotated[Merchant, Depends(reading_merchant)]
PublicRead = Annotated[None, Depends(limit_public_read)]


def public_base_url(ctx: AppContext, request: Request) -> str:
    """Base of the links we hand out: the configured public URL, else this request's own."""
    return ctx.settings.public_url or str(request.base_url)
