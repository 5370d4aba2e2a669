"""``paycenter kaspi-qr``: Kaspi Pay partner API set-up (provider kaspi_qr)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

import typer

from paycenter.config import get_settings

app = typer.Typer(help="Kaspi Pay partner API set-up (provider kaspi_qr).", no_args_is_help=True)
T = TypeVar("T")


@app.command("trade-points")
def kaspi_trade_points() -> None:
    """List the trade points Kaspi knows for your credentials."""
    from paycenter.providers.kaspi_qr import KaspiQrClient

    async def go() -> list[dict[str, Any]]:
        client = KaspiQrClient(get_settings())
        try:
            return await client.trade_points()
        finally:
            await client.close()

    for point in _run_kaspi(go):
        typer.echo(f"{point.get('TradePointId')}  {point.get('TradePointName')}")


@app.command("register-device")
def kaspi_register_device(
    trade_point: Annotated[int, typer.Option(help="TradePointId from `paycenter kaspi-qr trade-points`")],
    device_id: Annotated[str, typer.Option(help="Any stable name for this installation")] = "paycenter",
) -> None:
    """Register this installation as a device; prints the DeviceToken for PAYCENTER_KASPI_QR_DEVICE_TOKEN."""
    from paycenter.providers.kaspi_qr import KaspiQrClient

    async def go() -> str:
        client = KaspiQrClient(get_settings())
        try:
            return await client.register_device(device_id, trade_point)
        finally:
            await client.close()

    token = _run_kaspi(go)
    typer.echo(f"device token: {token}\nset PAYCENTER_KASPI_QR_DEVICE_TOKEN={token}")


def _run_kaspi(fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    from paycenter.providers.base import ProviderError

    try:
        return asyncio.run(fn())
    except ProviderError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
