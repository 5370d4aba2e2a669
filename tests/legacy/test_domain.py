"""Issue 13, the domain side of API versions: which events a merchant is sent as webhooks (legacy
merchants only the old system's five types), and the per-merchant underpayment tolerance (the old
system's "paid if it lacks at most 10 KZT", kept for imported merchants), set from the CLI and
the admin, on every backend."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from kit.api import MerchantCreds, create_payment, make_merchant, sandbox
from kit.db import delivered_types
from paycenter import versions
from paycenter.db import Database, utcnow
from paycenter.merchants import service as merchants
from paycenter.merchants.models import Merchant
from paycenter.payments import events, service
from paycenter.payments.models import Event, EventType

LEGACY_FIVE = {"paid", "partially_paid", "cancelled", "refunded", "expired"}


@pytest.fixture
async def legacy_merchant(db: Database) -> MerchantCreds:
    return await make_merchant(db, name="Old shop", api_version=versions.LEGACY)


async def set_tolerance(db: Database, merchant_id: str, minor: int) -> None:
    async with db.transaction() as session:
        await merchants.set_underpayment_tolerance(session, merchant_id=merchant_id, tolerance=minor)


async def last_event(db: Database, pid: str) -> dict:
    async with db.reading() as session:
        body = await session.scalar(select(Event.body).where(Event.payment_id == pid).order_by(Event.sequence.desc()))
    return json.loads(body)


# --- event types per version ----------------------------------------------------------------


def test_legacy_merchants_are_sent_the_five_old_types_only() -> None:
    for event_type in EventType:
        legacy = events.sent_as_webhook(event_type, versions.LEGACY)
        current = events.sent_as_webhook(event_type, versions.CURRENT)
        assert legacy == (event_type in LEGACY_FIVE), event_type
        # Attempt events go to no one (no way to subscribe to them yet); every other type to a current merchant.
        assert current == (event_type not in events.ATTEMPT_EVENT_TYPES), event_type


async def _refund_failed(db: Database, pid: str) -> None:
    """Record a `refund_failed` the way refunds.py does: on the locked payment, in its transaction."""
    async with db.transaction() as session:
        payment = await service.lock(session, pid)
        await events.emit(
            session,
            payment,
            EventType.REFUND_FAILED,
            previous_status=payment.status,
            now=utcnow(),
            extras={"refund_id": "rf_test", "failed_amount": 500, "error": "bank said no"},
        )


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "current"])
async def test_newer_events_are_recorded_but_not_sent_to_a_legacy_merchant(
    client: httpx.AsyncClient, db: Database, merchant: MerchantCreds, legacy_merchant: MerchantCreds, legacy: bool
) -> None:
    creds = legacy_merchant if legacy else merchant
    pid = (await create_payment(client, creds))["transaction_id"]
    await sandbox(client, pid, "cancel", checkout_id="a")  # the payer cancels one try
    await sandbox(client, pid, checkout_id="b")
    await _refund_failed(db, pid)
    async with db.reading() as session:
        stmt = select(Event.type).where(Event.payment_id == pid).order_by(Event.sequence)
        recorded = list(await session.scalars(stmt))
    assert recorded == ["attempt_cancelled", "paid", "refund_failed"]  # recorded for every merchant
    assert await delivered_types(db, pid) == (["paid"] if legacy else ["paid", "refund_failed"])


async def test_the_version_is_read_from_the_session_when_the_merchant_is_loaded(
    db: Database, legacy_merchant: MerchantCreds
) -> None:
    async with db.reading() as session:
        await session.get(Merchant, legacy_merchant.merchant_id)
        assert await events.merchant_version(session, legacy_merchant.merchant_id) == versions.LEGACY
        assert await events.merchant_version(session, "mer_missing") == versions.CURRENT


# --- underpayment tolerance -------------------------------------------------------------------


@given(
    amount=st.integers(min_value=1, max_value=10**12),
    credited=st.integers(min_value=0, max_value=10**12),
    tolerance=st.integers(min_value=0, max_value=merchants.MAX_UNDERPAYMENT_TOLERANCE),
)
def test_paid_iff_what_is_lacking_is_within_the_tolerance(amount: int, credited: int, tolerance: int) -> None:
    lacking = amount - credited
    assert service.is_paid(amount, credited, tolerance) == (credited > 0 and lacking <= tolerance)
    if tolerance == 0:  # no tolerance: the plain rule, paid once the whole amount is there
        assert service.is_paid(amount, credited, 0) == (credited >= amount)


@pytest.mark.parametrize(
    ("paid", "status", "remaining", "mismatch"),
    [
        ("490.00", "paid", "10.00", True),  # lacks exactly 10 KZT: the old system's paid
        ("495.50", "paid", "4.50", True),
        ("489.99", "partially_paid", "10.01", False),  # one tiyn more: partially paid, as before
        ("500", "paid", "0.00", False),
    ],
)
async def test_a_payment_short_by_at_most_the_tolerance_is_paid_and_says_so(
    client: httpx.AsyncClient,
    db: Database,
    legacy_merchant: MerchantCreds,
    paid: str,
    status: str,
    remaining: str,
    mismatch: bool,
) -> None:
    await set_tolerance(db, legacy_merchant.merchant_id, 1000)  # what import-legacy sets
    pid = (await create_payment(client, legacy_merchant, amount=500))["transaction_id"]
    await sandbox(client, pid, amount=paid, checkout_id="a")
    r = await client.get(f"/api/payment/{pid}", headers={"Paycenter-Version": versions.CURRENT})
    data = r.json()["data"]
    # Paid short stays short: what is missing is still said, in the API and in the webhook.
    assert (data["status"], data["remaining_amount"]) == (status, remaining)
    body = await last_event(db, pid)
    assert (body["event"], body["status"], body["payment_mismatch"]) == (status, status, mismatch)
    assert body["remaining_amount"] == float(remaining) or body["remaining_amount"] == int(float(remaining))
    assert await delivered_types(db, pid) == [status]


async def test_a_new_merchant_has_no_tolerance(
    client: httpx.AsyncClient, db: Database, merchant: MerchantCreds
) -> None:
    pid = (await create_payment(client, merchant, amount=500))["transaction_id"]
    await sandbox(client, pid, amount="499.99", checkout_id="a")
    body = await last_event(db, pid)
    assert (body["event"], body["remaining_amount"]) == ("partially_paid", 0.01)


@pytest.mark.parametrize("text", ["-1", "abc", "1000.001", "1000.01", ""])
def test_a_bad_tolerance_is_refused(text: str) -> None:
    with pytest.raises(Exception) as caught:
        merchants.checked_tolerance(merchants.tolerance_from_text(text))
    assert getattr(caught.value, "code", None) == "invalid_tolerance"


def test_a_tolerance_is_typed_in_major_units() -> None:
    assert [merchants.tolerance_from_text(t) for t in ("0", "10", "10,5", "1 000")] == [0, 1000, 1050, 100000]
