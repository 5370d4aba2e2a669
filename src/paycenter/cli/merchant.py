"""``paycenter merchant``: merchants (the shops that take payments)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from paycenter import contract, versions
from paycenter.cli.common import audit, with_db
from paycenter.config import get_settings
from paycenter.db import Database, utcnow
from paycenter.errors import ApiError
from paycenter.merchants import service as merchants
from paycenter.merchants.models import Merchant
from paycenter.money import to_major_str
from paycenter.webhooks.ssrf import check_webhook_url, parse_networks

app = typer.Typer(help="Merchants (the shops that take payments).", no_args_is_help=True)


@app.command("create")
def merchant_create(
    name: str,
    webhook_url: Annotated[str | None, typer.Option(help="Default webhook URL for its payments.")] = None,
    api_version: Annotated[
        str | None,
        typer.Option(
            help=f"API version its answers are rendered in ({', '.join(versions.VERSIONS)}); "
            "'legacy' for an integration written for the old PHP system. Default: "
            "PAYCENTER_DEFAULT_API_VERSION (the current version unless set)."
        ),
    ] = None,
    default_provider: Annotated[
        str | None,
        typer.Option(
            help="Provider of its payments when a request names none (sandbox, kaspi_qr, kaspi_pos); "
            "paycenter's default (sandbox) if omitted. Old integrations name none."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Create a merchant and print its first API token (shown only once)."""
    try:
        api_version = versions.check(api_version or get_settings().default_api_version)
        from paycenter.providers.registry import KNOWN as KNOWN_PROVIDERS  # providers load on demand

        if default_provider is not None and default_provider not in KNOWN_PROVIDERS:
            raise ValueError(f"--default-provider must be one of: {', '.join(KNOWN_PROVIDERS)}")
        webhook_url = check_webhook_url(
            contract.check_url(webhook_url.strip() if webhook_url else None, field="--webhook-url", max_length=500),
            parse_networks(get_settings().webhook_allowed_networks),
            field="--webhook-url",
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not name.strip() or len(name) > 200:
        typer.echo("error: NAME must be 1 to 200 characters", err=True)
        raise typer.Exit(2)

    async def go(db: Database) -> tuple[Merchant, str]:
        async with db.transaction() as session:
            merchant = await merchants.create_merchant(
                session,
                name=name.strip(),
                webhook_url=webhook_url,
                now=utcnow(),
                api_version=api_version,
                default_provider=default_provider,
            )
            issued = await merchants.issue_token(session, merchant_id=merchant.id, name="default", now=utcnow())
            await audit(
                session,
                "merchant_create",
                merchant.id,
                token_id=issued.token.id,
                name=merchant.name,
                webhook_url=webhook_url,
                api_version=api_version,
                default_provider=default_provider,
            )
            return merchant, issued.secret

    merchant, token = with_db(go)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "merchant_id": merchant.id,
                    "name": merchant.name,
                    "api_version": merchant.api_version,
                    "api_token": token,
                    "webhook_signing_secret": merchant.signing_secret,
                }
            )
        )
    else:
        typer.echo(
            f"merchant {merchant.id} ({merchant.name}), API version {merchant.api_version}\n"
            f"api token (shown only now): {token}\n"
            f"webhook signing secret: {merchant.signing_secret}"
        )


@app.command("list")
def merchant_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List merchants."""

    async def go(db: Database) -> list[Merchant]:
        async with db.reading() as session:
            return await merchants.list_merchants(session)

    rows = with_db(go)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "merchant_id": m.id,
                        "name": m.name,
                        "webhook_url": m.webhook_url,
                        "api_version": m.api_version,
                        "underpayment_tolerance": to_major_str(m.underpayment_tolerance, "KZT"),
                    }
                    for m in rows
                ]
            )
        )
        return
    for m in rows:
        tolerance = to_major_str(m.underpayment_tolerance, "KZT")
        typer.echo(f"{m.id}  {m.name}  {m.webhook_url or '-'}  api {m.api_version}  tolerance {tolerance}")


@app.command("api-version")
def merchant_api_version(
    merchant_id: str,
    version: Annotated[str, typer.Argument(help=f"One of {', '.join(versions.VERSIONS)}.")],
) -> None:
    """Pin a merchant to an API version: how its answers, errors and webhooks are rendered
    (docs/migrating.md). Takes effect on its next request."""
    try:
        version = versions.check(version)
    except versions.UnknownVersion as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    async def go(db: Database) -> tuple[str, str]:
        async with db.transaction() as session:
            before, after = await merchants.set_api_version(session, merchant_id=merchant_id, api_version=version)
            await audit(session, "merchant_api_version", merchant_id, before=before, after=after)
            return before, after

    before, after = with_db(go)
    typer.echo(f"merchant {merchant_id}: API version {before} -> {after}")


@app.command("tolerance")
def merchant_tolerance(
    merchant_id: str,
    amount: Annotated[str, typer.Argument(help="In major units, e.g. 10 (= 10 KZT); 0 for none.")],
) -> None:
    """Set how much a payment of this merchant may lack and still count as paid (the old system's
    10 KZT, which import-legacy keeps; 0 for new merchants). It stays short: remaining_amount says
    how much, and the paid webhook says payment_mismatch. Applies to money received from now on."""
    try:
        tolerance = merchants.checked_tolerance(merchants.tolerance_from_text(amount))
    except ApiError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None

    async def go(db: Database) -> tuple[int, int]:
        async with db.transaction() as session:
            before, after = await merchants.set_underpayment_tolerance(
                session, merchant_id=merchant_id, tolerance=tolerance
            )
            await audit(session, "merchant_tolerance", merchant_id, before=before, after=after)
            return before, after

    before, after = with_db(go)
    typer.echo(
        f"merchant {merchant_id}: underpayment tolerance {to_major_str(before, 'KZT')} -> {to_major_str(after, 'KZT')}"
    )
