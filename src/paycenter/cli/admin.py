"""``paycenter admin``: admin panel users."""

from __future__ import annotations

from typing import Annotated

import typer

from paycenter.cli.common import audit, one_time_note, with_db
from paycenter.db import Database, utcnow

app = typer.Typer(help="Admin panel users.", no_args_is_help=True)


@app.command("create-user")
def admin_create_user(
    name: str,
    role: Annotated[str, typer.Option(help="admin (everything) or viewer (read only)")] = "viewer",
) -> None:
    """Create an admin panel user; prints a one-time password."""
    from paycenter.operators import service as admins
    from paycenter.operators.models import Role

    if role not in (Role.ADMIN, Role.VIEWER):
        typer.echo("error: --role must be admin or viewer", err=True)
        raise typer.Exit(2)

    async def go(db: Database) -> str:
        async with db.transaction() as session:
            user, password = await admins.create_user(session, username=name, role=Role(role), now=utcnow())
            await audit(session, "admin_user_create", user.username, role=role)
            return password

    password = with_db(go)
    typer.echo(f"user {name} ({role}) created; one-time password: {password}")
    typer.echo(one_time_note(), err=True)


@app.command("reset-password")
def admin_reset_password(name: str) -> None:
    """Give a user a new one-time password (and end their sessions)."""
    from paycenter.operators import service as admins

    async def go(db: Database) -> str:
        async with db.transaction() as session:
            password = await admins.reset_password(session, username=name, now=utcnow())
            await audit(session, "admin_password_reset", name)
            return password

    typer.echo(f"new one-time password for {name}: {with_db(go)}")
    typer.echo(one_time_note(), err=True)


@app.command("unlock")
def admin_unlock(
    name: str,
    ip: Annotated[str | None, typer.Option(help="Also lift the lock of this client address.")] = None,
) -> None:
    """Lift a login lock (five wrong passwords lock a username and an address for 15 minutes)."""
    from paycenter.operators import service as admins

    async def go(db: Database) -> int:
        async with db.transaction() as session:
            cleared = await admins.unlock(session, username=name, ip=ip)
            await audit(session, "admin_unlock", name, address=ip, cleared=cleared)
            return cleared

    cleared = with_db(go)
    typer.echo(f"unlocked {name}" + (f" and {ip}" if ip else "") + ("" if cleared else " (was not locked)"))
