"""A fast webhook receiver for benchmarks, run as its own process on loopback.

POST /ep/<n> answers 200 at once and notes (webhook-id, arrival time); with ?log=1 also the
event type and transaction id from the body.
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
    events: list[tuple[str, str, str, float]] = []  # (event type, transaction id, webhook-id, arrival)
    count = 0

    async def receive(request: web.Request) -> web.Response:
        nonlocal count
        await request.read()
        now = time.time()
        count += 1
        key = request.headers.get("webhook-id")
        if key and key not in arrivals:
            arrivals[key] = now
            if request.query.get("log"):
                body = await request.json()
                events.append((body.get("event", ""), body.get("transaction_id", ""), key, now))
        return web.Response(text="ok")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"count": count, "arrivals": arrivals, "events": events})

    async def count_only(request: web.Request) -> web.Response:
        return web.json_response({"count": count, "distinct": len(arrivals)})

    async def reset(request: web.Request) -> web.Response:
        nonlocal count
        arrivals.clear()
        events.clear()
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
