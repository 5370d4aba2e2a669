"""Kaspi end to end: real payments through both simulators over HTTP, the real poller and
webhooks to a loopback endpoint, on every backend."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from kit.api import create_payment
from kit.kaspi import Kaspi, new_payment, qr_id, terminal_of
from kit.sink import eventually, wait_until
from paycenter.config import Settings
from paycenter.db import Database
from paycenter.jobs import poller
from paycenter.payments import attempts as attempts_module
from paycenter.payments.models import Attempt, Operation, PaymentMethod, RefundLeg
from paycenter.providers import kaspi_pos as kaspi_pos_provider
from paycenter.providers import terminals
from paycenter.providers.base import TerminalRef
from paycenter.providers.models import Terminal
from paycenter.quarantine import Loop, QuarantinedRow
from paycenter.simulators import kaspi_pos


async def assert_attempt_cancel_is_not_cancelled(k: Kaspi, pid: str, reason: str) -> None:
    """After a payer's cancel and then a payment (issue 13): no `cancelled` was or will be sent,
    the try shows as cancelled in the merchant's API, and `attempt_cancelled` is in the event feed
    with the payment still payable, without a delivery."""
    assert await k.delivered_types(pid) == ["paid"]
    assert [b["event"] for b in await k.webhooks(pid)] == ["paid"]
    data = (await k.client.get(f"/api/transaction/{pid}")).json()["data"]
    assert [a["status"] for a in data["attempts"]] == ["cancelled", "succeeded"]
    assert data["attempts"][0]["error"] == reason
    assert [e["type"] for e in data["events"]] == ["attempt_cancelled", "paid"]
    feed = (await k.client.get("/api/events", params={"transaction_id": pid, "type": "attempt_cancelled"})).json()
    (item,) = feed["data"]["items"]
    assert item["deliveries"] == []
    body = item["data"]
    assert (body["event"], body["status"], body["previous_status"]) == ("attempt_cancelled", "pending", "processing")
    assert (body["attempt_id"], body["reason"]) == (data["attempts"][0]["id"], reason)


# --- Kaspi QR --------------------------------------------------------------------------------


@pytest.mark.parametrize("kaspi", ["r3"], indirect=True)  # r3 refunds directly; r1 has no refund API
async def test_qr_pay_in_two_parts_then_refund_twice(kaspi: Kaspi, merchant):
    k = kaspi
    pid = await new_payment(k, merchant, "kaspi_qr")
    await k.start(pid)
    attempt = await k.live(pid)
    page = (await k.client.get(f"/pay/{pid}")).text
    assert 'data-testid="qr"' in page and "data:image/svg+xml" in page
    assert re.search(r'href="https://pay\.kaspi\.kz/pay/[0-9a-f]+"', page)
    assert (await k.payment(pid))["status"] == "processing"

    k.qr.confirm(qr_id(attempt), amount=200)  # the payer pays less
    body = await k.wait_event(pid, "partially_paid")
    assert (body["paid_amount"], body["remaining_amount"], body["payment_method"]) == (200, 300, "kaspi_gold")
    assert body["payment_mismatch"] is True  # 200 paid of 500 asked

    await k.start(pid)  # pay the rest
    attempt = await k.live(pid)
    assert attempt.amount == 30000
    k.qr.confirm(qr_id(attempt), product="Red")
    body = await k.wait_event(pid, "paid")
    assert (body["paid_amount"], body["remaining_amount"], body["status"]) == (500, 0, "paid")
    assert body["payment_method"] == "kaspi_red" and body["payment_mismatch"] is False

    r = await k.client.post(f"/api/payment/{pid}/refund", json={"amount": 100})
    assert r.json()["data"]["refund"]["status"] == "succeeded", r.text
    r = await k.client.post(f"/api/payment/{pid}/refund")
    assert r.json()["data"]["refund"]["amount"] == "400.00"
    assert r.json()["data"]["payment"]["status"] == "refunded"
    refunded = await k.wait_event(pid, "refunded", count=2)
    assert refunded["refunded_amount"] == 500 and refunded["full_refund"] is True
    returned = sum(float(p["Returned"]) for p in k.qr.payments())
    assert returned == 500  # the money really went back at Kaspi, across both QR payments

    stats = k.qr.stats()  # our client sent a fresh X-Request-ID with every request
    assert (stats["RequestIdsMissing"], stats["RequestIdsRepeated"]) == (0, 0) and sum(stats["Calls"].values()) > 5


@pytest.mark.parametrize("kaspi", ["r3"], indirect=True)  # r3 refunds directly (kaspi-qr-api.md §5)
async def test_qr_int64_ids_are_stored_and_sent_back_exactly(kaspi: Kaspi, merchant):
    """QrPaymentId and ReturnOperationId above 2^62 (Int64, kaspi-qr-api.md §2) survive the client and
    the database digit for digit, and the refund sends the QrPaymentId back as the number it was."""
    k = kaspi
    pid = await new_payment(k, merchant, "kaspi_qr")
    await k.start(pid)
    attempt = await k.live(pid)
    (issued,) = k.qr.payments()
    assert attempt.provider_ref == str(issued["QrPaymentId"]) and issued["QrPaymentId"] > 2**62
    k.qr.confirm(issued["QrPaymentId"])
    await k.wait_event(pid, "paid")
    r = await k.client.post(f"/api/payment/{pid}/refund", json={"amount": 100})
    assert r.json()["data"]["refund"]["status"] == "succeeded", r.text
    (paid,) = k.qr.payments()
    (returned,) = paid["Returns"]
    async with k.db.reading() as session:
        operation = await session.scalar(select(Operation).where(Operation.attempt_id == attempt.id))
        leg = await session.scalar(select(RefundLeg).where(RefundLeg.operation_id == operation.id))
    assert operation.provider_txn_id == paid["TransactionId"]
    assert leg.provider_ref == str(returned["ReturnOperationId"]) and returned["ReturnOperationId"] > 2**62
    assert (returned["Amount"], paid["Returned"]) == (100, 100)


async def test_qr_payer_cancels_then_pays(kaspi: Kaspi, merchant):
    k = kaspi
    pid = await new_payment(k, merchant, "kaspi_qr")
    await k.start(pid)
    await k.live(pid)
    r = await k.client.post(f"/pay/{pid}/cancel-attempt")
    assert r.headers["location"].endswith("notice=cancelled")
    assert (await k.payment(pid))["status"] == "pending"  # payable: no `cancelled` for the merchant
    await k.start(pid)
    k.qr.confirm(qr_id(await k.live(pid)))
    body = await k.wait_event(pid, "paid")
    assert (body["status"], body["sequence"], body["previous_status"]) == ("paid", 2, "processing")
    await assert_attempt_cancel_is_not_cancelled(k, pid, "cancelled by the payer")


async def test_qr_expiry_and_provider_errors(kaspi: Kaspi, merchant, clock):
    k = kaspi
    pid = await new_payment(k, merchant, "kaspi_qr")
    await k.start(pid)
    attempt = await k.live(pid)
    clock.advance(seconds=181)  # past the scan wait (180 s): the poller closes it
    await eventually(lambda: _status_of(k.db, attempt.id, "expired"), timeout=5, what="the QR to expire")
    assert (await k.payment(pid))["status"] == "pending"

    await k.start(pid)
    attempt = await k.live(pid)
    k.qr.set_mode("error", qr_id(attempt))  # Kaspi answers -999 from now on
    await eventually(lambda: _failures(k.db, attempt.id), timeout=5, what="the poller to note the trouble")
    clock.advance(seconds=31)  # past poller_give_up_after
    await eventually(lambda: _status_of(k.db, attempt.id, "failed"), timeout=10, what="the attempt to be given up")
    assert (await k.payment(pid))["status"] == "pending"  # payable again
    assert await k.delivered_types(pid) == []  # neither try's end is news for the merchant (issue 13)


async def _status_of(db: Database, attempt_id: str, status: str) -> bool:
    async with db.reading() as session:
        return await session.scalar(select(Attempt.status).where(Attempt.id == attempt_id)) == status


async def _failures(db: Database, attempt_id: str) -> bool:
    async with db.reading() as session:
        return bool(await session.scalar(select(Attempt.poll_failures).where(Attempt.id == attempt_id)))


async def test_fee_paid_by_the_payer_nets_the_full_amount(kaspi: Kaspi, merchant):
    k = kaspi
    async with k.db.transaction() as session:
        await session.execute(
            update(PaymentMethod).where(PaymentMethod.code == "kaspi_credit").values(payer_covers_fee=True)
        )
    try:
        pid = await new_payment(k, merchant, "kaspi_qr", amount=100_000)
        page = (await k.client.get(f"/pay/{pid}")).text
        assert "116" in page and "280" in page  # the credit button shows 116 280 with the fee
        await k.start(pid, method="kaspi_credit")
        attempt = await k.live(pid)
        assert attempt.amount == 116_280_00  # 100,000 / (1 - 0.14), up to whole tenge
        k.qr.confirm(qr_id(attempt), product="Loan")
        body = await k.wait_event(pid, "paid")
        assert body["paid_amount"] == 116280
        assert body["actual_amount_received"] >= 100_000  # net covers the amount: no fee² shortfall
        assert body["payment_method"] == "kaspi_credit" and body["payment_mismatch"] is False
    finally:
        async with k.db.transaction() as session:
            await session.execute(
                update(PaymentMethod).where(PaymentMethod.code == "kaspi_credit").values(payer_covers_fee=False)
            )


async def test_qr_status_is_asked_no_faster_than_the_documents_interval(kaspi: Kaspi, merchant, clock):
    """kaspi-qr-api.md §4: poll each purchase every StatusPollingInterval seconds (5), not
    faster. Issue 12: we polled every second. Counted by the simulator; time is the app's clock."""
    k = kaspi
    provider = k.ctx.providers.get("kaspi_qr")
    provider.poll_every = timedelta(seconds=5)  # the default; the fixture lowers it for speed
    pid = await new_payment(k, merchant, "kaspi_qr")
    await k.start(pid)
    qr = qr_id(await k.live(pid))
    async with asyncio.timeout(10):
        await k.qr.wait_for_status_calls(1, payment_id=qr)
    poller = k.worker.poller
    seen = poller.cycles
    await wait_until(lambda: poller.cycles >= seen + 10, timeout=10, what="ten more poller cycles")
    assert k.qr.stats()["StatusCallsByPayment"][str(qr)] == 1  # the same second: not asked again

    clock.advance(seconds=5)
    async with asyncio.timeout(10):
        await k.qr.wait_for_status_calls(2, payment_id=qr)
    k.qr.confirm(qr)
    clock.advance(seconds=5)
    await k.wait_event(pid, "paid")


