"""How an HTTP exchange with Kaspi fails, as the ProviderError kinds the loops act on: one map for
both Kaspi APIs, the partner API behind ``kaspi_qr`` and a terminal's local v2 API behind
``kaspi_pos``.

What a caller must know is whether the request can have been acted on:

- the connection was never made (``aiohttp.ClientConnectorError``: refused, no route, no such
  host), so the request never left and nothing was done. A terminal reports it as ``NotSent``
  (the payer goes to the next terminal, a refund leg is sent again later); the partner API keeps
  it a retryable ``ProviderError``, as every other failure to reach Kaspi;
- anything else in transport (a reset, a timeout, an answer cut short): the request may have
  arrived and the money moved, so a retryable ``ProviderError``, never ``NotSent``;
- an answer that is not JSON (a proxy's error page, a terminal without the path): the server
  answered, but not as the API does, so a retryable ``ProviderError``.

What the API itself says in a readable answer (Kaspi QR's ``StatusCode`` and HTTP 5xx, a
terminal's ``statusCode`` and 401/403) is each module's own protocol, kept there.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from paycenter.providers.base import NotSent, ProviderError

# How long an idle pooled connection is kept: less than the shortest idle timeout a server in front
# commonly has (uvicorn, Apache and Node.js close at 5 s; aiohttp's own default is 15 s). A
# connection the server has just closed, picked from the pool as its FIN is in flight, fails with
# a reset that cannot tell whether the request arrived: a payer's start would fail for nothing.
KEEPALIVE_SECONDS = 4.0


def connector(ssl: Any) -> aiohttp.TCPConnector:
    """The pool of a Kaspi client: no limit (a terminal or Kaspi bounds it), idle connections let
    go before the server lets them go."""
    return aiohttp.TCPConnector(limit=0, ssl=ssl, keepalive_timeout=KEEPALIVE_SECONDS)


# Every failure of the exchange itself, before an answer could be read (TimeoutError: the
# aiohttp.ClientTimeout of the session or the call).
TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)


def transport_error(
    exc: Exception, who: str, *, lost: str = "is unreachable", unsent_if_refused: bool = False
) -> ProviderError:
    """The kind of a failed exchange (one of ``TRANSPORT_ERRORS``, or an unreadable answer).
    ``who``: "Kaspi", "terminal T1"; ``lost``: what the message says happened to the request;
    ``unsent_if_refused``: a connection never made is ``NotSent`` (see the module's docstring)."""
    if unsent_if_refused and isinstance(exc, aiohttp.ClientConnectorError):
        return NotSent(f"{who} is unreachable: {exc}", code="unreachable")
    return ProviderError(f"{who} {lost}: {type(exc).__name__}: {exc}")


def not_an_answer(who: str, status: int, payload: Any, *, code: str | None = None) -> ProviderError:
    """An answer that is not the API's JSON object: ``payload`` None when the body is not JSON."""
    detail = "without JSON" if payload is None else "something that is not an object"
    return ProviderError(f"{who} answered HTTP {status} {detail}", code=code)
