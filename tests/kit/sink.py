"""A merchant's webhook endpoint for tests: a real aiohttp server on loopback that records every
request and answers as each path is told to (ok, fail N times, always fail, hang, redirect)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from aiohttp import web

T = TypeVar("T")


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() on arrival


@dataclass
class Sink:
    host: str = "127.0.0.1"
    port: int = 0
    received: list[Received] = field(default_factory=list)
    # path -> list of statuses to answer in turn (the last one repeats); default 200
    script: dict[str, list[int]] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    bodies: dict[str, str] = field(default_factory=dict)  # path -> answer body
    release_hang: asyncio.Event = field(default_factory=asyncio.Event)
    delay: float = 0.0  # seconds each answer takes: a slow endpoint
    answering: int = 0  # requests received and not yet answered (in flight at the sender)
    _runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    def on(self, path: str, *statuses: int, headers: dict[str, str] | None = None) -> str:
        self.script[path] = list(statuses) or [200]
        if headers:
            self.headers[path] = headers
        return self.url(path)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(Received(request.path, dict(request.headers), body, time.time()))
        self.answering += 1
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if request.path.startswith("/hang"):
                await self.release_hang.wait()
        finally:
            self.answering -= 1
        statuses = self.script.get(request.path, [200])
        status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        text = self.bodies.get(request.path, "ok" if status < 300 else "nope")
        return web.Response(status=status, text=text, headers=self.headers.get(request.path))

    async def start(self) -> Sink:
        app = web.Application(client_max_size=1024**2)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()
        return self

    async def stop(self) -> None:
        self.release_hang.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None  # stopping twice is harmless
            await runner.cleanup()


async def wait_until(
    condition: Callable[[], bool], *, timeout: float, step: float = 0.02, what: str = "condition"
) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds (never sleep-and-hope)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(step)


async def eventually(check: Callable[[], Awaitable[T]], *, timeout: float, what: str, step: float = 0.02) -> T:
    """Await ``check()`` until it returns something truthy, and return that; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(step)
