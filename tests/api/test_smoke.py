from __future__ import annotations

from kit.api import create_payment, sandbox


async def test_seed_flow(client, merchant):
    data = await create_payment(client, merchant)
    pid = data["transaction_id"]
    assert data["payment_url"] == f"http://pay.test/pay/{pid}"
    await sandbox(client, pid, amount="200", checkout_id="a")
    r = await client.get(f"/api/payment/{pid}")
    assert r.json()["data"]["status"] == "partially_paid"
    await sandbox(client, pid, checkout_id="b")
    r = await client.get(f"/api/payment/{pid}")
    assert r.json()["data"]["status"] == "paid"