@pytest.mark.slow  # over 2 s: make test runs it, make test-fast does not
async def test_each_qr_is_polled_at_the_interval_its_creation_answered(kaspi: Kaspi, merchant, clock):
    """kaspi-qr-api.md §3, §4: qr/create answers StatusPollingInterval for that QR; poll it at that
    interval, not faster. Before: every QR at PAYCENTER_KASPI_QR_STATUS_INTERVAL (0.1 s here), whatever
    Kaspi said. The app's clock moves; the poller's cycles are counted, not slept through."""
    k = kaspi
    poller = k.worker.poller

    async def cycles(count: int) -> None:
        seen = poller.cycles
        await wait_until(lambda: poller.cycles >= seen + count, timeout=10, what=f"{count} more poller cycles")

    def calls(qr: int) -> int:
        return k.qr.stats()["StatusCallsByPayment"].get(str(qr), 0)

    k.qr.polling_interval = 30  # this QR's StatusPollingInterval
    slow_pid = await new_payment(k, merchant, "kaspi_qr")
    await k.start(slow_pid)
    slow = await k.live(slow_pid)
    k.qr.polling_interval = 0  # the next QR comes without one: the operator's 0.1 s
    fast_pid = await new_payment(k, merchant, "kaspi_qr")
    await k.start(fast_pid)
    fast = await k.live(fast_pid)
    assert (slow.poll_interval, fast.poll_interval) == (30, None)  # kept with the attempt, on every backend

    async with asyncio.timeout(10):
        await k.qr.wait_for_status_calls(1, payment_id=qr_id(slow))
    fast_before = calls(qr_id(fast))
    await cycles(10)
    clock.advance(seconds=20)  # 20 s of app time (plus the real second the cycles take) < 30 s
    await cycles(10)
    assert calls(qr_id(slow)) == 1  # not asked again inside its interval...
    assert calls(qr_id(fast)) > fast_before + 3  # ... while the other QR is asked cycle after cycle

    clock.advance(seconds=10)  # its 30 s are up
    async with asyncio.timeout(10):
        await k.qr.wait_for_status_calls(2, payment_id=qr_id(slow))
    await cycles(10)
    assert calls(qr_id(slow)) == 2
    k.qr.confirm(qr_id(slow))
    clock.advance(seconds=30)
    await k.wait_event(slow_pid, "paid")


