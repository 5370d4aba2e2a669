"""``paycenter quarantine list|retry``: rows the background loops set aside, and their retry."""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from paycenter import crypto
from paycenter.config import Settings, get_settings
from paycenter.db import Database, utcnow
from paycenter.jobs import retries
from paycenter.quarantine import QuarantinedRow

T = TypeVar("T")


def _row(mark: QuarantinedRow) -> dict[str, object]:
    return {
        "loop": mark.loop,
        "row_id": mark.row_id,
        "payment_id": mark.payment_id,
        "reason": mark.reason,
        "failures": mark.failures,
        "since": mark.since.isoformat(),
        "last_failed_at": mark.last_failed_at.isoformat(),
    }


def line(mark: QuarantinedRow) -> str:
    """One mark for people: which loop, which row, since when, why."""
    payment = f" (payment {mark.payment_id})" if mark.payment_id and mark.payment_id != mark.row_id else ""
    return f"{mark.loop} {mark.row_id}{payment} since {mark.since.isoformat(timespec='seconds')}: {mark.reason}"


def _run(work: Callable[[Database, Settings], Awaitable[T]]) -> T:
    settings = get_settings()
    crypto.configure(settings.secret_keys)

    async def go() -> T:
        db = Database(settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
        try:
            return await work(db, settings)
        finally:
            await db.dispose()

    return asyncio.run(go())


def register(app: typer.Typer) -> None:
    quarantine_app = typer.Typer(
        help="Rows a background loop could not process and set aside, so it went on with the others.",
        no_args_is_help=True,
    )
    app.add_typer(quarantine_app, name="quarantine")

    @quarantine_app.command("list")
    def quarantine_list(
        loop: Annotated[str | None, typer.Option(help=f"Only this loop's: {', '.join(retries.LOOPS)}")] = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """What each loop set aside: the row, since when and why."""

        async def go(db: Database, _settings: Settings) -> list[QuarantinedRow]:
            async with db.reading() as session:
                return await retries.listed(session, loop=loop)

        marks = _run(go)
        if as_json:
            typer.echo(json.dumps([_row(m) for m in marks], ensure_ascii=False))
            return
        if not marks:
            typer.echo("nothing is quarantined")
        for mark in marks:
            typer.echo(line(mark))

    @quarantine_app.command("retry")
    def quarantine_retry(
        row_id: Annotated[
            str | None, typer.Argument(help="The row to retry (see `paycenter quarantine list`).")
        ] = None,
        all_rows: Annotated[
            bool, typer.Option("--all", help="Retry every quarantined row (of --loop, if given).")
        ] = False,
        loop: Annotated[str | None, typer.Option(help=f"Only this loop's: {', '.join(retries.LOOPS)}")] = None,
    ) -> None:
        """Put rows back in their loop once the cause is fixed; a row that fails again comes back here."""
        if (row_id is None) == (not all_rows):
            typer.echo("error: give a ROW_ID or --all", err=True)
            raise typer.Exit(2)
        if loop is not None and loop not in retries.LOOPS:
            typer.echo(f"error: --loop must be one of {', '.join(retries.LOOPS)}", err=True)
            raise typer.Exit(2)

        async def go(db: Database, settings: Settings) -> list[QuarantinedRow]:
            from paycenter.admin import service as admins

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

        done = _run(go)
        if row_id is not None and not done:
            typer.echo(f"error: {row_id} is not quarantined", err=True)
            raise typer.Exit(1)
        if not done:
            typer.echo("nothing to retry: no row is quarantined")
            return
        for mark in done:
            typer.echo(f"retrying {mark.loop} {mark.row_id}")
        typer.echo(f"{len(done)} row(s) back in their loops")
