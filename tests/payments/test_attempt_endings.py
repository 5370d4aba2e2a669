"""Issue 13: every way a payer's try can end, on every backend.

The old system sent `cancelled` when the payer cancelled at the terminal, while the payment went
back to pending; merchants closed orders that were paid a minute later. Here a try that ends
without money sends no webhook at all (a payer's cancel is recorded as `attempt_cancelled`, which
no merchant is sent), the payment is exactly as payable as before, and it can then be paid. Only
the payment's own end sends `cancelled` (the merchant's cancel) or `expired`.

The tries are opened and ended through the same functions the payment page, the poller and the
sandbox use (``attempts.begin``/``attach``, ``payer_cancel``, ``apply``, ``trouble``,
``close_by_id``, ``sandbox.payer_action``); no provider is called over HTTP (Kaspi QR has no
cancel call). The end-to-end flows through the Kaspi simulators are in test_kaspi.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import select

from kit.api import MerchantCreds, create_payment
from kit.db import delivered_types
from paycenter.config import Settings
from paycenter.context import AppContext
from paycenter.payments import attempts
from paycenter.payments import service as payments
from paycenter.payments.models import PAYABLE, Attempt, AttemptStatus, Event
from paycenter.payments.port import locked
from paycenter.providers import terminals
from paycenter.providers.base import PollResult, PollState, Started
from paycenter.providers.models import Terminal
from paycenter.providers.sandbox import PayerAction, payer_action
from paycenter.simulators.kaspi_pos import SUB_CANCELLED

AMOUNT = 50000  # 500.00 KZT, in tiyn


@pytest.fixture
def settings(database_url: str) -> Settings:
    """conftest's, with the Kaspi providers enabled (for ``ctx`` and the app)."""
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=database_url,
        public_url="http://pay.test",
        run_worker=False,
        enabled_providers="sandbox,kaspi_qr,kaspi_pos",
        # Never called: Kaspi QR's cancel is no call, and nothing here starts a try at the bank.
        kaspi_qr_base_url="http://127.0.0.1:9",
    )


@pytest.fixture
async def till(ctx: AppContext) -> None:
    """One terminal for Kaspi POS tries (never reached: the endings below need no call to it)."""
    async with ctx.db.transaction() as session:
        await terminals.add(
            session, name="T1", base_url="http://127.0.0.1:9/T1", access_token="t", camera_url=None, now=ctx.clock()
        )


# --- the ways a try ends ---------------------------------------------------------------------

Ending = Callable[[AppContext, str, str | None], Awaitable[None]]


async def open_try(ctx: AppContext, pid: str, n: int = 0) -> str:
    """What the payment page's start does, without the call to the bank: a live, attached try."""
    async with ctx.db.transaction() as session:
        begun = await attempts.begin(
            session, payment_id=pid, method_code=None, providers=ctx.providers, now=ctx.clock()
        )
    async with ctx.db.transaction() as session:
        started = Started(provider_ref=f"ref-{pid[:8]}-{n}")
        assert await attempts.attach(session, attempt_id=begun.request.attempt_id, started=started, now=ctx.clock())
    return begun.request.attempt_id


async def page_cancel(ctx: AppContext, pid: str, attempt_id: str | None) -> None:
    assert await attempts.payer_cancel(ctx.db, ctx.providers, payment_id=pid, clock=ctx.clock) is not None


async def _reported(ctx: AppContext, attempt_id: str | None, result: PollResult) -> None:
    assert attempt_id is not None
    async with ctx.db.transaction() as session:
        assert await attempts.apply(session, attempt_id=attempt_id, result=result, now=ctx.clock())


async def terminal_cancel(ctx: AppContext, pid: str, attempt_id: str | None) -> None:
    # What the POS provider reports for a payer's cancel on the terminal (kaspi_pos.py).
    error = f"cancelled at the terminal ({SUB_CANCELLED})"
    await _reported(ctx, attempt_id, PollResult(state=PollState.CANCELLED, raw_status="fail", error=error))


async def terminal_failure(ctx: AppContext, pid: str, attempt_id: str | None) -> None:
    error = "the terminal reported a failure (ProcessFailed)"
    await _reported(ctx, attempt_id, PollResult(state=PollState.FAILED, raw_status="fail", error=error))


async def qr_error(ctx: AppContext, pid: str, attempt_id: str | None) -> None:
    # Kaspi QR says Error (or RemotePaymentCanceled) for a payer who declines in the app as for a
    # failure: it tells no cancel apart (kaspi_qr.py).
    await _reported(ctx, attempt_id, PollResult(state=PollState.FAILED, raw_status="Error", error="Error"))


async def provider_silent(ctx: AppContext, pid: str, attempt_id: str | None) -> None:
    assert attempt_id is not None
    async with ctx.db.transaction() as session:
        gave_up = await attempts.trouble(
            session, attempt_id=attempt_id, error="timeout", now=ctx.clock(), give_up_after=0, max_backoff=1
        )
    assert gave_up


