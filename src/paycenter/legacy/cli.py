"""The ``paycenter import-legacy`` command: the old system's MySQL data into paycenter."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import make_url

from paycenter import crypto
from paycenter.config import get_settings
from paycenter.db import Database, utcnow
from paycenter.legacy.importer import LegacyImportError, Options, import_legacy
from paycenter.migrate import upgrade
from paycenter.operators import service as admins


def _counts(value: Any) -> Any:
    """An import's summary for its audit record: the lists of rows it names become their counts."""
    if isinstance(value, list):
        return len(value)
    if isinstance(value, dict):
        return {key: _counts(item) for key, item in value.items()}
    return value


async def _has_schema(db: Database) -> bool:
    async with db.engine.connect() as conn:
        return await conn.run_sync(lambda sync: sa_inspect(sync).has_table("payments"))


app = typer.Typer()


@app.command("import-legacy")
def import_legacy_command(
    source_url: Annotated[
        str,
        typer.Argument(help="The old system's database, e.g. mysql://user:password@127.0.0.1:3306/payments"),
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Read and count only; write nothing.")] = False,
    source_timezone: Annotated[str, typer.Option(help="Zone of the old naive local times.")] = Options.source_timezone,
    default_provider: Annotated[
        str,
        typer.Option(help="Provider of the imported merchants' new payments ('' keeps paycenter's default)."),
    ] = Options.default_provider or "",
    merchant_webhook_urls: Annotated[
        bool,
        typer.Option(
            "--merchant-webhook-urls",
            help="Make sources.webhook_url the merchants' default webhook URL (the old system never used it).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
) -> None:
    """Move the old PHP system's merchants (with their API tokens), terminals, transactions,
    partial payments, refunds and webhook logs into this paycenter database.

    The target is PAYCENTER_DATABASE_URL (migrated first). The old database is only read.
    Safe to run again: what is already here is left as it is. See docs/legacy-import.md.
    """
    settings = get_settings()
    options = Options(
        source_timezone=source_timezone,
        default_provider=default_provider or None,
        merchant_webhook_urls=merchant_webhook_urls,
        dry_run=dry_run,
    )

    # Webhook secrets, signing secrets and terminal tokens are written encrypted when keys are set.
    crypto.configure(settings.secret_keys)

    async def go() -> int:
        if not dry_run:
            await upgrade(settings.database_url)
        db = Database(settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
        try:
            if dry_run and not await _has_schema(db):
                typer.echo("error: the target database has no paycenter schema; run `paycenter migrate`", err=True)
                return 1
            report = await import_legacy(source_url, db, options=options)
            if not dry_run:
                # The import commits in batches: its record follows the last one.
                async with db.transaction() as session:
                    await admins.audit(
                        session,
                        actor=admins.cli_actor(),
                        action="legacy_import",
                        now=utcnow(),
                        target=make_url(source_url).render_as_string(hide_password=True)[:100],
                        **_counts(report.as_dict()),
                    )
        except LegacyImportError as exc:
            typer.echo(f"error: {exc}", err=True)
            return 1
        finally:
            await db.dispose()
        if options.default_provider and options.default_provider not in settings.providers:
            report.warnings.append(
                f"the imported merchants' default provider {options.default_provider!r} is not in "
                f"PAYCENTER_ENABLED_PROVIDERS ({settings.enabled_providers}): their new payments will be "
                "refused until it is enabled"
            )
        if as_json:
            typer.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
        else:
            source = make_url(source_url).render_as_string(hide_password=True)
            target = make_url(settings.database_url).render_as_string(hide_password=True)
            typer.echo(f"from {source}\ninto {target}")
            typer.echo("\n".join(report.lines()))
        return 0

    code = asyncio.run(go())
    if code:
        raise typer.Exit(code)