async def test_the_operators_override_polls_faster_than_kaspi_asks(kaspi: Kaspi, merchant):
    """Issue 12: "the operator may lower it at their own risk". With
    PAYCENTER_KASPI_QR_STATUS_INTERVAL_OVERRIDE set, Kaspi's 30 s is not kept and the QR is
    asked at the operator's interval."""
    k = kaspi
    provider = k.ctx.providers.get("kaspi_qr")
    provider.override, provider.poll_every = 0.1, timedelta(seconds=0.1)  # as the setting makes it
    k.qr.polling_interval = 30
    pid = await new_payment(k, merchant, "kaspi_qr")
    await k.start(pid)
    attempt = await k.live(pid)
    assert attempt.poll_interval is None
    async with asyncio.timeout(10):
        await k.qr.wait_for_status_calls(4, payment_id=qr_id(attempt))  # no clock moved: 0.1 s apart


def test_the_override_setting_reaches_the_provider() -> None:
    from paycenter.providers.kaspi_qr import KaspiQrProvider

    base = {"_env_file": None, "kaspi_qr_base_url": "https://127.0.0.1:9", "kaspi_qr_api_key": "k"}
    provider = KaspiQrProvider(Settings(**base, kaspi_qr_status_interval_override=2.5))  # type: ignore[arg-type]
    assert (provider.override, provider.poll_every) == (2.5, timedelta(seconds=2.5))
    assert KaspiQrProvider(Settings(**base)).override is None  # type: ignore[arg-type]


async def test_qr_statuses_outside_the_document_are_in_progress_never_failed(kaspi: Kaspi, merchant, clock):
    """kaspi-qr-api.md §4: any other value is in progress, never paid, never failed by default;
    RemotePaymentCanceled is final and unpaid. Before: an unknown value was trouble, and the
    attempt was failed after PAYCENTER_POLLER_GIVE_UP_AFTER (30 s here)."""
    k = kaspi
    pid = await new_payment(k, merchant, "kaspi_qr")
    await k.start(pid)
    attempt = await k.live(pid)
    qr = qr_id(attempt)
    for status in ("RemotePaymentCreated", "SomethingKaspiAddsOneDay"):
        k.qr.set_status(qr, status)
        calls = k.qr.stats()["StatusCallsByPayment"].get(str(qr), 0)
        async with asyncio.timeout(10):
            await k.qr.wait_for_status_calls(calls + 2, payment_id=qr)
        clock.advance(seconds=31)  # past the give-up time, within the QR's life
        async with asyncio.timeout(10):
            await k.qr.wait_for_status_calls(calls + 4, payment_id=qr)
        assert await _status_of(k.db, attempt.id, "live"), status
    k.qr.set_status(qr, "RemotePaymentCanceled")
    await eventually(lambda: _status_of(k.db, attempt.id, "failed"), timeout=5, what="a cancelled invoice to end")
    assert (await k.payment(pid))["paid_amount"] == "0.00"


async def test_qr_loan_with_a_term_is_an_instalment_not_a_credit(kaspi: Kaspi, merchant):
    """`Loan` covers both (kaspi-qr-api.md §3): a term without an offer name is an instalment."""
    k = kaspi
    pid = await new_payment(k, merchant, "kaspi_qr", amount=1200)
    await k.start(pid, method="kaspi_installment_12")
    k.qr.confirm(qr_id(await k.live(pid)), product="Loan", loan_term=12)
    body = await k.wait_event(pid, "paid")
    assert body["payment_method"] == "kaspi_installment_12"


