"""``paycenter payment-method``: payment methods and their bank fees."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from paycenter.cli.common import audit, with_db
from paycenter.db import Database

app = typer.Typer(help="Payment methods and their bank fees.", no_args_is_help=True)


@app.command("list")
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
        for m in with_db(go)
    ]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    for m in rows:
        who = "payer" if m["payer_covers_fee"] else "merchant"
        typer.echo(f"{m['code']:<22} {m['fee_percent']:>6.2f}%  fee paid by {who}  {'' if m['active'] else 'inactive'}")


@app.command("set")
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
            await audit(session, "payment_method_set", code, **changes)

    with_db(go)
    typer.echo(f"payment method {code} updated")
