"""Manual refunds: for a provider that cannot refund through paycenter (``refunds_refused``: Kaspi
QR r1 here, the Kaspi biller too), an operator records money returned in the bank's own cabinet.

It is a refund like another in the books (the payment's ``refunded_amount``, a succeeded refund
with succeeded legs, the ``refunded`` webhook written with the change), marked manual with who
recorded it, audited; never more than is refundable, never twice for one form, and refused for
providers that do refund. On every backend; the end-to-end case with the Kaspi QR simulator, the
worker and a webhook receiver over loopback HTTP.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from kit.admin import act, admin_browser, flash, signed_in
from kit.api import MerchantCreds
from kit.biller_rows import insert_payment, pay
from kit.clock import Clock
from kit.db import row_counts
from kit.kaspi import Kaspi, new_payment, qr_id
from paycenter.config import Settings
from paycenter.context import AppContext
from paycenter.db import Database
from paycenter.errors import ApiError
from paycenter.operators.models import AuditEntry
from paycenter.payments import refunds
from paycenter.payments.models import Event, Operation, Payment, Refund, RefundLeg

MONEY_TABLES = ("payments", "operations", "refunds", "refund_legs", "events", "webhook_deliveries", "audit_log")
SUBMISSION = re.compile(r'name="submission_id" value="([^"]+)"')


async def books(db: Database, pid: str) -> dict[str, Any]:
    async with db.reading() as session:
        payment = await session.get(Payment, pid, populate_existing=True)
        assert payment is not None
        rows = list(await session.scalars(select(Refund).where(Refund.payment_id == pid).order_by(Refund.created_at)))
        legs = await session.scalar(
            select(func.coalesce(func.sum(RefundLeg.amount), 0))
            .join(Refund, Refund.id == RefundLeg.refund_id)
            .where(Refund.payment_id == pid, RefundLeg.status == "succeeded")
        )
        refunded_events = await session.scalar(
            select(func.count()).select_from(Event).where(Event.payment_id == pid, Event.type == "refunded")
        )
        audit = list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "refund_manual", AuditEntry.target == pid)
            )
        )
    return {
        "status": payment.status,
        "refunded": payment.refunded_amount,
        "refunds": rows,
        "legs": int(legs or 0),
        "events": int(refunded_events or 0),
        "audit": audit,
    }


def plain(b: dict[str, Any]) -> dict[str, Any]:
    """The books, rows by id: comparable across reads."""
    return b | {"refunds": [r.id for r in b["refunds"]], "audit": [e.id for e in b["audit"]]}


async def money_rows(db: Database) -> dict[str, int]:
    return {k: v for k, v in (await row_counts(db)).items() if k in MONEY_TABLES}


async def test_an_operator_records_a_refund_made_in_kaspi(kaspi: Kaspi, merchant: MerchantCreds) -> None:
    """Kaspi QR r1 (no refund API): paid through the simulator, refunded in Kaspi Pay by the
    cashier, recorded in the panel: counted, marked manual, webhooked, audited; in two parts."""
    k = kaspi
    pid = await new_payment(k, merchant, "kaspi_qr", amount=500)
    await k.start(pid)
    k.qr.confirm(qr_id(await k.live(pid)), customer="customer-1")
    await k.wait_event(pid, "paid")
    app = k.client._transport.app  # type: ignore[attr-defined]
    async with admin_browser(app, k.db, k.ctx.clock) as browser:
        page = (await browser.get(f"/admin/transactions/{pid}")).text
        # Offered where the refund form would be, with the provider's reason; the refund form is not.
        assert 'data-testid="refunds-refused"' in page and 'data-testid="manual-refund-form"' in page
        assert 'action="/admin/transactions/' + pid + '/refund"' not in page
        submission = SUBMISSION.search(page).group(1)  # type: ignore[union-attr]
        form = {"amount": "200", "note": "returned in Kaspi Pay, Returns", "submission_id": submission}
        r = await act(browser, f"/admin/transactions/{pid}/manual-refund", form)
        assert flash(r)["notice"] == ["done"]

        first = await books(k.db, pid)
        assert (first["status"], first["refunded"], first["legs"], first["events"]) == ("paid", 20000, 20000, 1)
        (refund,) = first["refunds"]
        assert (refund.manual, refund.status, refund.amount, refund.refunded_amount) == (
            True,
            "succeeded",
            20000,
            20000,
        )
        assert refund.reason == "returned in Kaspi Pay, Returns" and refund.recorded_by.startswith("ops")
        (entry,) = first["audit"]
        assert (
            entry.details
            == {
                "refund_id": refund.id,
                "amount": 20000,
                "note": "returned in Kaspi Pay, Returns",
            }
            and entry.actor == refund.recorded_by
        )

        # The same form again (a double click, a browser resubmitting): nothing more.
        again = await act(browser, f"/admin/transactions/{pid}/manual-refund", form)
        assert flash(again)["notice"] == ["done"]
        assert plain(await books(k.db, pid)) == plain(first)

        body = await k.wait_event(pid, "refunded")
        assert (body["refund_id"], body["refund_amount"], body["refunded_amount"]) == (refund.id, 200, 200)
        assert (body["reason"], body["full_refund"], body["status"]) == (
            "returned in Kaspi Pay, Returns",
            False,
            "paid",
        )

        # Shown marked manual in the panel.
        page = (await browser.get(f"/admin/transactions/{pid}")).text
        table = page[page.index('data-testid="refunds"') :]
        assert refund.id in table and 'data-testid="manual"' in table

        # The rest, with a new form: the payment is refunded in full.
        submission = SUBMISSION.search(page).group(1)  # type: ignore[union-attr]
        rest = {"amount": "300,00", "note": "the rest, Kaspi Pay", "submission_id": submission}
        assert flash(await act(browser, f"/admin/transactions/{pid}/manual-refund", rest))["notice"] == ["done"]
        body = await k.wait_event(pid, "refunded", count=2)
        assert (body["refund_amount"], body["refunded_amount"], body["full_refund"], body["status"]) == (
            300,
            500,
            True,
            "refunded",
        )
        final = await books(k.db, pid)
        assert (final["status"], final["refunded"], final["legs"], final["events"], len(final["audit"])) == (
            "refunded",
            50000,
            50000,
            2,
            2,
        )
        # Nothing left to refund: no form any more.
        assert 'data-testid="manual-refund-form"' not in (await browser.get(f"/admin/transactions/{pid}")).text
    # The merchant's API shows both refunds as it shows any, marked manual.
    listed = (await k.client.get(f"/api/transaction/{pid}")).json()["data"]["refunds"]
    assert [(r["amount"], r["refunded_amount"], r["status"], r["manual"]) for r in listed] == [
        ("200.00", "200.00", "succeeded", True),
        ("300.00", "300.00", "succeeded", True),
    ]
    assert (await k.payment(pid))["refunded_amount"] == "500.00"


# --- without the simulator: the limits, the refusals, the races --------------------------------


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Kaspi QR on scheme r1: a provider that refuses refunds (never called here)."""
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=database_url,
        public_url="http://pay.test",
        run_worker=False,
        enabled_providers="sandbox,kaspi_qr",
        kaspi_qr_scheme="r1",
        kaspi_qr_base_url="https://127.0.0.1:9",  # nothing listens: nothing may call it
    )


