"""``paycenter webhooks``: webhook tools."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from paycenter.config import get_settings

app = typer.Typer(help="Webhook tools.", no_args_is_help=True)


@app.command("test")
def webhooks_test(
    url: str,
    event: Annotated[
        str, typer.Option(help="paid, partially_paid, cancelled, refunded, expired or refund_failed")
    ] = "paid",
    secret: Annotated[str | None, typer.Option(help="webhook_secret for X-Webhook-Signature")] = None,
    signing_secret: Annotated[str | None, typer.Option(help="whsec_ secret for webhook-signature")] = None,
) -> None:
    """Send a signed sample event to URL and show what came back (respects the SSRF guard)."""
    from paycenter.payments import samples

    settings = get_settings()
    if event not in samples.EVENT_TYPES:
        typer.echo(f"error: --event must be one of {', '.join(samples.EVENT_TYPES)}", err=True)
        raise typer.Exit(2)
    result = asyncio.run(
        samples.send_sample(settings, url=url, event_type=event, secret=secret, signing_secret=signing_secret)
    )
    if result.ok:
        typer.echo(f"delivered: HTTP {result.status} in {result.duration_ms} ms")
        return
    typer.echo(
        f"not delivered: {result.error_class}: {result.error} (HTTP {result.status or '-'}, {result.duration_ms} ms)",
        err=True,
    )
    raise typer.Exit(1)
