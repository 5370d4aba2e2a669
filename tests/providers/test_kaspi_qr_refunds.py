"""Kaspi QR refunds per scheme (kaspi-qr-api.md §5; issue 12), end to end: the API and the admin,
the real worker and poller, the QR simulator over HTTP and a loopback webhook endpoint, on every
backend.

- r1 has no refund API: a refund is refused up front (409 in the API's envelope, the same words in
  the admin), with what the cashier can do instead, and nothing is written or sent.
- r3 refunds directly: test_kaspi.py and test_refund_retry.py.
- r2 refunds through a return QR the customer scans: the refund waits, its page (linked from the
  admin, the payment page and the API's answer) shows the QR; once the simulator's customer scans
  it, the poller checks the purchase is among theirs and returns the money; `refunded` follows. A
  QR not scanned in time, or scanned by someone else, fails the refund with `refund_failed`.
"""

from __future__ import annotations

import re

import pytest

from kit.admin import act, admin_browser, by_testid, flash
from kit.api import MerchantCreds
from kit.clock import drive
from kit.db import row_counts
from kit.kaspi import Kaspi, legs_of, new_payment, qr_id, refund_row, settled, settles
from kit.sink import eventually
from paycenter.checkout.pages import _qr as qr_image
from paycenter.payments.models import Refund, RefundLeg
from paycenter.providers.base import ProviderError, RefundLegRef, RefundOutcome


async def paid_qr(k: Kaspi, merchant: MerchantCreds, amount: int = 500, customer: str = "customer-1") -> str:
    """A Kaspi QR payment paid in full by ``customer`` (the simulator's default payer)."""
    pid = await new_payment(k, merchant, "kaspi_qr", amount=amount)
    await k.start(pid)
    k.qr.confirm(qr_id(await k.live(pid)), customer=customer)
    await k.wait_event(pid, "paid")
    return pid


def refund_calls(k: Kaspi) -> dict[str, int]:
    calls = k.qr.stats()["Calls"]
    return {op: n for op, n in calls.items() if op.startswith("return/") or op in ("payment/return", "payment/details")}


async def test_r1_refund_is_refused_up_front_with_what_to_do_instead(kaspi: Kaspi, merchant):
    k = kaspi
    pid = await paid_qr(k, merchant)
    before = await settled(k)

    r = await k.client.post(f"/api/payment/{pid}/refund", json={"amount": 100, "reason": "returned"})
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["success"] is False and body["error"]["code"] == "refunds_not_supported"
    message = body["message"]
    # Why, and what the operator can do: the Kaspi Pay app's Returns section; and that paycenter
    # learns of it only when an operator records it (a manual refund in the admin panel).
    assert "r1" in message and "no refund API" in message
    assert "Kaspi Pay app, Returns section" in message and "manual refund" in message
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
        assert "нет API возвратов" in by_testid(page, "refunds-refused")  # the panel speaks Russian by default
        before = await row_counts(k.db)
        r = await act(browser, f"/admin/transactions/{pid}/refund", {"amount": "100"})
        assert flash(r)["error"] == [message]
    assert await row_counts(k.db) == before
    assert refund_calls(k) == {}


@pytest.mark.parametrize("kaspi", ["r3"], indirect=True)
async def test_r3_is_not_refused(kaspi: Kaspi, merchant):
    k = kaspi
    pid = await paid_qr(k, merchant)
    r = await k.client.post(f"/api/payment/{pid}/refund", json={"amount": 100})
    assert r.status_code == 200 and r.json()["data"]["refund"]["status"] == "succeeded", r.text
    assert refund_calls(k) == {"payment/return": 1}


# --- r2: the return QR ----------------------------------------------------------------------------

R2 = pytest.mark.parametrize("kaspi", ["r2"], indirect=True)


def return_qr_of(k: Kaspi, leg: RefundLeg) -> dict:
    (qr,) = [r for r in k.qr.returns() if r["ExternalId"] == leg.id]  # return/create's ExternalId: the leg
    return qr