@pytest.fixture
async def browser(client: httpx.AsyncClient, admin: Any) -> AsyncIterator[httpx.AsyncClient]:
    yield await signed_in(client, admin)


async def paid(db: Database, merchant: MerchantCreds, clock: Clock, provider: str = "kaspi_qr") -> str:
    """15 000 KZT paid in two parts (two operations)."""
    now = clock()
    pid = await insert_payment(db, merchant.merchant_id, now=now, provider=provider, amount=1_500_000)
    await pay(db, pid, txn="1001", amount=1_000_000, now=now)
    await pay(db, pid, txn="1002", amount=500_000, now=now)
    return pid


def submission(n: int) -> str:
    return f"submission-{n:04d}-abcdefghijkl"


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"amount": "15000.01"}, "Refund amount exceeds the refundable sum of 15000.00 KZT"),
        ({"amount": "0"}, "amount must be greater than zero"),
        ({"amount": "-5"}, "amount must be greater than zero"),
        ({"amount": "1.001"}, "amount has more decimal places than KZT allows"),
        ({"amount": "lots"}, "amount must be a number"),
        ({"amount": ""}, "amount is required"),
        ({"note": "   "}, "A note is required"),
        ({"submission_id": "x"}, "error_form_stale"),  # the panel's own text, by its key
    ],
    ids=[
        "above refundable",
        "zero",
        "negative",
        "finer than the currency",
        "not a number",
        "no amount",
        "no note",
        "no form token",
    ],
)
async def test_refused_forms_write_nothing(
    browser: httpx.AsyncClient, db: Database, merchant: MerchantCreds, clock: Clock, form: dict[str, str], error: str
) -> None:
    pid = await paid(db, merchant, clock)
    before = await money_rows(db)
    full = {"amount": "100", "note": "returned", "submission_id": submission(1), **form}
    r = await act(browser, f"/admin/transactions/{pid}/manual-refund", full)
    (message,) = flash(r)["error"]
    assert message.startswith(error), message
    assert await money_rows(db) == before


