"""``paycenter token``: merchant API tokens."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from paycenter.cli.common import audit, with_db
from paycenter.db import Database, utcnow
from paycenter.merchants import service as merchants

app = typer.Typer(help="Merchant API tokens.", no_args_is_help=True)


@app.command("create")
def token_create(
    merchant_id: str,
    name: Annotated[str, typer.Option(help="A label to tell tokens apart.")] = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Issue a new API token for a merchant (printed once, stored only as a hash)."""

    async def go(db: Database) -> merchants.IssuedToken:
        async with db.transaction() as session:
            issued = await merchants.issue_token(session, merchant_id=merchant_id, name=name[:100], now=utcnow())
            await audit(session, "token_create", issued.token.merchant_id, token_id=issued.token.id)
            return issued

    issued = with_db(go)
    if as_json:
        typer.echo(json.dumps({"token_id": issued.token.id, "merchant_id": merchant_id, "api_token": issued.secret}))
    else:
        typer.echo(f"token {issued.token.id}\napi token (shown only now): {issued.secret}")


@app.command("revoke")
def token_revoke(token_id: str) -> None:
    """Revoke a token: requests carrying it get 401 from now on."""

    async def go(db: Database) -> None:
        async with db.transaction() as session:
            token = await merchants.revoke_token(session, token_id=token_id, now=utcnow())
            await audit(session, "token_revoke", token.merchant_id, token_id=token.id)

    with_db(go)
    typer.echo(f"token {token_id} revoked")


@app.command("list")
def token_list(
    merchant_id: Annotated[str | None, typer.Argument(help="Only this merchant's tokens.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List tokens (prefix only: the tokens themselves are not stored)."""

    async def go(db: Database) -> list[Any]:
        async with db.reading() as session:
            return await merchants.list_tokens(session, merchant_id=merchant_id)

    rows = with_db(go)
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