async def _closed(ctx: AppContext, attempt_id: str | None, status: AttemptStatus, error: str) -> None:
    assert attempt_id is not None
    async with ctx.db.transaction() as session:
        closed = await attempts.close_by_id(session, attempt_id=attempt_id, status=status, now=ctx.clock(), error=error)
    assert closed is not None


async def try_runs_out(ctx: AppContext, pid: str, attempt_id: str | None) -> None:
    # The poller's _expire: the try's own deadline (a QR's 180 s, a terminal's), not the payment's.
    await _closed(ctx, attempt_id, AttemptStatus.EXPIRED, "time ran out")


async def start_failed(ctx: AppContext, pid: str, attempt_id: str | None) -> None:
    # attempts.start when the bank refuses the try, and the poller's _abandon_start.
    await _closed(ctx, attempt_id, AttemptStatus.FAILED, "the bank did not accept the payment")


async def _sandbox(ctx: AppContext, pid: str, action: PayerAction) -> None:
    async with ctx.db.transaction() as session:
        payment = await locked(session, pid)
        await payer_action(payment, action=action, amount=None, checkout_id="c", now=ctx.clock())


async def sandbox_cancel(ctx: AppContext, pid: str, attempt_id: str | None) -> None:
    await _sandbox(ctx, pid, PayerAction.CANCEL)


async def sandbox_decline(ctx: AppContext, pid: str, attempt_id: str | None) -> None:
    await _sandbox(ctx, pid, PayerAction.FAIL)


async def merchant_cancels(ctx: AppContext, pid: str, attempt_id: str | None) -> None:
    async with ctx.db.reading() as session:
        merchant_id = (await payments.get(session, pid)).merchant_id
    async with ctx.db.transaction() as session:
        await payments.cancel(session, merchant_id=merchant_id, payment_id=pid, reason="", now=ctx.clock())


async def payment_expires(ctx: AppContext, pid: str, attempt_id: str | None) -> None:
    ctx.clock.advance(hours=2)  # type: ignore[attr-defined]  # conftest's Clock: past the payment's 1 h
    async with ctx.db.transaction() as session:
        assert await payments.expire_if_due(session, await payments.lock(session, pid), now=ctx.clock())


@dataclass(frozen=True)
class Way:
    name: str
    provider: str
    end: Ending
    attempt_status: str
    # The payment's own end: its status and the one event it sends; None: the payment goes on.
    payment_end: str | None = None
    opens_try: bool = True  # False: the ending opens its own try (the sandbox decides at once)


WAYS = [
    Way("payer cancels on the payment page (QR)", "kaspi_qr", page_cancel, "cancelled"),
    Way("payer cancels at the terminal", "kaspi_pos", terminal_cancel, "cancelled"),
    Way("the terminal reports a failure", "kaspi_pos", terminal_failure, "failed"),
    Way("Kaspi QR reports Error (declined or cancelled in the app)", "kaspi_qr", qr_error, "failed"),
    Way("the provider gives no answer until the poller gives up", "kaspi_qr", provider_silent, "failed"),
    Way("the try runs out, the payment does not (QR)", "kaspi_qr", try_runs_out, "expired"),
    Way("the try runs out, the payment does not (terminal)", "kaspi_pos", try_runs_out, "expired"),
    Way("the bank refuses the start", "kaspi_qr", start_failed, "failed"),
    Way("payer cancels in the sandbox", "sandbox", sandbox_cancel, "cancelled", opens_try=False),
    Way("the sandbox bank declines", "sandbox", sandbox_decline, "failed", opens_try=False),
    Way("the merchant cancels the payment", "kaspi_qr", merchant_cancels, "cancelled", payment_end="cancelled"),
    Way("the payment expires", "kaspi_pos", payment_expires, "expired", payment_end="expired"),
]
# For runs of tries on one Kaspi QR payment: the endings of a try opened by the page (at the
# domain's level a terminal's cancel or failure ends a QR try the same way).
RUN_WAYS = [w for w in WAYS if w.payment_end is None and w.opens_try]


# --- what the merchant is sent ---------------------------------------------------------------


async def recorded(ctx: AppContext, pid: str) -> list[str]:
    async with ctx.db.reading() as session:
        return list(await session.scalars(select(Event.type).where(Event.payment_id == pid).order_by(Event.sequence)))


async def receive(ctx: AppContext, pid: str, amount: int, txn: str) -> str:
    async with ctx.db.transaction() as session:
        payment = await payments.lock(session, pid)
        await payments.record_operation(
            session, payment, provider_txn_id=f"{pid}:{txn}", amount=amount, now=ctx.clock()
        )
        return payment.status


