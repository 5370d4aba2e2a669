"""The ``paycenter`` command: serve, migrate, and manage merchants and their API tokens."""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy import func, select

from paycenter.config import Settings, get_settings
from paycenter.db import Database, utcnow
from paycenter.errors import ApiError
from paycenter.merchants import service as merchants
from paycenter.merchants.models import Merchant
from paycenter.migrate import upgrade
from paycenter.payments.schemas import check_http_url

app = typer.Typer(help="paycenter: self-hosted payment center.", no_args_is_help=True, add_completion=False)
merchant_app = typer.Typer(help="Merchants (the shops that take payments).", no_args_is_help=True)
token_app = typer.Typer(help="Merchant API tokens.", no_args_is_help=True)
app.add_typer(merchant_app, name="merchant")
app.add_typer(token_app, name="token")
webhooks_app = typer.Typer(help="Webhook tools.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")

T = TypeVar("T")


def _with_db(fn: Callable[[Database], Awaitable[T]], settings: Settings | None = None) -> T:
    settings = settings or get_settings()

    async def go() -> T:
        db = Database(settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
        try:
            return await fn(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(go())
    except ApiError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None


def _migrate(settings: Settings) -> None:
    asyncio.run(upgrade(settings.database_url))


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema to the newest version."""
    settings = get_settings()
    _migrate(settings)
    typer.echo(f"database is at the newest schema ({_safe_url(settings.database_url)})")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


async def _bootstrap(db: Database) -> tuple[Merchant, str] | None:
    """On an empty database, make a demo merchant so the product can be tried at once."""
    async with db.transaction() as session:
        if await session.scalar(select(func.count()).select_from(Merchant)):
            return None
        merchant = await merchants.create_merchant(session, name="Demo shop", now=utcnow())
        issued = await merchants.issue_token(session, merchant_id=merchant.id, name="demo", now=utcnow())
        return merchant, issued.secret


def _demo_curl(base: str, token: str) -> str:
    body = json.dumps(
        {
            "amount": 500,
            "currency": "KZT",
            "description": "Тестовый платеж",
            "metadata": {"user_id": "12345", "order_id": "TEST-001"},
        },
        ensure_ascii=False,
    )
    return (
        f"curl -X POST {base}/api/payment/init \\\n"
        f"  -H 'Content-Type: application/json' \\\n"
        f"  -H 'X-API-Token: {token}' \\\n"
        f"  -d {shlex.quote(body)}"
    )


@app.command()
def run(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Migrate the database and serve everything (API, payment page, docs) in one process."""
    import uvicorn

    from paycenter.app import create_app

    settings = get_settings()
    host = host or settings.host
    port = port or settings.port
    _migrate(settings)
    base = settings.public_url.rstrip("/") or f"http://{host}:{port}"
    demo = _with_db(_bootstrap, settings)
    typer.echo(f"paycenter: database {_safe_url(settings.database_url)}")
    if demo:
        merchant, token = demo
        typer.echo(
            f"\nCreated a demo merchant {merchant.name!r} ({merchant.id}).\n"
            f"Its API token (shown only now, keep it):\n\n    {token}\n\n"
            f"Try it:\n\n{_demo_curl(base, token)}\n"
        )
    else:
        typer.echo("Merchants exist already; `paycenter token create MERCHANT_ID` makes a new API token.")
    typer.echo(f"API docs: {base}/docs   OpenAPI: {base}/openapi.json")
    if settings.webhook_allowed_networks:
        typer.echo(
            f"Webhooks may reach these private networks: {settings.webhook_allowed_networks} "
            "(PAYCENTER_WEBHOOK_ALLOWED_NETWORKS; for local development only)"
        )
    typer.echo("")
    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level, proxy_headers=True)


@app.command()
def worker() -> None:
    """Run the background loops (webhook delivery, expiry) without the web server.

    Any number of workers may run against one database. SIGTERM finishes what is in flight,
    records it and gives back the worker's claims.
    """
    import signal

    from paycenter.context import AppContext
    from paycenter.worker import Worker

    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")

    async def go() -> None:
        ctx = AppContext.from_settings(settings)
        w = Worker(ctx)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, w.request_stop)
        typer.echo(f"worker {w.id} on {_safe_url(settings.database_url)}")
        try:
            await w.run_forever()
        finally:
            await ctx.db.dispose()

    asyncio.run(go())


