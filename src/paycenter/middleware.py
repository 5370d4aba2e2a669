"""ASGI middleware that must see requests before FastAPI parses them."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paycenter.errors import error_body


class BodyLimit:
    """Refuse request bodies above ``max_bytes`` with 413, declared or streamed.

    Checked on the wire so an oversized body is never buffered or parsed.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, prefixes: tuple[str, ...] = ("/api/", "/pay/")) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._refuse(send)
                    return
        received = 0
        started = False
        too_large = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if too_large:
                # The app may catch _TooLarge and answer by itself (FastAPI turns any error while
                # reading the body into a 400): the 413 replaces whatever it says.
                if not started:
                    started = True
                    await self._refuse(send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            error_body("body_too_large", f"Request body must be at most {self.max_bytes // 1024} KiB"),
            separators=(",", ":"),
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class ApiTrailingSlash:
    """Serve ``/api/...`` paths written with trailing slashes (``/api/payment/init/``) as the path
    without them, instead of Starlette's 307 redirect: the old API took them (it dropped empty
    path segments), and PHP's curl does not follow redirects by default, let alone resend a POST.
    Other paths (``/docs``, ``/admin``, ``/pay``) keep Starlette's behaviour."""

    def __init__(self, app: ASGIApp, *, prefix: str = "/api/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith(self.prefix) and path.endswith("/"):
            trimmed = path.rstrip("/")
            if len(trimmed) >= len(self.prefix.rstrip("/")):
                scope = dict(scope)
                scope["path"] = trimmed
                raw = scope.get("raw_path")
                if isinstance(raw, bytes) and raw.endswith(b"/"):
                    scope["raw_path"] = raw.rstrip(b"/")
        await self.app(scope, receive, send)