@pytest.mark.parametrize(
    ("term", "offer", "method"),
    [
        (12, None, "kaspi_installment_12"),
        (24, None, "kaspi_installment_24"),
        (24, "Рассрочка 0-0-24", "kaspi_installment_24"),
        (12, "Кредит на покупки", "kaspi_credit"),
        (None, None, "kaspi_credit"),
    ],
)
def test_a_loan_is_told_apart_by_its_offer_then_its_term(term, offer, method):
    from paycenter.providers.kaspi_qr import method_of

    assert method_of("Loan", term, offer) == method
    assert kaspi_pos_provider.method_of("Loan", term, None, offer) == method


# --- Kaspi Smart POS ---------------------------------------------------------------------------


@pytest.mark.slow  # over 2 s: make test runs it, make test-fast does not
async def test_pos_card_payment_is_refunded_as_card(kaspi: Kaspi, merchant):
    """A card at the terminal: its transactionId is the rrn and the terminal refunds it only with
    method=card (kaspi.md §B; S). Before, every refund went as PAYCENTER_KASPI_POS_REFUND_METHOD
    (qr), which the terminal refuses for a card payment."""
    k = kaspi
    pid = await new_payment(k, merchant, "kaspi_pos")
    await k.start(pid)
    name = await terminal_of(k, await k.live(pid))
    k.pos.confirm(name, cheque_method="card")
    await k.wait_event(pid, "paid")
    async with k.db.reading() as session:
        assert await session.scalar(select(Operation.paid_by).where(Operation.payment_id == pid)) == "card"
    r = await k.client.post(f"/api/payment/{pid}/refund", json={"amount": 100})
    assert r.json()["data"]["refund"]["status"] == "pending", r.text
    await wait_until(lambda: k.pos.terminal(name)["busy"], timeout=5, what="the refund on the terminal")
    (refund,) = k.pos.terminal(name)["refunds"]
    assert refund["method"] == "card"
    k.pos.confirm_refund(name)
    await k.wait_event(pid, "refunded")


@pytest.mark.slow  # over 2 s: make test runs it, make test-fast does not
async def test_pos_pay_in_two_parts_then_refund_twice(kaspi: Kaspi, merchant):
    k = kaspi
    pid = await new_payment(k, merchant, "kaspi_pos")
    await k.start(pid, method="kaspi_gold")
    attempt = await k.live(pid)
    name = await terminal_of(k, attempt)
    page = (await k.client.get(f"/pay/{pid}")).text
    assert f"«{name}»" in page and 'data-testid="qr"' in page  # the camera's QR of its screen

    k.pos.confirm(name, amount=200)
    await k.wait_event(pid, "partially_paid")
    await wait_until(lambda: not k.pos.terminal(name)["busy"], timeout=5, what="the terminal to free")
    await k.start(pid, method="kaspi_red")
    attempt = await k.live(pid)
    name2 = await terminal_of(k, attempt)
    k.pos.confirm(name2, method="kaspi_red")
    body = await k.wait_event(pid, "paid")
    assert (body["paid_amount"], body["payment_method"]) == (500, "kaspi_red")

    # Terminal refunds wait for the customer's confirmation in the Kaspi app.
    r = await k.client.post(f"/api/payment/{pid}/refund", json={"amount": 300})
    assert r.json()["data"]["refund"]["status"] == "pending", r.text
    await wait_until(lambda: k.pos.terminal(name2)["busy"], timeout=5, what="the refund on the terminal")
    k.pos.confirm_refund(name2)
    await k.wait_event(pid, "refunded")
    r = await k.client.post(f"/api/payment/{pid}/refund")
    assert r.json()["data"]["refund"]["amount"] == "200.00"
    await wait_until(lambda: k.pos.terminal(name)["busy"], timeout=5, what="the second refund on its terminal")
    k.pos.confirm_refund(name)
    body = await k.wait_event(pid, "refunded", count=2)
    assert (body["refunded_amount"], body["status"]) == (500, "refunded")


@pytest.mark.parametrize("cheque", ["1500 ₸", "1 500 ₸", "1\u00a0500,00 ₸", "1500.00 KZT"])
async def test_pos_success_amount_is_read_from_the_cheque_in_every_shape(kaspi: Kaspi, merchant, cheque):
    """A finished terminal operation states its amount only in the cheque's text (no data.amount:
    shared/reference/kaspi.md §B). Issue 12: `"1500 ₸"` crashed the poll with InvalidOperation and
    the paid attempt was closed as failed after 300 s."""
    k = kaspi
    pid = await new_payment(k, merchant, "kaspi_pos", amount=1500)
    await k.start(pid)
    k.pos.confirm(await terminal_of(k, await k.live(pid)), cheque_amount=cheque)
    body = await k.wait_event(pid, "paid")
    assert (body["paid_amount"], body["status"]) == (1500, "paid")


async def _failures_reach(db: Database, attempt_id: str, count: int) -> None:
    async def reached() -> bool:
        async with db.reading() as session:
            failures = await session.scalar(select(Attempt.poll_failures).where(Attempt.id == attempt_id))
        return (failures or 0) >= count

    await eventually(reached, timeout=5, what=f"{count} unknown polls to be recorded")


