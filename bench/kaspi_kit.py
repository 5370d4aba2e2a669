"""Shared set-up for the Kaspi benchmarks: a simulator process (QR or terminals), a database, live payments."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import aiohttp

from bench.webhooks import BODY, POLICY, drop_database, free_port, fresh_database, make_merchant
from paycenter.config import Settings
from paycenter.context import AppContext
from paycenter.db import Database, utcnow
from paycenter.merchants.models import Merchant
from paycenter.payments import attempts, service
from paycenter.payments.schemas import PaymentInit
from paycenter.providers import terminals
from paycenter.providers.registry import Providers
from paycenter.webhooks.ssrf import parse_networks

PAYCENTER = Path(sys.executable).with_name("paycenter")
API_KEY = "test-api-key"
# provider -> (`paycenter simulate` argument, a control path that answers 200 once it serves)
SIMULATORS = {"kaspi_qr": ("kaspi-qr", "/_sim/payments"), "kaspi_pos": ("kaspi-pos", "/_sim/terminals")}


async def start_simulator(provider: str = "kaspi_qr") -> tuple[subprocess.Popen[bytes], str]:
    """`paycenter simulate kaspi-qr|kaspi-pos` in its own process (it must not share our CPU time)."""
    which, probe = SIMULATORS[provider]
    port = free_port()
    proc = subprocess.Popen(
        [str(PAYCENTER), "simulate", which, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(200):  # bounded: at most ~20 s
            try:
                async with session.get(f"{url}{probe}") as r:
                    if r.status == 200:
                        return proc, url
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    proc.kill()
    raise RuntimeError("simulator did not start")


async def register_device(sim_url: str) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{sim_url}/r1/v01/device/register",
            json={"DeviceId": "bench", "TradePointId": 1},
            headers={"Api-Key": API_KEY, "X-Request-ID": uuid.uuid4().hex},
        ) as r,
    ):
        return str((await r.json())["Data"]["DeviceToken"])


def kaspi_settings(url: str, provider: str, sim_url: str, device_token: str = "") -> Settings:
    qr = {"kaspi_qr_base_url": sim_url, "kaspi_qr_api_key": API_KEY, "kaspi_qr_device_token": device_token}
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=url,
        run_worker=False,
        enabled_providers=f"sandbox,{provider}",
        webhook_allowed_networks="127.0.0.0/8",
        **(qr if provider == "kaspi_qr" else {}),
    )


def worker_env(settings: Settings) -> dict[str, str]:
    """A `paycenter worker`'s environment: every setting this process has that is not a default."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYCENTER_")}
    env |= {f"PAYCENTER_{k.upper()}": str(v) for k, v in settings.model_dump(exclude_unset=True).items()}
    env["PAYCENTER_LOG_LEVEL"] = "warning"
    return env


async def add_terminals(db: Database, sim_url: str, count: int) -> None:
    """``count`` terminals at the simulator (each with its token issued) and the same in the pool."""
    names = [f"B{n:03d}" for n in range(count)]
    async with aiohttp.ClientSession() as session:
        for name in names:
            async with session.post(f"{sim_url}/_sim/terminals", json={"name": name, "token": f"token-{name}"}) as r:
                assert r.status == 200, await r.text()
    async with db.transaction() as session:
        for name in names:
            await terminals.add(
                session,
                name=name,
                base_url=f"{sim_url}/terminals/{name}",
                access_token=f"token-{name}",
                camera_url=None,
                now=utcnow(),
            )


async def live_payments(
    ctx: AppContext, merchant_id: str, count: int, webhook_url: str | None, provider: str = "kaspi_qr"
) -> list[str]:
    """``count`` payments, each with a live QR at the simulator (kaspi_pos: a terminal running it)."""
    data = PaymentInit.model_validate({**BODY, "webhook_url": webhook_url})
    policy = POLICY.__class__(
        max_amount=POLICY.max_amount,
        default_expires_in=3600,
        providers=ctx.providers.names(),
        webhook_networks=parse_networks("127.0.0.0/8"),  # its webhook sink listens on loopback
    )
    ids: list[str] = []
    async with ctx.db.transaction() as session:
        merchant = await session.get(Merchant, merchant_id)
        assert merchant is not None
        for _ in range(count):
            payment = await service.create_payment(
                session,
                merchant=merchant,
                data=data.model_copy(update={"provider": provider}),
                policy=policy,
                now=utcnow(),
            )
            ids.append(payment.id)
    sem = asyncio.Semaphore(20)

    async def start(pid: str) -> None:
        async with sem:
            await attempts.start(ctx.db, ctx.providers, payment_id=pid, method_code="kaspi_gold", clock=ctx.clock)

    await asyncio.gather(*(start(pid) for pid in ids))
    return ids


class Setup:
    """Everything a Kaspi benchmark needs, torn down in reverse. ``provider`` kaspi_qr, or kaspi_pos
    with ``terminals`` terminals in the simulator and in the pool."""

    def __init__(self, kind: str, provider: str = "kaspi_qr", terminals: int = 0) -> None:
        self.kind = kind
        self.provider = provider
        self.terminals = terminals

    async def __aenter__(self) -> Setup:
        self.sim, self.sim_url = await start_simulator(self.provider)
        self.workdir = Path(tempfile.mkdtemp(prefix="paycenter-bench-"))
        self.url = await fresh_database(self.kind, self.workdir)
        device_token = await register_device(self.sim_url) if self.provider == "kaspi_qr" else ""
        self.settings = kaspi_settings(self.url, self.provider, self.sim_url, device_token)
        self.ctx = AppContext(settings=self.settings, db=Database(self.url), providers=Providers(self.settings))
        self.merchant_id = await make_merchant(self.ctx.db)
        await add_terminals(self.ctx.db, self.sim_url, self.terminals)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ctx.providers.close()
        await self.ctx.db.dispose()
        await drop_database(self.kind, self.url)
        self.sim.terminate()
        self.sim.wait(timeout=10)