async def waiting_refund(k: Kaspi, pid: str, **body: object) -> tuple[str, RefundLeg, dict]:
    """A refund asked through the API, waiting for the customer: (refund id, its leg, its return QR)."""
    r = await k.client.post(f"/api/payment/{pid}/refund", json=body)
    refund = r.json()["data"]["refund"]
    assert refund["status"] == "pending", r.text
    (leg,) = await legs_of(k, refund["id"])
    return refund["id"], leg, return_qr_of(k, leg)


@R2
async def test_r2_refund_waits_for_the_customer_to_scan_the_return_qr(kaspi: Kaspi, merchant):
    k = kaspi
    pid = await paid_qr(k, merchant)
    r = await k.client.post(f"/api/payment/{pid}/refund", json={"amount": 200, "reason": "wrong size"})
    assert r.status_code == 200, r.text
    refund = r.json()["data"]["refund"]
    page_url = f"http://pay.test/pay/{pid}/refunds/{refund['id']}"
    assert refund["status"] == "pending" and page_url in r.json()["message"], r.text
    assert refund["return_qr_url"] == page_url  # for the merchant's code, not only for people

    (leg,) = await legs_of(k, refund["id"])
    qr = return_qr_of(k, leg)
    assert (leg.return_qr, leg.return_qr_id) == (qr["QrToken"], str(qr["QrReturnId"]))
    assert leg.return_qr_expires_at is not None and leg.return_sent_at is None and leg.status == "pending"
    assert refund_calls(k).get("payment/return", 0) == 0 and k.qr.payments()[0]["Returned"] == 0

    # The QR is shown: on the refund's page (in the payer's language), linked from the payment page
    # and from the admin's refunds table.
    page = (await k.client.get(page_url, params={"lang": "kk"})).text
    assert 'data-testid="return-qr"' in page and qr_image(qr["QrToken"]) in page
    assert "Kaspi.kz қосымшасын" in page and 'http-equiv="refresh"' in page
    assert "Kaspi.kz app, tap Kaspi QR" in (await k.client.get(page_url, params={"lang": "en"})).text
    payment_page = (await k.client.get(f"/pay/{pid}")).text
    assert f'href="/pay/{pid}/refunds/{refund["id"]}" data-testid="refund-link"' in payment_page
    async with admin_browser(k.client._transport.app, k.db, k.ctx.clock) as browser:  # type: ignore[attr-defined]
        admin_page = (await browser.get(f"/admin/transactions/{pid}")).text
    assert re.search(rf'href="/pay/{pid}/refunds/{refund["id"]}"[^>]*data-testid="return-qr-link"', admin_page)
    # Another payment's id in the path finds nothing: both ids are needed.
    other = await new_payment(k, merchant, "kaspi_qr")
    assert (await k.client.get(f"/pay/{other}/refunds/{refund['id']}")).status_code == 404
    for bad in ("rfd_" + "a" * 300, "%F0%9F%98%80", "rfd_%00", refund["id"].upper()):
        r = await k.client.get(f"/pay/{pid}/refunds/{bad}")
        assert r.status_code == 404 and "Refund not found" in (await k.client.get(r.url, params={"lang": "en"})).text

    # The customer scans it in Kaspi.kz: the poller sees it, checks the purchase is theirs, and
    # the money goes back with that QrReturnId.
    k.qr.scan_return(qr["QrReturnId"])
    body = await k.wait_event(pid, "refunded")
    assert (body["refund_id"], body["refund_amount"], body["refunded_amount"]) == (refund["id"], 200, 200)
    assert body["full_refund"] is False and body["reason"] == "wrong size"
    (purchase,) = [p for p in k.qr.payments() if p["Status"] == "Processed"]
    assert purchase["Returned"] == 200
    assert k.qr.last_bodies["payment/return"] == {
        "DeviceToken": k.ctx.settings.kaspi_qr_device_token,
        "QrPaymentId": purchase["QrPaymentId"],
        "QrReturnId": qr["QrReturnId"],
        "Amount": 200,
    }
    assert k.qr.last_bodies["return/operations"]["MaxResult"] == 10
    calls = refund_calls(k)
    assert (calls["return/create"], calls["return/operations"], calls["payment/details"]) == (1, 1, 1)
    assert calls["payment/return"] == 1 and calls["return/status"] >= 1
    done = await settles(k, refund["id"], "succeeded")
    assert done.refunded_amount == 20000
    (leg,) = await legs_of(k, refund["id"])
    assert leg.provider_ref == str(
        k.qr.describe_return(k.qr.return_qr(qr["QrReturnId"]))["Returns"][0]["ReturnOperationId"]
    )

    page = (await k.client.get(page_url, params={"lang": "en"})).text
    assert 'data-testid="refund-done"' in page and "return-qr" not in page and 'http-equiv="refresh"' not in page
    assert 'data-testid="refund-link"' not in (await k.client.get(f"/pay/{pid}")).text
    assert (await k.payment(pid))["refunded_amount"] == "200.00"


