"""The ``paycenter`` command: serve, migrate, and manage merchants and their API tokens."""

from __future__ import annotations

import asyncio
import json
import shlex
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from paycenter import contract, crypto, versions
from paycenter.config import Settings, get_settings
from paycenter.db import Database, utcnow
from paycenter.errors import ApiError
from paycenter.merchants import service as merchants
from paycenter.merchants.models import Merchant
from paycenter.migrate import upgrade
from paycenter.money import to_major_str
from paycenter.observability import configure_logging
from paycenter.quarantine import Loop
from paycenter.webhooks.ssrf import check_webhook_url, parse_networks

if TYPE_CHECKING:
    from starlette.applications import Starlette

app = typer.Typer(help="paycenter: self-hosted payment center.", no_args_is_help=True, add_completion=False)
merchant_app = typer.Typer(help="Merchants (the shops that take payments).", no_args_is_help=True)
token_app = typer.Typer(help="Merchant API tokens.", no_args_is_help=True)
app.add_typer(merchant_app, name="merchant")
app.add_typer(token_app, name="token")
webhooks_app = typer.Typer(help="Webhook tools.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")
terminal_app = typer.Typer(help="The Kaspi Smart POS terminal pool (provider kaspi_pos).", no_args_is_help=True)
app.add_typer(terminal_app, name="terminal")
method_app = typer.Typer(help="Payment methods and their bank fees.", no_args_is_help=True)
app.add_typer(method_app, name="payment-method")
admin_app = typer.Typer(help="Admin panel users.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
kaspi_qr_app = typer.Typer(help="Kaspi Pay partner API set-up (provider kaspi_qr).", no_args_is_help=True)
app.add_typer(kaspi_qr_app, name="kaspi-qr")

T = TypeVar("T")
ALMATY = ZoneInfo("Asia/Almaty")


def _with_db(fn: Callable[[Database], Awaitable[T]], settings: Settings | None = None) -> T:
    settings = settings or get_settings()
    crypto.configure(settings.secret_keys)

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


async def _audit(session: AsyncSession, action: str, target: str | None = None, **details: Any) -> None:
    """A command's change in the audit log, in the change's own transaction, by ``cli:<os user>``."""
    from paycenter.admin import service as admins

    await admins.audit(session, actor=admins.cli_actor(), action=action, now=utcnow(), target=target, **details)


def _one_time_note() -> str:
    hours = get_settings().admin_one_time_password_ttl_seconds / 3600
    return (
        f"It is good for {hours:g} h (PAYCENTER_ADMIN_ONE_TIME_PASSWORD_TTL_SECONDS), and "
        "the first login asks the user to choose their own password."
    )


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


async def _bootstrap(db: Database) -> tuple[tuple[Merchant, str] | None, str | None]:
    """On an empty database, a demo merchant (and its token) and a first admin (and its one-time
    password), so the product can be tried at once."""
    from paycenter.admin import service as admins
    from paycenter.admin.models import Role

    demo = admin_password = None
    async with db.transaction() as session:
        if not await merchants.any_merchant(session):
            merchant = await merchants.create_merchant(
                session, name="Demo shop", now=utcnow(), api_version=get_settings().default_api_version
            )
            issued = await merchants.issue_token(session, merchant_id=merchant.id, name="demo", now=utcnow())
            await _audit(session, "merchant_create", merchant.id, token_id=issued.token.id, name=merchant.name)
            demo = (merchant, issued.secret)
        if not await admins.any_user(session):
            _, admin_password = await admins.create_user(session, username="admin", role=Role.ADMIN, now=utcnow())
            await _audit(session, "admin_user_create", "admin", role=str(Role.ADMIN))
    return demo, admin_password


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
    demo, admin_password = _with_db(_bootstrap, settings)
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
    typer.echo(f"API docs: {base}/docs   OpenAPI: {base}/openapi.json   Admin: {base}/admin")
    if admin_password:
        typer.echo(f"Created the first admin: user 'admin', one-time password: {admin_password}")
        typer.echo(_one_time_note())
    if settings.webhook_allowed_networks:
        typer.echo(
            f"Webhooks may reach these private networks: {settings.webhook_allowed_networks} "
            "(PAYCENTER_WEBHOOK_ALLOWED_NETWORKS; for local development only)"
        )
    typer.echo("")
    log_config = configure_logging(settings.log_level, json_lines=settings.log_format == "json")
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_config=log_config,
        proxy_headers=True,
        timeout_graceful_shutdown=20,
    )


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="API processes (uvicorn workers).")] = 1,
) -> None:
    """Serve the API, payment page and admin only (no background loops: run `paycenter worker`).

    Several processes share the port; SIGTERM lets each finish the requests it is serving.
    Migrate first (`paycenter migrate`): API processes never change the schema.
    """
    import os
    import tempfile

    import uvicorn

    # API processes run no background loops; the app factory (in this process with one worker,
    # in each child with several) reads the settings from the environment.
    os.environ["PAYCENTER_RUN_WORKER"] = "false"
    get_settings.cache_clear()
    settings = get_settings()
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # One /metrics for all processes: prometheus_client sums their files.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="paycenter-metrics-")
    log_config = configure_logging(settings.log_level, json_lines=settings.log_format == "json")
    uvicorn.run(
        "paycenter.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_config=log_config,
        proxy_headers=True,
        timeout_graceful_shutdown=20,
    )


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
    configure_logging(settings.log_level, json_lines=settings.log_format == "json")

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
            await ctx.providers.close()
            await ctx.db.dispose()

    asyncio.run(go())


