"""The web application: merchant API, payment page and docs, in one ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from paycenter import errors
from paycenter.checkout.pages import router as checkout_router
from paycenter.checkout.pages import static_files
from paycenter.config import Settings, get_settings
from paycenter.context import AppContext
from paycenter.middleware import BodyLimit
from paycenter.payments.api import router as payments_router
from paycenter.webhooks.api import router as webhooks_router
from paycenter.worker import Worker

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
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    return app
