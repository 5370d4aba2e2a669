"""Outbound clients let an idle connection go before the server at the other end does.

A server closes an idle keep-alive connection after its own timeout (uvicorn, Apache and Node.js:
5 s). A client that keeps it longer (aiohttp's default: 15 s) sometimes picks it from its pool as
the server's FIN is in flight: the request fails with a reset, a webhook waits for its next try
and a payer's Kaspi start fails for nothing (a chaos run on a loaded host met it). Both clients
here, the webhook sender and the Kaspi clients' pool, must open a fresh connection after an idle
gap the server would still allow, and reuse one while busy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from kit.asgi_server import serve
from paycenter.providers import kaspi_http
from paycenter.webhooks import sender as webhook_sender
from paycenter.webhooks.ssrf import parse_networks

SERVER_IDLE_TIMEOUT = 5.0  # uvicorn's default, as kit.asgi_server runs it


async def _ports_app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    """Answers each request with the client's port: one port, one connection."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    port = str(scope["client"][1]).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(port))]})
    await send({"type": "http.response.body", "body": port})


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with serve(_ports_app) as base:
        yield base + "/hook"


async def _kaspi_port(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as r:
        return await r.text()


async def test_the_kaspi_pool_lets_idle_connections_go_before_the_server(url: str) -> None:
    assert kaspi_http.KEEPALIVE_SECONDS < SERVER_IDLE_TIMEOUT
    async with aiohttp.ClientSession(connector=kaspi_http.connector(None)) as session:
        first = await _kaspi_port(session, url)
        assert await _kaspi_port(session, url) == first  # busy: the connection is reused
        await asyncio.sleep(kaspi_http.KEEPALIVE_SECONDS + 0.5)  # the idle gap is the subject here
        assert await _kaspi_port(session, url) != first  # idle: a fresh connection


async def test_the_webhook_sender_lets_idle_connections_go_before_the_receiver(url: str) -> None:
    assert webhook_sender.KEEPALIVE_SECONDS < SERVER_IDLE_TIMEOUT
    sender = webhook_sender.Sender(allowed_networks=parse_networks("127.0.0.0/8"))
    await sender.start()
    try:
        ports = []
        for pause in (0.0, 0.0, webhook_sender.KEEPALIVE_SECONDS + 0.5):
            await asyncio.sleep(pause)
            result = await sender.send(url, {"Content-Type": "application/json"}, b"{}")
            assert result.status == 200, result
            ports.append(result.response_body)
    finally:
        await sender.close()
    assert ports[0] == ports[1] != ports[2]