@merchant_app.command("create")
def merchant_create(
    name: str,
    webhook_url: Annotated[str | None, typer.Option(help="Default webhook URL for its payments.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Create a merchant and print its first API token (shown only once)."""
    try:
        webhook_url = check_http_url(webhook_url, field="--webhook-url", max_length=500)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not name.strip() or len(name) > 200:
        typer.echo("error: NAME must be 1 to 200 characters", err=True)
        raise typer.Exit(2)

    async def go(db: Database) -> tuple[Merchant, str]:
        async with db.transaction() as session:
            merchant = await merchants.create_merchant(
                session, name=name.strip(), webhook_url=webhook_url, now=utcnow()
            )
            issued = await merchants.issue_token(session, merchant_id=merchant.id, name="default", now=utcnow())
            return merchant, issued.secret

    merchant, token = _with_db(go)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "merchant_id": merchant.id,
                    "name": merchant.name,
                    "api_token": token,
                    "webhook_signing_secret": merchant.signing_secret,
                }
            )
        )
    else:
        typer.echo(
            f"merchant {merchant.id} ({merchant.name})\n"
            f"api token (shown only now): {token}\n"
            f"webhook signing secret: {merchant.signing_secret}"
        )


@merchant_app.command("list")
def merchant_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List merchants."""

    async def go(db: Database) -> list[Merchant]:
        async with db.reading() as session:
            return await merchants.list_merchants(session)

    rows = _with_db(go)
    if as_json:
        typer.echo(json.dumps([{"merchant_id": m.id, "name": m.name, "webhook_url": m.webhook_url} for m in rows]))
        return
    for m in rows:
        typer.echo(f"{m.id}  {m.name}  {m.webhook_url or '-'}")


@token_app.command("create")
def token_create(
    merchant_id: str,
    name: Annotated[str, typer.Option(help="A label to tell tokens apart.")] = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Issue a new API token for a merchant (printed once, stored only as a hash)."""

    async def go(db: Database) -> merchants.IssuedToken:
        async with db.transaction() as session:
            return await merchants.issue_token(session, merchant_id=merchant_id, name=name[:100], now=utcnow())

    issued = _with_db(go)
    if as_json:
        typer.echo(json.dumps({"token_id": issued.token.id, "merchant_id": merchant_id, "api_token": issued.secret}))
    else:
        typer.echo(f"token {issued.token.id}\napi token (shown only now): {issued.secret}")


@token_app.command("revoke")
def token_revoke(token_id: str) -> None:
    """Revoke a token: requests carrying it get 401 from now on."""

    async def go(db: Database) -> None:
        async with db.transaction() as session:
            await merchants.revoke_token(session, token_id=token_id, now=utcnow())

    _with_db(go)
    typer.echo(f"token {token_id} revoked")


@token_app.command("list")
def token_list(
    merchant_id: Annotated[str | None, typer.Argument(help="Only this merchant's tokens.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List tokens (prefix only: the tokens themselves are not stored)."""

    async def go(db: Database) -> list[Any]:
        async with db.reading() as session:
            return await merchants.list_tokens(session, merchant_id=merchant_id)

    rows = _with_db(go)
    items = [
        {
            "token_id": t.id,
            "merchant_id": t.merchant_id,
            "name": t.name,
            "prefix": t.prefix,
            "created_at": t.created_at.isoformat(),
            "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
        }
        for t in rows
    ]
    if as_json:
        typer.echo(json.dumps(items))
        return
    for t in items:
        state = f"revoked {t['revoked_at']}" if t["revoked_at"] else "active"
        typer.echo(f"{t['token_id']}  {t['merchant_id']}  {t['prefix']}…  {t['name'] or '-'}  {state}")


@webhooks_app.command("test")
def webhooks_test(
    url: str,
    event: Annotated[str, typer.Option(help="paid, partially_paid, cancelled, refunded or expired")] = "paid",
    secret: Annotated[str | None, typer.Option(help="webhook_secret for X-Webhook-Signature")] = None,
    signing_secret: Annotated[str | None, typer.Option(help="whsec_ secret for webhook-signature")] = None,
) -> None:
    """Send a signed sample event to URL and show what came back (respects the SSRF guard)."""
    from paycenter.webhooks import samples

    settings = get_settings()
    if event not in samples.EVENT_TYPES:
        typer.echo(f"error: --event must be one of {', '.join(samples.EVENT_TYPES)}", err=True)
        raise typer.Exit(2)
    result = asyncio.run(
        samples.send_sample(settings, url=url, event_type=event, secret=secret, signing_secret=signing_secret)
    )
    if result.ok:
        typer.echo(f"delivered: HTTP {result.status} in {result.duration_ms} ms")
        return
    typer.echo(
        f"not delivered: {result.error_class}: {result.error} (HTTP {result.status or '-'}, {result.duration_ms} ms)",
        err=True,
    )
    raise typer.Exit(1)


def main() -> None:
    app()