async def _quarantine_reason(db: Database, attempt_id: str) -> str | None:
    async with db.reading() as session:
        return await session.scalar(
            select(QuarantinedRow.reason).where(
                QuarantinedRow.loop == Loop.POLLER.value, QuarantinedRow.row_id == attempt_id
            )
        )


async def test_pos_success_whose_amount_cannot_be_read_waits_for_an_operator(kaspi: Kaspi, merchant, clock):
    """Money was taken but the cheque's amount cannot be read: the attempt is set aside for an
    operator (quarantine, shown by `paycenter status` and the admin), never closed as failed and
    never credited with a guessed sum; the poller goes on with every other payment."""
    k = kaspi
    pid = await new_payment(k, merchant, "kaspi_pos", amount=500)
    await k.start(pid)
    attempt = await k.live(pid)
    k.pos.confirm(await terminal_of(k, attempt), cheque_amount="сумма: см. чек")
    await eventually(lambda: _quarantine_reason(k.db, attempt.id), timeout=5, what="the attempt to be set aside")
    assert "cannot be read" in (await _quarantine_reason(k.db, attempt.id) or "")

    clock.advance(seconds=400)  # past the attempt's deadline and the poller's give-up time
    other = await new_payment(k, merchant, "kaspi_pos", amount=700)
    await k.start(other)
    k.pos.confirm(await terminal_of(k, await k.live(other)))
    await k.wait_event(other, "paid")

    assert await _status_of(k.db, attempt.id, "live")  # neither failed nor expired
    payment = await k.payment(pid)
    assert (payment["status"], payment["paid_amount"]) == ("processing", "0.00")  # its try is still open
    assert await k.webhooks(pid, "paid") == []


async def test_pos_payer_cancels_at_the_terminal(kaspi: Kaspi, merchant):
    k = kaspi
    pid = await new_payment(k, merchant, "kaspi_pos")
    await k.start(pid)
    attempt = await k.live(pid)
    name = await terminal_of(k, attempt)
    k.pos.payer_cancel(name)
    await eventually(lambda: _status_of(k.db, attempt.id, "cancelled"), timeout=5, what="the try to be cancelled")
    assert (await k.payment(pid))["status"] == "pending"
    await wait_until(lambda: not k.pos.terminal(name)["busy"], timeout=5, what="the terminal to free")
    await k.start(pid)
    k.pos.confirm(await terminal_of(k, await k.live(pid)))
    await k.wait_event(pid, "paid")
    await assert_attempt_cancel_is_not_cancelled(k, pid, f"cancelled at the terminal ({kaspi_pos.SUB_CANCELLED})")


async def test_pos_unknown_status_is_resynced(kaspi: Kaspi, merchant):
    k = kaspi
    pid = await new_payment(k, merchant, "kaspi_pos")
    await k.start(pid)
    name = await terminal_of(k, await k.live(pid))
    k.pos.set_mode(name, "unknown")
    k.pos.confirm(name)  # paid, but the terminal answers "unknown" until actualize
    await k.wait_event(pid, "paid")


async def test_pos_unknown_outcome_is_actualized_10_s_apart_then_goes_to_an_operator(kaspi: Kaspi, merchant, clock):
    """kaspi.md §B: /v2/actualize only for an unknown status and at least 10 s apart (issue 12: we
    called it every second); after 180 s of unknown, manual review: quarantined, not failed."""
    k = kaspi
    clock.freeze()  # app time moves only when the test says: 5 s are 5 s on a slow machine too
    pid = await new_payment(k, merchant, "kaspi_pos")
    await k.start(pid)
    attempt = await k.live(pid)
    name = await terminal_of(k, attempt)
    k.pos.set_mode(name, "stuck")  # unknown, and actualize cannot re-sync either
    await wait_until(lambda: k.pos.terminal(name)["actualizeCalls"] == 1, timeout=5, what="the first actualize")

    # Each step waits until the poll's back-off is stored before moving the clock: the terminal
    # counts a call when it arrives, and a clock moved under a poll still in flight would date its
    # back-off (and its next poll) after the jump.
    await _failures_reach(k.db, attempt.id, 1)
    polls = k.pos.terminal(name)["statusCalls"]
    clock.advance(seconds=5)  # past the poller's backoff, within the 10 s
    await wait_until(lambda: k.pos.terminal(name)["statusCalls"] > polls, timeout=5, what="another status call")
    await _failures_reach(k.db, attempt.id, 2)
    assert k.pos.terminal(name)["actualizeCalls"] == 1
    clock.advance(seconds=6)
    await wait_until(lambda: k.pos.terminal(name)["actualizeCalls"] == 2, timeout=5, what="the second actualize")
    await _failures_reach(k.db, attempt.id, 3)

    # Past poller_give_up_after (30 s here): an unknown outcome is never closed as failed for want
    # of an answer (the money may have been taken); it waits for the terminal or an operator.
    clock.advance(seconds=30)
    await wait_until(lambda: k.pos.terminal(name)["actualizeCalls"] == 3, timeout=5, what="the third actualize")
    await _failures_reach(k.db, attempt.id, 4)
    assert await _status_of(k.db, attempt.id, "live")

    clock.advance(seconds=140)  # 181 s without an outcome
    await eventually(lambda: _quarantine_reason(k.db, attempt.id), timeout=5, what="the attempt to be set aside")
    assert "not known the outcome" in (await _quarantine_reason(k.db, attempt.id) or "")
    assert await _status_of(k.db, attempt.id, "live")
    assert k.pos.terminal(name)["actualizeCalls"] == 3