@R2
async def test_r2_return_qr_not_scanned_in_time_fails_the_refund(kaspi: Kaspi, merchant):
    k = kaspi
    pid = await paid_qr(k, merchant)
    refund_id, leg, qr = await waiting_refund(k, pid)

    k.ctx.clock.advance(seconds=181)  # past QrCodeScanWaitTimeout (180 s), never scanned
    failed = await settles(k, refund_id, "failed")
    assert "not scanned before it expired" in failed.error and "Refund again" in failed.error
    body = await k.wait_event(pid, "refund_failed")
    assert (body["refund_id"], body["failed_amount"], body["refunded_amount"]) == (refund_id, 500, 0)
    assert await k.webhooks(pid, "refunded") == []
    page = (await k.client.get(f"/pay/{pid}/refunds/{refund_id}", params={"lang": "en"})).text
    assert 'data-testid="refund-failed"' in page and "return-qr" not in page

    # A scan after that moves no money: nobody follows the dead QR.
    k.qr.scan_return(qr["QrReturnId"])
    async with k.db.reading() as session:
        assert (await session.get(RefundLeg, leg.id)).status == "failed"
    assert refund_calls(k).get("payment/return", 0) == 0 and k.qr.payments()[0]["Returned"] == 0

    # The money is refundable again: a new refund shows a new QR, and this one goes through.
    again, _, fresh = await waiting_refund(k, pid)
    assert fresh["QrReturnId"] != qr["QrReturnId"]
    k.qr.scan_return(fresh["QrReturnId"])
    await settles(k, again, "succeeded")
    assert k.qr.payments()[0]["Returned"] == 500


@R2
async def test_r2_return_qr_scanned_by_another_customer_fails_the_refund(kaspi: Kaspi, merchant):
    k = kaspi
    pid = await paid_qr(k, merchant, customer="alice")
    await paid_qr(k, merchant, amount=700, customer="bob")  # bob has purchases too, not this one
    refund_id, _, qr = await waiting_refund(k, pid, amount=100)

    k.qr.scan_return(qr["QrReturnId"], customer="bob")
    failed = await settles(k, refund_id, "failed")
    assert "does not have this purchase" in failed.error and "last 10 Kaspi purchases" in failed.error
    body = await k.wait_event(pid, "refund_failed")
    assert "does not have this purchase" in body["error"] and body["failed_amount"] == 100
    assert refund_calls(k).get("payment/return", 0) == 0
    assert all(p["Returned"] == 0 for p in k.qr.payments())
    async with admin_browser(k.client._transport.app, k.db, k.ctx.clock) as browser:  # type: ignore[attr-defined]
        page = (await browser.get(f"/admin/transactions/{pid}")).text
    refunds_table = page[page.index('data-testid="refunds"') :]
    assert "does not have this purchase" in refunds_table and "return-qr-link" not in refunds_table


