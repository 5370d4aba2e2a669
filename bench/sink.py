"""A fast webhook receiver for benchmarks, run as its own process on loopback.

POST /ep/<n> answers 200 at once and notes (webhook-id or a body hash, arrival time).
GET /stats returns what arrived; DELETE /stats forgets it.
"""

from __future__ import annotations

import argparse
import sys
import time

from aiohttp import web


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    arrivals: dict[str, float] = {}
    count = 0

    async def receive(request: web.Request) -> web.Response:
        nonlocal count
        await request.read()
        count += 1
        key = request.headers.get("webhook-id")
        if key:
            arrivals.setdefault(key, time.time())
        return web.Response(text="ok")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"count": count, "arrivals": arrivals})

    async def count_only(request: web.Request) -> web.Response:
        return web.json_response({"count": count, "distinct": len(arrivals)})

    async def reset(request: web.Request) -> web.Response:
        nonlocal count
        arrivals.clear()
        count = 0
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/ep/{n}", receive)
    app.router.add_get("/stats", stats)
    app.router.add_get("/count", count_only)
    app.router.add_delete("/stats", reset)

    async def announce(_app: web.Application) -> None:
        print("ready", flush=True)

    app.on_startup.append(announce)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, handle_signals=True)


if __name__ == "__main__":
    sys.exit(main())
