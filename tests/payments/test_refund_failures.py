"""Refunds that do not simply go through, end to end (issue 14): the merchant API and the admin,
the real worker and poller, both Kaspi simulators over HTTP and a loopback webhook endpoint, on
every backend.

- Refused before anything is reserved: nothing paid, an amount the currency cannot hold, more
  than is left, everything already reserved or refunded: 409, and not a row written.
- A terminal refund the customer declines, or one the terminal cannot take (kopecks), fails:
  `refund_failed`, the terminal back in the pool, the money still refundable.
- A terminal held by a payer, or busy at the device (``NotSent``): the leg waits, unsent, and goes
  once the terminal is free; a customer on the terminal is never asked twice.
- A leg marked sent whose answer never came (a crash between the mark and the answer): never sent
  again blindly. Kaspi QR is asked what became of it (``resync``: done, or not done and then sent
  again, a failed lookup asked again later); a terminal, which cannot be asked, fails it with
  words for the operator.

Each test checks the books: what the payment, its refunds and their legs say went back (minor
units) is what the simulator returned and what the `refunded` webhooks said, once.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text

from kit.admin import act, admin_browser, flash
from kit.api import MerchantCreds, create_payment
from kit.clock import drive
from kit.db import row_counts
from kit.kaspi import Kaspi, legs_of, new_payment, qr_id, settled, settles, terminal_of
from kit.quarantine import UNDECRYPTABLE, mark_of, plant, quarantined
from kit.sink import eventually, wait_until
from paycenter.payments import refunds
from paycenter.payments.models import Operation, Payment, Refund, RefundLeg
from paycenter.providers.models import Terminal
from paycenter.quarantine import Loop

# What a refund request may write; the worker's own tables (leases, heartbeats...) change on their own.
MONEY_TABLES = ("payments", "operations", "refunds", "refund_legs", "events", "webhook_deliveries", "idempotency_keys")
R3 = pytest.mark.parametrize("kaspi", ["r3"], indirect=True)  # r3 refunds directly (kaspi-qr-api.md §5)


async def assert_books(k: Kaspi, pid: str, returned: int) -> None:
    """``returned`` (minor units) went back, counted once everywhere: the payment, its refunds,
    their succeeded legs and the `refunded` webhooks agree."""
    async with k.db.reading() as session:
        payment = await session.get(Payment, pid, populate_existing=True)
        by_refunds = await session.scalar(
            select(func.coalesce(func.sum(Refund.refunded_amount), 0)).where(Refund.payment_id == pid)
        )
        by_legs = await session.scalar(
            select(func.coalesce(func.sum(RefundLeg.amount), 0))
            .join(Refund, Refund.id == RefundLeg.refund_id)
            .where(Refund.payment_id == pid, RefundLeg.status == "succeeded")
        )
    assert (payment.refunded_amount, int(by_refunds), int(by_legs)) == (returned, returned, returned)
    told = sum(Decimal(str(b["refund_amount"])) for b in await k.webhooks(pid, "refunded"))
    assert told * 100 == returned


async def refused(k: Kaspi, pid: str, body: dict | None, code: str | None, words: str) -> None:
    """A refund answered 409 in the envelope, that wrote nothing."""
    before = await money_rows(k)
    r = await k.client.post(f"/api/payment/{pid}/refund", json=body)
    assert r.status_code == 409, r.text
    answer = r.json()
    assert answer["success"] is False and words in answer["message"], r.text
    if code:
        assert answer["error"]["code"] == code, r.text
    assert await money_rows(k) == before


async def money_rows(k: Kaspi) -> dict[str, int]:
    counts = await row_counts(k.db)
    return {table: counts[table] for table in MONEY_TABLES}


async def paid_pos(k: Kaspi, merchant: MerchantCreds, amount: int = 500) -> tuple[str, str]:
    """A Kaspi POS payment paid in full: (its id, its terminal's name), the terminal free again."""
    pid = await new_payment(k, merchant, "kaspi_pos", amount=amount)
    await k.start(pid)
    name = await terminal_of(k, await k.live(pid))
    k.pos.confirm(name)
    await k.wait_event(pid, "paid")
    await eventually(lambda: held_by(k, name, None), timeout=5, what=f"{name} back in the pool")
    return pid, name


async def held_by(k: Kaspi, name: str, holder: str | None) -> bool:
    """Whether paycenter's pool has terminal ``name`` held by ``holder`` (None: free)."""
    async with k.db.reading() as session:
        busy_with = await session.scalar(select(Terminal.busy_with).where(Terminal.name == name))
    return busy_with == holder


async def settles_now(k: Kaspi, refund_id: str, *statuses: str) -> Refund | None:
    async with k.db.reading() as session:
        refund = await session.get(Refund, refund_id, populate_existing=True)
    return refund if refund is not None and refund.status in statuses else None


async def only_leg(k: Kaspi, refund_id: str) -> RefundLeg:
    (leg,) = await legs_of(k, refund_id)
    return leg


async def asked(k: Kaspi, pid: str, body: dict | None = None) -> dict:
    """A refund through the merchant API: its view."""
    r = await k.client.post(f"/api/payment/{pid}/refund", json=body)
    assert r.status_code == 200, r.text
    return r.json()["data"]["refund"]


def sale_by_hand(k: Kaspi, name: str) -> None:
    """The cashier starts a sale on the terminal itself: the device is busy, paycenter's pool is not."""
    k.pos.api_payment(k.pos.get(name), "100")


# --- refused up front ------------------------------------------------------------------------------


@R3
async def test_refunds_that_cannot_be_reserved_are_refused_and_write_nothing(kaspi: Kaspi, merchant):
    k = kaspi
    unpaid = (await create_payment(k.client, merchant, provider="kaspi_qr", webhook_url=k.sink.on("/hooks")))[
        "transaction_id"
    ]
    await refused(k, unpaid, None, None, "has received no money to refund")

    pid = await new_payment(k, merchant, "kaspi_qr", amount=500)
    for part in (200, 300):  # two QR payments: two operations to refund from, newest first
        await k.start(pid)
        k.qr.confirm(qr_id(await k.live(pid)), amount=part)
        await k.wait_event(pid, "paid" if part == 300 else "partially_paid")
    await settled(k)
    k.ctx.clock.freeze()  # what is pending stays pending until the test moves the clock
    await refused(k, pid, {"amount": 0.005}, "amount_not_in_currency", "KZT")
    await refused(k, pid, {"amount": 500.01}, "amount_exceeds_refundable", "refundable sum of 500.00 KZT")

    # Kaspi asks to try again: both refunds stay pending, and what they reserve is not refundable.
    k.qr.inject_error("payment/return", -99000006, times=None)
    first = await asked(k, pid, {"amount": 300})
    second = await asked(k, pid)
    assert (first["status"], second["status"], second["amount"]) == ("pending", "pending", "200.00")
    async with k.db.reading() as session:
        amounts = dict((await session.execute(select(Operation.id, Operation.amount))).all())
    # Each takes a whole operation: the newest (300) for the first, what is left of the older for the second.
    assert [amounts[leg.operation_id] for leg in await legs_of(k, first["id"])] == [30000]
    assert [(leg.amount, amounts[leg.operation_id]) for leg in await legs_of(k, second["id"])] == [(20000, 20000)]
    await settled(k)
    await refused(k, pid, None, "invalid_state", "earlier refunds cover everything paid")
    await refused(k, pid, {"amount": 1}, "invalid_state", "earlier refunds cover everything paid")

    k.qr.clear_injected()
    for refund in (first, second):
        await drive(k.ctx.clock, lambda r=refund: settles_now(k, r["id"], "succeeded"), step=6, what="the refunds")
    await k.wait_event(pid, "refunded", count=2)
    await settled(k)
    await refused(k, pid, None, None, "already been refunded in full")
    assert sorted(p["Returned"] for p in k.qr.payments()) == [200, 300]
    await assert_books(k, pid, 50000)
    assert await k.webhooks(pid, "refund_failed") == []


# --- the terminal says no --------------------------------------------------------------------------


@pytest.mark.slow  # over 2 s: make test runs it, make test-fast does not
async def test_a_terminal_refund_the_customer_declines_fails_and_stays_refundable(kaspi: Kaspi, merchant):
    k = kaspi
    pid, name = await paid_pos(k, merchant)
    refund = await asked(k, pid, {"amount": 100, "reason": "damaged box"})
    assert refund["status"] == "pending"
    leg = await only_leg(k, refund["id"])
    assert leg.provider_ref is not None and await held_by(k, name, leg.id)  # on the terminal, awaiting the customer

    k.pos.fail_refund(name)  # the customer declines in the Kaspi app
    failed = await settles(k, refund["id"], "failed")
    assert (failed.amount, failed.refunded_amount) == (10000, 0) and failed.error
    body = await k.wait_event(pid, "refund_failed")
    assert (body["refund_id"], body["refund_amount"], body["failed_amount"], body["refunded_amount"]) == (
        refund["id"],
        100,
        100,
        0,
    )
    assert (body["partial"], body["status"], body["reason"]) == (False, "paid", "damaged box")
    assert await held_by(k, name, None)  # the terminal is back in the pool
    assert await k.webhooks(pid, "refunded") == []
    await assert_books(k, pid, 0)

    # Nothing went back, so all of it can be refunded: this time the customer confirms.
    again = await asked(k, pid)
    assert again["amount"] == "500.00"
    await wait_until(lambda: k.pos.terminal(name)["busy"], timeout=5, what="the refund on the terminal")
    k.pos.confirm_refund(name)
    await settles(k, again["id"], "succeeded")
    body = await k.wait_event(pid, "refunded")
    assert (body["refund_amount"], body["status"], body["full_refund"]) == (500, "refunded", True)
    assert [(r["amount"], r["status"]) for r in k.pos.terminal(name)["refunds"]] == [(100, "fail"), (500, "success")]
    await assert_books(k, pid, 50000)


async def test_a_refund_in_tiyn_on_a_terminal_fails_at_once_from_the_admin(kaspi: Kaspi, merchant):
    """A terminal takes whole tenge only: the provider refuses the leg without asking it (not
    retryable), so the refund fails at once, and the terminal it held is given back."""
    k = kaspi
    pid, name = await paid_pos(k, merchant)
    async with admin_browser(k.client._transport.app, k.db, k.ctx.clock) as browser:  # type: ignore[attr-defined]
        r = await act(browser, f"/admin/transactions/{pid}/refund", {"amount": "100.50", "reason": "price match"})
        assert flash(r)["notice"] == ["done"]
        page = (await browser.get(f"/admin/transactions/{pid}")).text
    async with k.db.reading() as session:
        refund = await session.scalar(select(Refund).where(Refund.payment_id == pid))
    assert (refund.status, refund.amount, refund.refunded_amount) == ("failed", 10050, 0)
    assert "whole tenge" in refund.error
    refunds_table = page[page.index('data-testid="refunds"') :]
    assert refund.id in refunds_table and "whole tenge" in refunds_table
    body = await k.wait_event(pid, "refund_failed")
    assert (body["failed_amount"], body["refund_amount"], body["reason"]) == (100.5, 100.5, "price match")
    assert k.pos.terminal(name)["refunds"] == []  # the terminal was never asked
    assert await held_by(k, name, None)
    await assert_books(k, pid, 0)


# --- the terminal is busy: the leg waits, unsent --------------------------------------------------


@pytest.mark.slow  # over 2 s: make test runs it, make test-fast does not
async def test_a_refund_waits_for_its_terminal_while_payers_hold_it(kaspi: Kaspi, merchant):
    k = kaspi
    pid, name = await paid_pos(k, merchant)
    others = []
    for _ in range(3):  # every terminal of the pool gets a payer, the refund's own one included
        other = await new_payment(k, merchant, "kaspi_pos")
        await k.start(other)
        others.append((other, await terminal_of(k, await k.live(other))))
    refund = await asked(k, pid)
    assert refund["status"] == "pending"  # the money must go back where it was taken: it waits
    leg = await only_leg(k, refund["id"])
    assert leg.sent_at is None and leg.provider_ref is None
    assert k.pos.terminal(name)["refunds"] == []

    payer = next(other for other, terminal in others if terminal == name)
    k.pos.confirm(name)  # that payer pays; the terminal is free again
    await k.wait_event(payer, "paid")

    async def on_terminal() -> bool:
        return bool(k.pos.terminal(name)["refunds"])

    await drive(k.ctx.clock, on_terminal, step=5, what="the refund sent once the terminal is free")
    k.pos.confirm_refund(name)
    await settles(k, refund["id"], "succeeded")
    await k.wait_event(pid, "refunded")
    assert len(k.pos.terminal(name)["refunds"]) == 1
    await assert_books(k, pid, 50000)


async def busy_at_the_device(k: Kaspi, merchant: MerchantCreds) -> tuple[str, str, RefundLeg]:
    """A POS payment whose refund the terminal refused as busy (a sale started on it by hand):
    (payment id, terminal name, the unsent leg). The clock is frozen: the leg waits for it."""
    pid, name = await paid_pos(k, merchant)
    k.ctx.clock.freeze()
    sale_by_hand(k, name)
    refund = await asked(k, pid)
    assert refund["status"] == "pending"
    leg = await only_leg(k, refund["id"])
    assert leg.sent_at is None and leg.provider_ref is None and "busy" in leg.error
    assert await held_by(k, name, None)  # not held meanwhile: payers may use it
    assert k.pos.terminal(name)["refunds"] == []
    return pid, name, leg


async def test_a_terminal_busy_at_the_device_gets_the_refund_once_free(kaspi: Kaspi, merchant):
    k = kaspi
    pid, name, leg = await busy_at_the_device(k, merchant)
    k.pos.fail(name)  # the cashier's sale ends

    async def on_terminal() -> bool:
        return bool(k.pos.terminal(name)["refunds"])

    await drive(k.ctx.clock, on_terminal, step=5, what="the refund sent again")
    k.pos.confirm_refund(name)
    done = await drive(k.ctx.clock, lambda: settles_now(k, leg.refund_id, "succeeded"), step=2, what="the refund")
    assert done.refunded_amount == 50000
    assert (await only_leg(k, leg.refund_id)).error is None
    await k.wait_event(pid, "refunded")
    assert len(k.pos.terminal(name)["refunds"]) == 1  # the customer was asked once
    await assert_books(k, pid, 50000)


# --- sent, and the answer never came -------------------------------------------------------------


async def test_a_terminal_refund_whose_answer_never_came_fails_for_the_operator(kaspi: Kaspi, merchant):
    """A terminal cannot be asked what became of a refund it may have started: the leg fails with
    words for the operator rather than asking the customer again."""
    k = kaspi
    pid, name, leg = await busy_at_the_device(k, merchant)
    k.pos.fail(name)
    async with k.db.transaction() as session:  # the process marks the leg sent, then dies
        assert await refunds.begin_leg(session, leg_id=leg.id, now=k.ctx.clock()) is not None
    assert await held_by(k, name, leg.id)

    failed = await drive(
        k.ctx.clock, lambda: settles_now(k, leg.refund_id, "failed"), step=10, what="the refund to fail"
    )
    assert "check with the bank" in failed.error and failed.refunded_amount == 0
    body = await k.wait_event(pid, "refund_failed")
    assert (body["failed_amount"], body["partial"]) == (500, False) and "check with the bank" in body["error"]
    assert k.pos.terminal(name)["refunds"] == []  # never sent again blindly
    assert await held_by(k, name, None)
    await assert_books(k, pid, 0)


@R3
@pytest.mark.parametrize("moved", [True, False], ids=["money_moved", "money_stayed"])
async def test_a_kaspi_refund_whose_answer_never_came_is_looked_up_not_sent_twice(
    moved: bool,
    kaspi: Kaspi,
    merchant,
):
    k = kaspi
    pid = await new_payment(k, merchant, "kaspi_qr", amount=500)
    await k.start(pid)
    k.qr.confirm(qr_id(await k.live(pid)))
    await k.wait_event(pid, "paid")
    k.ctx.clock.freeze()
    k.qr.inject_error("payment/return", -99000006, times=1)  # try again: the leg waits, unsent
    refund = await asked(k, pid)
    leg = await only_leg(k, refund["id"])
    assert refund["status"] == "pending" and leg.sent_at is None and "try again" in leg.error

    # The process marks the leg sent; then Kaspi does the return (or the call never leaves), and
    # the process dies before it records the answer.
    async with k.db.transaction() as session:
        begun = await refunds.begin_leg(session, leg_id=leg.id, now=k.ctx.clock())
    assert begun is not None
    if moved:
        provider_name, ref = begun
        outcome = await k.ctx.providers.get(provider_name).refund(ref)
        assert outcome.succeeded is True
    assert k.qr.payments()[0]["Returned"] == (500 if moved else 0)
    k.qr.inject_error("payment/details", -999, times=1)  # the first lookup finds Kaspi unavailable

    done = await drive(k.ctx.clock, lambda: settles_now(k, refund["id"], "succeeded"), step=10, what="the lookup")
    assert done.refunded_amount == 50000
    row = await only_leg(k, refund["id"])
    calls = k.qr.stats()["Calls"]
    assert calls["payment/details"] >= 2  # looked up again after Kaspi was unavailable
    # One refused send, then one that did it: by the dying process, or by the poller once Kaspi
    # said it had no record of the return.
    assert calls["payment/return"] == 2
    assert (row.provider_ref == "resynced") is moved and row.error is None
    assert k.qr.payments()[0]["Returned"] == 500  # once
    body = await k.wait_event(pid, "refunded")
    assert (body["refund_amount"], body["full_refund"]) == (500, True)
    await assert_books(k, pid, 50000)
    assert await k.webhooks(pid, "refund_failed") == []


# --- the leg cannot be handled: quarantined, retried by an operator --------------------------------


async def test_a_leg_no_key_can_send_is_quarantined_and_goes_after_the_operators_retry(kaspi: Kaspi, merchant):
    """Its terminal's token is encrypted and no key is configured to read it (a key lost in a
    deployment): a fault of the row, not of the network. The request still answers (the refund
    pending), the leg is set aside with the reason, the operator fixes the key and retries it from
    the admin, and the refund goes, once."""
    k = kaspi
    pid, name = await paid_pos(k, merchant)
    async with k.db.reading() as session:
        token = await session.scalar(text("SELECT access_token FROM terminals WHERE name = :name"), {"name": name})
    await plant(k.db, f"UPDATE terminals SET access_token = '{UNDECRYPTABLE}' WHERE name = :name", name=name)
    refund = await asked(k, pid)
    assert refund["status"] == "pending"
    leg = await only_leg(k, refund["id"])
    assert leg.sent_at is None  # the mark was rolled back with the failure: nothing went out
    mark = await quarantined(k.db, Loop.REFUNDS, leg.id)
    assert mark.payment_id == pid and "SecretsError" in mark.reason
    assert k.pos.terminal(name)["refunds"] == [] and await held_by(k, name, None)

    await plant(k.db, "UPDATE terminals SET access_token = :token WHERE name = :name", token=token, name=name)
    k.ctx.clock.freeze()
    k.ctx.clock.advance(seconds=-30)  # the leg's first follow-up is not due: only the retry makes it so
    async with admin_browser(k.client._transport.app, k.db, k.ctx.clock) as browser:  # type: ignore[attr-defined]
        r = await act(browser, "/admin/quarantine/retry", {"loop": Loop.REFUNDS.value, "row_id": leg.id})
        assert "error" not in flash(r)
    await wait_until(lambda: k.pos.terminal(name)["refunds"], timeout=5, what="the refund sent after the retry")
    k.pos.confirm_refund(name)
    await drive(k.ctx.clock, lambda: settles_now(k, refund["id"], "succeeded"), step=2, what="the refund")
    await k.wait_event(pid, "refunded")
    assert len(k.pos.terminal(name)["refunds"]) == 1 and await mark_of(k.db, Loop.REFUNDS, leg.id) is None
    await assert_books(k, pid, 50000)


async def test_a_refund_the_terminal_already_has_is_never_unsent_or_failed_by_a_lost_call(kaspi: Kaspi, merchant):
    """Whoever reports a lost call for a leg the terminal already has (its provider_ref), and however
    long after the refund was asked, the leg is neither sent again nor failed: its money may still
    move at the terminal. It says why it waits and is asked again after a pause. (Before, the poller's
    own path was special-cased; unsend_leg failed such a leg once retry_for had passed.)"""
    k = kaspi
    pid, name = await paid_pos(k, merchant)
    refund = await asked(k, pid)
    leg = await only_leg(k, refund["id"])
    assert refund["status"] == "pending" and leg.provider_ref is not None
    late = leg.created_at + refunds.DEFAULT_RETRY_FOR + timedelta(minutes=1)
    async with k.db.transaction() as session:
        await refunds.unsend_leg(session, leg_id=leg.id, error="terminal unreachable", now=late)
    row = await only_leg(k, refund["id"])
    assert row.status == "pending" and row.provider_ref == leg.provider_ref and row.sent_at == leg.sent_at
    assert row.error == "terminal unreachable" and row.next_poll_at == late + timedelta(seconds=5)
    assert await held_by(k, name, leg.id)  # the terminal stays the refund's until it answers

    k.pos.confirm_refund(name)
    k.ctx.clock.advance(seconds=(row.next_poll_at - k.ctx.clock()).total_seconds() + 1)  # its pause over
    done = await settles(k, refund["id"], "succeeded")
    assert done.refunded_amount == 50000
    await k.wait_event(pid, "refunded")
    await assert_books(k, pid, 50000)


async def test_a_terminal_unreachable_while_the_customer_confirms_is_asked_later(kaspi: Kaspi, merchant):
    """The refund is on the terminal, awaiting the customer, when the terminal drops off the network:
    nothing is sent again (the terminal has the refund), the leg says why it waits and is asked again
    after a pause; once the terminal is back the customer's confirmation is read."""
    k = kaspi
    pid, name = await paid_pos(k, merchant)
    refund = await asked(k, pid)
    leg = await only_leg(k, refund["id"])
    assert refund["status"] == "pending" and leg.provider_ref is not None
    async with k.db.reading() as session:
        base_url = await session.scalar(select(Terminal.base_url).where(Terminal.name == name))
    k.ctx.clock.freeze()
    await plant(k.db, "UPDATE terminals SET base_url = 'http://127.0.0.1:9' WHERE name = :name", name=name)

    async def waiting() -> RefundLeg | None:
        row = await only_leg(k, refund["id"])
        return row if row.error and "unreachable" in row.error else None

    row = await drive(k.ctx.clock, waiting, step=2, what="the leg to say the terminal is unreachable")
    assert row.status == "pending" and row.provider_ref == leg.provider_ref and row.sent_at == leg.sent_at
    assert row.next_poll_at > k.ctx.clock()  # a pause, not a call every cycle
    assert await held_by(k, name, leg.id)

    await plant(k.db, "UPDATE terminals SET base_url = :url WHERE name = :name", url=base_url, name=name)
    k.pos.confirm_refund(name)
    done = await drive(k.ctx.clock, lambda: settles_now(k, refund["id"], "succeeded"), step=2, what="the refund")
    assert done.refunded_amount == 50000 and (await only_leg(k, refund["id"])).error is None
    await k.wait_event(pid, "refunded")
    assert len(k.pos.terminal(name)["refunds"]) == 1 and await held_by(k, name, None)
    await assert_books(k, pid, 50000)
