"""The web application: merchant API, payment page and docs, in one ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from paycenter import docs, errors
from paycenter.admin import pages as admin_pages
from paycenter.checkout.pages import router as checkout_router
from paycenter.checkout.pages import static_files
from paycenter.config import Settings, get_settings
from paycenter.context import AppContext
from paycenter.jobs import heartbeats
from paycenter.middleware import BodyLimit
from paycenter.payments.api import router as payments_router
from paycenter.webhooks.api import router as webhooks_router
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
        try:
            yield
        finally:
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
        openapi_tags=[
            {"name": "payments", "description": "Create, read, cancel and refund payments."},
            {"name": "webhooks", "description": "Delivery log, resends, the event feed and signing secrets."},
        ],
    )
    app.state.ctx = context
    errors.install(app)
    app.include_router(payments_router)
    app.include_router(webhooks_router)
    app.include_router(checkout_router)
    app.mount("/static", static_files(), name="static")
    app.mount("/admin/static", StaticFiles(directory=Path(admin_pages.__file__).parent / "static"), name="admin-static")
    admin_pages.install(app)
    docs.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

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