@R2
async def test_r2_refund_kaspi_asks_to_retry_is_sent_again_with_the_same_scan(kaspi: Kaspi, merchant):
    k = kaspi
    pid = await paid_qr(k, merchant)
    refund_id, _, qr = await waiting_refund(k, pid)
    k.qr.inject_error("payment/return", -99000006, times=1)  # "refund error, try again"
    k.qr.scan_return(qr["QrReturnId"])

    async def sent_again() -> Refund | None:
        k.ctx.clock.advance(seconds=5)  # past the pause before it goes again
        return await refund_row(k, refund_id, "succeeded")

    await eventually(sent_again, timeout=10, step=0.1, what="the refund sent again")
    assert refund_calls(k)["payment/return"] == 2 and refund_calls(k)["return/create"] == 1  # one scan
    assert k.qr.payments()[0]["Returned"] == 500  # once, not twice
    await k.wait_event(pid, "refunded")


@R2
async def test_r2_return_whose_answer_never_came_is_looked_up_not_sent_again(kaspi: Kaspi, merchant):
    k = kaspi
    pid = await paid_qr(k, merchant)
    provider = k.ctx.providers.get("kaspi_qr")
    real_refund = provider.refund

    async def answer_lost(leg: RefundLegRef) -> RefundOutcome:
        outcome = await real_refund(leg)
        if leg.return_qr_ref:  # the return was done at Kaspi; its answer is lost on the way back
            raise ProviderError("Kaspi is unreachable: connection reset")
        return outcome

    provider.refund = answer_lost  # type: ignore[method-assign]
    try:
        refund_id, _, qr = await waiting_refund(k, pid)
        k.qr.scan_return(qr["QrReturnId"])

        async def unanswered() -> RefundLeg | None:
            (row,) = await legs_of(k, refund_id)
            return row if row.error and "unreachable" in row.error else None

        row = await eventually(unanswered, timeout=10, what="the return sent without an answer")
        assert row.status == "pending" and row.return_sent_at is not None and row.provider_ref is None
        # Past the answer's grace the poller asks Kaspi (payment/details) instead of sending again.
        done = await drive(k.ctx.clock, lambda: refund_row(k, refund_id, "succeeded"), step=10, what="the lookup")
    finally:
        provider.refund = real_refund  # type: ignore[method-assign]
    assert done.refunded_amount == 50000
    assert refund_calls(k)["payment/return"] == 1 and k.qr.payments()[0]["Returned"] == 500  # once
    (row,) = await legs_of(k, refund_id)
    assert row.provider_ref == "resynced"
    await k.wait_event(pid, "refunded")


@R2
async def test_r2_payment_paid_in_two_parts_refunds_with_a_return_qr_each(kaspi: Kaspi, merchant):
    k = kaspi
    pid = await new_payment(k, merchant, "kaspi_qr", amount=500)
    for part in (200, 300):
        await k.start(pid)
        k.qr.confirm(qr_id(await k.live(pid)), amount=part)
        await k.wait_event(pid, "paid" if part == 300 else "partially_paid")
    r = await k.client.post(f"/api/payment/{pid}/refund")
    refund_id = r.json()["data"]["refund"]["id"]
    legs = await legs_of(k, refund_id)
    assert [leg.amount for leg in legs] == [20000, 30000]
    page = (await k.client.get(f"/pay/{pid}/refunds/{refund_id}", params={"lang": "ru"})).text
    assert page.count('data-testid="return-qr"') == 2 and "Сумма возврата" in page
    for leg in legs:
        k.qr.scan_return(return_qr_of(k, leg)["QrReturnId"])
    body = await k.wait_event(pid, "refunded")
    assert (body["refund_amount"], body["status"], body["full_refund"]) == (500, "refunded", True)
    assert sorted(p["Returned"] for p in k.qr.payments()) == [200, 300]