async def test_twenty_payers_race_for_three_terminals(kaspi: Kaspi, merchant):
    k = kaspi
    pids = [await new_payment(k, merchant, "kaspi_pos", amount=100 + i) for i in range(20)]
    responses = await asyncio.gather(
        *(k.client.post(f"/pay/{pid}/start", data={"method": "kaspi_gold"}) for pid in pids)
    )
    busy = [
        pid for pid, r in zip(pids, responses, strict=True) if "error=error_terminals_busy" in r.headers["location"]
    ]
    started = [pid for pid in pids if pid not in busy]
    assert len(started) == 3 and len(busy) == 17
    async with k.db.reading() as session:
        held = list(await session.scalars(select(Terminal.busy_with).where(Terminal.busy_with.is_not(None))))
        live = list(await session.scalars(select(Attempt).where(Attempt.status == "live")))
    assert len(set(held)) == 3 and {a.terminal_id for a in live} == {t for t in {a.terminal_id for a in live}}
    assert len({a.terminal_id for a in live}) == 3  # never two payers on one terminal
    page = (await k.client.get(f"/pay/{busy[0]}?error=error_terminals_busy")).text
    assert "Все терминалы заняты" in page

    first = await k.live(started[0])
    k.pos.confirm(await terminal_of(k, first))
    await k.wait_event(started[0], "paid")
    await eventually(lambda: _free_terminals(k.db), timeout=5, what="a terminal to free")
    r = await k.client.post(f"/pay/{busy[0]}/start", data={"method": "kaspi_gold"})
    assert "error" not in r.headers["location"]
    k.pos.confirm(await terminal_of(k, await k.live(busy[0])))
    await k.wait_event(busy[0], "paid")


async def _free_terminals(db: Database) -> int:
    async with db.reading() as session:
        return len(list(await session.scalars(select(Terminal.id).where(Terminal.busy_with.is_(None)))))


async def _expired_on_a_terminal(k: Kaspi, merchant, clock) -> tuple[Attempt, str]:
    """A terminal payment whose payment expired while its operation was on the terminal."""
    data = await create_payment(k.client, merchant, provider="kaspi_pos", expires_in=60, webhook_url=k.sink.on("/h"))
    pid = data["transaction_id"]
    await k.start(pid)
    attempt = await k.live(pid)
    name = await terminal_of(k, attempt)
    clock.advance(seconds=61)
    await k.wait_event(pid, "expired")
    return attempt, name


async def test_expired_payment_frees_its_terminal(kaspi: Kaspi, merchant, clock):
    """A terminal that has /v2/cancel (the old system's firmware): the operation is cancelled on
    the device before the pool gets the terminal back, and the terminal is remembered as able."""
    k = kaspi
    for name in k.pos.terminals:
        k.pos.set_features(name, True)
    _, name = await _expired_on_a_terminal(k, merchant, clock)
    await wait_until(lambda: not k.pos.terminal(name)["busy"], timeout=5, what="the operation to be cancelled")
    await eventually(lambda: _free_terminals_eq(k.db, 3), timeout=5, what="all terminals free")
    async with k.db.reading() as session:
        assert await session.scalar(select(Terminal.cancel_supported).where(Terminal.name == name)) is True


async def test_a_terminal_without_cancel_is_held_until_its_operation_ends(kaspi: Kaspi, merchant, clock):
    """Issue 12: /v2/cancel is in no independent contract and S answers 404; our expiry and the
    payer's cancel depended on it. Now: learnt per terminal, and a terminal whose operation we
    cannot cancel stays out of the pool until the terminal itself ends the operation."""
    k = kaspi
    attempt, name = await _expired_on_a_terminal(k, merchant, clock)

    async def learnt() -> bool:
        async with k.db.reading() as session:
            return await session.scalar(select(Terminal.cancel_supported).where(Terminal.name == name)) is False

    await eventually(learnt, timeout=5, what="the terminal to be known as unable to cancel")
    polls = k.pos.terminal(name)["statusCalls"]
    await wait_until(lambda: k.pos.terminal(name)["statusCalls"] > polls + 2, timeout=5, what="more cycles")
    assert k.pos.terminal(name)["busy"] and await _free_terminals(k.db) == 2  # still showing its QR: held

    k.pos.fail(name)  # the terminal's own timeout (or the payer) ends the operation
    await eventually(lambda: _free_terminals_eq(k.db, 3), timeout=5, what="the terminal back in the pool")
    async with k.db.reading() as session:
        assert (await session.get(Attempt, attempt.id)).status == "expired"


async def test_a_terminal_that_never_ends_its_operation_is_freed_after_the_hold(kaspi: Kaspi, merchant, clock):
    k = kaspi
    _, name = await _expired_on_a_terminal(k, merchant, clock)
    polls = k.pos.terminal(name)["statusCalls"]
    await wait_until(lambda: k.pos.terminal(name)["statusCalls"] > polls + 1, timeout=5, what="more cycles")
    assert await _free_terminals(k.db) == 2
    clock.advance(seconds=poller.HOLD_AFTER_END.total_seconds())
    await eventually(lambda: _free_terminals_eq(k.db, 3), timeout=5, what="the terminal back in the pool")
    # A payer sent to it while it still shows the old QR hears "busy" and is offered another.
    assert k.pos.terminal(name)["busy"]


async def _free_terminals_eq(db: Database, n: int) -> bool:
    return await _free_terminals(db) == n