async def new_payment(client, merchant: MerchantCreds, provider: str, partly_paid: bool, ctx: AppContext) -> str:
    pid = (await create_payment(client, merchant, provider=provider, amount=AMOUNT // 100))["transaction_id"]
    if partly_paid:
        assert await receive(ctx, pid, 20000, "first") == "partially_paid"
    return pid


# --- the table -------------------------------------------------------------------------------


@pytest.mark.parametrize("partly_paid", [False, True], ids=["pending", "partially_paid"])
@pytest.mark.parametrize("way", WAYS, ids=[w.name for w in WAYS])
async def test_only_the_payments_own_end_sends_cancelled(way: Way, partly_paid: bool, ctx, client, merchant, till):
    pid = await new_payment(client, merchant, way.provider, partly_paid, ctx)
    before = "partially_paid" if partly_paid else "pending"
    already = await delivered_types(ctx.db, pid)
    attempt_id = await open_try(ctx, pid) if way.opens_try else None

    await way.end(ctx, pid, attempt_id)

    async with ctx.db.reading() as session:
        (attempt,) = await session.scalars(select(Attempt).where(Attempt.payment_id == pid))
        payment = await payments.get(session, pid)
    assert attempt.status == way.attempt_status
    news = (await delivered_types(ctx.db, pid))[len(already) :]
    new_events = (await recorded(ctx, pid))[len(already) :]
    # The rule itself: `cancelled` is sent if and only if the payment is cancelled.
    assert ("cancelled" in news) == (payment.status == "cancelled")
    if way.payment_end is not None:
        assert (payment.status, news, new_events) == (way.payment_end, [way.payment_end], [way.payment_end])
        return
    assert news == []  # a try's end is no webhook, whatever ended it
    assert new_events == (["attempt_cancelled"] if way.attempt_status == "cancelled" else [])
    assert payment.status == before and payment.status in PAYABLE  # payable as it was
    assert payment.cancelled_at is None
    # ... and can still be paid: the merchant hears `paid`, never having heard `cancelled`.
    assert await receive(ctx, pid, payment.remaining_amount, "rest") == "paid"
    assert (await delivered_types(ctx.db, pid))[len(already) :] == ["paid"]


async def test_the_attempt_event_says_which_try_and_why(ctx, client, merchant, till):
    pid = await new_payment(client, merchant, "kaspi_pos", True, ctx)
    attempt_id = await open_try(ctx, pid)
    await terminal_cancel(ctx, pid, attempt_id)
    r = await client.get("/api/events", headers=merchant.headers, params={"transaction_id": pid})
    items = r.json()["data"]["items"]  # newest first
    assert [(i["type"], bool(i["deliveries"])) for i in items] == [
        ("attempt_cancelled", False),
        ("partially_paid", True),
    ]
    body = items[0]["data"]
    assert (body["event"], body["attempt_id"], body["reason"]) == (
        "attempt_cancelled",
        attempt_id,
        f"cancelled at the terminal ({SUB_CANCELLED})",
    )
    assert (body["status"], body["previous_status"], body["sequence"]) == ("partially_paid", "processing", 2)
    assert (body["paid_amount"], body["remaining_amount"]) == (200, 300)
    r = await client.get(f"/api/transaction/{pid}", headers=merchant.headers)
    data = r.json()["data"]
    assert (data["status"], [(a["id"], a["status"]) for a in data["attempts"]]) == (
        "partially_paid",
        [(attempt_id, "cancelled")],
    )
    async with ctx.db.reading() as session:
        assert await session.scalar(select(Terminal.busy_with)) is None  # the terminal is free again


# --- any sequence of them --------------------------------------------------------------------


@hypothesis_settings(
    max_examples=15,
    deadline=None,
    derandomize=True,  # the same examples on every run and every backend
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(st.sampled_from(RUN_WAYS) | st.none(), min_size=1, max_size=5),
    last=st.sampled_from(["paid", "cancelled", "expired"]),
)
async def test_any_run_of_endings_sends_cancelled_only_for_the_merchants_cancel(steps, last, ctx, client, merchant):
    """A payment goes through tries that end every which way, with a part paid here and there
    (None), then is paid, cancelled by its merchant, or expires. The merchant is sent exactly the
    payment's own changes, in sequence order; the tries' cancels are recorded, never sent."""
    pid = (await create_payment(client, merchant, provider="kaspi_qr", amount=AMOUNT // 100))["transaction_id"]
    parts = 0
    for n, way in enumerate(steps):
        if way is None:
            if parts < 2:  # 2 × 100 of 500: the payment stays open
                parts += 1
                assert await receive(ctx, pid, 10000, f"part-{n}") == "partially_paid"
            continue
        await way.end(ctx, pid, await open_try(ctx, pid, n))
        async with ctx.db.reading() as session:
            assert (await payments.get(session, pid)).status == ("partially_paid" if parts else "pending")
    if last == "paid":
        async with ctx.db.reading() as session:
            remaining = (await payments.get(session, pid)).remaining_amount
        assert await receive(ctx, pid, remaining, "rest") == "paid"
    elif last == "cancelled":
        await merchant_cancels(ctx, pid, None)
    else:
        await payment_expires(ctx, pid, None)

    assert await delivered_types(ctx.db, pid) == ["partially_paid"] * parts + [last]
    cancels = sum(1 for w in steps if w is not None and w.attempt_status == "cancelled")
    assert (await recorded(ctx, pid)).count("attempt_cancelled") == cancels
    async with ctx.db.reading() as session:
        sequences = list(
            await session.scalars(select(Event.sequence).where(Event.payment_id == pid).order_by(Event.sequence))
        )
    assert sequences == list(range(1, len(sequences) + 1))
