"""Commands that serve: migrate, run (everything in one process), api, worker, and the provider simulators."""

from __future__ import annotations

import asyncio
import json
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from paycenter.cli.common import audit, one_time_note, safe_url, with_db
from paycenter.config import Settings, get_settings
from paycenter.db import Database, utcnow
from paycenter.merchants import service as merchants
from paycenter.merchants.models import Merchant
from paycenter.migrate import upgrade
from paycenter.observability import configure_logging

if TYPE_CHECKING:
    from starlette.applications import Starlette

app = typer.Typer()


def _migrate(settings: Settings) -> None:
    asyncio.run(upgrade(settings.database_url))


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema to the newest version."""
    settings = get_settings()
    _migrate(settings)
    typer.echo(f"database is at the newest schema ({safe_url(settings.database_url)})")


async def _bootstrap(db: Database) -> tuple[tuple[Merchant, str] | None, str | None]:
    """On an empty database, a demo merchant (and its token) and a first admin (and its one-time
    password), so the product can be tried at once."""
    from paycenter.operators import service as admins
    from paycenter.operators.models import Role

    demo = admin_password = None
    async with db.transaction() as session:
        if not await merchants.any_merchant(session):
            merchant = await merchants.create_merchant(
                session, name="Demo shop", now=utcnow(), api_version=get_settings().default_api_version
            )
            issued = await merchants.issue_token(session, merchant_id=merchant.id, name="demo", now=utcnow())
            await audit(session, "merchant_create", merchant.id, token_id=issued.token.id, name=merchant.name)
            demo = (merchant, issued.secret)
        if not await admins.any_user(session):
            _, admin_password = await admins.create_user(session, username="admin", role=Role.ADMIN, now=utcnow())
            await audit(session, "admin_user_create", "admin", role=str(Role.ADMIN))
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
    demo, admin_password = with_db(_bootstrap, settings)
    typer.echo(f"paycenter: database {safe_url(settings.database_url)}")
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
        typer.echo(one_time_note())
    if settings.webhook_allowed_networks:
        typer.echo(
            f"Webhooks may reach these private networks: {settings.webhook_allowed_networks} "
            "(PAYCENTER_WEBHOOK_ALLOWED_NETWORKS; for local development only)"
        )
    typer.echo("")
    log_config = configure_logging(settings.log_level, log_format=settings.log_format)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_config=log_config,
        proxy_headers=True,
        timeout_graceful_shutdown=20,
    )


# uvicorn's supervisor (--workers above 1) pings every worker each half second and kills one that
# has not answered within `timeout_worker_healthcheck` s, uvicorn's default 5, then starts another.
# A new worker answers only from its pong thread, which it starts after multiprocessing's spawn has
# re-imported this console script's module (the whole CLI: sqlalchemy, pydantic, FastAPI..., about
# 1.3 s of CPU) in the child. On a busy host that took over 5 s: the worker was killed ("Child process
# died" 5.5 s after start, at load 7) and its replacement was as slow. A worker that has started
# answers at once, so a long timeout costs nothing while all is well; it only delays replacing a
# worker whose pong thread cannot run at all (the interpreter wedged), by this much.
WORKER_HEALTHCHECK_TIMEOUT = 60


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="API processes (uvicorn workers).")] = 1,
    worker_healthcheck_timeout: Annotated[
        int,
        typer.Option(
            min=1,
            help="Seconds a worker may take to answer the supervisor's health check, starting up included, "
            "before it is killed and replaced (with --workers above 1).",
        ),
    ] = WORKER_HEALTHCHECK_TIMEOUT,
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
    log_config = configure_logging(settings.log_level, log_format=settings.log_format)
    uvicorn.run(
        "paycenter.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        timeout_worker_healthcheck=worker_healthcheck_timeout,
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
    import gc
    import signal

    from paycenter.context import AppContext
    from paycenter.worker import Worker

    settings = get_settings()
    configure_logging(settings.log_level, log_format=settings.log_format)

    async def go() -> None:
        ctx = AppContext.from_settings(settings)
        w = Worker(ctx)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, w.request_stop)
        typer.echo(f"worker {w.id} on {safe_url(settings.database_url)}")
        # As the app does at start-up (app.py): what is loaded by now lives as long as the process,
        # so keep it out of the cyclic collector's walks. Measured with bench/webhooks.py, full
        # collections took about a quarter of the worker's CPU per delivery without this.
        gc.collect()
        gc.freeze()
        try:
            await w.run_forever()
        finally:
            await ctx.providers.close()
            await ctx.db.dispose()

    asyncio.run(go())


BILLER_SCENARIOS = ("happy", "retries", "wrong-sum", "twice")


@app.command()
def simulate(
    provider: Annotated[
        str,
        typer.Argument(help="kaspi-qr or kaspi-pos: serve that simulator. kaspi-biller: act as Kaspi and call --url."),
    ],
    host: Annotated[str, typer.Option(help="kaspi-qr, kaspi-pos: interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="kaspi-qr, kaspi-pos: port to listen on.")] = 8100,
    url: Annotated[
        str | None,
        typer.Option(help="kaspi-biller: the merchant's biller URL, e.g. http://127.0.0.1:8000/kaspi/biller."),
    ] = None,
    account: Annotated[str | None, typer.Option(help="kaspi-biller: the account the payer types.")] = None,
    amount: Annotated[
        str | None, typer.Option(help="kaspi-biller: the sum to pay, e.g. 1500.00 (default: what the check states).")
    ] = None,
    scenario: Annotated[
        str,
        typer.Option(
            help="kaspi-biller: happy (check, then pay); retries (check, then --concurrent copies of one pay at once); "
            "wrong-sum (pay --delta more than the check states); twice (the same pay sent twice, one after "
            "the other)."
        ),
    ] = "happy",
    delta: Annotated[str, typer.Option(help="kaspi-biller, wrong-sum: added to the stated sum (negative: less).")] = (
        "1.00"
    ),
    concurrent: Annotated[int, typer.Option(min=1, max=500, help="kaspi-biller, retries: copies in flight.")] = 20,
    data1: Annotated[str | None, typer.Option(help="kaspi-biller: the shared value sent as data1.")] = None,
    local_address: Annotated[
        str | None,
        typer.Option(help="kaspi-biller: send from this local address (e.g. 127.0.0.2, outside an allow-list)."),
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="kaspi-biller: seconds to wait for each answer.")] = 15.0,
    retries: Annotated[
        int, typer.Option(min=0, help="kaspi-biller: times an unanswered pay is sent again (same txn_id).")
    ] = 3,
) -> None:
    """Serve a provider simulator (kaspi-qr, kaspi-pos), or play Kaspi calling a biller URL (kaspi-biller).

    kaspi-biller sends command=check, then command=pay, to --url as Kaspi does, and prints each reply.
    Exit 1: a request went unanswered (not HTTP 200 with a readable result), or repeats got different replies.
    """
    if provider == "kaspi-biller":
        if not url or not account:
            typer.echo("error: kaspi-biller needs --url and --account", err=True)
            raise typer.Exit(2)
        if scenario not in BILLER_SCENARIOS:
            typer.echo(f"error: --scenario must be one of {', '.join(BILLER_SCENARIOS)}", err=True)
            raise typer.Exit(2)
        ok = asyncio.run(
            _biller(
                url,
                account,
                amount=amount,
                scenario=scenario,
                delta=delta,
                n=concurrent,
                data1=data1,
                local_address=local_address,
                answer_timeout=timeout,
                retries=retries,
            )
        )
        raise typer.Exit(0 if ok else 1)

    import uvicorn

    make: Callable[[], Starlette]  # either simulator's factory, called with its defaults
    if provider == "kaspi-qr":
        from paycenter.simulators.kaspi_qr import create_app as make
    elif provider == "kaspi-pos":
        from paycenter.simulators.kaspi_pos import create_app as make
    else:
        typer.echo("error: PROVIDER must be kaspi-qr, kaspi-pos or kaspi-biller", err=True)
        raise typer.Exit(2)
    typer.echo(f"{provider} simulator on http://{host}:{port} (controls under /_sim)")
    uvicorn.run(make(), host=host, port=port, log_level="warning")


async def _biller(
    url: str,
    account: str,
    *,
    amount: str | None,
    scenario: str,
    delta: str,
    n: int,
    data1: str | None,
    local_address: str | None,
    answer_timeout: float,
    retries: int,
) -> bool:
    """One kaspi-biller scenario; prints every reply; True when all were answered (and repeats alike)."""
    from decimal import Decimal

    from paycenter.simulators.kaspi_biller import KaspiBiller, NoReply, Reply, format_sum, new_txn_id

    def show(label: str, reply: Reply) -> None:
        tries = f" after {reply.attempts} attempts" if reply.attempts > 1 else ""
        typer.echo(
            f"{label}: HTTP {reply.status}{tries} result={reply.result} txn_id={reply.txn_id} "
            f"prv_txn={reply.prv_txn} sum={reply.sum} comment={reply.comment!r}"
            + (f" fields={reply.fields}" if reply.fields else "")
        )
        typer.echo(f"  {reply.content_type or '-'}: {reply.body.decode('utf-8', 'replace')}")

    try:
        given = Decimal(format_sum(amount)) if amount is not None else None
        extra = Decimal(format_sum(delta))
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        return False
    async with KaspiBiller(
        url, data1=data1, local_address=local_address, timeout=answer_timeout, retries=retries
    ) as kaspi:
        try:
            checked = await kaspi.check(account)
            show("check", checked)
            due = given if given is not None else checked.sum
            if due is None:
                typer.echo("no pay sent: the check stated no sum and --amount is not given")
                return False
            if scenario == "wrong-sum":
                due += extra
            txn_id = new_txn_id()
            if scenario == "retries":
                replies = await kaspi.pay_concurrently(account, due, txn_id, n=n)
            elif scenario == "twice":
                replies = list(await kaspi.pay_twice(account, due, txn_id=txn_id))
            else:
                replies = [await kaspi.pay(account, due, txn_id=txn_id)]
        except NoReply as exc:
            typer.echo(f"no answer: {exc} ({exc.attempts} attempts)")
            return False
    if len(replies) == 1:
        show("pay", replies[0])
    else:
        distinct = {r.body for r in replies}
        show(f"pay x{len(replies)} (txn_id {txn_id}), first", replies[0])
        typer.echo(
            f"  {len(replies)} replies, {len(distinct)} distinct bodies"
            + (": every repeat got the same reply" if len(distinct) == 1 else ": the repeats got DIFFERENT replies")
        )
        if len(distinct) > 1:
            return False
    return checked.answered and all(r.answered for r in replies)