@merchant_app.command("create")
def merchant_create(
    name: str,
    webhook_url: Annotated[str | None, typer.Option(help="Default webhook URL for its payments.")] = None,
    api_version: Annotated[
        str | None,
        typer.Option(
            help=f"API version its answers are rendered in ({', '.join(versions.VERSIONS)}); "
            "'legacy' for an integration written for the old PHP system. Default: "
            "PAYCENTER_DEFAULT_API_VERSION (the current version unless set)."
        ),
    ] = None,
    default_provider: Annotated[
        str | None,
        typer.Option(
            help="Provider of its payments when a request names none (sandbox, kaspi_qr, kaspi_pos); "
            "paycenter's default (sandbox) if omitted. Old integrations name none."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Create a merchant and print its first API token (shown only once)."""
    try:
        api_version = versions.check(api_version or get_settings().default_api_version)
        from paycenter.providers.registry import KNOWN as KNOWN_PROVIDERS  # providers load on demand

        if default_provider is not None and default_provider not in KNOWN_PROVIDERS:
            raise ValueError(f"--default-provider must be one of: {', '.join(KNOWN_PROVIDERS)}")
        webhook_url = check_webhook_url(
            contract.check_url(webhook_url.strip() if webhook_url else None, field="--webhook-url", max_length=500),
            parse_networks(get_settings().webhook_allowed_networks),
            field="--webhook-url",
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not name.strip() or len(name) > 200:
        typer.echo("error: NAME must be 1 to 200 characters", err=True)
        raise typer.Exit(2)

    async def go(db: Database) -> tuple[Merchant, str]:
        async with db.transaction() as session:
            merchant = await merchants.create_merchant(
                session,
                name=name.strip(),
                webhook_url=webhook_url,
                now=utcnow(),
                api_version=api_version,
                default_provider=default_provider,
            )
            issued = await merchants.issue_token(session, merchant_id=merchant.id, name="default", now=utcnow())
            await _audit(
                session,
                "merchant_create",
                merchant.id,
                token_id=issued.token.id,
                name=merchant.name,
                webhook_url=webhook_url,
                api_version=api_version,
                default_provider=default_provider,
            )
            return merchant, issued.secret

    merchant, token = _with_db(go)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "merchant_id": merchant.id,
                    "name": merchant.name,
                    "api_version": merchant.api_version,
                    "api_token": token,
                    "webhook_signing_secret": merchant.signing_secret,
                }
            )
        )
    else:
        typer.echo(
            f"merchant {merchant.id} ({merchant.name}), API version {merchant.api_version}\n"
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
        typer.echo(
            json.dumps(
                [
                    {
                        "merchant_id": m.id,
                        "name": m.name,
                        "webhook_url": m.webhook_url,
                        "api_version": m.api_version,
                        "underpayment_tolerance": to_major_str(m.underpayment_tolerance, "KZT"),
                    }
                    for m in rows
                ]
            )
        )
        return
    for m in rows:
        tolerance = to_major_str(m.underpayment_tolerance, "KZT")
        typer.echo(f"{m.id}  {m.name}  {m.webhook_url or '-'}  api {m.api_version}  tolerance {tolerance}")


@merchant_app.command("api-version")
def merchant_api_version(
    merchant_id: str,
    version: Annotated[str, typer.Argument(help=f"One of {', '.join(versions.VERSIONS)}.")],
) -> None:
    """Pin a merchant to an API version: how its answers, errors and webhooks are rendered
    (docs/migrating.md). Takes effect on its next request."""
    try:
        version = versions.check(version)
    except versions.UnknownVersion as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    async def go(db: Database) -> tuple[str, str]:
        async with db.transaction() as session:
            before, after = await merchants.set_api_version(session, merchant_id=merchant_id, api_version=version)
            await _audit(session, "merchant_api_version", merchant_id, before=before, after=after)
            return before, after

    before, after = _with_db(go)
    typer.echo(f"merchant {merchant_id}: API version {before} -> {after}")


@merchant_app.command("tolerance")
def merchant_tolerance(
    merchant_id: str,
    amount: Annotated[str, typer.Argument(help="In major units, e.g. 10 (= 10 KZT); 0 for none.")],
) -> None:
    """Set how much a payment of this merchant may lack and still count as paid (the old system's
    10 KZT, which import-legacy keeps; 0 for new merchants). It stays short: remaining_amount says
    how much, and the paid webhook says payment_mismatch. Applies to money received from now on."""
    try:
        tolerance = merchants.checked_tolerance(merchants.tolerance_from_text(amount))
    except ApiError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None

    async def go(db: Database) -> tuple[int, int]:
        async with db.transaction() as session:
            before, after = await merchants.set_underpayment_tolerance(
                session, merchant_id=merchant_id, tolerance=tolerance
            )
            await _audit(session, "merchant_tolerance", merchant_id, before=before, after=after)
            return before, after

    before, after = _with_db(go)
    typer.echo(
        f"merchant {merchant_id}: underpayment tolerance {to_major_str(before, 'KZT')} -> {to_major_str(after, 'KZT')}"
    )


@token_app.command("create")
def token_create(
    merchant_id: str,
    name: Annotated[str, typer.Option(help="A label to tell tokens apart.")] = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Issue a new API token for a merchant (printed once, stored only as a hash)."""

    async def go(db: Database) -> merchants.IssuedToken:
        async with db.transaction() as session:
            issued = await merchants.issue_token(session, merchant_id=merchant_id, name=name[:100], now=utcnow())
            await _audit(session, "token_create", issued.token.merchant_id, token_id=issued.token.id)
            return issued

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
            token = await merchants.revoke_token(session, token_id=token_id, now=utcnow())
            await _audit(session, "token_revoke", token.merchant_id, token_id=token.id)

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
    event: Annotated[
        str, typer.Option(help="paid, partially_paid, cancelled, refunded, expired or refund_failed")
    ] = "paid",
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


# --- Kaspi ------------------------------------------------------------------------------------


def _check_terminal_urls(url: str, camera_url: str | None) -> None:
    for value, field in ((url, "--url"), (camera_url, "--camera-url")):
        try:
            contract.check_url(value, field=field, max_length=500)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None


@terminal_app.command("add")
def terminal_add(
    name: str,
    url: Annotated[str, typer.Option(help="The terminal's local API, e.g. https://192.168.1.50:8080")],
    token: Annotated[str, typer.Option(help="Its access token")],
    camera_url: Annotated[str | None, typer.Option(help="Camera service URL that reads its screen's QR")] = None,
) -> None:
    """Add a terminal to the pool."""
    from paycenter.providers import terminals

    _check_terminal_urls(url, camera_url)

    async def go(db: Database) -> Any:
        async with db.transaction() as session:
            terminal = await terminals.add(
                session, name=name, base_url=url, access_token=token, camera_url=camera_url, now=utcnow()
            )
            await _audit(session, "terminal_add", terminal.id, name=name)
            return terminal

    terminal = _with_db(go)
    typer.echo(f"terminal {terminal.id} ({terminal.name}) added")


@terminal_app.command("register")
def terminal_register(
    name: str,
    url: Annotated[str, typer.Option(help="The terminal's local API, e.g. https://192.168.1.50:8080")],
    client_name: Annotated[
        str, typer.Option(help="The name the terminal shows and issues the tokens to (renewal needs the same)")
    ] = "paycenter",
    camera_url: Annotated[str | None, typer.Option(help="Camera service URL that reads its screen's QR")] = None,
) -> None:
    """Register paycenter with a terminal (/v2/register): approve the request on its screen.

    Adds the terminal to the pool, or gives a terminal of that name a new token pair (after its
    token expired while paycenter was down, or was refused). paycenter renews the pair itself
    from then on, before it expires.
    """
    from paycenter.providers import registry, terminals
    from paycenter.providers.base import ProviderError, TerminalRef

    _check_terminal_urls(url, camera_url)
    if not client_name.strip() or len(client_name) > 100:
        typer.echo("error: --client-name must be 1 to 100 characters", err=True)
        raise typer.Exit(2)
    settings = get_settings()

    async def go(db: Database) -> tuple[Any, bool, dict[str, Any] | str]:
        provider = registry.terminal_provider(settings, db)
        unregistered = TerminalRef(id="", name=name, base_url=url.rstrip("/"), access_token="")
        try:
            typer.echo(f"Asking {url} to register {client_name!r}: approve the request on the terminal's screen...")
            registered = await provider.register(unregistered, client_name)
            async with db.transaction() as session:
                terminal, added = await terminals.save_registration(
                    session, name=name, base_url=url, camera_url=camera_url, registered=registered, now=utcnow()
                )
                await _audit(session, "terminal_register", terminal.id, name=name, client_name=client_name)
            try:
                info: dict[str, Any] | str = await provider.device_info(replace(registered, id=terminal.id))
            except ProviderError as exc:
                info = exc.message
        finally:
            await provider.close()
        return terminal, added, info

    try:
        terminal, added, info = _with_db(go, settings)
    except ProviderError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    expires = terminal.token_expires_at.isoformat() if terminal.token_expires_at else "unknown (renewed when refused)"
    typer.echo(
        f"terminal {terminal.id} ({terminal.name}) {'added' if added else 'registered again'}; token expires {expires}"
    )
    typer.echo(f"device: {json.dumps(info, ensure_ascii=False) if isinstance(info, dict) else info}")


@terminal_app.command("list")
def terminal_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List terminals with their state."""
    from paycenter.providers import terminals

    async def go(db: Database) -> list[Any]:
        async with db.reading() as session:
            return await terminals.all_terminals(session)

    rows = [
        {
            "id": t.id,
            "name": t.name,
            "url": t.base_url,
            "active": t.is_active,
            "busy_with": t.busy_with,
            "health": t.health,
            "last_error": t.last_error,
            "client_name": t.client_name,
            "token_expires_at": t.token_expires_at.isoformat() if t.token_expires_at else None,
            "cancel_supported": t.cancel_supported,
        }
        for t in _with_db(go)
    ]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for t in rows:
        state = "busy" if t["busy_with"] else ("free" if t["active"] else "disabled")
        token = f"token until {t['token_expires_at']}" if t["token_expires_at"] else "static token"
        typer.echo(f"{t['id']}  {t['name']}  {t['url']}  {state}  health={t['health'] or '?'}  {token}")
        if t["last_error"]:
            typer.echo(f"    {t['last_error']}")


def _set_terminal(name: str, active: bool) -> None:
    from paycenter.providers import terminals

    async def go(db: Database) -> None:
        async with db.transaction() as session:
            terminal = await terminals.set_active(session, name_or_id=name, active=active)
            await _audit(session, f"terminal_{'enable' if active else 'disable'}", terminal.id, name=terminal.name)

    _with_db(go)
    typer.echo(f"terminal {name} {'enabled' if active else 'disabled'}")


@terminal_app.command("disable")
def terminal_disable(name: str) -> None:
    """Take a terminal out of the pool (an operation running on it finishes normally)."""
    _set_terminal(name, False)


@terminal_app.command("enable")
def terminal_enable(name: str) -> None:
    """Put a terminal back into the pool."""
    _set_terminal(name, True)


@terminal_app.command("check")
def terminal_check() -> None:
    """Ask every terminal for its device info and record its health."""
    from paycenter.providers import devices, registry, terminals

    settings = get_settings()

    async def go(db: Database) -> list[str]:
        provider = registry.terminal_provider(settings, db)
        lines = []
        try:
            async with db.reading() as session:
                pool = await terminals.all_terminals(session)
            for terminal in pool:

                async def record(
                    session: AsyncSession, checked: devices.Checked, terminal_id: str = terminal.id
                ) -> None:
                    await _audit(session, "terminal_check", terminal_id, health=checked.health, error=checked.error)

                checked = await devices.check(db, provider, terminal, now=utcnow(), audit=record)
                if checked.health == "ok":
                    lines.append(f"{terminal.name}: ok {json.dumps(checked.info, ensure_ascii=False)[:200]}")
                else:
                    lines.append(f"{terminal.name}: {checked.error}")
        finally:
            await provider.close()
        return lines

    for line in _with_db(go, settings):
        typer.echo(line)


@method_app.command("list")
def method_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Payment methods, their fee and who pays it."""
    from paycenter.payments import queries

    async def go(db: Database) -> list[Any]:
        async with db.reading() as session:
            return await queries.payment_methods(session)

    rows = [
        {
            "code": m.code,
            "name": m.name,
            "fee_percent": m.fee_bp / 100,
            "payer_covers_fee": m.payer_covers_fee,
            "active": m.is_active,
        }
        for m in _with_db(go)
    ]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    for m in rows:
        who = "payer" if m["payer_covers_fee"] else "merchant"
        typer.echo(f"{m['code']:<22} {m['fee_percent']:>6.2f}%  fee paid by {who}  {'' if m['active'] else 'inactive'}")


@method_app.command("set")
def method_set(
    code: str,
    fee: Annotated[float | None, typer.Option(help="Bank fee in percent, e.g. 1 or 14")] = None,
    payer_covers_fee: Annotated[
        bool | None, typer.Option("--payer-covers-fee/--merchant-covers-fee", help="Who carries the fee")
    ] = None,
    active: Annotated[bool | None, typer.Option("--active/--inactive")] = None,
) -> None:
    """Change a payment method's fee, who pays it, or whether payers see it."""
    from paycenter.payments import service as payments

    if fee is not None and not 0 <= fee < 100:
        typer.echo("error: --fee must be at least 0 and below 100 (percent)", err=True)
        raise typer.Exit(2)

    async def go(db: Database) -> None:
        async with db.transaction() as session:
            changes = await payments.set_method(
                session,
                code=code,
                fee_bp=None if fee is None else round(fee * 100),
                payer_covers_fee=payer_covers_fee,
                active=active,
            )
            await _audit(session, "payment_method_set", code, **changes)

    _with_db(go)
    typer.echo(f"payment method {code} updated")


@admin_app.command("create-user")
def admin_create_user(
    name: str,
    role: Annotated[str, typer.Option(help="admin (everything) or viewer (read only)")] = "viewer",
) -> None:
    """Create an admin panel user; prints a one-time password."""
    from paycenter.admin import service as admins
    from paycenter.admin.models import Role

    if role not in (Role.ADMIN, Role.VIEWER):
        typer.echo("error: --role must be admin or viewer", err=True)
        raise typer.Exit(2)

    async def go(db: Database) -> str:
        async with db.transaction() as session:
            user, password = await admins.create_user(session, username=name, role=Role(role), now=utcnow())
            await _audit(session, "admin_user_create", user.username, role=role)
            return password

    password = _with_db(go)
    typer.echo(f"user {name} ({role}) created; one-time password: {password}")
    typer.echo(_one_time_note(), err=True)


@admin_app.command("reset-password")
def admin_reset_password(name: str) -> None:
    """Give a user a new one-time password (and end their sessions)."""
    from paycenter.admin import service as admins

    async def go(db: Database) -> str:
        async with db.transaction() as session:
            password = await admins.reset_password(session, username=name, now=utcnow())
            await _audit(session, "admin_password_reset", name)
            return password

    typer.echo(f"new one-time password for {name}: {_with_db(go)}")
    typer.echo(_one_time_note(), err=True)


@admin_app.command("unlock")
def admin_unlock(
    name: str,
    ip: Annotated[str | None, typer.Option(help="Also lift the lock of this client address.")] = None,
) -> None:
    """Lift a login lock (five wrong passwords lock a username and an address for 15 minutes)."""
    from paycenter.admin import service as admins

    async def go(db: Database) -> int:
        async with db.transaction() as session:
            cleared = await admins.unlock(session, username=name, ip=ip)
            await _audit(session, "admin_unlock", name, address=ip, cleared=cleared)
            return cleared

    cleared = _with_db(go)
    typer.echo(f"unlocked {name}" + (f" and {ip}" if ip else "") + ("" if cleared else " (was not locked)"))


@kaspi_qr_app.command("trade-points")
def kaspi_trade_points() -> None:
    """List the trade points Kaspi knows for your credentials."""
    from paycenter.providers.kaspi_qr import KaspiQrClient

    async def go() -> list[dict[str, Any]]:
        client = KaspiQrClient(get_settings())
        try:
            return await client.trade_points()
        finally:
            await client.close()

    for point in _run_kaspi(go):
        typer.echo(f"{point.get('TradePointId')}  {point.get('TradePointName')}")


@kaspi_qr_app.command("register-device")
def kaspi_register_device(
    trade_point: Annotated[int, typer.Option(help="TradePointId from `paycenter kaspi-qr trade-points`")],
    device_id: Annotated[str, typer.Option(help="Any stable name for this installation")] = "paycenter",
) -> None:
    """Register this installation as a device; prints the DeviceToken for PAYCENTER_KASPI_QR_DEVICE_TOKEN."""
    from paycenter.providers.kaspi_qr import KaspiQrClient

    async def go() -> str:
        client = KaspiQrClient(get_settings())
        try:
            return await client.register_device(device_id, trade_point)
        finally:
            await client.close()

    token = _run_kaspi(go)
    typer.echo(f"device token: {token}\nset PAYCENTER_KASPI_QR_DEVICE_TOKEN={token}")


def _run_kaspi(fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    from paycenter.providers.base import ProviderError

    try:
        return asyncio.run(fn())
    except ProviderError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None


@app.command()
def simulate(
    provider: Annotated[str, typer.Argument(help="kaspi-qr or kaspi-pos")],
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8100,
) -> None:
    """Serve a provider simulator (the real protocol over HTTP) for demos and local testing."""
    import uvicorn

    make: Callable[[], Starlette]  # either simulator's factory, called with its defaults
    if provider == "kaspi-qr":
        from paycenter.simulators.kaspi_qr import create_app as make
    elif provider == "kaspi-pos":
        from paycenter.simulators.kaspi_pos import create_app as make
    else:
        typer.echo("error: PROVIDER must be kaspi-qr or kaspi-pos", err=True)
        raise typer.Exit(2)
    typer.echo(f"{provider} simulator on http://{host}:{port} (controls under /_sim)")
    uvicorn.run(make(), host=host, port=port, log_level="warning")


@app.command()
def cleanup(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be removed; change nothing")] = False,
) -> None:
    """Remove unpaid expired and cancelled payments past their retention, as the daily run does."""
    from datetime import timedelta

    from paycenter.payments import cleanup as job

    settings = get_settings()

    async def go(db: Database) -> job.CleanupResult:
        result = await job.run(
            db,
            now=utcnow(),
            retention=timedelta(seconds=settings.cleanup_retention_seconds),
            idempotency_ttl=timedelta(seconds=settings.idempotency_ttl_seconds),
            dry_run=dry_run,
        )
        if not dry_run:
            # The run deletes in batches, each its own transaction: the record follows the last.
            async with db.transaction() as session:
                await _audit(
                    session,
                    "cleanup_run",
                    removed=len(result.removed),
                    idempotency_keys_removed=result.idempotency_keys_removed,
                    stale_rows_removed=result.stale_rows_removed,
                )
        return result

    result = _with_db(go, settings)
    verb = "would remove" if dry_run else "removed"
    for payment_id in result.removed:
        typer.echo(f"{verb} {payment_id}")
    typer.echo(
        f"{verb} {len(result.removed)} payment(s); waiting for webhooks {result.waiting_for_webhooks}; "
        f"kept with money {result.kept_with_money}; idempotency keys removed {result.idempotency_keys_removed}"
    )


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Workers and their loops, lease holders, the webhook backlog and the last cleanup."""
    from dataclasses import asdict

    from paycenter.jobs import heartbeats

    report = _with_db(lambda db: heartbeats.health(db, now=utcnow()))
    if as_json:
        typer.echo(json.dumps(asdict(report), default=str))
        return
    typer.echo(f"database: {'ok' if report.database else 'UNREACHABLE'}")
    typer.echo("workers:")
    for w in report.workers or [{"id": "none"}]:
        if "host" not in w:
            typer.echo("  none")
            continue
        state = "alive" if w["alive"] else f"silent for {w['last_seen_seconds']} s"
        lags = ", ".join(f"{k} {v}s" for k, v in (w["loop_lag_seconds"] or {}).items() if v is not None)
        typer.echo(f"  {w['id']} ({state}) loop lag: {lags}")
    typer.echo("leases:")
    for lease in report.leases or [{"name": "none"}]:
        if "owner" not in lease:
            typer.echo("  none")
            continue
        held = f"held, {lease['expires_in_seconds']} s left" if lease["held"] else "lapsed"
        typer.echo(f"  {lease['name']}: {lease['owner']} ({held})")
    oldest = f", oldest overdue {report.oldest_due_seconds} s" if report.oldest_due_seconds is not None else ""
    typer.echo(f"webhook deliveries: {report.deliveries_pending} pending, {report.deliveries_due} due now{oldest}")
    typer.echo(f"live payment attempts: {report.live_attempts}")
    typer.echo(f"last cleanup: {json.dumps(report.last_cleanup) if report.last_cleanup else 'never'}")
    typer.echo(f"quarantined rows: {report.quarantined_total or 'none'}")
    for mark in report.quarantined:
        typer.echo(f"  {mark['loop']} {mark['row_id']} since {mark['since']}: {mark['reason']}")
    if report.quarantined_total:
        more = report.quarantined_total - len(report.quarantined)
        typer.echo((f"  ... and {more} more; " if more > 0 else "  ") + "`paycenter quarantine retry` after a fix")


@app.command("check-active-payments")
def check_active_payments(
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit (the only mode: the worker polls)")] = True,
) -> None:
    """Poll every live Kaspi attempt once, printing lines like the old cron script did."""
    from paycenter.context import AppContext
    from paycenter.payments.poller import Poller
    from paycenter.worker import worker_id

    settings = get_settings()

    def stamp() -> str:
        return utcnow().astimezone(ALMATY).strftime("[%Y-%m-%d %H:%M:%S]")

    async def go() -> None:
        ctx = AppContext.from_settings(settings)
        try:
            poller = Poller(ctx.db, ctx.providers, settings, owner=worker_id(), clock=ctx.clock)
            typer.echo("=== CHECK ACTIVE PAYMENTS - ONE PASS ===")
            report = await poller.cycle()
            typer.echo(f"{stamp()} Check #1: Found {report.live} active payment(s)")
            if report.ended or report.errors:
                typer.echo(f"{stamp()} Settled {report.ended}, provider errors {report.errors}")
            typer.echo(f"{stamp()} Completed after {report.seconds:.0f} seconds (1 checks)")
        finally:
            await ctx.providers.close()
            await ctx.db.dispose()

    asyncio.run(go())


# --- quarantine: rows the background loops set aside -------------------------------------------

quarantine_app = typer.Typer(
    help="Rows a background loop could not process and set aside, so it went on with the others.",
    no_args_is_help=True,
)
app.add_typer(quarantine_app, name="quarantine")
LOOPS_HELP = ", ".join(Loop)


@quarantine_app.command("list")
def quarantine_list(
    loop: Annotated[str | None, typer.Option(help=f"Only this loop's: {LOOPS_HELP}")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """What each loop set aside: the row, since when and why."""
    from paycenter.jobs import retries

    async def go(db: Database) -> list[Any]:
        async with db.reading() as session:
            return await retries.listed(session, loop=loop)

    marks = _with_db(go)
    if as_json:
        typer.echo(json.dumps([retries.as_dict(m) for m in marks], ensure_ascii=False))
        return
    if not marks:
        typer.echo("nothing is quarantined")
    for mark in marks:
        payment = f" (payment {mark.payment_id})" if mark.payment_id and mark.payment_id != mark.row_id else ""
        since = mark.since.isoformat(timespec="seconds")
        typer.echo(f"{mark.loop} {mark.row_id}{payment} since {since}, {mark.failures} failure(s): {mark.reason}")


@quarantine_app.command("retry")
def quarantine_retry(
    row_id: Annotated[str | None, typer.Argument(help="The row to retry (see `paycenter quarantine list`).")] = None,
    all_rows: Annotated[bool, typer.Option("--all", help="Retry every quarantined row (of --loop, if given).")] = False,
    loop: Annotated[str | None, typer.Option(help=f"Only this loop's: {LOOPS_HELP}")] = None,
) -> None:
    """Put rows back in their loop once the cause is fixed; a row that fails again comes back here."""
    import getpass

    from paycenter.admin import service as admins
    from paycenter.jobs import retries

    if (row_id is None) == (not all_rows):
        typer.echo("error: give a ROW_ID or --all", err=True)
        raise typer.Exit(2)
    if loop is not None and loop not in set(Loop):
        typer.echo(f"error: --loop must be one of {LOOPS_HELP}", err=True)
        raise typer.Exit(2)
    settings = get_settings()

    async def go(db: Database) -> list[Any]:
        now = utcnow()
        async with db.transaction() as session:
            done = await retries.retry_many(
                session, now=now, retries=len(settings.retry_schedule), loop=loop, row_id=row_id
            )
            for mark in done:
                await admins.audit(
                    session,
                    actor=f"cli:{getpass.getuser()}",
                    action="quarantine_retry",
                    now=now,
                    target=mark.row_id,
                    loop=mark.loop,
                    reason=mark.reason,
                )
        return done

    done = _with_db(go, settings)
    if row_id is not None and not done:
        typer.echo(f"error: {row_id} is not quarantined", err=True)
        raise typer.Exit(1)
    if not done:
        typer.echo("nothing to retry: no row is quarantined")
        return
    for mark in done:
        typer.echo(f"retrying {mark.loop} {mark.row_id}")
    typer.echo(f"{len(done)} row(s) back in their loops")


secrets_app = typer.Typer(help="Secrets at rest (PAYCENTER_SECRET_KEYS).", no_args_is_help=True)
app.add_typer(secrets_app, name="secrets")


@secrets_app.command("generate-key")
def secrets_generate_key() -> None:
    """Print a new key for PAYCENTER_SECRET_KEYS (put it first to encrypt with it)."""
    typer.echo(crypto.new_key())


@secrets_app.command("encrypt")
def secrets_encrypt(value: str) -> None:
    """Encrypt a setting's value (e.g. PAYCENTER_KASPI_QR_API_KEY) with the first key."""
    ring = crypto.configure(get_settings().secret_keys)
    if not ring.enabled:
        typer.echo("error: PAYCENTER_SECRET_KEYS is empty", err=True)
        raise typer.Exit(1)
    typer.echo(ring.seal(value))


@secrets_app.command("rotate")
def secrets_rotate() -> None:
    """Re-encrypt every stored secret with the first key of PAYCENTER_SECRET_KEYS.

    Run it after putting a new key first; then the old keys can be removed.
    """
    from paycenter.models import ENCRYPTED_COLUMNS

    settings = get_settings()
    if not crypto.configure(settings.secret_keys).enabled:
        typer.echo("error: PAYCENTER_SECRET_KEYS is empty: nothing to encrypt with", err=True)
        raise typer.Exit(1)

    async def go(db: Database) -> int:
        changed = await crypto.reseal(db, ENCRYPTED_COLUMNS)
        # Re-sealed in batches, each its own transaction: the record follows the last.
        async with db.transaction() as session:
            await _audit(session, "secrets_rotate", rows=changed)
        return changed

    typer.echo(f"re-encrypted {_with_db(go, settings)} row(s) with the first key")


def _register_extensions() -> None:
    """Commands that live beside their domain."""
    from paycenter import configcheck
    from paycenter.legacy import cli as legacy_cli

    legacy_cli.register(app)
    configcheck.register(app)


_register_extensions()


def main() -> None:
    app()
