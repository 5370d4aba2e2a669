"""CORS for the merchant API: the public endpoints answer any origin, token endpoints only the
origins in PAYCENTER_CORS_ORIGINS (none by default).

The old API answered ``Access-Control-Allow-Origin: *`` everywhere, and its docs' browser snippets
read a payment's status and the payment methods from the merchant's own site. Those public reads
(and the payer-page calls the old pages made) keep answering any origin: they need no token, so a
page elsewhere learns nothing through them that a server could not fetch itself. An endpoint that
takes the token answers CORS only for the origins the operator lists; a token in a web page is
visible to everyone who opens it. No answer ever allows credentials: the API is authenticated by
the ``X-API-Token`` header, never by a cookie, so nothing a browser holds on its own is lent to
another site.

Two of Starlette's ``CORSMiddleware`` (one policy each: it has no per-route policies) and a choice
between them by method and path, made before routing: a preflight is an OPTIONS request, which
matches no route, so the route cannot say which policy it wants. A preflight is classified by the
method it asks for (``Access-Control-Request-Method``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

# Public endpoints (legacy-api.md §2: "token ignored"), by method; a trailing slash is harmless, as
# it was in the old API. Those not built yet are listed so that they answer like the old ones once
# they are; tests/api/test_cors.py checks this table against the routes' security in /openapi.json.
_PUBLIC = {
    "GET": re.compile(
        r"/api/(?:payment/[^/]+(?:/status)?|payment-methods(?:/active)?|countries(?:/active|/exchange-rates)?)/?"
    ),
    "POST": re.compile(r"/api/payment/[^/]+/(?:kaspi|track-visit)/?"),
}
_PUBLIC["HEAD"] = _PUBLIC["GET"]

# The old API's methods (and HEAD). Headers: whatever the preflight asks for (X-API-Token,
# Content-Type, Idempotency-Key, ...), which lends nothing without credentials.
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS")
# Answer headers a page may read beyond the safelisted ones.
EXPOSED = ("Retry-After", "X-Request-ID", "Idempotent-Replayed")
MAX_AGE = 600  # seconds a browser may keep a preflight's answer


def is_public(method: str, path: str) -> bool:
    """Whether ``method path`` is a public endpoint of the merchant API (one that needs no token)."""
    pattern = _PUBLIC.get(method)
    return pattern is not None and pattern.fullmatch(path) is not None


def _policy(app: ASGIApp, origins: list[str]) -> ASGIApp:
    return CORSMiddleware(
        app, allow_origins=origins, allow_methods=METHODS, allow_headers=["*"], expose_headers=EXPOSED, max_age=MAX_AGE
    )


class Cors:
    """Pure ASGI: answers preflights of the API and adds CORS headers to its answers."""

    def __init__(self, app: ASGIApp, *, origins: Sequence[str], prefix: str = "/api/") -> None:
        self.app = app
        self.prefix = prefix
        self.public = _policy(app, ["*"])
        # No origins: no CORS at all, a preflight is the app's (405), as if this were not here.
        self.token = _policy(app, list(origins)) if origins else app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method == "OPTIONS":
            method = Headers(scope=scope).get("access-control-request-method", method)
        policy = self.public if is_public(method, scope["path"]) else self.token
        await policy(scope, receive, send)
