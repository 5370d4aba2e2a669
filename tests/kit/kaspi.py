"""Kaspi end to end: the handle on both simulators, the app and its worker that the `kaspi`
fixture (conftest.py) yields, and small helpers around it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import func, select

from kit.api import MerchantCreds, create_payment
from kit.db import delivered_types, row_counts
from kit.sink import Sink, eventually
from paycenter.config import Settings
from paycenter.context import AppContext
from paycenter.db import Database
from paycenter.payments.models import Attempt, Refund, RefundLeg
from paycenter.providers.models import Terminal
from paycenter.webhooks.models import Delivery, DeliveryStatus
from paycenter.worker import Worker


@dataclass
class Kaspi:
    client: httpx.AsyncClient
    db: Database
    ctx: AppContext
    qr: Any  # the QR simulator's state
    pos: Any  # the POS simulator's state
    sink: Sink
    worker: Worker

    async def webhooks(self, pid: str, event: str | None = None) -> list[dict]:
        bodies = [json.loads(r.body) for r in self.sink.received]
        found = [b for b in bodies if b["transaction_id"] == pid and (event is None or b["event"] == event)]
        # In the payment's order (sequence), not in arrival order: deliveries run concurrently, so
        # two refunds' webhooks may arrive the other way round (CI saw it once on MariaDB).
        return sorted(found, key=lambda b: b["sequence"])

    async def wait_event(self, pid: str, event: str, count: int = 1) -> dict:
        async def check() -> list[dict]:
            got = await self.webhooks(pid, event)
            return got if len(got) >= count else []

        return (await eventually(check, timeout=10, what=f"{count} '{event}' webhook(s) for {pid}"))[-1]

    async def live(self, pid: str) -> Attempt:
        async def check() -> Attempt | None:
            async with self.db.reading() as session:
                return await session.scalar(select(Attempt).where(Attempt.payment_id == pid, Attempt.status == "live"))

        return await eventually(check, timeout=5, what=f"a live attempt on {pid}")

    async def start(self, pid: str, method: str = "kaspi_gold") -> httpx.Response:
        r = await self.client.post(f"/pay/{pid}/start", data={"method": method})
        assert r.status_code == 303, r.text
        return r

    async def payment(self, pid: str) -> dict:
        return (await self.client.get(f"/api/payment/{pid}")).json()["data"]

    async def delivered_types(self, pid: str) -> list[str]:
        return await delivered_types(self.db, pid)


async def new_payment(k: Kaspi, merchant: MerchantCreds, provider: str, amount: int = 500) -> str:
    data = await create_payment(k.client, merchant, provider=provider, amount=amount, webhook_url=k.sink.on("/hooks"))
    return data["transaction_id"]


def qr_id(attempt: Attempt) -> int:
    assert attempt.provider_ref is not None
    return int(attempt.provider_ref)


def settings(url: str, scheme: str, **extra: str) -> Settings:
    values = {"kaspi_qr_base_url": url, "kaspi_qr_scheme": scheme, "kaspi_qr_api_key": "test-api-key"}
    values["kaspi_qr_organization_bin"] = "123456789012"
    return Settings(_env_file=None, **(values | extra))  # type: ignore[call-arg]


# --- reading what Kaspi tests wait for --------------------------------------------------------


async def terminal_of(k: Kaspi, attempt: Attempt) -> str:
    async with k.db.reading() as session:
        return (await session.get(Terminal, attempt.terminal_id)).name


async def settled(k: Kaspi) -> dict[str, int]:
    """Row counts once no webhook is left to send (its attempt is written after the sink got it)."""

    async def quiet() -> dict[str, int] | None:
        async with k.db.reading() as session:
            waiting = await session.scalar(
                select(func.count()).select_from(Delivery).where(Delivery.status == DeliveryStatus.PENDING)
            )
        return None if waiting else await row_counts(k.db)

    return await eventually(quiet, timeout=10, what="every webhook delivered")


async def legs_of(k: Kaspi, refund_id: str) -> list[RefundLeg]:
    async with k.db.reading() as session:
        rows = await session.scalars(
            select(RefundLeg).where(RefundLeg.refund_id == refund_id).order_by(RefundLeg.amount)
        )
        return list(rows)


async def refund_row(k: Kaspi, refund_id: str, *statuses: str) -> Refund | None:
    async with k.db.reading() as session:
        refund = await session.get(Refund, refund_id, populate_existing=True)
    return refund if refund is not None and refund.status in statuses else None


async def settles(k: Kaspi, refund_id: str, *statuses: str) -> Refund:
    return await eventually(lambda: refund_row(k, refund_id, *statuses), timeout=10, what=f"refund {statuses}")
