"""The web application: merchant API, payment page and docs, in one ASGI app."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from paycenter import docs, errors
from paycenter.admin import links as admin_links
from paycenter.admin import pages as admin_pages
from paycenter.api import biller as biller_api
from paycenter.api.events import ending_streams_on_exit
from paycenter.api.events import router as events_router
from paycenter.api.links import router as links_router
from paycenter.api.payer import router as payer_router
from paycenter.api.payments import router as payments_router
from paycenter.api.webhooks import router as webhooks_router
from paycenter.checkout.links import router as link_page_router
from paycenter.checkout.pages import router as checkout_router
from paycenter.checkout.pages import static_files
from paycenter.config import Settings, get_settings
from paycenter.context import AppContext
from paycenter.cors import Cors
from paycenter.jobs import heartbeats
from paycenter.middleware import ApiTrailingSlash, BodyLimit
from paycenter.observability import RequestContext, exposition
from paycenter.ratelimit import RateLimiter
from paycenter.worker import Worker

# A loop that has not gone round for this long is stuck (each normally cycles in about a second).
STALLED_AFTER = {"dispatcher": 30.0, "expirer": 30.0, "poller": 30.0, "cleanup": 120.0}

DESCRIPTION = """
Merchant API of paycenter. Authenticate with the `X-API-Token` header.

Every answer is an envelope `{"success": bool, "message": str, "data": ...}`; errors carry
`error.code` (stable, for programs) and `message` (for people). Amounts are sent as numbers in
major units (500 = 500 KZT) and returned as decimal strings (`"500.00"`).
Send an `Idempotency-Key` header with every POST to retry safely.
"""


def create_app(settings: Settings | None = None, *, ctx: AppContext | None = None) -> FastAPI:
    settings = settings or (ctx.settings if ctx else get_settings())
    context = ctx or AppContext.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = Worker(context) if settings.run_worker else None
        app.state.worker = worker
        if worker is not None:
            await worker.start()
        stop = asyncio.Event()
        syncing = asyncio.create_task(app.state.rate_limiter.run(stop), name="rate-limits")
        # What is loaded by now (modules, mappers, routes, schemas) lives as long as the process:
        # take it out of the cyclic collector's sight, so a full collection walks only what
        # requests allocate. Under bench/api.py's load, collections took ~9% of an API process's
        # CPU (perf), ~4% with this.
        gc.collect()
        gc.freeze()
        try:
            # Open event streams end at once when the server is asked to stop (uvicorn has set
            # its signal handlers by now; ours go before them).
            with ending_streams_on_exit(app):
                yield
        finally:
            stop.set()
            await syncing
            if worker is not None:
                await worker.stop()
            if ctx is None:  # we made it, we close it
                await context.providers.close()
                await context.db.dispose()

    app = FastAPI(
        title="paycenter",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # /docs is paycenter.docs (Scalar, served locally), not Swagger UI from a CDN
        redoc_url=None,
        openapi_tags=[
            {"name": "payments", "description": "Create, read, cancel and refund payments."},
            {"name": "webhooks", "description": "Delivery log, resends, the event feed and signing secrets."},
            {
                "name": "links",
                "description": "Payment links to send payers: one-off, or reusable with a fixed or chosen amount.",
            },
            {
                "name": "payer",
                "description": "Public calls of the payer's side, kept from the old API: start paying at Kaspi, "
                "record a visit, list the payment methods.",
            },
        ],
    )
    app.state.ctx = context
    app.state.rate_limiter = RateLimiter(context.db, clock=context.clock)
    errors.install(app)
    app.include_router(payments_router)
    app.include_router(payer_router)
    app.include_router(webhooks_router)
    app.include_router(links_router)
    app.include_router(events_router)
    if biller_api.ENABLED_BY in context.providers:
        # Kaspi's check/pay endpoint, at the path given to Kaspi; only where the provider is enabled.
        app.include_router(biller_api.router(settings.kaspi_biller_path))
    app.include_router(checkout_router)
    app.include_router(link_page_router)
    app.mount("/static", static_files(), name="static")
    app.mount("/admin/static", StaticFiles(directory=Path(admin_pages.__file__).parent / "static"), name="admin-static")
    admin_pages.install(app)
    app.include_router(admin_links.router)
    docs.install(app)
    app.add_middleware(ApiTrailingSlash)  # innermost: routing sees the trimmed path
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(Cors, origins=settings.cors_origin_list)  # outside BodyLimit: a 413 is readable too
    app.add_middleware(RequestContext)  # outermost: every answer gets its request id and metrics

    gauges_cache: dict[str, Any] = {"at": 0.0, "value": {}}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus exposition: request, webhook, poller and provider metrics, plus database facts
        (read at most every 5 s however often it is scraped)."""
        if time.monotonic() - gauges_cache["at"] > 5:
            gauges_cache["value"] = await _database_gauges(context)
            gauges_cache["at"] = time.monotonic()
        return Response(exposition(gauges_cache["value"]), media_type="text/plain; version=0.0.4")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        """The process is up (for liveness probes)."""
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        """Ready for traffic: the database answers, this process's loops go round (when it runs
        them), and overdue webhook deliveries stay below PAYCENTER_READY_MAX_BACKLOG."""
        report = await heartbeats.health(context.db, now=context.now())
        problems = []
        if not report.database:
            problems.append("database unreachable")
        worker = getattr(app.state, "worker", None)
        if worker is not None:
            for loop, lag in worker.loop_lags().items():
                if lag is not None and lag > STALLED_AFTER.get(loop, 30.0):
                    problems.append(f"{loop} loop stalled for {lag:.0f} s")
        if report.deliveries_due > settings.ready_max_backlog:
            problems.append(f"{report.deliveries_due} webhook deliveries overdue")
        body = {
            "status": "not ready" if problems else "ready",
            "problems": problems,
            "deliveries_due": report.deliveries_due,
            "workers_alive": sum(1 for w in report.workers if w["alive"]),
        }
        return JSONResponse(body, status_code=503 if problems else 200)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    return app


async def _database_gauges(ctx: AppContext) -> dict[str, Any]:
    from sqlalchemy import func, select

    from paycenter.payments.models import Payment
    from paycenter.quarantine import Loop

    loops = [loop.value for loop in Loop]

    async with ctx.db.reading() as session:
        by_status = dict((await session.execute(select(Payment.status, func.count()).group_by(Payment.status))).all())
    report = await heartbeats.health(ctx.db, now=ctx.now())
    return {
        "paycenter_payments": ("Payments by status", {(("status", k),): v for k, v in by_status.items()}),
        "paycenter_webhook_backlog": (
            "Webhook deliveries waiting",
            {(("state", "pending"),): report.deliveries_pending, (("state", "due"),): report.deliveries_due},
        ),
        "paycenter_webhook_oldest_due_seconds": (
            "Age of the oldest overdue delivery",
            {(): report.oldest_due_seconds or 0},
        ),
        "paycenter_live_attempts": ("Attempts live at a provider", {(): report.live_attempts}),
        "paycenter_workers_alive": (
            "Worker processes seen in the last 20 s",
            {(): sum(w["alive"] for w in report.workers)},
        ),
        "paycenter_quarantined_rows": (
            "Rows a background loop set aside until an operator retries them",
            {(("loop", loop),): report.quarantined_by_loop.get(loop, 0) for loop in loops},
        ),
    }