@pytest.mark.slow  # over 2 s: make test runs it, make test-fast does not
async def test_check_active_payments_once(kaspi: Kaspi, merchant):
    """The old cron script's manual run, now one poll pass; it prints the same kind of lines."""
    k = kaspi
    pid = await new_payment(k, merchant, "kaspi_qr")
    await k.start(pid)
    await k.live(pid)
    s = k.ctx.settings
    env = {key: value for key, value in os.environ.items() if not key.startswith("PAYCENTER_")}
    env |= {
        "PAYCENTER_DATABASE_URL": s.database_url,
        "PAYCENTER_ENABLED_PROVIDERS": s.enabled_providers,
        "PAYCENTER_KASPI_QR_BASE_URL": s.kaspi_qr_base_url,
        "PAYCENTER_KASPI_QR_API_KEY": s.kaspi_qr_api_key,
        "PAYCENTER_KASPI_QR_DEVICE_TOKEN": s.kaspi_qr_device_token,
    }
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("paycenter")),
        "check-active-payments",
        "--once",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0] == "=== CHECK ACTIVE PAYMENTS - ONE PASS ==="
    assert re.fullmatch(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] Check #1: Found 1 active payment\(s\)", lines[1])
    assert re.fullmatch(r"\[.+\] Completed after \d+ seconds \(1 checks\)", lines[-1])


async def test_qr_paid_after_the_payment_expired_is_reported_late(kaspi: Kaspi, merchant, clock):
    k = kaspi
    data = await create_payment(k.client, merchant, provider="kaspi_qr", expires_in=60, webhook_url=k.sink.on("/l"))
    pid = data["transaction_id"]
    await k.start(pid)
    attempt = await k.live(pid)
    clock.advance(seconds=61)
    await k.wait_event(pid, "expired")
    k.qr.confirm(qr_id(attempt))  # the payer confirms in the app a moment too late
    body = await k.wait_event(pid, "paid")
    assert (body["paid_late"], body["status"], body["paid_amount"]) == (True, "expired", 500)
    assert (await k.payment(pid))["paid_late"] is True


async def test_readyz(kaspi: Kaspi):
    r = await kaspi.client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    assert (await kaspi.client.get("/healthz")).json() == {"status": "ok"}


# --- terminal tokens (issue 12: static tokens stopped every terminal after a day) ------------------


async def _register(k: Kaspi, name: str, client: str = "paycenter-test") -> TerminalRef:
    """What `paycenter terminal register` does (its own test: test_cli), in this process."""
    provider = k.ctx.providers.get("kaspi_pos")
    async with k.db.reading() as session:
        row = await terminals.get(session, name)
    registered = await provider.register(terminals.ref(row), client)
    async with k.db.transaction() as session:
        await terminals.save_registration(
            session, name=name, base_url=row.base_url, camera_url=None, registered=registered, now=k.ctx.now()
        )
    return registered


async def _only(k: Kaspi, *names: str) -> None:
    async with k.db.transaction() as session:
        for row in await terminals.all_terminals(session):
            row.is_active = row.name in names


async def _terminal_row(k: Kaspi, name: str) -> Terminal:
    async with k.db.reading() as session:
        return await terminals.get(session, name)


async def _pay_on(k: Kaspi, merchant, name: str) -> None:
    pid = await new_payment(k, merchant, "kaspi_pos")
    await k.start(pid)
    assert await terminal_of(k, await k.live(pid)) == name
    k.pos.confirm(name)
    await k.wait_event(pid, "paid")


async def test_pos_token_is_renewed_before_it_expires(kaspi: Kaspi, merchant, clock):
    k = kaspi
    first = await _register(k, "T1")
    await _only(k, "T1")
    row = await _terminal_row(k, "T1")
    assert (row.client_name, row.refresh_token) == ("paycenter-test", first.refresh_token)
    assert row.token_expires_at is not None and timedelta(hours=22) < row.token_expires_at - clock() <= timedelta(
        hours=24
    )

    # An idle terminal: nothing calls it, yet its pair is renewed before the day is over.
    clock.advance(hours=18)
    k.pos.advance_clock("T1", 18 * 3600)
    await wait_until(lambda: k.pos.terminal("T1")["revokeCalls"] == 1, timeout=5, what="the renewal")

    async def renewed() -> Terminal | None:
        found = await _terminal_row(k, "T1")
        return found if found.access_token != first.access_token else None

    row = await eventually(renewed, timeout=5, what="the renewed pair stored")
    assert row.refresh_token != first.refresh_token and row.health != terminals.TOKEN_TROUBLE
    assert row.token_renewed_at is not None and abs(row.token_renewed_at - clock()) < timedelta(minutes=1)

    # Past the first pair's day: payments go on with the renewed one.
    clock.advance(hours=7)
    k.pos.advance_clock("T1", 7 * 3600)
    await _pay_on(k, merchant, "T1")
    assert k.pos.terminal("T1")["revokeCalls"] == 1 and k.pos.terminal("T1")["rejectedTokens"] == 0


async def test_pos_expired_static_token_sends_the_payer_to_another_terminal(kaspi: Kaspi, merchant):
    """Issue 12's defect: a static token dies after about a day and the terminal with it. Now the
    payer is sent to a terminal that works, and the operator is told what fixes this one."""
    k = kaspi
    await _only(k, "T1", "T2")
    k.pos.advance_clock("T1", 25 * 3600)  # T1's token has expired; T2's has not
    await _pay_on(k, merchant, "T2")
    row = await _terminal_row(k, "T1")
    assert row.health == terminals.TOKEN_TROUBLE
    assert "paycenter terminal register T1 --url" in (row.last_error or "")
    assert row.busy_with is None and k.pos.terminal("T1")["busy"] is False

    await _only(k, "T1")  # the only one left: the payer hears why, nothing is held
    pid = await new_payment(k, merchant, "kaspi_pos")
    r = await k.client.post(f"/pay/{pid}/start", data={"method": "kaspi_gold"})
    assert "error" in r.headers["location"] and "terminals_busy" not in r.headers["location"], r.headers["location"]
    assert await _free_terminals(k.db) == 3


