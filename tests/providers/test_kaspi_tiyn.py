"""Tiyn through Kaspi (docs/kaspi.md, "Amounts with tiyn"): Kaspi charges whole tenge, so a try
asks what remains rounded up to the tenge (payments/fees.py::ask_for), the payment page shows that
sum, and what the payer actually paid is recorded whole: 1000.50 is asked as 1001, paying it makes
the payment paid with 0.50 over, which stays in paid_amount (and is refundable). Against the Kaspi
QR simulator, on every backend."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from kit.api import MerchantCreds, create_payment
from kit.kaspi import Kaspi, qr_id
from paycenter.merchants.models import Merchant

pytestmark = pytest.mark.parametrize("kaspi", ["r3"], indirect=True)  # r3 refunds directly


async def tiyn_payment(k: Kaspi, merchant: MerchantCreds) -> str:
    data = await create_payment(k.client, merchant, provider="kaspi_qr", amount="1000.50", webhook_url=k.sink.on("/h"))
    assert data["amount"] == "1000.50"
    return data["transaction_id"]


async def test_an_amount_with_tiyn_is_asked_in_whole_tenge_and_nothing_is_lost(kaspi: Kaspi, merchant):
    k = kaspi
    pid = await tiyn_payment(k, merchant)
    page = (await k.client.get(f"/pay/{pid}")).text
    # The payment's amount as the merchant set it; each method's button, what Kaspi will charge.
    assert 'data-testid="amount">1\u202f000,50\xa0₸<' in page
    assert 'data-testid="method-kaspi_gold">Kaspi Gold: 1\u202f001,00\xa0₸<' in page
    await k.start(pid)
    attempt = await k.live(pid)
    assert attempt.amount == 1001_00
    page = (await k.client.get(f"/pay/{pid}")).text
    assert 'data-testid="attempt-amount"' in page
    k.qr.confirm(qr_id(attempt))  # the payer pays what the QR asks
    body = await k.wait_event(pid, "paid")
    assert (body["amount"], body["paid_amount"], body["remaining_amount"]) == (1000.5, 1001, 0)
    assert body["payment_mismatch"] is False  # paid what was asked
    data = await k.payment(pid)
    assert (data["status"], data["amount"], data["paid_amount"], data["remaining_amount"]) == (
        "paid",
        "1000.50",
        "1001.00",
        "0.00",
    )
    # The 0.50 over is the payer's money, kept on the payment: a full refund returns all of it.
    r = await k.client.post(f"/api/payment/{pid}/refund")
    assert r.json()["data"]["refund"]["amount"] == "1001.00", r.text
    assert sum(float(p["Returned"]) for p in k.qr.payments()) == 1001


async def test_tiyn_left_after_a_part_are_asked_as_one_tenge(kaspi: Kaspi, merchant):
    k = kaspi
    pid = await tiyn_payment(k, merchant)
    await k.start(pid)
    k.qr.confirm(qr_id(await k.live(pid)), amount=1000)
    body = await k.wait_event(pid, "partially_paid")
    assert (body["paid_amount"], body["remaining_amount"]) == (1000, 0.5)
    await k.start(pid)
    attempt = await k.live(pid)
    assert attempt.amount == 1_00  # 0.50 remaining, asked as a whole tenge
    k.qr.confirm(qr_id(attempt))
    body = await k.wait_event(pid, "paid")
    assert (body["paid_amount"], body["remaining_amount"], body["status"]) == (1001, 0, "paid")


async def test_a_legacy_tolerance_covers_tiyn_left_unpaid(kaspi: Kaspi, merchant):
    """With the old system's 10 KZT, 1000 paid of 1000.50 is paid, and says it is 0.50 short."""
    k = kaspi
    async with k.db.transaction() as session:
        await session.execute(
            update(Merchant).where(Merchant.id == merchant.merchant_id).values(underpayment_tolerance=1000)
        )
    pid = await tiyn_payment(k, merchant)
    await k.start(pid)
    k.qr.confirm(qr_id(await k.live(pid)), amount=1000)
    body = await k.wait_event(pid, "paid")
    assert (body["paid_amount"], body["remaining_amount"], body["payment_mismatch"]) == (1000, 0.5, True)
