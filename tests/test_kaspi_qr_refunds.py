"""Kaspi QR refunds per scheme (kaspi-qr-api.md §5; issue 12), end to end: the API and the admin,
the real worker and poller, the QR simulator over HTTP and a loopback webhook endpoint, on every
backend.

- r1 has no refund API: a refund is refused up front (409 in the API's envelope, the same words in
  the admin), with what the cashier can do instead, and nothing is written or sent.
- r3 refunds directly: test_kaspi.py and test_refund_retry.py.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from conftest import MerchantCreds, row_counts
from paycenter.webhooks.models import Delivery, DeliveryStatus
from sink import eventually
from test_admin import act, by_testid, flash
from test_kaspi import Kaspi, kaspi, new_payment, qr_id  # noqa: F401  (kaspi: the fixture)
from test_quarantine import admin_browser


async def paid_qr(k: Kaspi, merchant: MerchantCreds, amount: int = 500, customer: str = "customer-1") -> str:
    """A Kaspi QR payment paid in full by ``customer`` (the simulator's default payer)."""
    pid = await new_payment(k, merchant, "kaspi_qr", amount=amount)
    await k.start(pid)
    k.qr.confirm(qr_id(await k.live(pid)), customer=customer)
    await k.wait_event(pid, "paid")
    return pid


async def settled(k: Kaspi) -> dict[str, int]:
    """Row counts once no webhook is left to send (its attempt is written after the sink got it)."""

    async def quiet() -> dict[str, int] | None:
        async with k.db.reading() as session:
            waiting = await session.scalar(
                select(func.count()).select_from(Delivery).where(Delivery.status == DeliveryStatus.PENDING)
            )
        return None if waiting else await row_counts(k.db)

    return await eventually(quiet, timeout=10, what="every webhook delivered")


def refund_calls(k: Kaspi) -> dict[str, int]:
    calls = k.qr.stats()["Calls"]
    return {op: n for op, n in calls.items() if op.startswith("return/") or op in ("payment/return", "payment/details")}


async def test_r1_refund_is_refused_up_front_with_what_to_do_instead(kaspi: Kaspi, merchant):  # noqa: F811
    k = kaspi
    pid = await paid_qr(k, merchant)
    before = await settled(k)

    r = await k.client.post(f"/api/payment/{pid}/refund", json={"amount": 100, "reason": "returned"})
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["success"] is False and body["error"]["code"] == "refunds_not_supported"
    message = body["message"]
    # Why, and what the operator can do: the Kaspi Pay app's Returns section; and that paycenter
    # will not know about it.
    assert "r1" in message and "no refund API" in message
    assert "Kaspi Pay app, Returns section" in message and "no way to record" in message
    # With an Idempotency-Key too: refused the same, and the key is not spent on it.
    keyed = await k.client.post(f"/api/payment/{pid}/refund", headers={"Idempotency-Key": "k-r1"})
    assert keyed.status_code == 409 and keyed.json()["message"] == message

    assert await row_counts(k.db) == before  # nothing reserved, no event, no delivery, no key
    assert refund_calls(k) == {}  # and Kaspi was never asked
    payment = await k.payment(pid)
    assert (payment["status"], payment["paid_amount"]) == ("paid", "500.00")

    # The admin: the payment's page says it where the refund form would be, and the form, if
    # posted anyway, answers with the same words; no audit entry for a refund that did not happen.
    async with admin_browser(k.client._transport.app, k.db, k.ctx.clock) as browser:  # type: ignore[attr-defined]
        page = (await browser.get(f"/admin/transactions/{pid}")).text
        assert 'data-testid="refund"' not in page
        assert "no refund API" in by_testid(page, "refunds-refused")
        before = await row_counts(k.db)
        r = await act(browser, f"/admin/transactions/{pid}/refund", {"amount": "100"})
        assert flash(r)["error"] == [message]
    assert await row_counts(k.db) == before
    assert refund_calls(k) == {}


@pytest.mark.parametrize("kaspi", ["r3"], indirect=True)
async def test_r3_is_not_refused(kaspi: Kaspi, merchant):  # noqa: F811
    k = kaspi
    pid = await paid_qr(k, merchant)
    r = await k.client.post(f"/api/payment/{pid}/refund", json={"amount": 100})
    assert r.status_code == 200 and r.json()["data"]["refund"]["status"] == "succeeded", r.text
    assert refund_calls(k) == {"payment/return": 1}