async def test_pos_token_renewed_by_another_process_is_picked_up(kaspi: Kaspi, merchant, clock):
    k = kaspi
    await _register(k, "T1")
    stale = terminals.ref(await _terminal_row(k, "T1"))
    # Its clock is not moved, so it sees no renewal due: it learns of the renewal by a refusal.
    elsewhere = kaspi_pos_provider.KaspiPosProvider(k.ctx.settings, store=terminals.TokenStore(k.db))
    try:
        assert (await elsewhere.device_info(stale))["serialNum"]
        clock.advance(hours=18)
        k.pos.advance_clock("T1", 18 * 3600)
        await wait_until(lambda: k.pos.terminal("T1")["revokeCalls"] == 1, timeout=5, what="the renewal here")
        # The other process still holds the old token: refused once, then the stored pair is used.
        await eventually(lambda: _differs(k, stale), timeout=5, what="the renewed pair stored")
        assert (await elsewhere.device_info(stale))["serialNum"]
        assert k.pos.terminal("T1")["revokeCalls"] == 1  # not renewed twice
        assert k.pos.terminal("T1")["rejectedTokens"] == 1
    finally:
        await elsewhere.close()


async def _differs(k: Kaspi, stale: TerminalRef) -> bool:
    return (await _terminal_row(k, stale.name)).access_token != stale.access_token


async def test_pos_refused_renewal_marks_the_terminal_for_registration(kaspi: Kaspi, merchant):
    k = kaspi
    await _register(k, "T1")
    provider = k.ctx.providers.get("kaspi_pos")
    k.pos.advance_clock("T1", 25 * 3600)  # paycenter was down for a day: the pair died unrenewed
    with pytest.raises(kaspi_pos_provider.TokenRejected) as refused:
        await provider.device_info(terminals.ref(await _terminal_row(k, "T1")))
    assert "register it again" in refused.value.message
    row = await _terminal_row(k, "T1")
    assert row.health == terminals.TOKEN_TROUBLE and "paycenter terminal register T1" in (row.last_error or "")
    # Registering again heals it.
    await _register(k, "T1")
    assert (await provider.device_info(terminals.ref(await _terminal_row(k, "T1"))))["serialNum"]
    assert (await _terminal_row(k, "T1")).health == "ok"


async def _crashed_start(k: Kaspi, merchant) -> tuple[str, str, str]:
    """A payer's start whose process died between the terminal's answer and recording it: the
    operation is on the terminal's screen and paycenter has no processId. (payment, attempt, terminal)"""
    pid = await new_payment(k, merchant, "kaspi_pos")
    async with k.db.transaction() as session:
        begun = await attempts_module.begin(
            session, payment_id=pid, method_code="kaspi_gold", providers=k.ctx.providers, now=k.ctx.now()
        )
    await k.ctx.providers.get("kaspi_pos").start(begun.request)  # answered, never attached
    assert begun.request.terminal is not None
    return pid, begun.request.attempt_id, begun.request.terminal.name


@pytest.mark.parametrize("can_cancel", [True, False])
async def test_pos_start_never_recorded_is_cleared_or_set_before_an_operator(kaspi: Kaspi, merchant, clock, can_cancel):
    """kaspi.md §B (N): a start whose processId was never stored is not repeated and goes to manual
    review. Before: closed as failed and the terminal freed, while its QR could still be paid."""
    k = kaspi
    for name in k.pos.terminals:
        k.pos.set_features(name, can_cancel)
    _, attempt_id, name = await _crashed_start(k, merchant)
    clock.advance(seconds=k.worker.poller.stale_start.total_seconds() + 1)
    await eventually(lambda: _status_of(k.db, attempt_id, "failed"), timeout=5, what="the start to be given up")
    reason = await _quarantine_reason(k.db, attempt_id)
    if can_cancel:
        await wait_until(lambda: not k.pos.terminal(name)["busy"], timeout=5, what="the operation cleared")
        await eventually(lambda: _free_terminals_eq(k.db, 3), timeout=5, what="the terminal back")
        assert reason is None
        return
    assert reason is not None and f"terminal {name}" in reason and "check the terminal's cheques" in reason
    assert k.pos.terminal(name)["busy"] and await _free_terminals(k.db) == 2  # its QR may still be paid
    clock.advance(seconds=poller.HOLD_AFTER_END.total_seconds())
    await eventually(lambda: _free_terminals_eq(k.db, 3), timeout=5, what="the terminal back after the hold")


async def test_pos_an_unreachable_terminal_sends_the_payer_to_the_next(kaspi: Kaspi, merchant):
    """No connection at all: the request never reached the terminal, so the payer is offered the
    next free one instead of an error (a timeout is different: the terminal may have acted)."""
    k = kaspi
    await _only(k, "T1", "T2")
    async with k.db.transaction() as session:
        (await terminals.get(session, "T1")).base_url = "https://127.0.0.1:9/terminals/T1"  # nothing listens
    await _pay_on(k, merchant, "T2")
    assert await _free_terminals(k.db) == 3
