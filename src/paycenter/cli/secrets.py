"""``paycenter secrets``: secrets at rest (PAYCENTER_SECRET_KEYS)."""

from __future__ import annotations

import typer

from paycenter import crypto
from paycenter.cli.common import audit, with_db
from paycenter.config import get_settings
from paycenter.db import Database

app = typer.Typer(help="Secrets at rest (PAYCENTER_SECRET_KEYS).", no_args_is_help=True)


@app.command("generate-key")
def secrets_generate_key() -> None:
    """Print a new key for PAYCENTER_SECRET_KEYS (put it first to encrypt with it)."""
    typer.echo(crypto.new_key())


@app.command("encrypt")
def secrets_encrypt(value: str) -> None:
    """Encrypt a setting's value (e.g. PAYCENTER_KASPI_QR_API_KEY) with the first key."""
    ring = crypto.configure(get_settings().secret_keys)
    if not ring.enabled:
        typer.echo("error: PAYCENTER_SECRET_KEYS is empty", err=True)
        raise typer.Exit(1)
    typer.echo(ring.seal(value))


@app.command("rotate")
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
            await audit(session, "secrets_rotate", rows=changed)
        return changed

    typer.echo(f"re-encrypted {with_db(go, settings)} row(s) with the first key")
