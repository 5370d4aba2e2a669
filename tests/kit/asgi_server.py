"""Serve an ASGI app with uvicorn on loopback inside a test: real HTTP, a free port, no sleeps.

async with serve(app) as base_url:
    ...  # base_url is e.g. "http://127.0.0.1:53127" (no trailing slash)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Leave Ctrl-C to pytest: a test server must not swallow the runner's signals.
        yield


@contextlib.asynccontextmanager
async def serve(
    app: Any, *, host: str = "127.0.0.1", startup_timeout: float = 10.0, shutdown_timeout: float = 10.0
) -> AsyncIterator[str]:
    """Run `app` on `host` at a free port until the block ends; yield its base URL."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only then (otherwise Nagle plus
    # delayed ACKs cost ~40 ms a request).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="auto",
        # Requests still hanging at the end (a simulator told to go silent) are cancelled after this.
        timeout_graceful_shutdown=2,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if task.done():
                task.result()  # raises the startup error
                raise RuntimeError("uvicorn exited before it started")
            if time.monotonic() > deadline:
                raise TimeoutError(f"uvicorn did not start within {startup_timeout} s")
            await asyncio.sleep(0.005)
        url_host = f"[{host}]" if ":" in host else host
        yield f"http://{url_host}:{port}"
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, timeout=shutdown_timeout)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            sock.close()
