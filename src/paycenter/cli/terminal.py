"""``paycenter terminal``: the Kaspi Smart POS terminal pool (provider kaspi_pos)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from paycenter import contract
from paycenter.cli.common import audit, with_db
from paycenter.config import get_settings
from paycenter.db import Database, utcnow

app = typer.Typer(help="The Kaspi Smart POS terminal pool (provider kaspi_pos).", no_args_is_help=True)


def _check_terminal_urls(url: str, camera_url: str | None) -> None:
    for value, field in ((url, "--url"), (camera_url, "--camera-url")):
        try:
            contract.check_url(value, field=field, max_length=500)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None


@app.command("add")
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
            await audit(session, "terminal_add", terminal.id, name=name)
            return terminal

    terminal = with_db(go)
    typer.echo(f"terminal {terminal.id} ({terminal.name}) added")


@app.command("register")
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
                await audit(session, "terminal_register", terminal.id, name=name, client_name=client_name)
            try:
                info: dict[str, Any] | str = await provider.device_info(replace(registered, id=terminal.id))
            except ProviderError as exc:
                info = exc.message
        finally:
            await provider.close()
        return terminal, added, info

    try:
        terminal, added, info = with_db(go, settings)
    except ProviderError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    expires = terminal.token_expires_at.isoformat() if terminal.token_expires_at else "unknown (renewed when refused)"
    typer.echo(
        f"terminal {terminal.id} ({terminal.name}) {'added' if added else 'registered again'}; token expires {expires}"
    )
    typer.echo(f"device: {json.dumps(info, ensure_ascii=False) if isinstance(info, dict) else info}")


@app.command("list")
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
        for t in with_db(go)
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
            await audit(session, f"terminal_{'enable' if active else 'disable'}", terminal.id, name=terminal.name)

    with_db(go)
    typer.echo(f"terminal {name} {'enabled' if active else 'disabled'}")


@app.command("disable")
def terminal_disable(name: str) -> None:
    """Take a terminal out of the pool (an operation running on it finishes normally)."""
    _set_terminal(name, False)


@app.command("enable")
def terminal_enable(name: str) -> None:
    """Put a terminal back into the pool."""
    _set_terminal(name, True)


@app.command("check")
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
                    await audit(session, "terminal_check", terminal_id, health=checked.health, error=checked.error)

                checked = await devices.check(db, provider, terminal, now=utcnow(), audit=record)
                if checked.health == "ok":
                    lines.append(f"{terminal.name}: ok {json.dumps(checked.info, ensure_ascii=False)[:200]}")
                else:
                    lines.append(f"{terminal.name}: {checked.error}")
        finally:
            await provider.close()
        return lines

    for line in with_db(go, settings):
        typer.echo(line)
