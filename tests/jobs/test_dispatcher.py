"""The dispatcher claims ahead of its send slots: what that must not change."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from kit.api import MerchantCreds, create_payment, sandbox
from kit.sink import wait_until
from paycenter.db import Database
from paycenter.jobs.dispatcher import Dispatcher
from paycenter.webhooks.models import Delivery, DeliveryAttempt
from paycenter.webhooks.sender import Sender, SendResult


class HeldSender(Sender):
    """Answers 200 to every request, but only once ``go`` is set; notes what it was given."""

    def __init__(self, clock) -> None:
        super().__init__(allowed_networks=[])
        self.clock = clock
        self.sent: list[str] = []
        self.go = asyncio.Event()

    async def send(self, url: str, headers: dict[str, str], body: bytes) -> SendResult:
        self.sent.append(headers["webhook-id"])
        await self.go.wait()
        return SendResult(started_at=self.clock(), duration_ms=1, status=200, response_headers={}, response_body="ok")


async def test_deliveries_waiting_for_a_send_slot_at_stop_are_given_back_unsent(
    client, db: Database, merchant: MerchantCreds, clock
):
    """With one send slot, three due deliveries are all claimed (one on the wire, two waiting for
    the slot). A stop finishes and records the one on the wire, sends neither of the others (no
    try, so no attempt row) and gives their leases back at once, so any worker sends them next."""
    for i in range(3):
        pid = (await create_payment(client, merchant, webhook_url="https://shop.example/hook"))["transaction_id"]
        await sandbox(client, pid, checkout_id=f"ahead{i}")
    sender = HeldSender(clock)
    dispatcher = Dispatcher(db, sender, owner="ahead-test", clock=clock, schedule=[60.0], max_in_flight=1)
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))
    await wait_until(
        lambda: dispatcher.in_flight == 3 and len(sender.sent) == 1, timeout=10, what="3 claimed, 1 on the wire"
    )

    stop.set()
    sender.go.set()
    await asyncio.wait_for(running, timeout=20)

    assert len(sender.sent) == 1
    async with db.reading() as session:
        rows = {d.event_id: d for d in await session.scalars(select(Delivery))}
        attempts = list(await session.scalars(select(DeliveryAttempt)))
    sent = rows.pop(sender.sent[0])
    assert (sent.status, sent.attempt_count, sent.lease_owner) == ("succeeded", 1, None)
    assert [a.delivery_id for a in attempts] == [sent.id]
    assert len(rows) == 2
    for unsent in rows.values():
        assert (unsent.status, unsent.attempt_count, unsent.lease_owner) == ("pending", 0, None)
        assert unsent.next_attempt_at is not None and unsent.next_attempt_at <= clock()
