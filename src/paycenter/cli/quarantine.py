"""``paycenter quarantine``: rows the background loops set aside."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from paycenter.cli.common import with_db
from paycenter.config import get_settings
from paycenter.db import Database, utcnow
from paycenter.quarantine import Loop

app = typer.Typer(
    help="Rows a background loop could not process and set aside, so it went on with the others.",
    no_args_is_help=True,
)
LOOPS_HELP = ", ".join(Loop)


@app.command("list")
def quarantine_list(
    loop: Annotated[str | None, typer.Option(help=f"Only this loop's: {LOOPS_HELP}")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """What each loop set aside: the row, since when and why."""
    from paycenter.jobs import retries

    async def go(db: Database) -> list[Any]:
        async with db.reading() as session:
            return await retries.listed(session, loop=loop)

    marks = with_db(go)
    if as_json:
        typer.echo(json.dumps([retries.as_dict(m) for m in marks], ensure_ascii=False))
        return
    if not marks:
        typer.echo("nothing is quarantined")
    for mark in marks:
        payment = f" (payment {mark.payment_id})" if mark.payment_id and mark.payment_id != mark.row_id else ""
        since = mark.since.isoformat(timespec="seconds")
        typer.echo(f"{mark.loop} {mark.row_id}{payment} since {since}, {mark.failures} failure(s): {mark.reason}")


@app.command("retry")
def quarantine_retry(
    row_id: Annotated[str | None, typer.Argument(help="The row to retry (see `paycenter quarantine list`).")] = None,
    all_rows: Annotated[bool, typer.Option("--all", help="Retry every quarantined row (of --loop, if given).")] = False,
    loop: Annotated[str | None, typer.Option(help=f"Only this loop's: {LOOPS_HELP}")] = None,
) -> None:
    """Put rows back in their loop once the cause is fixed; a row that fails again comes back here."""
    import getpass

    from paycenter.jobs import retries
    from paycenter.operators import service as admins

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

    done = with_db(go, settings)
    if row_id is not None and not done:
        typer.echo(f"error: {row_id} is not quarantined", err=True)
        raise typer.Exit(1)
    if not done:
        typer.echo("nothing to retry: no row is quarantined")
        return
    for mark in done:
        typer.echo(f"retrying {mark.loop} {mark.row_id}")
    typer.echo(f"{len(done)} row(s) back in their loops")
