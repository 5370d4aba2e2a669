"""Commands an operator runs against the loops: a cleanup pass, the status report, one poller pass."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from paycenter.cli.common import audit, with_db
from paycenter.config import get_settings
from paycenter.db import Database, utcnow

app = typer.Typer()
ALMATY = ZoneInfo("Asia/Almaty")


@app.command()
def cleanup(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be removed; change nothing")] = False,
) -> None:
    """Remove unpaid expired and cancelled payments past their retention, as the daily run does."""
    from datetime import timedelta

    from paycenter.jobs import cleanup as job

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
                await audit(
                    session,
                    "cleanup_run",
                    removed=len(result.removed),
                    idempotency_keys_removed=result.idempotency_keys_removed,
                    stale_rows_removed=result.stale_rows_removed,
                )
        return result

    result = with_db(go, settings)
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

    report = with_db(lambda db: heartbeats.health(db, now=utcnow()))
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
    from paycenter.jobs.poller import Poller
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
