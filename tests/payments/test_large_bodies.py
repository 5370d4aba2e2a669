"""The largest payment the API takes is stored whole on every backend: its events' bodies and its
stored answers hold what the request allowed, escaped as the old system's PHP escaped it (a
Cyrillic letter, two bytes in the request, is six in a webhook body: ``\\u0410``)."""

from __future__ import annotations

import json

from sqlalchemy import select

from kit.api import INIT, SEED_BODY, sandbox
from paycenter.payments.models import Event
from paycenter.payments.schemas import METADATA_MAX_KEYS, METADATA_MAX_VALUE_LENGTH


def _largest_metadata() -> dict[str, str]:
    # Every key at its longest text, in Cyrillic: the most bytes a body's escaping makes.
    return {f"k{i:02d}": "Ж" * METADATA_MAX_VALUE_LENGTH for i in range(METADATA_MAX_KEYS)}


async def test_the_largest_metadata_is_stored_whole_in_events_and_answers(client, db, merchant):
    metadata = _largest_metadata()
    body = {**SEED_BODY, "metadata": metadata, "description": "Ж" * 1000, "customer_name": "Ж" * 200}
    request = json.dumps(body, ensure_ascii=False).encode()
    assert len(request) < 64 * 1024  # the API's body limit takes it
    created = await client.post(INIT, content=request, headers={**merchant.headers, "Content-Type": "application/json"})
    assert created.status_code == 201, created.text
    pid = created.json()["data"]["transaction_id"]
    await sandbox(client, pid)  # paid: the event's body is written now
    async with db.reading() as session:
        events = (await session.scalars(select(Event).where(Event.payment_id == pid))).all()
    paid = next(e for e in events if e.type == "paid")
    assert len(paid.body.encode()) > 65535, len(paid.body)  # more than a MariaDB TEXT column holds
    assert json.loads(paid.body)["metadata"] == metadata
    shown = await client.get(f"/api/transaction/{pid}", headers=merchant.headers)
    assert shown.status_code == 200 and shown.json()["data"]["metadata"] == metadata