async def test_never_more_than_is_refundable_across_refunds(
    browser: httpx.AsyncClient, db: Database, merchant: MerchantCreds, clock: Clock
) -> None:
    pid = await paid(db, merchant, clock)
    url = f"/admin/transactions/{pid}/manual-refund"
    done = await act(browser, url, {"amount": "12000", "note": "a", "submission_id": submission(1)})
    assert flash(done)["notice"] == ["done"]
    over = await act(browser, url, {"amount": "3000.01", "note": "b", "submission_id": submission(2)})
    assert flash(over)["error"] == ["Refund amount exceeds the refundable sum of 3000.00 KZT"]
    rest = await act(browser, url, {"amount": "3000", "note": "c", "submission_id": submission(3)})
    assert flash(rest)["notice"] == ["done"]
    b = await books(db, pid)
    assert (b["status"], b["refunded"], b["legs"], b["events"]) == ("refunded", 1_500_000, 1_500_000, 2)
    # Split over the two operations as a provider refund would be: each gives back what it took.
    async with db.reading() as session:
        per_operation = dict(
            (
                await session.execute(
                    select(Operation.provider_txn_id, func.sum(RefundLeg.amount))
                    .join(Operation, Operation.id == RefundLeg.operation_id)
                    .where(Operation.payment_id == pid)
                    .group_by(Operation.provider_txn_id)
                )
            ).all()
        )
    assert {k: int(v) for k, v in per_operation.items()} == {"1001": 1_000_000, "1002": 500_000}
    nothing = await act(browser, url, {"amount": "1", "note": "d", "submission_id": submission(4)})
    assert flash(nothing)["error"][0].startswith("Refund amount exceeds the refundable sum of 0.00 KZT")


async def test_refused_for_providers_that_refund(
    browser: httpx.AsyncClient, db: Database, merchant: MerchantCreds, clock: Clock
) -> None:
    pid = await paid(db, merchant, clock, provider="sandbox")
    page = (await browser.get(f"/admin/transactions/{pid}")).text
    assert 'data-testid="manual-refund-form"' not in page and 'data-testid="refund"' in page
    before = await money_rows(db)
    r = await act(
        browser,
        f"/admin/transactions/{pid}/manual-refund",
        {"amount": "1", "note": "x", "submission_id": submission(1)},
    )
    assert flash(r)["error"] == [
        "Payments of sandbox are refunded through paycenter: use the refund, not a manual record"
    ]
    assert await money_rows(db) == before


async def test_a_form_posted_twice_at_once_refunds_once(
    ctx: AppContext, db: Database, merchant: MerchantCreds, clock: Clock
) -> None:
    """Two posts of one form race (a double click): one refund, one event. Two different forms
    for the whole sum race: one succeeds, the other finds nothing left."""
    pid = await paid(db, merchant, clock)

    async def record(amount: str, sub: str) -> tuple[str, bool] | str:
        try:
            async with db.transaction() as session:
                made, created = await refunds.record_manual(
                    session,
                    payment_id=pid,
                    amount=Decimal(amount),
                    note="race",
                    recorded_by="ops",
                    submission_id=sub,
                    now=clock(),
                    providers=ctx.providers,
                )
                return made.id, created
        except ApiError as exc:
            return exc.code

    same = await asyncio.gather(*(record("100", submission(1)) for _ in range(6)))
    ids = {r[0] for r in same if isinstance(r, tuple)}
    assert len(ids) == 1 and sum(1 for r in same if isinstance(r, tuple) and r[1]) == 1, same
    b = await books(db, pid)
    assert (b["refunded"], b["legs"], b["events"], len(b["refunds"])) == (10_000, 10_000, 1, 1)

    whole = await asyncio.gather(*(record("14900", submission(n)) for n in range(2, 6)))
    assert sorted(r if isinstance(r, str) else "created" for r in whole) == [
        "amount_exceeds_refundable",
        "amount_exceeds_refundable",
        "amount_exceeds_refundable",
        "created",
    ], whole
    b = await books(db, pid)
    assert (b["status"], b["refunded"], b["legs"], b["events"], len(b["refunds"])) == (
        "refunded",
        1_500_000,
        1_500_000,
        2,
        2,
    )
